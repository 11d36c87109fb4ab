"""Examples: parse seed uploads (JSON or JSONL), insert all or nothing, page through them.

Exact duplicates (same normalised content hash in one dataset, see app.hashing) are counted,
never stored twice, whether they repeat inside one upload or an earlier one.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy import ColumnElement, Insert, and_, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app import paging, validation
from app.db import utcnow
from app.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType, ValidationFailed
from app.hashing import content_hash
from app.ids import uuid7
from app.models import Example
from app.schemas import ExampleIn

MAX_REPORTED_ERRORS = 20
INSERT_CHUNK = 1000
ANALYZE_AFTER = 1000  # rows inserted by one upload
ANALYZE_SHARE = 0.1  # ... and this share of the table's rows (autovacuum's default)
NDJSON_TYPES = ("application/x-ndjson", "application/jsonl", "application/json-lines")


def parse_seeds(body: bytes, content_type: str, *, max_examples: int) -> list[ExampleIn]:
    """The examples of a seed upload, or a 4xx naming the field or the JSONL line at fault."""
    media = content_type.split(";", 1)[0].strip().lower()
    if not body.strip():
        raise BadRequest('empty body: send {"examples": [...]} or JSONL, one example per line')
    if media in NDJSON_TYPES:
        return _parse_ndjson(body, max_examples)
    if media in ("application/json", ""):
        return _parse_json(body, max_examples)
    raise UnsupportedMediaType(
        f"unsupported content type {media!r}: use application/json or application/x-ndjson"
    )


def _parse_json(body: bytes, max_examples: int) -> list[ExampleIn]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not valid JSON (UTF-8): {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("examples"), list):
        raise ValidationFailed(
            'expected an object {"examples": [...]}',
            details=[{"loc": ["body", "examples"], "msg": "missing or not a list"}],
        )
    items = data["examples"]
    if set(data) - {"examples"}:
        raise ValidationFailed(
            "unknown fields in body",
            details=[{"loc": ["body", k], "msg": "extra field"} for k in set(data) - {"examples"}],
        )
    _check_count(len(items), max_examples)
    if not items:
        raise ValidationFailed(
            "no examples given", details=[{"loc": ["body", "examples"], "msg": "empty list"}]
        )
    examples, errors = [], []
    for i, item in enumerate(items):
        try:
            examples.append(ExampleIn.model_validate(item))
        except ValidationError as exc:
            errors.extend(validation_errors(exc, ["body", "examples", i]))
        if len(errors) >= MAX_REPORTED_ERRORS:
            break
    if errors:
        first = errors[0]
        where = ".".join(str(p) for p in first["loc"][1:])
        raise ValidationFailed(f"invalid example at {where}: {first['msg']}", details=errors)
    return examples


def _parse_ndjson(body: bytes, max_examples: int) -> list[ExampleIn]:
    examples: list[ExampleIn] = []
    errors: list[dict[str, Any]] = []
    for lineno, raw in enumerate(body.split(b"\n"), start=1):
        if not raw.strip():
            continue
        if len(examples) + len(errors) >= max_examples:
            _check_count(max_examples + 1, max_examples)
        error = None
        try:
            text = raw.decode("utf-8")
            examples.append(ExampleIn.model_validate(orjson.loads(text)))
        except UnicodeDecodeError as exc:
            error = [
                {
                    "loc": ["body", f"line {lineno}"],
                    "line": lineno,
                    "msg": f"invalid UTF-8 ({exc.reason} at byte {exc.start})",
                }
            ]
        except orjson.JSONDecodeError as exc:
            error = [
                {"loc": ["body", f"line {lineno}"], "line": lineno, "msg": f"invalid JSON: {exc}"}
            ]
        except ValidationError as exc:
            loc = ["body", f"line {lineno}"]
            error = [{**e, "line": lineno} for e in validation_errors(exc, loc)]
        if error:
            errors.extend(error)
            if len(errors) >= MAX_REPORTED_ERRORS:
                break
    raise_line_errors(errors)
    if not examples:
        raise BadRequest("no examples in the JSONL body")
    return examples


def raise_line_errors(errors: list[dict[str, Any]]) -> None:
    """A 422 naming the first bad JSONL line (and its field), with every error in the details."""
    if errors:
        first = errors[0]
        field = ".".join(str(p) for p in first["loc"][2:])
        raise ValidationFailed(
            f"line {first['line']}: {field + ': ' if field else ''}{first['msg']}", details=errors
        )


def validation_errors(exc: ValidationError, prefix: list[Any]) -> list[dict[str, Any]]:
    """pydantic's errors as API details, each `loc` under `prefix`."""
    return [
        {
            "loc": [*prefix, *validation.client_path(e["loc"], None)],
            "msg": validation.plain_message(dict(e)),
            "type": e["type"],
        }
        for e in exc.errors(include_url=False, include_input=False)
    ]


