"""Queue benchmark on Postgres: wake-up latency and claim throughput.

(a) time from a job's enqueue (commit) to a worker's first claim of its task, with LISTEN/NOTIFY
    and with polling only (``poll_interval_seconds``, default 2 s), one idle worker;
(b) claim throughput with 4 processes: claims alone (``claim_tasks`` in a loop, 1 or 10 a
    time: what SKIP LOCKED sustains), and the whole cycle through the runner (claim -> trivial
    method -> complete, no teacher time) timed from the enqueue of one job to its success.

(c) ``--scaleout``: one job's tasks/s through 4 worker processes sharing a teacher of 1,024
    slots (each process runs 256 tasks at once; a task "calls the teacher" for ``--latency``
    seconds, then stores ``--chunk`` examples, or only counters with ``--chunk 0``); mean
    in-flight / slots; and Postgres lock waits (``pg_stat_activity`` sampled every 20 ms: the
    mean number of backends waiting on a lock, by what they wait for: the job row, the dataset
    row, a counter shard, other).

Run: ``python -m bench.queue [--pg postgresql://postgres@127.0.0.1:5432] [--tasks 2000]``, or
``python -m bench.queue --scaleout [--tasks 8000] [--chunk 4] [--latency 0.4]``. It creates and
drops its own database. Numbers depend on the machine; compare within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any

import asyncpg
from sqlalchemy import select

from app import migrate, queue
from app.config import Settings
from app.db import make_engine, make_sessionmaker
from app.models import DEFAULT_TENANT_ID, Dataset, Job
from app.state import Database
from workers.methods.base import ExampleOut, MethodContext, TaskInput, TaskOutcome
from workers.runner import Runner

KIND = "bench"
TEACHER_KIND = "bench_teacher"


async def run(task: TaskInput, ctx: MethodContext) -> TaskOutcome:
    """The trivial method: nothing to do, one unit done."""
    return TaskOutcome(completed=1)


class TeacherMethod:
    """(c): a teacher call of ``params["latency"]`` seconds, then ``params["chunk"]`` distinct
    examples (or counters only); the seconds spent "in the teacher" add up in ``busy_s``."""

    busy_s = 0.0

    @classmethod
    async def run(cls, task: TaskInput, ctx: MethodContext) -> TaskOutcome:
        start = time.perf_counter()
        await asyncio.sleep(float(task.params["latency"]))
        cls.busy_s += time.perf_counter() - start
        chunk = int(task.params["chunk"])
        examples = [
            ExampleOut(item_index=i, instruction=f"task {task.seq} item {i}", output=f"out {i}")
            for i in range(chunk)
        ]
        return TaskOutcome(
            examples=examples, completed=max(1, chunk), prompt_tokens=20, completion_tokens=16
        )


METHODS: dict[str, Any] = {KIND: sys.modules[__name__], TEACHER_KIND: TeacherMethod}


class NullTeacher:
    """A teacher nobody calls."""

    backend = "none"
    model = "bench-model"

    async def generate(self, requests: Sequence[Any]) -> list[Any]:
        return []

    async def aclose(self) -> None:
        return None


class TimedRunner(Runner):
    """Records when each claim that got tasks returned."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.claimed_at: list[float] = []

    async def _claim(self, limit: int) -> list[queue.ClaimedTask]:
        got = await super()._claim(limit)
        if got:
            self.claimed_at.append(time.perf_counter())
        return got


async def add_job(
    db: Database,
    dataset_id: uuid.UUID,
    n_tasks: int,
    kind: str = KIND,
    params: dict[str, Any] | None = None,
) -> uuid.UUID:
    async with db.transaction() as session:
        job = Job(
            tenant_id=DEFAULT_TENANT_ID,
            dataset_id=dataset_id,
            kind=kind,
            params=params or {},
            total=n_tasks,
            status="queued",
        )
        await queue.enqueue_job(
            session=session, job=job, payloads=[{} for _ in range(n_tasks)], max_attempts=3
        )
        return job.id


async def add_dataset(db: Database) -> uuid.UUID:
    async with db.transaction() as session:
        dataset = Dataset(tenant_id=DEFAULT_TENANT_ID, name=f"bench-{uuid.uuid4().hex[:8]}")
        session.add(dataset)
        await session.flush()
        return dataset.id


