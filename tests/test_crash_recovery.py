"""Real worker processes: kill -9 again and again (Postgres and SQLite), and a Postgres restart.

Workers are ``python -m tests.worker_proc`` (the real runner, the echo method, a scripted
teacher) with 2 s leases, so a killed worker's task is taken over within seconds.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import func, select

from app import job_counters
from app.models import Example, Job, Task, TaskEvent
from app.state import Database
from tests.conftest import PG_ADMIN_DB, PG_BASE
from tests.worker_proc import add_job, item_payloads

ROOT = Path(__file__).resolve().parent.parent
ITEMS = 1000


class Workers:
    """Worker processes, each logging to its own file; every one is killed at the end."""

    def __init__(self, database_url: str, logs: Path, *args: str) -> None:
        self.database_url = database_url
        self.logs = logs
        self.args = args
        self.procs: list[subprocess.Popen[bytes]] = []
        self.names: dict[int, str] = {}  # pid -> worker id
        self.started = 0

    def start(self) -> subprocess.Popen[bytes]:
        self.started += 1
        name = f"worker-{self.started}"
        with (self.logs / f"{name}.log").open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.worker_proc", "--database-url", self.database_url,
                 "--worker-id", name, *self.args],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.procs.append(proc)
        self.names[proc.pid] = name
        return proc

    def alive(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.procs if p.poll() is None]

    def kill9(self, proc: subprocess.Popen[bytes]) -> None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def stop_all(self) -> None:
        for proc in self.alive():
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill9(proc)

    def tail(self) -> str:
        parts = []
        for path in sorted(self.logs.glob("worker-*.log")):
            text = path.read_text(errors="replace").strip()
            if text:
                parts.append(f"--- {path.name}\n{text[-1500:]}")
        return "\n".join(parts)


@pytest.fixture
def workers_factory(tmp_path: Path) -> Iterator[list[Workers]]:
    made: list[Workers] = []
    yield made
    for group in made:
        group.stop_all()


async def job_state(db: Database, job_id: uuid.UUID) -> tuple[str, int]:
    async with db.reading() as session:
        row = (
            await session.execute(
                select(Job.status, job_counters.expression("completed")).where(Job.id == job_id)
            )
        ).one()
    return row.status, row.completed


async def task_holders(db: Database, job_id: uuid.UUID) -> set[str]:
    """The workers holding a task of the job now, on a first or second attempt (a task killed
    on every attempt fails for good, as it should: the test is about recovery)."""
    async with db.reading() as session:
        owners = await session.scalars(
            select(Task.lease_owner).where(
                Task.job_id == job_id, Task.status == "running", Task.attempts <= 2
            )
        )
        return {o for o in owners.all() if o}


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
    database_url: str, tmp_path: Path, workers_factory: list[Workers]
) -> None:
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    db = Database.from_url(database_url)
    # 100 tasks of 10 items; 5 teacher calls of 0.1 s each: a task lasts ~0.5 s
    job_id = await add_job(db, item_payloads(ITEMS, 10), params={"batch": 2})
    workers = Workers(database_url, tmp_path, "--lease", "2", "--heartbeat", "0.5",
                      "--concurrency", "2", "--delay", "0.1")  # fmt: skip
    workers_factory.append(workers)
    for _ in range(3):
        workers.start()
    kills = 0
    try:
        deadline = time.monotonic() + 80
        while time.monotonic() < deadline:
            status, completed = await job_state(db, job_id)
            if status != "running" and status != "queued":
                break
            await asyncio.sleep(rng.uniform(0.3, 1.0))
            if kills < 15 and completed < ITEMS * 0.9:
                # a worker holding a task, mostly; sometimes any (one still starting). A loaded
                # machine starts a worker in seconds: random picks alone hit only those
                holders = await task_holders(db, job_id)
                busy = [p for p in workers.alive() if workers.names[p.pid] in holders]
                if busy or rng.random() < 0.2:
                    workers.kill9(rng.choice(busy or workers.alive()))
                    kills += 1
                    workers.start()
        else:
            raise AssertionError(f"job did not finish (seed {seed})\n{workers.tail()}")
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
    pg_database_url: str, tmp_path: Path, workers_factory: list[Workers]
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
