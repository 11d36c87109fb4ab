"""The read path of ``GET /v1/jobs/{id}``: one job with its progress and health, lean.

The status poll is the API's busiest route: clients poll running jobs every second or faster, many
at once. Through the ORM it cost several ms of CPU per request (a session, ``session.get`` with
``populate_existing``, identity-map work, cache keys of four statements, BEGIN/ROLLBACK round
trips). Here: two Core statements, compiled once and cached, on a connection without a
transaction on Postgres (each statement is its own snapshot; see ``Database.quick_read``):

1. the job's columns, its counters (``job_counters.expression``: the row plus its shards) and
   whether tasks of it wait to be retried, in one row;
2. for a job not finished, the live workers (the few columns health needs).

The answer is the same ``JobRead`` as the ORM path's (``jobs.job_read`` and
``health.job_health`` build it from transient ``Job``/``Worker`` objects), so the JSON of both
paths is identical (tests/test_job_view.py compares them).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import Select, bindparam, exists, select
from sqlalchemy import exc as sa_exc

from app import asyncpg_reads, job_counters, jobs, workers
from app.db import utcnow
from app.errors import NotFound
from app.health import job_health
from app.models import TERMINAL_STATUSES, Job, Task, Worker
from app.schemas import JobRead
from app.state import Database

# the job's own columns that JobRead and its health read (counters come from job_counters)
_JOB_COLUMNS = (
    "id", "tenant_id", "dataset_id", "skill_id", "kind", "status", "params", "teacher",
    "teacher_model", "total", "error", "stop_reason", "cancel_requested", "created_at",
    "started_at", "finished_at", "priority", "tokenizer", "last_teacher_error",
    "teacher_down_since",
)  # fmt: skip
_PROGRESS = ("completed", "accepted", "rejected", "failed")
_WORKER_COLUMNS = (
    "model", "kinds", "teacher_state", "teacher_down_since", "last_teacher_error",
)  # fmt: skip


def _job_statement() -> Select[Any]:
    retrying = (
        exists()
        .where(Task.job_id == Job.id, Task.status == "queued", Task.last_error.is_not(None))
        .label("retrying")
    )
    return select(
        *(getattr(Job, name) for name in _JOB_COLUMNS),
        *(job_counters.expression(name) for name in _PROGRESS),
        retrying,
    ).where(Job.id == bindparam("job_id"), Job.tenant_id == bindparam("tenant_id"))


def _workers_statement() -> Select[Any]:
    return select(*(getattr(Worker, name) for name in _WORKER_COLUMNS)).where(
        Worker.stopped_at.is_(None), Worker.last_seen_at >= bindparam("cutoff")
    )


_JOB = _job_statement()
_LIVE_WORKERS = _workers_statement()


_JOB_PG = asyncpg_reads.Statement.of(_JOB)
_LIVE_WORKERS_PG = asyncpg_reads.Statement.of(_LIVE_WORKERS)


async def read_job(
    db: Database, *, tenant_id: uuid.UUID, job_id: uuid.UUID, heartbeat_seconds: float
) -> JobRead:
    """The job as ``GET /v1/jobs/{id}`` answers it; NotFound when the tenant has no such job.

    A connection the database dropped (a restart) is replaced once: the read is idempotent, so
    the caller sees the answer rather than a 503 while the pool refills.
    """
    if db.dialect == "postgresql":
        return await _read_asyncpg(db, tenant_id, job_id, heartbeat_seconds)
    try:
        return await _read(db, tenant_id, job_id, heartbeat_seconds)
    except sa_exc.DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
    return await _read(db, tenant_id, job_id, heartbeat_seconds)


async def read_job_json(
    db: Database, *, tenant_id: uuid.UUID, job_id: uuid.UUID, heartbeat_seconds: float
) -> bytes:
    """``read_job`` serialised as FastAPI would send it for ``response_model=JobRead`` (the same
    pydantic serializer, so the same bytes), without FastAPI's validate-then-serialise round
    trip of the returned model."""
    read = await read_job(
        db, tenant_id=tenant_id, job_id=job_id, heartbeat_seconds=heartbeat_seconds
    )
    return _JOB_READ_JSON(read)


_JOB_READ_JSON = JobRead.__pydantic_serializer__.to_json


async def _read_asyncpg(
    db: Database, tenant_id: uuid.UUID, job_id: uuid.UUID, heartbeat_seconds: float
) -> JobRead:
    """Postgres: the two statements straight on asyncpg (app.asyncpg_reads: about half the
    CPU of the same statements through SQLAlchemy's execution layer)."""
    return await asyncpg_reads.run(
        db, lambda driver: _fetch_asyncpg(driver, tenant_id, job_id, heartbeat_seconds)
    )


async def _fetch_asyncpg(
    driver: Any, tenant_id: uuid.UUID, job_id: uuid.UUID, heartbeat_seconds: float
) -> JobRead:
    record = await driver.fetchrow(
        _JOB_PG.sql, *_JOB_PG.args({"job_id": job_id, "tenant_id": tenant_id})
    )
    if record is None:
        raise NotFound(f"job {job_id} not found")
    values = dict(record)
    live: list[Worker] = []
    if values["status"] not in TERMINAL_STATUSES:
        cutoff = utcnow() - dt.timedelta(seconds=workers.live_window(heartbeat_seconds))
        rows = await driver.fetch(_LIVE_WORKERS_PG.sql, *_LIVE_WORKERS_PG.args({"cutoff": cutoff}))
        live = [Worker(**dict(r)) for r in rows]
    return _job_read(values, live)


def _job_read(values: dict[str, Any], live: list[Worker]) -> JobRead:
    retrying = bool(values.pop("retrying")) and values["status"] == "running"
    job = Job(**values)
    return jobs.job_read(job, job_health(job, live, retrying))


async def _read(
    db: Database, tenant_id: uuid.UUID, job_id: uuid.UUID, heartbeat_seconds: float
) -> JobRead:
    async with db.quick_read() as conn:
        row = (await conn.execute(_JOB, {"job_id": job_id, "tenant_id": tenant_id})).first()
        if row is None:
            raise NotFound(f"job {job_id} not found")
        values = row._asdict()
        live: list[Worker] = []
        if values["status"] not in TERMINAL_STATUSES:
            window = workers.live_window(heartbeat_seconds)
            cutoff = utcnow() - dt.timedelta(seconds=window)
            result = await conn.execute(_LIVE_WORKERS, {"cutoff": cutoff})
            live = [Worker(**r._asdict()) for r in result]
    return _job_read(values, live)
