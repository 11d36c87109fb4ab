"""JSONL export formats and the streamed download (server-side cursor, constant memory).

Formats:
- ``alpaca``: ``{"instruction", "input", "output"}`` (Stanford Alpaca); a conversation comes out
  in LLaMA-Factory's form: ``instruction`` = the last user turn, ``output`` = the answer to it,
  ``system`` = the system message, ``history`` = the earlier turns as ``[[user, assistant], ...]``.
- ``messages``: ``{"messages": [{"role", "content"}, ...]}``: what TRL's SFTTrainer and OpenAI
  fine-tuning read.
- ``sharegpt``: ``{"conversations": [{"from": "system"|"human"|"gpt", "value"}, ...]}``.
- ``prompt_completion``: TRL's prompt-completion type: ``{"prompt": str, "completion": str}``, or
  in the conversational form (``prompt``: the messages up to the last user turn, ``completion``:
  ``[the assistant message]``) for a conversation, and for every row with ``system=true``.

With ``system=true`` every format carries the system prompt the teacher saw: a conversation's
own system message, else the one its job recorded (``jobs.system_prompt``; seeds have none).
A format function takes the row and `system`: None when not asked for, else the job's system
prompt ("" when there is none).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import orjson
from sqlalchemy import Select, select

from app.models import Example, Job
from app.state import Database

Row = Mapping[str, Any]
Message = dict[str, str]

# what every format needs; provenance columns are read only when asked for
CONTENT_COLUMNS = (Example.instruction, Example.input, Example.output, Example.messages)
PROVENANCE_COLUMNS = (
    Example.id,
    Example.origin,
    Example.status,
    Example.meta.label("meta"),
    Example.job_id,
    Example.method,
    Example.prompt_id,
    Example.prompt_version,
    Example.teacher_backend,
    Example.teacher_model,
    Example.reject_reason,
    Example.reject_detail,
    Example.source_id,
    Example.superseded_by,
)
_SHAREGPT_ROLE = {"system": "system", "user": "human", "assistant": "gpt"}


def user_turn(row: Row) -> str:
    """The user's message of a single-turn example: instruction, then input after a blank line."""
    return f"{row['instruction']}\n\n{row['input']}" if row["input"] else row["instruction"]


