"""JSONL export formats and the streamed download (server-side cursor, constant memory).

Formats:
- ``alpaca``: ``{"instruction", "input", "output"}`` (Stanford Alpaca).
- ``messages``: ``{"messages": [{"role", "content"}, ...]}``: what TRL's SFTTrainer and OpenAI
  fine-tuning read.
- ``sharegpt``: ``{"conversations": [{"from": "system"|"human"|"gpt", "value"}, ...]}``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import orjson
from sqlalchemy import Select, select

from app.models import Example
from app.state import Database

Row = Mapping[str, Any]

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
)
_SHAREGPT_ROLE = {"system": "system", "user": "human", "assistant": "gpt"}


def user_turn(row: Row) -> str:
    """The user's message of a single-turn example: instruction, then input after a blank line."""
    return f"{row['instruction']}\n\n{row['input']}" if row["input"] else row["instruction"]


def chat_messages(row: Row) -> list[dict[str, str]]:
    """The example as chat messages (stored conversations as they are, plus a trailing answer)."""
    if row["messages"]:
        messages = [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
    else:
        messages = [{"role": "user", "content": user_turn(row)}]
    if row["output"] is not None and messages[-1]["role"] != "assistant":
        messages.append({"role": "assistant", "content": row["output"]})
    return messages


def to_alpaca(row: Row) -> dict[str, Any]:
    return {"instruction": row["instruction"], "input": row["input"], "output": row["output"]}


def to_messages(row: Row) -> dict[str, Any]:
    return {"messages": chat_messages(row)}


def to_sharegpt(row: Row) -> dict[str, Any]:
    return {
        "conversations": [
            {"from": _SHAREGPT_ROLE[m["role"]], "value": m["content"]} for m in chat_messages(row)
        ]
    }


FORMATS: dict[str, Callable[[Row], dict[str, Any]]] = {
    "alpaca": to_alpaca,
    "messages": to_messages,
    "sharegpt": to_sharegpt,
}


def provenance(row: Row) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "origin": row["origin"],
        "status": row["status"],
        "job_id": str(row["job_id"]) if row["job_id"] else None,
        "method": row["method"],
        "prompt_id": row["prompt_id"],
        "prompt_version": row["prompt_version"],
        "teacher_backend": row["teacher_backend"],
        "teacher_model": row["teacher_model"],
        "reject_reason": row["reject_reason"],
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
) -> AsyncIterator[bytes]:
    """JSONL lines of the dataset's examples, fetched `batch_rows` at a time from a cursor.

    Uses its own connection: the generator outlives the request's session.
    """
    convert = FORMATS[fmt]
    columns = (*CONTENT_COLUMNS, *PROVENANCE_COLUMNS) if with_metadata else CONTENT_COLUMNS
    stmt = select(*columns).where(Example.dataset_id == dataset_id)
    if origin:
        stmt = stmt.where(Example.origin == origin)
    if status:
        stmt = stmt.where(Example.status == status)
    if job_id:
        stmt = stmt.where(Example.job_id == job_id)
    stmt = stmt.order_by(Example.id)
    if with_metadata:

        def line(r: Row) -> bytes:
            return orjson.dumps({**convert(r), "metadata": provenance(r)})
    else:

        def line(r: Row) -> bytes:
            return orjson.dumps(convert(r))

    if db.dialect == "postgresql":
        batches = _pg_batches(db, stmt, batch_rows)
    else:
        batches = _sa_batches(db, stmt, batch_rows)
    async for batch in batches:
        yield b"\n".join([line(r) for r in batch]) + b"\n"


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
