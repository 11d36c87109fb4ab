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
- ``preference``: TRL's preference type (DPOTrainer): ``{"prompt", "chosen", "rejected"}`` from
  the stored preference pairs (feedback jobs), strings for a single-turn prompt, conversational
  (``prompt``: messages, ``chosen``/``rejected``: ``[the assistant message]``) for a
  conversation and with ``system=true``.
- ``kto``: TRL's unpaired preference type: ``{"prompt", "completion", "label"}``, one row per
  example that is a side of a pair: chosen -> true, rejected -> false; an example chosen in one
  pair and rejected in another is left out.

``min_score`` / ``max_score`` keep rows whose judged ``scores.overall`` is within the bounds
(rows never judged are left out when either is given); for ``preference`` the lower bound is
the chosen side's, the upper bound the rejected side's.

``topic`` keeps the rows generated for one taxonomy leaf (curation, dialogue jobs), given by its
path ``"topic/subtopic"``, or for every leaf under a topic (``"topic"`` or ``"topic/"``).

With ``system=true`` every format carries the system prompt the teacher saw: a conversation's
own system message, else the one its job recorded (``jobs.system_prompt``; seeds have none).
A format function takes the row and `system`: None when not asked for, else the job's system
prompt ("" when there is none).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import typing
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import orjson
from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    cast,
    func,
    literal_column,
    or_,
    select,
    union_all,
)
from sqlalchemy.orm import aliased

from app.models import Example, Job, PreferencePair
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
    Example.topic,
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


def prompt_messages(row: Row, system: str | None = None) -> list[Message]:
    """The example's prompt as chat messages: a conversation up to its last user turn (the
    answer and any trailing assistant turns left out), a single-turn example as its user turn;
    `system` first unless the conversation has a system message of its own."""
    if row["messages"]:
        messages = [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
        while messages and messages[-1]["role"] == "assistant":
            messages.pop()
    else:
        messages = [{"role": "user", "content": user_turn(row)}]
    if system and (not messages or messages[0]["role"] != "system"):
        messages.insert(0, {"role": "system", "content": system})
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

RATIONALE_MODES = ("think", "field", "none")


def think_block(rationale: str, answer: str) -> str:
    """The answer with its reasoning before it, as reasoning models write (and trainers of them
    read): ``<think>\n{rationale}\n</think>\n\n{answer}``."""
    return f"<think>\n{rationale}\n</think>\n\n{answer}"


def with_rationale(
    convert: Callable[[Row, str | None], dict[str, Any]], mode: str
) -> Callable[[Row, str | None], dict[str, Any]]:
    """`convert` with the row's rationale (``rationale: true`` jobs) placed as `mode` says:
    ``think``: in a ``<think>`` block before the answer (:func:`think_block`), wherever the
    format puts the answer (``output``, the last assistant message, the ``completion``);
    ``field``: as a separate ``rationale`` key beside the format's keys (alpaca: next to
    ``output``, as in Distilling step-by-step); ``none``: left out. Rows without a rationale
    come out unchanged."""
    if mode == "none":
        return convert

    if mode == "think":

        def think(row: Row, system: str | None) -> dict[str, Any]:
            if not row["rationale"] or row["output"] is None:
                return convert(row, system)
            text = think_block(row["rationale"], row["output"])
            messages = row["messages"]
            if messages and messages[-1]["role"] == "assistant":  # a labeled conversation
                messages = [*messages[:-1], {**messages[-1], "content": text}]
            return convert({**row, "output": text, "messages": messages}, system)

        return think

    def field(row: Row, system: str | None) -> dict[str, Any]:
        out = convert(row, system)
        if row["rationale"]:
            out["rationale"] = row["rationale"]
        return out

    return field


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
        "topic": row["topic"],
        **({"metadata": row["meta"]} if row["meta"] else {}),
    }