async def wake_latency(url: str, *, listen: bool, trials: int, poll: float) -> list[float]:
    """Seconds from enqueue commit to claim, one idle worker."""
    settings = Settings(database_url=url, poll_interval_seconds=poll, worker_id="bench-latency")
    db = Database.from_url(url)
    runner = TimedRunner(
        db=db, settings=settings, teacher=NullTeacher(), methods=METHODS, listen=listen
    )
    worker = asyncio.create_task(runner.run())
    latencies = []
    try:
        if listen:
            await asyncio.wait_for(runner.listening.wait(), 10)
        dataset_id = await add_dataset(db)
        for trial in range(trials):
            # land anywhere in the polling cycle
            await asyncio.sleep(0.05 + (trial * 0.6180339887 % 1.0) * poll)
            before = len(runner.claimed_at)
            await add_job(db, dataset_id, 1)
            enqueued = time.perf_counter()
            while len(runner.claimed_at) == before:
                await asyncio.sleep(0.0005)
            latencies.append(runner.claimed_at[before] - enqueued)
    finally:
        runner.stop()
        await worker
        await db.engine.dispose()
    return latencies


async def throughput(url: str, *, workers: int, concurrency: int, n_tasks: int) -> float:
    """Tasks/s through `workers` worker processes for one job of `n_tasks` trivial tasks."""
    db = Database.from_url(url)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.queue",
                "--worker",
                url,
                "--concurrency",
                str(concurrency),
                "--worker-id",
                f"bench-{i}",
            ],
            stdout=subprocess.PIPE,
        )
        for i in range(workers)
    ]
    try:
        for proc in procs:  # each says READY once it listens
            assert proc.stdout is not None
            line = await asyncio.to_thread(proc.stdout.readline)
            if b"READY" not in line:
                raise RuntimeError(f"worker did not start: {line!r}")
        dataset_id = await add_dataset(db)
        start = time.perf_counter()
        job_id = await add_job(db, dataset_id, n_tasks)
        while True:
            async with db.reading() as session:
                status = await session.scalar(select(Job.status).where(Job.id == job_id))
            if status in ("succeeded", "failed", "cancelled"):
                break
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - start
        if status != "succeeded":
            raise RuntimeError(f"bench job ended {status}")
        return n_tasks / elapsed
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        await db.engine.dispose()


async def worker_main(url: str, concurrency: int, worker_id: str) -> None:
    """A worker process for (b): prints READY once it listens; stops on SIGTERM."""
    settings = Settings(database_url=url, worker_concurrency=concurrency, worker_id=worker_id)
    # 12 connections a process: 4 processes stay well under a default max_connections of 100
    engine = make_engine(url, pool_size=12, max_overflow=0)
    db = Database(engine=engine, sessionmaker=make_sessionmaker(engine))
    runner = Runner(db=db, settings=settings, teacher=NullTeacher(), methods=METHODS)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, runner.stop)
    task = asyncio.create_task(runner.run())
    await asyncio.wait_for(runner.listening.wait(), 10)
    print("READY", flush=True)
    await task
    await db.engine.dispose()
    print(f"BUSY {TeacherMethod.busy_s}", flush=True)


LOCK_WAITS = """
SELECT query FROM pg_stat_activity
WHERE datname = current_database() AND wait_event_type = 'Lock'
"""


def lock_target(query: str) -> str:
    """What a statement waiting on a lock waits for, from its text."""
    q = " ".join(query.lower().split())
    if "job_counters" in q:
        return "counter shard"
    if "from jobs" in q or "update jobs" in q:
        return "job row"
    if "from datasets" in q:
        return "dataset row"
    if "update tasks" in q or "from tasks" in q:
        return "task row"
    return "other"


async def sample_lock_waits(url: str, stop: asyncio.Event) -> tuple[Counter[str], int]:
    """Backends waiting on a lock, by target, summed over samples every 20 ms; and the samples."""
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    waits: Counter[str] = Counter()
    samples = 0
    try:
        while not stop.is_set():
            for row in await conn.fetch(LOCK_WAITS):
                waits[lock_target(row["query"] or "")] += 1
            samples += 1
            await asyncio.sleep(0.02)
    finally:
        await conn.close()
    return waits, samples


