"""`distillery worker --processes N`: real processes, the loopback emulator as the teacher.

The parent and its children are the real command (``python -m app.cli worker``); the job is a
labeling job planned like the API plans it. Every process is stopped by its pid at the end.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from sqlalchemy import func, select

from app import examples as examples_store
from app import job_counters, jobs
from app.config import Settings
from app.models import DEFAULT_TENANT_ID, Example, Job, Task
from app.models import Worker as WorkerRow
from app.schemas import ExampleIn, LabelingJobCreate
from app.state import Database
from tests.emulator_proc import EmulatorProcess, start_emulator
from tests.worker_proc import add_dataset
from workers import supervisor

ROOT = Path(__file__).resolve().parent.parent
SEEDS = 240
CHUNK = 8  # 30 tasks: both children get some


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorProcess]:
    handle = start_emulator(base_latency=0.3, max_in_flight=64)
    try:
        yield handle
    finally:
        handle.stop()


class Parent:
    """`distillery worker --processes N` as a subprocess, logging to a file."""

    def __init__(self, database_url: str, emulator: EmulatorProcess, log: Path, n: int) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLERY_")}
        env.update(
            DISTILLERY_DATABASE_URL=database_url,
            DISTILLERY_TEACHER__BACKEND="openai",
            DISTILLERY_TEACHER__BASE_URL=emulator.base_url,
            DISTILLERY_TEACHER__MODEL=emulator.model,
            DISTILLERY_TEACHER__MAX_CONCURRENCY="16",
            DISTILLERY_WORKER_CONCURRENCY="2",
            DISTILLERY_LEASE_SECONDS="2",
            DISTILLERY_HEARTBEAT_SECONDS="0.5",
            DISTILLERY_POLL_INTERVAL_SECONDS="0.2",
            DISTILLERY_SHUTDOWN_GRACE_SECONDS="1",
            DISTILLERY_RETRY_BASE_SECONDS="0.1",
        )
        self.log_path = log
        with log.open("wb") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "worker", "--processes", str(n)],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.ps = psutil.Process(self.popen.pid)

    def children(self) -> list[psutil.Process]:
        try:
            return [c for c in self.ps.children() if c.status() != psutil.STATUS_ZOMBIE]
        except psutil.Error:
            return []

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        """SIGTERM the parent; SIGKILL it and whatever child is left after 30 s."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                for child in self.children():
                    child.kill()
                self.popen.kill()
                self.popen.wait(10)


@pytest.fixture
def parents() -> Iterator[list[Parent]]:
    started: list[Parent] = []
    yield started
    for parent in started:
        parent.stop()


async def labeling_job(db: Database, model: str) -> uuid.UUID:
    dataset_id = await add_dataset(db)
    async with db.transaction() as session:
        seeds = [
            ExampleIn(instruction=f"Explain idea number {i} to a student.") for i in range(SEEDS)
        ]
        await examples_store.add_seeds(session=session, dataset_id=dataset_id, examples=seeds)
        request = LabelingJobCreate(
            dataset_id=dataset_id, kind="labeling", teacher={"model": model, "max_tokens": 16}
        )
        job = await jobs.create_job(
            session=session,
            tenant_id=DEFAULT_TENANT_ID,
            request=request,
            settings=Settings(labeling_chunk_size=CHUNK),
        )
        return job.id


async def live_workers(db: Database) -> list[WorkerRow]:
    async with db.reading() as session:
        rows = await session.scalars(select(WorkerRow).where(WorkerRow.stopped_at.is_(None)))
        return list(rows.all())


async def wait_for(what: str, parent: Parent, check, timeout_s: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := await check():
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what} not seen in {timeout_s}s\n{parent.log()}")


async def two_children(
    db: Database,
    database_url: str,
    emulator: EmulatorProcess,
    tmp_path: Path,
    parents: list[Parent],
) -> tuple[Parent, list[WorkerRow]]:
    """`distillery worker --processes 2` started, once both children registered: their rows."""
    parent = Parent(database_url, emulator, tmp_path / "worker.log", 2)
    parents.append(parent)

    async def two() -> list[WorkerRow] | None:
        rows = await live_workers(db)
        return rows if len(rows) == 2 else None

    return parent, await wait_for("two registered workers", parent, two)


async def job_state(db: Database, job_id: uuid.UUID) -> Job:
    async with db.reading() as session:
        job = await session.get(Job, job_id)
        assert job is not None
        await job_counters.load(session, [job])
        return job


async def finished(db: Database, job_id: uuid.UUID, parent: Parent) -> Job:
    async def done() -> Job | None:
        job = await job_state(db, job_id)
        return job if job.status not in ("queued", "running") else None

    job: Job = await wait_for("the job's end", parent, done, timeout_s=120)
    return job


async def assert_every_example_once(db: Database, job_id: uuid.UUID) -> None:
    async with db.reading() as session:
        rows = (
            await session.execute(
                select(Example.source_id, func.count()).where(Example.job_id == job_id)
                .group_by(Example.source_id)
            )
        ).all()  # fmt: skip
    assert len(rows) == SEEDS
    assert {count for _, count in rows} == {1}


