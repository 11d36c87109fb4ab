"""Worker processes killed with -9 again and again while a job runs: the `Workers` group, its
fixture, and the one loop the crash tests share (each test then checks its own exactly-once)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from app.models import Job, Task
from app.state import Database
from tests.test_queue import job_row

ROOT = Path(__file__).resolve().parent.parent


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


@dataclass
class Killed:
    job: Job  # as it ended, with its counters
    kills: int
    seed: int  # of the random picks: say it in every assert message


async def kill_until_done(
    db: Database,
    job_id: uuid.UUID,
    workers: Workers,
    *,
    start: int,
    timeout: float,
    max_kills: int,
    progress: Callable[[Job], int],
    kill_below: float,
    aim: bool = False,
    pause: tuple[float, float] = (0.3, 0.9),
) -> Killed:
    """Start `start` workers, then until the job ends: every `pause` seconds (random) kill -9 one
    worker and start another, `max_kills` times at most and only while `progress(job)` is below
    `kill_below`. `aim`: kill a worker holding a task (mostly; now and then any, one still
    starting), as random picks on a loaded machine hit only workers still starting. Fails with
    the seed and the workers' logs when the job is still running after `timeout` seconds."""
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    for _ in range(start):
        workers.start()
    kills = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = await job_row(db, job_id)
        if job.status not in ("queued", "running"):
            return Killed(job, kills, seed)
        await asyncio.sleep(rng.uniform(*pause))
        if kills >= max_kills or progress(job) >= kill_below:
            continue
        victims = workers.alive()
        if aim:
            holders = await task_holders(db, job_id)
            busy = [p for p in victims if workers.names[p.pid] in holders]
            if not busy and rng.random() >= 0.2:
                continue
            victims = busy or victims
        workers.kill9(rng.choice(victims))
        kills += 1
        workers.start()
    raise AssertionError(f"job did not finish (seed {seed})\n{workers.tail()}")