async def scaleout(
    url: str, *, workers: int, slots: int, n_tasks: int, latency: float, chunk: int
) -> dict[str, Any]:
    """(c): one job of `n_tasks` through `workers` processes of `slots / workers` concurrency."""
    db = Database.from_url(url)
    per_worker = slots // workers
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.queue", "--worker", url, "--concurrency",
             str(per_worker), "--worker-id", f"scale-{i}"],
            stdout=subprocess.PIPE,
        )
        for i in range(workers)
    ]  # fmt: skip
    stop = asyncio.Event()
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = await asyncio.to_thread(proc.stdout.readline)
            if b"READY" not in line:
                raise RuntimeError(f"worker did not start: {line!r}")
        dataset_id = await add_dataset(db)
        sampler = asyncio.create_task(sample_lock_waits(url, stop))
        load0 = os.getloadavg()[0]
        start = time.perf_counter()
        job_id = await add_job(
            db, dataset_id, n_tasks, TEACHER_KIND, {"latency": latency, "chunk": chunk}
        )
        while True:
            async with db.reading() as session:
                status, error = (
                    await session.execute(select(Job.status, Job.error).where(Job.id == job_id))
                ).one()
            if status in ("succeeded", "failed", "cancelled"):
                break
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - start
        stop.set()
        waits, samples = await sampler
        if status != "succeeded":
            raise RuntimeError(f"bench job ended {status}: {error}")
    finally:
        stop.set()
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        busy = 0.0
        for proc in procs:
            try:
                out, _ = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
            for line in out.decode().splitlines():
                if line.startswith("BUSY "):
                    busy += float(line.split()[1])
        await db.engine.dispose()
    return {
        "tasks_per_s": n_tasks / elapsed,
        "wall_s": elapsed,
        "ideal_s": max(1, -(-n_tasks // slots)) * latency,
        "in_flight": busy / elapsed / slots,
        "lock_waits": {k: v / max(1, samples) for k, v in waits.items()},
        "load": (load0, os.getloadavg()[0]),
    }


def print_scaleout(args: argparse.Namespace, result: dict[str, Any]) -> None:
    what = f"{args.chunk} examples" if args.chunk else "counters only"
    print(
        f"\nscale-out: {args.workers} worker processes x {args.slots // args.workers} slots "
        f"(teacher of {args.slots}, {args.latency:g} s a call), one job of {args.tasks} tasks "
        f"({what} each), {os.cpu_count()} CPUs, load {result['load'][0]:.1f} -> "
        f"{result['load'][1]:.1f}\n"
    )
    print("| tasks/s (one job) | wall / ideal | in-flight / slots | lock waits (mean backends) |")
    print("| ---: | ---: | ---: | --- |")
    waits = ", ".join(f"{k} {v:.2f}" for k, v in sorted(result["lock_waits"].items())) or "none"
    print(
        f"| {result['tasks_per_s']:.0f} | {result['wall_s'] / result['ideal_s']:.2f} | "
        f"{result['in_flight']:.2f} | {waits} |"
    )


async def claim_only(url: str, *, workers: int, batch: int, n_tasks: int) -> float:
    """Tasks/s claimed by `workers` processes claiming `batch` at a time until none is left."""
    db = Database.from_url(url)
    await add_job(db, await add_dataset(db), n_tasks)
    await db.engine.dispose()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.queue", "--claimer", url, "--batch", str(batch),
             "--worker-id", f"claimer-{i}"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )
        for i in range(workers)
    ]  # fmt: skip
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = await asyncio.to_thread(proc.stdout.readline)
            if b"READY" not in line:
                raise RuntimeError(f"claimer did not start: {line!r}")
        start = time.perf_counter()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
        counts = [int(await asyncio.to_thread(p.stdout.readline)) for p in procs]  # type: ignore[union-attr]
        elapsed = time.perf_counter() - start
        if sum(counts) != n_tasks:
            raise RuntimeError(f"claimed {sum(counts)} of {n_tasks}")
        return n_tasks / elapsed
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