async def test_two_processes_share_a_job(
    database_url: str, emulator: EmulatorProcess, tmp_path: Path, parents: list[Parent]
) -> None:
    db = Database.from_url(database_url)
    try:
        parent, rows = await two_children(db, database_url, emulator, tmp_path, parents)
        child_pids = {c.pid for c in parent.children()}
        assert {row.pid for row in rows} == child_pids, parent.log()
        assert len({row.name for row in rows}) == 2
        assert {row.concurrency for row in rows} == {2}
        emulator.reset_stats()
        job_id = await labeling_job(db, emulator.model)
        job = await finished(db, job_id, parent)
        assert job.status == "succeeded", (job.error, parent.log())
        assert job.accepted == SEEDS
        await assert_every_example_once(db, job_id)
        async with db.reading() as session:
            owners = set(
                (await session.scalars(select(Task.lease_owner).where(Task.job_id == job_id))).all()
            )
        assert owners == {row.name for row in rows}  # both children ran tasks of the job
        # the teacher saw each child's share at most: 2 x ceil(16 / 2)
        assert emulator.stats()["max_in_flight"] <= 16
    finally:
        await db.engine.dispose()


async def test_sigterm_stops_every_child(
    database_url: str, emulator: EmulatorProcess, tmp_path: Path, parents: list[Parent]
) -> None:
    db = Database.from_url(database_url)
    try:
        parent, _rows = await two_children(db, database_url, emulator, tmp_path, parents)
        children = parent.children()
        assert len(children) == 2
        job_id = await labeling_job(db, emulator.model)

        async def running() -> bool:
            return (await job_state(db, job_id)).status == "running"

        await wait_for("the job running", parent, running)
        parent.popen.send_signal(signal.SIGTERM)
        assert parent.popen.wait(60) == 0, parent.log()
        _gone, alive = psutil.wait_procs(children, timeout=10)
        assert not alive
        assert await live_workers(db) == []  # each child unregistered itself
        async with db.reading() as session:
            held = await session.scalar(
                select(func.count()).select_from(Task)
                .where(Task.job_id == job_id, Task.status == "running")
            )  # fmt: skip
        assert held == 0  # finished or released, none left to a lapsing lease
    finally:
        await db.engine.dispose()


async def test_child_killed_9_is_replaced(
    database_url: str, emulator: EmulatorProcess, tmp_path: Path, parents: list[Parent]
) -> None:
    db = Database.from_url(database_url)
    try:
        parent, _rows = await two_children(db, database_url, emulator, tmp_path, parents)
        job_id = await labeling_job(db, emulator.model)

        async def holding() -> WorkerRow | None:  # a child with a task in flight
            return next((w for w in await live_workers(db) if w.in_flight > 0), None)

        victim = await wait_for("a child holding a task", parent, holding)
        os.kill(victim.pid, signal.SIGKILL)

        async def replaced() -> bool:
            pids = {c.pid for c in parent.children()}
            return len(pids) == 2 and victim.pid not in pids

        await wait_for("a new child", parent, replaced)
        job = await finished(db, job_id, parent)
        assert job.status == "succeeded", (job.error, parent.log())
        assert job.accepted == SEEDS
        await assert_every_example_once(db, job_id)
        assert "killed by SIGKILL: starting it again" in parent.log()
        assert parent.popen.poll() is None  # the parent carries on
    finally:
        await db.engine.dispose()


# --- the parts without processes ------------------------------------------------------------


def test_default_processes_follow_the_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervisor, "usable_cores", lambda: 6)
    assert supervisor.default_processes("openai") == 6
    assert supervisor.default_processes("vllm") == 1
    assert supervisor.default_processes("transformers") == 1


def test_usable_cores_is_the_affinity() -> None:
    assert supervisor.usable_cores() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize(("limit", "n", "each"), [(256, 2, 128), (255, 2, 128), (3, 4, 1)])
def test_children_share_the_teacher(limit: int, n: int, each: int) -> None:
    assert supervisor.share(limit, n) == each
    assert supervisor.share(limit, n) * n >= limit


def test_child_environments() -> None:
    base = {"PATH": "/bin", "DISTILLERY_WORKER_METRICS_PORT": "9100"}
    envs = supervisor.child_environments(
        base, 2, overrides={"DISTILLERY_TEACHER__MAX_CONCURRENCY": "128"}, worker_id="gpu-a"
    )
    assert [e["DISTILLERY_WORKER_ID"] for e in envs] == ["gpu-a-1", "gpu-a-2"]
    for env in envs:
        assert env["DISTILLERY_WORKER_PROCESSES"] == "1"
        assert env["DISTILLERY_TEACHER__MAX_CONCURRENCY"] == "128"
        assert "DISTILLERY_WORKER_METRICS_PORT" not in env  # the parent serves metrics
    plain = supervisor.child_environments(base, 2, overrides={}, worker_id=None)
    assert all("DISTILLERY_WORKER_ID" not in e for e in plain)