def _check_count(n: int, max_examples: int) -> None:
    if n > max_examples:
        raise PayloadTooLarge(f"too many examples in one upload (at most {max_examples})")


def check_field_lengths(examples: Sequence[ExampleIn], max_chars: int) -> None:
    """422 naming the first example whose text field is longer than `max_chars`."""
    for i, ex in enumerate(examples):
        fields = {"instruction": ex.instruction, "input": ex.input, "output": ex.output}
        for m, msg in enumerate(ex.messages or []):
            fields[f"messages.{m}.content"] = msg.content
        for name, value in fields.items():
            if value is not None and len(value) > max_chars:
                raise ValidationFailed(
                    f"example {i}: {name} is longer than {max_chars} characters",
                    details=[{"loc": ["body", "examples", i, name], "msg": "too long"}],
                )


def seed_row(dataset_id: uuid.UUID, ex: ExampleIn) -> dict[str, Any]:
    """The examples row of one seed; conversations keep their messages and the first user turn."""
    messages = [m.model_dump() for m in ex.messages] if ex.messages else None
    instruction = ex.instruction or ""
    output = ex.output
    if messages:
        if not instruction.strip():
            instruction = next(m["content"] for m in messages if m["role"] == "user")
        if output is None and messages[-1]["role"] == "assistant":
            output = messages[-1]["content"]
    digest = content_hash(instruction, ex.input, output, messages)
    has_answer = output is not None and output.strip() != ""
    return {
        "id": uuid7(),
        "dataset_id": dataset_id,
        "origin": "seed",
        "status": "accepted" if has_answer else "pending",
        "instruction": instruction,
        "input": ex.input or "",
        "output": output,
        "messages": messages,
        "metadata": ex.metadata or {},  # the column's key (Example.meta in the ORM)
        "content_hash": digest,
        "dedup_key": digest,
    }


def answers_itself() -> ColumnElement[bool]:
    """SQL: the example is a prompt that is its own current answer (an accepted root with a
    non-blank output that no later answer replaced)."""
    return and_(
        Example.source_id.is_(None),
        Example.status == "accepted",
        Example.superseded_by.is_(None),
        Example.output.is_not(None),
        func.trim(Example.output) != "",
    )


def is_current_child(example: Any = Example) -> ColumnElement[bool]:
    """SQL: `example` (the table, or an alias of it) is the current answer of the prompt it
    points at (``source_id``)."""
    return and_(
        example.source_id.is_not(None),
        example.status == "accepted",
        example.superseded_by.is_(None),
    )


def insert_ignoring_conflicts(dialect: str) -> Insert:
    """INSERT INTO examples ... ON CONFLICT DO NOTHING, for the dialect: a row that hits a unique
    key, (dataset, content hash) or (task, item index), is skipped (and not RETURNed).

    A Core insert of the table: rows are dicts keyed by column (``metadata``, not the ORM's
    ``meta``), executed as one executemany without the ORM's bulk-insert bookkeeping per row."""
    module = postgresql if dialect == "postgresql" else sqlite
    stmt: Insert = module.insert(Example.__table__).on_conflict_do_nothing()
    return stmt