def filename(dataset_name: str, fmt: str, ext: str = "jsonl") -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", dataset_name).strip("-.") or "dataset"
    return f"{safe[:100]}-{fmt}.{ext}"


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
    min_score: float | None = None,
    max_score: float | None = None,
    rationale: str = "think",
    topic: str | None = None,
) -> AsyncIterator[bytes]:
    """JSONL lines of the dataset's examples, fetched `batch_rows` at a time from a cursor; on
    Postgres without `system` or `metadata`, written by Postgres itself (:func:`copy_line_sql`,
    COPY's speed: the Python rendering of the same rows gives the same bytes).

    Accepted examples that a later answer replaced (``superseded_by``, a relabel) are left out
    of ``status="accepted"``: one row per prompt; `status` None (all) shows them. `rationale`
    places the teacher's reasoning of rows that have one (:func:`with_rationale`). Uses its own
    connection: the generator outlives the request's session.
    """
    if fmt in PAIR_FORMATS:  # rows of the preference pairs, not of the examples
        async for chunk in stream_pairs(
            db,
            dataset_id=dataset_id,
            fmt=fmt,
            job_id=job_id,
            with_metadata=with_metadata,
            batch_rows=batch_rows,
            with_system=with_system,
            min_score=min_score,
            max_score=max_score,
        ):
            yield chunk
        return
    convert = with_rationale(FORMATS[fmt], rationale)
    columns: tuple[Any, ...] = CONTENT_COLUMNS
    if rationale != "none":
        columns = (*columns, Example.rationale)
    if with_metadata:
        columns = (*columns, *PROVENANCE_COLUMNS)  # job_id among them
    elif with_system:
        columns = (*columns, Example.job_id)
    stmt = examples_query(
        select(*columns),
        dataset_id=dataset_id,
        origin=origin,
        status=status,
        job_id=job_id,
        min_score=min_score,
        max_score=max_score,
        topic=topic,
    )
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

    if db.dialect == "postgresql" and not with_metadata and not with_system:
        # Postgres writes the lines itself (COPY): single-turn rows rendered in SQL, the rest
        # (conversations) sent as their columns and rendered here, in id order all the same
        fast = examples_query(
            select(literal_column(copy_line_sql(fmt, rationale))),
            dataset_id=dataset_id,
            origin=origin,
            status=status,
            job_id=job_id,
            min_score=min_score,
            max_score=max_score,
            topic=topic,
        )
        async for chunk in _pg_copy_lines(db, fast, lambda r: orjson.dumps(convert(r, None))):
            yield chunk
        return
    if db.dialect == "postgresql":
        batches = _pg_batches(db, stmt, batch_rows)
    else:
        batches = _sa_batches(db, stmt, batch_rows)
    async for batch in batches:
        yield b"\n".join([line(r) for r in batch]) + b"\n"


def _json_sql(expr: str) -> str:
    """SQL: `expr` (text) as a JSON value, byte for byte what orjson writes for the same str
    (``to_json`` escapes the same characters the same way), ``null`` for NULL."""
    return f"coalesce(to_json({expr})::text, 'null')"


def copy_line_sql(fmt: str, rationale: str) -> str:
    """SQL of one export line of an examples row, as `FORMATS[fmt]` with `rationale` and no
    system or metadata would write it: the JSON text for a single-turn row (``messages`` NULL,
    JSON null or []), else ``#`` and the row's columns as JSON, for Python to render."""
    e = "examples"
    output = f"{e}.output"
    extra = "''"
    if rationale == "think":
        output = (
            f"CASE WHEN {e}.rationale <> '' AND {e}.output IS NOT NULL THEN "
            f"E'<think>\\n' || {e}.rationale || E'\\n</think>\\n\\n' || {e}.output "
            f"ELSE {e}.output END"
        )
    elif rationale == "field":
        extra = (
            f"CASE WHEN {e}.rationale <> '' THEN "
            f"',\"rationale\":' || to_json({e}.rationale)::text ELSE '' END"
        )
    user = (
        f"CASE WHEN {e}.input <> '' THEN {e}.instruction || E'\\n\\n' || {e}.input "
        f"ELSE {e}.instruction END"
    )
    if fmt == "alpaca":
        body = (
            f"'{{\"instruction\":' || {_json_sql(f'{e}.instruction')} || ',\"input\":' || "
            f"{_json_sql(f'{e}.input')} || ',\"output\":' || {_json_sql(output)}"
        )
    elif fmt in ("messages", "sharegpt"):
        key, role, text, user_role, bot_role = (
            ("messages", "role", "content", "user", "assistant")
            if fmt == "messages"
            else ("conversations", "from", "value", "human", "gpt")
        )
        body = (
            f'\'{{"{key}":[{{"{role}":"{user_role}","{text}":\' || '
            f"{_json_sql(user)} || '}}' || CASE WHEN ({output}) IS NOT NULL THEN "
            f'\',{{"{role}":"{bot_role}","{text}":\' || to_json({output})::text || \'}}\' '
            "ELSE '' END || ']'"
        )
    elif fmt == "prompt_completion":
        body = f"'{{\"prompt\":' || {_json_sql(user)} || ',\"completion\":' || {_json_sql(output)}"
    else:
        raise ValueError(f"no SQL rendering of format {fmt!r}")
    columns = ", ".join(
        f"'{c}', {e}.{c}" for c in ("instruction", "input", "output", "messages", "rationale")
    )
    return (
        f"CASE WHEN {e}.messages IS NULL OR {e}.messages IN ('null'::jsonb, '[]'::jsonb) "
        f"THEN {body} || {extra} || '}}' ELSE '#' || json_build_object({columns})::text END"
    )


