"""Postgres export through COPY: the lines Postgres writes are byte for byte the Python ones."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from sqlalchemy import insert, null, select, text

from app import export
from app.hashing import content_hash
from app.models import DEFAULT_TENANT_ID, Dataset, Example
from app.state import Database

TRICKY = [
    "",
    "plain",
    'quotes " and \\ backslash \\n not a newline',
    "newline\nand\r\ncarriage\ttab\x08\x0c",
    "".join(chr(c) for c in range(1, 32)) + "\x7f",
    "unicode: é ß 漢字 😀 \u2028 \u2029 \ufeff",
    "# looks like a marker",
    "{not json}",
    "\x01\x02 CSV quote and delimiter of the COPY",
    "'; DROP TABLE examples; --",
    "%_ like wildcards",
]
CHATS: list[Any] = [
    [{"role": "user", "content": "q \x01"}, {"role": "assistant", "content": "a 😀"}],
    [{"role": "system", "content": "s"}, {"role": "user", "content": "only a question"}],
]


@pytest.fixture
async def pg(pg_database_url: str) -> AsyncIterator[Database]:
    db = Database.from_url(pg_database_url)
    yield db
    await db.engine.dispose()


async def fill(db: Database) -> uuid.UUID:
    """Rows of every shape: single-turn with tricky text, null and empty outputs, rationales,
    messages SQL NULL / JSON null / [] / a conversation, several statuses and topics."""
    dataset_id = uuid.uuid4()
    rows: list[dict[str, Any]] = []
    n = 0
    for i, a in enumerate(TRICKY):
        for j, b in enumerate(TRICKY):
            n += 1
            messages: Any = [None, null(), [], CHATS[0], CHATS[1]][n % 5]
            rows.append({
                "id": uuid.uuid4(), "dataset_id": dataset_id, "origin": "seed",
                "status": ["accepted", "pending", "rejected"][n % 3],
                "instruction": a or "x", "input": b, "metadata": {},
                "output": [b + a, None, "", a][n % 4],
                "rationale": [None, "", "why " + b, a][n % 4 if j % 2 else (n + 1) % 4],
                "messages": messages, "topic": ["t/a", "t/b", "u's %/x", None][i % 4],
                "scores": {"overall": n % 10} if n % 2 else None,
                "content_hash": content_hash(str(n)), "dedup_key": None,
            })  # fmt: skip
    async with db.transaction() as session:
        session.add(Dataset(id=dataset_id, tenant_id=DEFAULT_TENANT_ID, name="copy"))
        await session.flush()
        await session.execute(insert(Example.__table__), rows)
    return dataset_id


async def python_lines(db: Database, fmt: str, rationale: str, **filters: Any) -> bytes:
    """The lines as the Python path writes them (rows through SQLAlchemy, then orjson)."""
    convert = export.with_rationale(export.FORMATS[fmt], rationale)
    stmt = export.examples_query(
        select(*export.CONTENT_COLUMNS, Example.rationale), **filters, max_score=None
    )
    out = b""
    async for batch in export._sa_batches(db, stmt, 1000):
        out += b"".join(orjson.dumps(convert(r, None)) + b"\n" for r in batch)
    return out


async def copy_lines(db: Database, fmt: str, rationale: str, **filters: Any) -> bytes:
    chunks = export.stream_jsonl(
        db, fmt=fmt, rationale=rationale, with_metadata=False, batch_rows=7, **filters
    )
    out = [c async for c in chunks]
    assert all(type(c) is bytes for c in out)  # what a StreamingResponse takes
    return b"".join(out)


@pytest.mark.parametrize("fmt", ["alpaca", "messages", "sharegpt", "prompt_completion"])
async def test_copy_lines_equal_python_lines(pg: Database, fmt: str) -> None:
    dataset_id = await fill(pg)
    async with pg.engine.connect() as conn:  # all three kinds of "no conversation" are there
        kinds = await conn.execute(
            text("SELECT count(*) FILTER (WHERE messages IS NULL), count(*) FILTER (WHERE "
                 "messages = 'null'::jsonb), count(*) FILTER (WHERE messages = '[]'::jsonb) "
                 "FROM examples")
        )  # fmt: skip
        assert all(kinds.one())
    filters: list[dict[str, Any]] = [
        {"origin": None, "status": None, "job_id": None, "min_score": None, "topic": None},
        {"origin": "seed", "status": "accepted", "job_id": None, "min_score": 3.5, "topic": None},
        {"origin": None, "status": "pending", "job_id": None, "min_score": None, "topic": "t"},
        {"origin": None, "status": None, "job_id": None, "min_score": None, "topic": "u's %"},
    ]
    for rationale in export.RATIONALE_MODES:
        for f in filters:
            expected = await python_lines(pg, fmt, rationale, dataset_id=dataset_id, **f)
            assert expected, f  # every filter keeps some rows
            got = await copy_lines(pg, fmt, rationale, dataset_id=dataset_id, **f)
            assert got == expected, (rationale, f)
    empty = await copy_lines(
        pg, fmt, "think", dataset_id=uuid.uuid4(), origin=None, status=None, job_id=None
    )
    assert empty == b""


async def test_copy_stream_closed_early_leaves_the_pool_usable(pg: Database) -> None:
    """A client that goes away mid-download: the COPY is cancelled, the connection reusable."""
    dataset_id = await fill(pg)
    chunks = export.stream_jsonl(
        pg, dataset_id=dataset_id, fmt="messages", origin=None, status=None, job_id=None,
        with_metadata=False, batch_rows=10,
    )  # fmt: skip
    first = await chunks.__anext__()
    assert first.endswith(b"\n")
    await chunks.aclose()
    for _ in range(3):  # more than the pool would hold broken
        got = await copy_lines(
            pg, "alpaca", "none", dataset_id=dataset_id, origin=None, status=None, job_id=None
        )
        assert got.count(b"\n") == len(TRICKY) ** 2
