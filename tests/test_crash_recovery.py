"""Real worker processes: kill -9 again and again (Postgres and SQLite), and a Postgres restart.

Workers are ``python -m tests.worker_proc`` (the real runner, the echo method, a scripted
teacher) with 2 s leases, so a killed worker's task is taken over within seconds.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import func, select

from app import job_counters
from app.models import Example, Job, Task, TaskEvent
from app.state import Database
from tests.conftest import PG_ADMIN_DB, PG_BASE
from tests.kill_loop import Workers, kill_until_done, workers_factory  # noqa: F401  (fixture)
from tests.worker_proc import add_job, item_payloads

ITEMS = 1000


async def job_state(db: Database, job_id: uuid.UUID) -> tuple[str, int]:
    async with db.reading() as session:
        row = (
            await session.execute(
                select(Job.status, job_counters.expression("completed")).where(Job.id == job_id)
            )
        ).one()
    return row.status, row.completed


async def check_exactly_once(db: Database, job_id: uuid.UUID, items: int) -> None:
    async with db.reading() as session:
        job = await session.get(Job, job_id)
        assert job is not None
        await job_counters.load(session, [job])
        assert job.status == "succeeded", job.error
        assert (job.completed, job.accepted, job.rejected, job.failed) == (items, items, 0, 0)
        instructions = (
            await session.scalars(select(Example.instruction).where(Example.job_id == job_id))
        ).all()
        assert len(instructions) == items  # none twice
        assert set(instructions) == {f"item {i}" for i in range(items)}  # none missing
        keys = await session.scalar(
            select(func.count()).select_from(
                select(Example.task_id, Example.item_index).distinct().subquery()
            )
        )
        assert keys == items
        statuses = (await session.scalars(select(Task.status).where(Task.job_id == job_id))).all()
        assert set(statuses) == {"succeeded"}


@pytest.mark.slow
async def test_kill9_workers_again_and_again(
    database_url: str,
    tmp_path: Path,
    workers_factory: list[Workers],  # noqa: F811
) -> None:
    db = Database.from_url(database_url)
    # 100 tasks of 10 items; 5 teacher calls of 0.1 s each: a task lasts ~0.5 s
    job_id = await add_job(db, item_payloads(ITEMS, 10), params={"batch": 2})
    workers = Workers(database_url, tmp_path, "--lease", "2", "--heartbeat", "0.5",
                      "--concurrency", "2", "--delay", "0.1")  # fmt: skip
    workers_factory.append(workers)
    try:
        run = await kill_until_done(
            db, job_id, workers, start=3, timeout=80, max_kills=15,
            progress=lambda job: job.completed, kill_below=ITEMS * 0.9, aim=True, pause=(0.3, 1.0),
        )  # fmt: skip
        seed, kills = run.seed, run.kills
        await check_exactly_once(db, job_id, ITEMS)
        async with db.reading() as session:
            takeovers = await session.scalar(
                select(func.count())
                .select_from(TaskEvent)
                .where(TaskEvent.job_id == job_id, TaskEvent.event == "reclaimed")
            )
        print(f"seed {seed}: {kills} kills, {takeovers} takeovers, {workers.started} workers")
        assert kills >= 5, f"the job finished before enough kills (seed {seed})"
        assert takeovers and takeovers >= 1  # the kills landed on tasks in flight
    finally:
        workers.stop_all()
        await db.engine.dispose()


async def wait_for_postgres(timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = await asyncpg.connect(f"{PG_BASE}/{PG_ADMIN_DB}", timeout=5)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
        else:
            await conn.close()
            return


def restart_postgres() -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
        check=True,
        capture_output=True,
        timeout=120,
    )


@pytest.mark.slow
async def test_workers_ride_out_a_postgres_restart(
    pg_database_url: str,
    tmp_path: Path,
    workers_factory: list[Workers],  # noqa: F811
) -> None:
    items = 500
    db = Database.from_url(pg_database_url)
    job_id = await add_job(db, item_payloads(items, 10), params={"batch": 2})
    workers = Workers(pg_database_url, tmp_path, "--lease", "2", "--heartbeat", "0.5",
                      "--concurrency", "2", "--delay", "0.1")  # fmt: skip
    workers_factory.append(workers)
    procs = [workers.start(), workers.start()]
    try:
        while (await job_state(db, job_id))[1] < 50:
            await asyncio.sleep(0.1)
        await asyncio.to_thread(restart_postgres)
        await wait_for_postgres()
        restarted_at = time.monotonic()
        async with db.engine.connect() as conn:  # the pool's old connections are dead: pinged
            done_by_then = await conn.scalar(
                select(job_counters.expression("completed")).where(Job.id == job_id)
            )
        assert done_by_then is not None and done_by_then < items  # the restart hit mid-job
        while True:
            try:
                status, completed = await job_state(db, job_id)
            except Exception:  # connections of the old server are gone; the pool pings
                status, completed = "unknown", -1
            if status in ("succeeded", "failed", "cancelled"):
                break
            if time.monotonic() - restarted_at > 60:
                raise AssertionError(f"job stuck at {status}, {completed}\n{workers.tail()}")
            await asyncio.sleep(0.2)
        assert all(p.poll() is None for p in procs), workers.tail()  # they survived it
        await check_exactly_once(db, job_id, items)
        print(f"{done_by_then} of {items} items done at the restart")
        assert "LISTEN connection down" in workers.tail()  # they noticed, and reconnected
    finally:
        workers.stop_all()
        await wait_for_postgres()
        await db.engine.dispose()