def examples_query(
    stmt: Select[Any],
    *,
    dataset_id: uuid.UUID,
    origin: str | None,
    status: str | None,
    job_id: uuid.UUID | None,
    min_score: float | None,
    max_score: float | None,
    topic: str | None = None,
) -> Select[Any]:
    """`stmt` over the dataset's examples that the export's filters keep, in id order. `topic`:
    a taxonomy leaf's path, or a topic's (a trailing "/" or not) for all the leaves under it."""
    stmt = stmt.where(Example.dataset_id == dataset_id)
    if origin:
        stmt = stmt.where(Example.origin == origin)
    if status:
        stmt = stmt.where(Example.status == status)
    if status == "accepted":
        stmt = stmt.where(Example.superseded_by.is_(None))
    if job_id:
        stmt = stmt.where(Example.job_id == job_id)
    stmt = stmt.where(*score_range(Example.scores, min_score, max_score))
    if topic:
        path = topic.rstrip("/")
        stmt = stmt.where(
            or_(Example.topic == path, Example.topic.startswith(f"{path}/", autoescape=True))
        )
    return stmt.order_by(Example.id)


def score_range(
    column: Any, min_score: float | None, max_score: float | None
) -> list[ColumnElement[bool]]:
    """SQL: `column` (an example's ``scores``) has an ``overall`` within the bounds given; a
    row without a score fails either bound (JSON path: Postgres and SQLite alike)."""
    overall = column["overall"].as_float()
    bounds = []
    if min_score is not None:
        bounds.append(overall >= min_score)
    if max_score is not None:
        bounds.append(overall <= max_score)
    return bounds


def _text(value: str | None) -> str:
    return value or ""


def _pair_prompt(row: Row, system: str | None) -> str | list[Message]:
    """A single-turn prompt as its text (no system asked for), else as chat messages."""
    if not row["messages"] and system is None:
        return user_turn(row)
    return prompt_messages(row, system)


def _completion(prompt: str | list[Message], text: str) -> str | list[Message]:
    """A response in the prompt's form: text, or ``[the assistant message]``."""
    return text if isinstance(prompt, str) else [{"role": "assistant", "content": text}]


def _judge(scores: Any) -> Any:
    return scores.get("judge") if isinstance(scores, dict) else None


def _overall(scores: Any) -> Any:
    return scores.get("overall") if isinstance(scores, dict) else None


def to_preference(row: Row, system: str | None = None) -> dict[str, Any]:
    """TRL's preference type: ``{"prompt", "chosen", "rejected"}``, conversational (lists of
    messages) when the prompt is a conversation or `system` is asked for."""
    prompt = _pair_prompt(row, system)
    return {
        "prompt": prompt,
        "chosen": _completion(prompt, _text(row["chosen"])),
        "rejected": _completion(prompt, _text(row["rejected"])),
    }


def to_kto(row: Row, system: str | None = None) -> dict[str, Any]:
    """TRL's unpaired preference type: ``{"prompt", "completion", "label"}``."""
    prompt = _pair_prompt(row, system)
    return {
        "prompt": prompt,
        "completion": _completion(prompt, _text(row["completion"])),
        "label": bool(row["label"]),
    }