async def claimer_main(url: str, batch: int, worker_id: str) -> None:
    """A claiming process for (b): READY, wait for a line on stdin, claim until none is left,
    print how many it claimed."""
    db = Database.from_url(url)
    async with db.reading() as session:  # open a connection before the clock starts
        await session.scalar(select(Job.id).limit(1))
    print("READY", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    claimed = 0
    while True:
        async with db.transaction() as session:
            got = await queue.claim_tasks(
                session=session, worker=worker_id, lease_seconds=300, limit=batch, reap=False
            )
        if not got:
            break
        claimed += len(got)
    print(claimed, flush=True)
    await db.engine.dispose()


def summary(name: str, values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (
        f"| {name:<28} | {_ms(statistics.median(ordered)):>9} | {_ms(p95):>9} | "
        f"{_ms(statistics.fmean(ordered)):>9} | {len(ordered):>3} |"
    )


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


async def main(args: argparse.Namespace) -> None:
    name = f"distillery_bench_{os.getpid()}"
    admin = await asyncpg.connect(f"{args.pg}/postgres")
    await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await admin.execute(f"CREATE DATABASE {name}")
    url = f"postgresql+asyncpg://{args.pg.split('://', 1)[1]}/{name}"
    if args.scaleout:
        try:
            await asyncio.to_thread(migrate.upgrade, url)
            result = await scaleout(
                url,
                workers=args.workers,
                slots=args.slots,
                n_tasks=args.tasks,
                latency=args.latency,
                chunk=args.chunk,
            )
        finally:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            await admin.close()
        print_scaleout(args, result)
        return
    try:
        await asyncio.to_thread(migrate.upgrade, url)
        notify = await wake_latency(url, listen=True, trials=args.trials, poll=args.poll)
        polling = await wake_latency(
            url, listen=False, trials=max(5, args.trials // 3), poll=args.poll
        )
        rates = {}
        for batch in (1, 10):
            label = f"claims only, {batch} per claim"
            rates[label] = await claim_only(
                url, workers=args.workers, batch=batch, n_tasks=args.tasks
            )
        for c in (1, 4):
            label = f"claim -> method -> complete, concurrency {c}"
            rates[label] = await throughput(
                url, workers=args.workers, concurrency=c, n_tasks=args.tasks
            )
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()
    print(f"\nqueue benchmark: Postgres, {os.cpu_count()} CPUs\n")
    print("| enqueue -> first claim        |       p50 |       p95 |      mean |   n |")
    print("| ---------------------------- | --------: | --------: | --------: | --: |")
    print(summary("LISTEN/NOTIFY", notify))
    print(summary(f"polling only ({args.poll:g} s interval)", polling))
    title = f"{args.workers} processes, {args.tasks} trivial tasks"
    print(f"\n| {title:<45} | tasks/s |")
    print("| --------------------------------------------- | ------: |")
    for label, rate in rates.items():
        print(f"| {label:<45} | {rate:>7.0f} |")
    print(
        f"\nNOTIFY is {statistics.fmean(polling) / statistics.fmean(notify):.0f}x faster to wake."
    )


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_pg = os.environ.get("DISTILLERY_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--pg", default=default_pg)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument(
        "--poll", type=float, default=Settings.model_fields["poll_interval_seconds"].default
    )
    parser.add_argument("--scaleout", action="store_true", help="(c) only")
    parser.add_argument("--slots", type=int, default=1024, help="(c) the teacher's slots")
    parser.add_argument("--latency", type=float, default=0.4, help="(c) seconds a teacher call")
    parser.add_argument("--chunk", type=int, default=4, help="(c) examples a task stores")
    parser.add_argument("--worker", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=4, help=argparse.SUPPRESS)
    parser.add_argument("--worker-id", default="bench", help=argparse.SUPPRESS)
    parser.add_argument("--claimer", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(worker_main(args.worker, args.concurrency, args.worker_id))
    elif args.claimer:
        asyncio.run(claimer_main(args.claimer, args.batch, args.worker_id))
    else:
        asyncio.run(main(args))


if __name__ == "__main__":
    cli()
