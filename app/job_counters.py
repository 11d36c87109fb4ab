"""A job's counters, kept off its row: completions of one job add to one of up to ``SHARDS``
rows of ``job_counters``, so that concurrent completions do not queue on the job row (nor on each
other: on Postgres a completion adds to a shard row no other transaction holds, and opens a new
one when all are held, so a job has about as many shard rows as completions ever ran at once).

A job's count is its ``jobs`` column (zero for jobs created since revision 5d7a3c9e1f20; the
migration moved older counts into shard 0) plus the sum of its shard rows. Readers go through
:func:`load` (ORM ``Job`` objects: the totals are set as committed values, so nothing is
written back), :func:`totals` or :func:`expression` (SQL); writers through :func:`add`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Table, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from app.models import Job, JobCounter

SHARDS = 64
COUNTERS: tuple[str, ...] = (
    "completed",
    "accepted",
    "rejected",
    "failed",
    "prompt_tokens",
    "completion_tokens",
    "teacher_seconds",
)


def shard_of(task_id: uuid.UUID) -> int:
    """The shard a task's completion opens when it finds none free (uuid7: the low bits are
    random)."""
    return task_id.int % SHARDS


async def add(
    session: AsyncSession, job_id: uuid.UUID, task_id: uuid.UUID, amounts: Mapping[str, Any]
) -> None:
    """Add `amounts` (counter -> delta) to the job, in the caller's transaction. Postgres: to a
    shard row no other transaction holds (``SKIP LOCKED``), else an upsert of the task's shard;
    the row stays locked until commit. SQLite (one writer): an upsert of the task's shard."""
    values = {name: amounts.get(name) or 0 for name in COUNTERS}
    if not any(values.values()):
        return
    table = _table()
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        free = (
            select(table.c.shard)
            .where(table.c.job_id == job_id)
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        added = await session.scalar(
            update(table)
            .where(table.c.job_id == job_id, table.c.shard == free)
            .values({name: table.c[name] + value for name, value in values.items()})
            .returning(table.c.shard)
        )
        if added is not None:
            return
    stmt = (postgresql if dialect == "postgresql" else sqlite).insert(table)
    stmt = stmt.values(job_id=job_id, shard=shard_of(task_id), **values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.job_id, table.c.shard],
        set_={name: table.c[name] + stmt.excluded[name] for name in COUNTERS},
    )
    await session.execute(stmt)


async def totals(
    session: AsyncSession, job_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, dict[str, Any]]:
    """Counter -> total of each job (the job's column plus its shards); jobs not found are left
    out."""
    ids = list(dict.fromkeys(job_ids))
    if not ids:
        return {}
    table = _table()
    sums = (
        select(table.c.job_id, *(func.sum(table.c[name]).label(name) for name in COUNTERS))
        .where(table.c.job_id.in_(ids))
        .group_by(table.c.job_id)
        .subquery()
    )
    stmt = (
        select(
            Job.id,
            *(
                (getattr(Job, name) + func.coalesce(sums.c[name], 0)).label(name)
                for name in COUNTERS
            ),
        )
        .outerjoin(sums, sums.c.job_id == Job.id)
        .where(Job.id.in_(ids))
    )
    out: dict[uuid.UUID, dict[str, Any]] = {}
    for row in (await session.execute(stmt)).mappings():
        out[row["id"]] = {
            name: float(row[name]) if name == "teacher_seconds" else int(row[name])
            for name in COUNTERS
        }
    return out


async def load(session: AsyncSession, jobs: Sequence[Job]) -> None:
    """Set each job's counter attributes to its totals, as committed values (not written back
    on flush). Call again after anything reloads the row (``populate_existing``)."""
    found = await totals(session, (job.id for job in jobs))
    for job in jobs:
        for name, value in found.get(job.id, {}).items():
            set_committed_value(job, name, value)


def expression(name: str) -> ColumnElement[Any]:
    """SQL: the total of counter `name` of the job of the enclosing ``jobs`` row."""
    table = _table()
    shards = (
        select(func.coalesce(func.sum(table.c[name]), 0))
        .where(table.c.job_id == Job.id)
        .scalar_subquery()
    )
    column: ColumnElement[Any] = getattr(Job, name)
    return (column + shards).label(name)


def _table() -> Table:
    table = JobCounter.__table__
    assert isinstance(table, Table)
    return table