def _preference_query(
    dataset_id: uuid.UUID,
    job_id: uuid.UUID | None,
    min_score: float | None,
    max_score: float | None,
) -> Select[Any]:
    """One row per stored pair whose prompt and sides are not rejected, in pair order."""
    pair = PreferencePair
    prompt, chosen, rejected = (aliased(Example, name=n) for n in ("p", "c", "r"))
    stmt: Select[Any] = typing.cast(  # many columns: rows typed as Any
        Select[Any],
        select(
            pair.id.label("pair_id"),
            pair.job_id.label("job"),
            pair.prompt_id,
            pair.chosen_id,
            pair.rejected_id,
            pair.margin,
            pair.mode,
            pair.chosen_score,
            pair.rejected_score,
            prompt.instruction.label("instruction"),
            prompt.input.label("input"),
            prompt.messages.label("messages"),
            chosen.output.label("chosen"),
            rejected.output.label("rejected"),
            chosen.scores.label("chosen_scores"),
            rejected.scores.label("rejected_scores"),
            chosen.origin.label("chosen_origin"),
            rejected.origin.label("rejected_origin"),
        )
        .select_from(pair)
        .join(prompt, prompt.id == pair.prompt_id)
        .join(chosen, chosen.id == pair.chosen_id)
        .join(rejected, rejected.id == pair.rejected_id)
        .where(
            pair.dataset_id == dataset_id,
            prompt.status != "rejected",
            chosen.status != "rejected",
            rejected.status != "rejected",
            *score_range(chosen.scores, min_score, None),
            *score_range(rejected.scores, None, max_score),
        ),
    )
    if min_score is not None or max_score is not None:  # both sides judged
        stmt = stmt.where(chosen.scores.is_not(None), rejected.scores.is_not(None))
    if job_id is not None:
        stmt = stmt.where(pair.job_id == job_id)
    return stmt.order_by(pair.id)


def _kto_query(
    dataset_id: uuid.UUID,
    job_id: uuid.UUID | None,
    min_score: float | None,
    max_score: float | None,
) -> Select[Any]:
    """One row per example that is a side of a stored pair, labelled desirable when it was
    chosen and undesirable when it was rejected; one that was both (chosen in one pair,
    rejected in another) is left out. Its prompt is its root's (``source_id``, or itself)."""
    pair = PreferencePair
    picked = [pair.dataset_id == dataset_id]
    if job_id is not None:
        picked.append(pair.job_id == job_id)
    job = cast(pair.job_id, String).label("job")
    sides = union_all(
        select(
            pair.chosen_id.label("example_id"),
            literal_column("1").label("good"),
            literal_column("0").label("bad"),
            job,
        ).where(*picked),
        select(pair.rejected_id, literal_column("0"), literal_column("1"), job).where(*picked),
    ).subquery("sides")
    labels = (
        select(
            sides.c.example_id,
            func.max(sides.c.good).label("label"),
            func.max(sides.c.job).label("job"),  # the latest job's (uuid7 order)
        )
        .group_by(sides.c.example_id)
        .having(func.max(sides.c.good) != func.max(sides.c.bad))
        .subquery("labels")
    )
    example, root = aliased(Example, name="e"), aliased(Example, name="p")
    return (
        select(
            labels.c.label,
            labels.c.job,
            example.id,
            example.output.label("completion"),
            example.scores,
            root.id.label("prompt_id"),
            root.instruction,
            root.input,
            root.messages,
        )
        .select_from(labels)
        .join(example, example.id == labels.c.example_id)
        .join(root, root.id == func.coalesce(example.source_id, example.id))
        .where(
            example.status != "rejected",
            root.status != "rejected",
            *score_range(example.scores, min_score, max_score),
        )
        .order_by(example.id)
    )


def _preference_metadata(r: Row) -> dict[str, Any]:
    return {
        "pair_id": str(r["pair_id"]),
        "job_id": _str(r["job"]),
        "prompt_id": str(r["prompt_id"]),
        "chosen_id": str(r["chosen_id"]),
        "rejected_id": str(r["rejected_id"]),
        # seed: uploaded (a student's sample, say); generated: the teacher's
        "chosen_origin": r["chosen_origin"],
        "rejected_origin": r["rejected_origin"],
        "margin": r["margin"],
        "mode": r["mode"],
        "chosen_score": r["chosen_score"],
        "rejected_score": r["rejected_score"],
        "scores": {
            "chosen": _overall(r["chosen_scores"]),
            "rejected": _overall(r["rejected_scores"]),
        },
        "judge": _judge(r["chosen_scores"]) or _judge(r["rejected_scores"]),
    }


def _kto_metadata(r: Row) -> dict[str, Any]:
    return {
        "id": str(r["id"]),
        "prompt_id": str(r["prompt_id"]),
        "job_id": _str(_job_of(r)),
        "score": _overall(r["scores"]),
        "judge": _judge(r["scores"]),
    }


def _job_of(r: Row) -> uuid.UUID | None:
    """The feedback job of a row: a pair's, or (kto) the latest of the pairs of an example,
    which comes as text (the aggregate of a cast)."""
    job = r["job"]
    if job is None or isinstance(job, uuid.UUID):
        return job
    return uuid.UUID(str(job))


