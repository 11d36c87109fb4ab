"""Seed uploads on Postgres go through COPY: the rows stored are those the Core insert stores."""

from __future__ import annotations

import re
import sys
import unicodedata
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text

from app import examples
from app.hashing import normalize_text
from app.models import DEFAULT_TENANT_ID, Dataset
from app.schemas import ExampleIn
from app.state import Database


def test_normalize_text_collapses_what_regex_whitespace_matches() -> None:
    space = re.compile(r"\s+")

    def by_regex(value: str) -> str:
        return space.sub(" ", unicodedata.normalize("NFKC", value).casefold()).strip()

    spaces = [chr(c) for c in range(sys.maxunicode + 1) if space.fullmatch(chr(c))]
    assert "\u3000" in spaces and "\x1c" in spaces  # not only ASCII
    samples = [f"{s}a{s}{s}B{s}" for s in spaces] + ["", " ", "ＡＢ　c", "x\u00a0\u2028y\t\n"]
    for sample in samples:
        assert normalize_text(sample) == by_regex(sample), repr(sample)


@pytest.fixture
async def pg(pg_database_url: str) -> AsyncIterator[Database]:
    db = Database.from_url(pg_database_url)
    yield db
    await db.engine.dispose()


SEEDS: list[dict[str, Any]] = [
    {"instruction": "Add", "input": "2 and 3", "output": "5", "metadata": {"n": 10**18}},
    {"instruction": "add ", "input": "2  and 3", "output": "5"},  # a duplicate once normalised
    {"instruction": "pending é 😀", "metadata": {"nested": {"x": [1, 2.5, None, True]}}},
    {"messages": [{"role": "user", "content": "hi \x01"}, {"role": "assistant", "content": "yo"}]},
    {"instruction": "blank output", "output": "  "},
]
COMPARED = ("origin, status, instruction, input, output, messages::text, metadata::text, "
            "content_hash, dedup_key, job_id, method, topic, scores::text, source_id, "
            "superseded_by, rationale, task_id, item_index")  # fmt: skip


async def stored(db: Database, dataset_id: uuid.UUID) -> list[tuple[Any, ...]]:
    """The rows as Postgres holds them (JSON null and SQL NULL told apart)."""
    async with db.reading() as session:
        rows = await session.execute(
            text(f"SELECT {COMPARED} FROM examples WHERE dataset_id = :d"), {"d": dataset_id}
        )
        return sorted(tuple(repr(v) for v in r) for r in rows)


async def test_copy_stores_what_the_core_insert_stores(pg: Database) -> None:
    items = [ExampleIn.model_validate(s) for s in SEEDS]
    ids = [uuid.uuid4(), uuid.uuid4()]
    async with pg.transaction() as session:
        for n, dataset_id in enumerate(ids):
            session.add(Dataset(id=dataset_id, tenant_id=DEFAULT_TENANT_ID, name=f"d{n}"))
    async with pg.transaction() as session:  # Postgres: through COPY
        assert await examples.add_seeds(session=session, dataset_id=ids[0], examples=items) == (
            4,
            1,
        )
    async with pg.transaction() as session:  # again, and in one transaction twice: all dups
        for _ in range(2):
            got = await examples.add_seeds(session=session, dataset_id=ids[0], examples=items)
            assert got == (0, 5)
    # the Core insert (SQLite's path) on the same database
    rows = [examples.seed_row(ids[1], ex) for ex in items[:1] + items[2:]]
    async with pg.transaction() as session:
        stmt = examples.insert_ignoring_conflicts("postgresql")
        await session.execute(stmt, rows)
    copied, inserted = await stored(pg, ids[0]), await stored(pg, ids[1])
    assert len(copied) == 4
    assert copied == inserted


async def test_failed_transaction_stores_no_seed(pg: Database) -> None:
    dataset_id = uuid.uuid4()
    async with pg.transaction() as session:
        session.add(Dataset(id=dataset_id, tenant_id=DEFAULT_TENANT_ID, name="d"))
    items = [ExampleIn.model_validate(s) for s in SEEDS]
    with pytest.raises(RuntimeError, match="after the copy"):
        async with pg.transaction() as session:
            await examples.add_seeds(session=session, dataset_id=dataset_id, examples=items)
            raise RuntimeError("after the copy")
    assert await stored(pg, dataset_id) == []


async def test_big_uploads_refresh_the_planner_statistics(pg: Database) -> None:
    """An upload of ANALYZE_AFTER rows or more that is a tenth of the table (or the table was
    never analyzed) leaves statistics that count the new rows."""
    dataset_id = uuid.uuid4()
    async with pg.transaction() as session:
        session.add(Dataset(id=dataset_id, tenant_id=DEFAULT_TENANT_ID, name="d"))

    async def upload(start: int) -> float:
        items = [
            ExampleIn(instruction=f"task {i}", output="x")
            for i in range(start, start + examples.ANALYZE_AFTER)
        ]
        async with pg.transaction() as session:
            await examples.add_seeds(session=session, dataset_id=dataset_id, examples=items)
        async with pg.reading() as session:
            reltuples = "SELECT reltuples FROM pg_class WHERE oid = 'examples'::regclass"
            return float(await session.scalar(text(reltuples)) or 0)

    assert await upload(0) == examples.ANALYZE_AFTER
    assert await upload(examples.ANALYZE_AFTER) == 2 * examples.ANALYZE_AFTER