def chat_messages(row: Row, system: str | None = None) -> list[Message]:
    """The example as chat messages (stored conversations as they are, plus a trailing answer),
    with `system` first unless the conversation has a system message of its own."""
    if row["messages"]:
        messages = [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
    else:
        messages = [{"role": "user", "content": user_turn(row)}]
    if system and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": system})
    if row["output"] is not None and messages[-1]["role"] != "assistant":
        messages.append({"role": "assistant", "content": row["output"]})
    return messages


def turn_pairs(messages: list[Message]) -> tuple[str | None, list[list[Any]]]:
    """A conversation as (system, [[user, assistant], ...]): consecutive turns of one role are
    joined, an answer with no question pairs with "", an unanswered last question with None."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system") or None
    pairs: list[list[Any]] = []
    question: str | None = None
    last_role = None
    for m in messages:
        role, content = m["role"], m["content"]
        if role == "system":
            continue
        if role == last_role:  # same speaker twice in a row: one turn
            if role == "user":
                question = f"{question}\n\n{content}"
            else:
                pairs[-1][1] = f"{pairs[-1][1]}\n\n{content}"
        elif role == "user":
            question = content
        else:
            pairs.append([question or "", content])
            question = None
        last_role = role
    if question is not None:
        pairs.append([question, None])
    return system, pairs


def to_alpaca(row: Row, system: str | None = None) -> dict[str, Any]:
    if not row["messages"]:
        out = {"instruction": row["instruction"], "input": row["input"], "output": row["output"]}
        if system is not None:
            out["system"] = system
        return out
    own, pairs = turn_pairs(chat_messages(row))
    instruction, output = pairs[-1] if pairs else (row["instruction"], row["output"])
    out = {"instruction": instruction, "input": "", "output": output}
    if own or system is not None:
        out["system"] = own or system
    if len(pairs) > 1:
        out["history"] = pairs[:-1]
    return out


def to_messages(row: Row, system: str | None = None) -> dict[str, Any]:
    return {"messages": chat_messages(row, system)}


def to_sharegpt(row: Row, system: str | None = None) -> dict[str, Any]:
    return {
        "conversations": [
            {"from": _SHAREGPT_ROLE[m["role"]], "value": m["content"]}
            for m in chat_messages(row, system)
        ]
    }


def to_prompt_completion(row: Row, system: str | None = None) -> dict[str, Any]:
    if not row["messages"] and system is None:
        return {"prompt": user_turn(row), "completion": row["output"]}
    messages = chat_messages(row, system)
    if messages[-1]["role"] == "assistant":
        return {"prompt": messages[:-1], "completion": messages[-1:]}
    return {"prompt": messages, "completion": []}  # not answered yet (a pending example)


FORMATS: dict[str, Callable[[Row, str | None], dict[str, Any]]] = {
    "alpaca": to_alpaca,
    "messages": to_messages,
    "sharegpt": to_sharegpt,
    "prompt_completion": to_prompt_completion,
}


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def provenance(row: Row) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "origin": row["origin"],
        "status": row["status"],
        "job_id": _str(row["job_id"]),
        "method": row["method"],
        "prompt_id": row["prompt_id"],
        "prompt_version": row["prompt_version"],
        "teacher_backend": row["teacher_backend"],
        "teacher_model": row["teacher_model"],
        "reject_reason": row["reject_reason"],
        "reject_detail": row["reject_detail"],
        "source_id": _str(row["source_id"]),
        "superseded_by": _str(row["superseded_by"]),
        **({"metadata": row["meta"]} if row["meta"] else {}),
    }


def filename(dataset_name: str, fmt: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", dataset_name).strip("-.") or "dataset"
    return f"{safe[:100]}-{fmt}.jsonl"


async def stream_jsonl(
    db: Database,
    *,
    dataset_id: uuid.UUID,
    fmt: str,
    origin: str | None,
    status: str | None,
    job_id: uuid.UUID | None,
    with_metadata: bool,
    batch_rows: int,
    with_system: bool = False,
) -> AsyncIterator[bytes]:
    """JSONL lines of the dataset's examples, fetched `batch_rows` at a time from a cursor.

    Accepted examples that a later answer replaced (``superseded_by``, a relabel) are left out
    of ``status="accepted"``: one row per prompt; `status` None (all) shows them. Uses its own
    connection: the generator outlives the request's session.
    """
    convert = FORMATS[fmt]
    columns: tuple[Any, ...] = CONTENT_COLUMNS
    if with_metadata:
        columns = (*columns, *PROVENANCE_COLUMNS)  # job_id among them
    elif with_system:
        columns = (*columns, Example.job_id)
    stmt = select(*columns).where(Example.dataset_id == dataset_id)
    if origin:
        stmt = stmt.where(Example.origin == origin)
    if status:
        stmt = stmt.where(Example.status == status)
    if status == "accepted":
        stmt = stmt.where(Example.superseded_by.is_(None))
    if job_id:
        stmt = stmt.where(Example.job_id == job_id)
    stmt = stmt.order_by(Example.id)
    # examples.job_id -> jobs.system_prompt, looked up here: the dataset has few jobs, and the
    # streamed query keeps the plan of an ordered index scan (a SQL join may sort it all first)
    prompts = await _system_prompts(db, dataset_id) if with_system else {}

    def system_of(r: Row) -> str | None:
        return prompts.get(r["job_id"], "") if with_system else None

    if with_metadata:

        def line(r: Row) -> bytes:
            return orjson.dumps({**convert(r, system_of(r)), "metadata": provenance(r)})
    else:

        def line(r: Row) -> bytes:
            return orjson.dumps(convert(r, system_of(r)))

    if db.dialect == "postgresql":
        batches = _pg_batches(db, stmt, batch_rows)
    else:
        batches = _sa_batches(db, stmt, batch_rows)
    async for batch in batches:
        yield b"\n".join([line(r) for r in batch]) + b"\n"


async def _system_prompts(db: Database, dataset_id: uuid.UUID) -> dict[uuid.UUID, str]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            select(Job.id, Job.system_prompt).where(
                Job.dataset_id == dataset_id, Job.system_prompt.is_not(None)
            )
        )
        return {job_id: prompt for job_id, prompt in rows.tuples()}


async def _sa_batches(db: Database, stmt: Select[Any], batch_rows: int) -> AsyncIterator[list[Row]]:
    async with db.engine.connect() as conn:
        conn = await conn.execution_options(readonly=True)
        result = await conn.stream(stmt.execution_options(yield_per=batch_rows))
        async for part in result.mappings().partitions():
            yield list(part)


async def _pg_batches(db: Database, stmt: Select[Any], batch_rows: int) -> AsyncIterator[list[Row]]:
    """Straight from an asyncpg server-side cursor: SQLAlchemy's row processing costs ~3x the
    query here (NOTES-STACK §5); asyncpg records are mappings already."""
    async with db.engine.connect() as conn:
        compiled = stmt.compile(dialect=conn.dialect)
        args = [compiled.params[name] for name in compiled.positiontup or ()]
        raw = await conn.get_raw_connection()
        pg: Any = raw.driver_connection
        async with pg.transaction(readonly=True):
            batch: list[Row] = []
            async for record in pg.cursor(compiled.string, *args, prefetch=batch_rows):
                batch.append(record)
                if len(batch) >= batch_rows:
                    yield batch
                    batch = []
            if batch:
                yield batch