async def stream_pairs(
    db: Database,
    *,
    dataset_id: uuid.UUID,
    fmt: str,
    job_id: uuid.UUID | None,
    with_metadata: bool,
    batch_rows: int,
    with_system: bool = False,
    min_score: float | None = None,
    max_score: float | None = None,
) -> AsyncIterator[bytes]:
    """JSONL lines of the dataset's preference pairs: ``preference`` (one row per pair) or
    ``kto`` (one row per judged side). `min_score` bounds the chosen side's overall score (kto:
    the row's), `max_score` the rejected side's (kto: the row's). With `system`, the prompt
    carries the system prompt of the feedback job that made the pair (what its samples saw)."""
    if fmt == "preference":
        stmt = _preference_query(dataset_id, job_id, min_score, max_score)
        convert, meta = to_preference, _preference_metadata
    else:
        stmt = _kto_query(dataset_id, job_id, min_score, max_score)
        convert, meta = to_kto, _kto_metadata
    prompts = await _system_prompts(db, dataset_id) if with_system else {}

    def line(r: Row) -> bytes:
        system = None
        if with_system:
            job = _job_of(r)
            system = prompts.get(job, "") if job is not None else ""
        out = convert(r, system)
        if with_metadata:
            out["metadata"] = meta(r)
        return orjson.dumps(out)

    if db.dialect == "postgresql":
        batches = _pg_batches(db, stmt, batch_rows)
    else:
        batches = _sa_batches(db, stmt, batch_rows)
    async for batch in batches:
        yield b"\n".join([line(r) for r in batch]) + b"\n"


PAIR_FORMATS: dict[str, Callable[[Row, str | None], dict[str, Any]]] = {
    "preference": to_preference,
    "kto": to_kto,
}


async def _system_prompts(db: Database, dataset_id: uuid.UUID) -> dict[uuid.UUID, str]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            select(Job.id, Job.system_prompt).where(
                Job.dataset_id == dataset_id, Job.system_prompt.is_not(None)
            )
        )
        return {job_id: prompt or "" for job_id, prompt in rows.tuples()}


async def _sa_batches(db: Database, stmt: Select[Any], batch_rows: int) -> AsyncIterator[list[Row]]:
    async with db.engine.connect() as conn:
        conn = await conn.execution_options(readonly=True)
        result = await conn.stream(stmt.execution_options(yield_per=batch_rows))
        async for part in result.mappings().partitions():
            yield list(part)


COPY_QUEUE_CHUNKS = 8  # COPY data chunks read ahead of the client (a few hundred kB)


async def _pg_copy_lines(
    db: Database, stmt: Select[Any], render: Callable[[Row], bytes]
) -> AsyncIterator[bytes]:
    """The lines `stmt` selects (one text column), as Postgres's COPY writes them: at COPY's
    speed, `COPY_QUEUE_CHUNKS` chunks read ahead at most (the sink waits: memory stays flat).
    A line starting with ``#`` holds a row's columns as JSON: replaced by ``render(row)``.

    CSV with a quote and a delimiter that JSON text never holds raw (control characters are
    escaped in it, and it has no newline) writes each value as it is, one line per row."""
    async with db.engine.connect() as conn:
        compiled = stmt.compile(dialect=conn.dialect)
        args = [compiled.params[name] for name in compiled.positiontup or ()]
        raw = await conn.get_raw_connection()
        pg: Any = raw.driver_connection
        chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        room = asyncio.Semaphore(COPY_QUEUE_CHUNKS)

        async def sink(data: bytearray) -> None:
            await room.acquire()
            chunks.put_nowait(bytes(data))  # what a response body takes

        copy = asyncio.create_task(
            pg.copy_from_query(
                compiled.string, *args, output=sink, format="csv", quote="\x01", delimiter="\x02"
            )
        )
        copy.add_done_callback(lambda _: chunks.put_nowait(None))
        try:
            pending = b""
            while (data := await chunks.get()) is not None:
                room.release()
                if pending:
                    data, pending = pending + data, b""
                if not data.endswith(b"\n"):  # a row split across chunks (not seen: whole rows)
                    head, _, pending = data.rpartition(b"\n")
                    if not head:
                        pending = data
                        continue
                    data = head + b"\n"
                if data.startswith(b"#") or b"\n#" in data:
                    data = b"".join(
                        render(orjson.loads(line[1:])) + b"\n" if line.startswith(b"#") else line
                        for line in data.splitlines(keepends=True)
                    )
                yield data
            await copy  # its error, if it failed
            if pending:
                raise RuntimeError("COPY output ended inside a line")
        finally:
            if not copy.done():
                copy.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await copy


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