async def add_seeds(
    *, session: AsyncSession, dataset_id: uuid.UUID, examples: Sequence[ExampleIn]
) -> tuple[int, int]:
    """Insert seeds in the caller's transaction; returns (inserted, duplicates)."""
    rows, seen = [], set()
    for ex in examples:
        row = seed_row(dataset_id, ex)
        if row["content_hash"] not in seen:
            seen.add(row["content_hash"])
            rows.append(row)
    dialect = session.get_bind().dialect.name
    inserted = 0
    if dialect == "postgresql":
        inserted = await _copy_seed_rows(session, rows)
    else:
        stmt = insert_ignoring_conflicts(dialect).returning(Example.id)
        for start in range(0, len(rows), INSERT_CHUNK):
            result = await session.execute(stmt, rows[start : start + INSERT_CHUNK])
            inserted += len(result.all())
    if inserted >= ANALYZE_AFTER and dialect == "postgresql":
        # fresh statistics now, not when autovacuum gets to it: without them the planner scans
        # the whole dataset for the workers' first lookups by id and content hash. Only when
        # the upload changes the table by autovacuum's own measure (a tenth of its rows, or
        # never analyzed): ANALYZE samples 30k rows all over the table (0.6 s at 1M rows)
        known = await session.scalar(
            text("SELECT reltuples FROM pg_class WHERE oid = 'examples'::regclass")
        )
        if known is None or known <= 0 or inserted >= ANALYZE_SHARE * known:
            await session.execute(text("ANALYZE examples"))
    return inserted, len(examples) - inserted


SEED_COLUMNS = (
    "id", "dataset_id", "origin", "status", "instruction", "input", "output", "messages",
    "metadata", "content_hash", "dedup_key", "created_at",
)  # fmt: skip


def _json_text(value: Any) -> str:
    """`value` as SQLAlchemy's JSON type writes it (json.dumps, None as JSON null)."""
    if value is None:
        return "null"
    return "{}" if value == {} else json.dumps(value)


async def _copy_seed_rows(session: AsyncSession, rows: list[dict[str, Any]]) -> int:
    """Postgres: `rows` (seed_row's) COPYed into a temporary table of the session's
    transaction, then moved into examples with ON CONFLICT DO NOTHING (the same unique keys as
    :func:`insert_ignoring_conflicts`): one round trip of binary rows instead of thousands of
    bound parameters. Returns how many were inserted."""
    conn = await session.connection()
    # through SQLAlchemy first: that begins the session's transaction on the connection (its
    # asyncpg adapter begins lazily), which the driver calls below then run in
    await conn.exec_driver_sql(
        "CREATE TEMP TABLE IF NOT EXISTS seed_upload (LIKE examples INCLUDING DEFAULTS) "
        "ON COMMIT DELETE ROWS"
    )
    raw = await conn.get_raw_connection()
    pg: Any = raw.driver_connection
    if not pg.is_in_transaction():
        raise RuntimeError("seed rows are copied inside the upload's transaction")
    await pg.execute("TRUNCATE seed_upload")  # an earlier upload of this same transaction
    created = utcnow()
    # JSON columns as SQLAlchemy writes them (json.dumps; None as JSON null): the codec the
    # dialect sets on its connections takes JSON text
    records = [
        (
            r["id"], r["dataset_id"], r["origin"], r["status"], r["instruction"], r["input"],
            r["output"], _json_text(r["messages"]), _json_text(r["metadata"]),
            r["content_hash"], r["dedup_key"], created,
        )
        for r in rows
    ]  # fmt: skip
    await pg.copy_records_to_table("seed_upload", records=records, columns=SEED_COLUMNS)
    names = ", ".join(SEED_COLUMNS)
    status = await pg.execute(
        f"INSERT INTO examples ({names}) SELECT {names} FROM seed_upload ORDER BY id "
        "ON CONFLICT DO NOTHING"
    )
    return int(status.rsplit(" ", 1)[1])


async def list_examples(
    *,
    session: AsyncSession,
    dataset_id: uuid.UUID,
    origin: str | None,
    status: str | None,
    job_id: uuid.UUID | None,
    limit: int,
    cursor: str | None,
    reject_reason: str | None = None,
) -> tuple[list[Example], str | None]:
    stmt = select(Example).where(Example.dataset_id == dataset_id)
    if reject_reason:
        stmt = stmt.where(Example.reject_reason == reject_reason)
    if origin:
        stmt = stmt.where(Example.origin == origin)
    if status:
        stmt = stmt.where(Example.status == status)
    if job_id:
        stmt = stmt.where(Example.job_id == job_id)
    return await paging.page(session, stmt, Example, limit, cursor)
