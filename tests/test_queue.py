"""app.queue against real Postgres and SQLite: claims, leases, retries, completion, cancel."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import uuid
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import select, update

from app import job_counters, queue
from app.db import utcnow
from app.models import Example, Job, Task, TaskEvent
from app.state import Database
from tests.worker_proc import add_dataset, add_job, item_payloads
from workers.methods.base import ExampleOut, TaskOutcome

LEASE = 30.0


async def claim(
    db: Database, worker: str, *, limit: int = 1, lease: float = LEASE, **kw: Any
) -> list[queue.ClaimedTask]:
    async with db.transaction() as session:
        return await queue.claim_tasks(
            session=session, worker=worker, lease_seconds=lease, limit=limit, **kw
        )


async def complete(db: Database, task: queue.ClaimedTask, worker: str, outcome: TaskOutcome) -> Any:
    async with db.transaction() as session:
        return await queue.complete_task(
            session=session, task_id=task.id, worker=worker, attempt=task.attempt, outcome=outcome
        )


async def fail(db: Database, task: queue.ClaimedTask, worker: str, **kw: Any) -> str:
    kw.setdefault("error", "boom")
    async with db.transaction() as session:
        return await queue.fail_task(
            session=session, task_id=task.id, worker=worker, attempt=task.attempt, **kw
        )


async def job_row(db: Database, job_id: uuid.UUID) -> Job:
    async with db.reading() as session:
        job = await session.get(Job, job_id, populate_existing=True)
        assert job is not None
        await job_counters.load(session, [job])
        return job


async def tasks_of(db: Database, job_id: uuid.UUID) -> list[Task]:
    async with db.reading() as session:
        return list(
            (
                await session.scalars(
                    select(Task)
                    .where(Task.job_id == job_id)
                    .order_by(Task.seq)
                    .execution_options(populate_existing=True)
                )
            ).all()
        )


async def events_of(db: Database, job_id: uuid.UUID) -> list[tuple[int | None, str, str | None]]:
    """(task seq or None for job events, event, worker) in order."""
    async with db.reading() as session:
        rows = await session.execute(
            select(Task.seq, TaskEvent.event, TaskEvent.worker)
            .select_from(TaskEvent)
            .outerjoin(Task, Task.id == TaskEvent.task_id)
            .where(TaskEvent.job_id == job_id)
            .order_by(TaskEvent.id)
        )
        return [tuple(r) for r in rows.all()]  # type: ignore[misc]


async def examples_of(db: Database, job_id: uuid.UUID) -> list[Example]:
    async with db.reading() as session:
        return list(
            (
                await session.scalars(
                    select(Example).where(Example.job_id == job_id).order_by(Example.id)
                )
            ).all()
        )


def outcome(*instructions: str, status: str = "accepted", **kw: Any) -> TaskOutcome:
    examples = [
        ExampleOut(item_index=i, instruction=text, output=f"out {text}", status=status)  # type: ignore[arg-type]
        for i, text in enumerate(instructions)
    ]
    kw.setdefault("completed", len(examples))
    return TaskOutcome(examples=examples, **kw)


def test_backoff_grows_exponentially_with_jitter_and_cap() -> None:
    rng = random.Random(1)
    for attempt, full in [(1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0), (10, 60.0)]:
        delays = [queue.backoff_seconds(attempt, base=2, cap=60, rng=rng) for _ in range(50)]
        assert all(full * 0.5 <= d <= full for d in delays)
        assert max(delays) - min(delays) > full * 0.2  # jittered, not constant


async def test_concurrent_claims_never_share_a_task(database_url: str) -> None:
    """Claimers on separate connections, holding their transactions open a moment: every task
    is claimed exactly once."""
    setup = Database.from_url(database_url)
    job_id = await add_job(setup, item_payloads(120, 1))
    claimers = [Database.from_url(database_url) for _ in range(6)]
    seen: list[uuid.UUID] = []

    async def worker(n: int, db: Database) -> None:
        while True:
            async with db.transaction() as session:
                got = await queue.claim_tasks(
                    session=session, worker=f"w{n}", lease_seconds=LEASE, limit=3
                )
                await asyncio.sleep(0.005)  # keep the rows locked while others claim
            if not got:
                return
            seen.extend(t.id for t in got)

    try:
        await asyncio.gather(*(worker(n, db) for n, db in enumerate(claimers)))
        tasks = await tasks_of(setup, job_id)
        assert len(seen) == len(tasks) == 120
        assert Counter(seen).most_common(1)[0][1] == 1
        assert {t.status for t in tasks} == {"running"}
        assert {t.attempts for t in tasks} == {1}
        owners = Counter(t.lease_owner for t in tasks)
        assert len(owners) > 1  # the claimers really ran side by side
    finally:
        for db in [setup, *claimers]:
            await db.engine.dispose()


async def test_job_lifecycle_counters_and_history(database: Database) -> None:
    job_id = await add_job(database, item_payloads(4, 2))
    assert (await job_row(database, job_id)).status == "queued"
    first = await claim(database, "w1")
    assert [t.seq for t in first] == [0]
    assert first[0].attempt == 1 and first[0].reclaimed_from is None
    job = await job_row(database, job_id)
    assert job.status == "running" and job.started_at is not None

    result = await complete(
        database,
        first[0],
        "w1",
        TaskOutcome(
            examples=[
                ExampleOut(item_index=0, instruction="a", output="A"),
                ExampleOut(item_index=1, instruction="b", output=None, status="pending"),
                ExampleOut(
                    item_index=2, instruction="c", status="rejected", reject_reason="too_short"
                ),
            ],
            completed=2,
            failed=1,
            prompt_tokens=10,
            completion_tokens=5,
            teacher_seconds=1.5,
            summary={"note": "first"},
        ),
    )
    assert (result.accepted, result.rejected, result.pending) == (1, 1, 1)
    assert result.job_status == "running"
    job = await job_row(database, job_id)
    assert (job.completed, job.accepted, job.rejected, job.failed) == (2, 1, 1, 1)
    assert (job.prompt_tokens, job.completion_tokens, job.teacher_seconds) == (10, 5, 1.5)

    second = await claim(database, "w2")
    await complete(database, second[0], "w2", outcome("d", "e", prompt_tokens=1))
    job = await job_row(database, job_id)
    assert job.status == "succeeded" and job.finished_at is not None
    assert (job.completed, job.accepted, job.rejected, job.prompt_tokens) == (4, 3, 1, 11)
    tasks = await tasks_of(database, job_id)
    assert [t.status for t in tasks] == ["succeeded", "succeeded"]
    assert tasks[0].result == {"note": "first"} and tasks[0].lease_expires_at is None

    rows = await examples_of(database, job_id)
    assert len(rows) == 5
    first_row = next(r for r in rows if r.instruction == "a")
    assert first_row.origin == "generated" and first_row.method == "echo"
    assert first_row.task_id == first[0].id and first_row.item_index == 0
    assert first_row.dedup_key == first_row.content_hash
    rejected = next(r for r in rows if r.instruction == "c")
    assert rejected.dedup_key is None and rejected.reject_reason == "too_short"

    assert await events_of(database, job_id) == [
        (0, "enqueued", None),
        (1, "enqueued", None),
        (0, "claimed", "w1"),
        (None, "job_started", "w1"),
        (0, "succeeded", "w1"),
        (1, "claimed", "w2"),
        (1, "succeeded", "w2"),
        (None, "job_succeeded", "w2"),
    ]


async def test_lapsed_lease_is_taken_over_and_the_old_worker_writes_nothing(
    database: Database,
) -> None:
    job_id = await add_job(database, item_payloads(2, 2))
    [mine] = await claim(database, "w1", lease=0.2)
    assert await claim(database, "w2") == []  # held
    await asyncio.sleep(0.3)
    [theirs] = await claim(database, "w2")
    assert theirs.id == mine.id and theirs.attempt == 2 and theirs.reclaimed_from == "w1"

    async with database.transaction() as session:
        with pytest.raises(queue.TaskLeaseLost):
            await queue.heartbeat(
                session=session, task_id=mine.id, worker="w1", attempt=1, lease_seconds=LEASE
            )
    with pytest.raises(queue.TaskLeaseLost):
        await complete(database, mine, "w1", outcome("x", "y"))
    assert await examples_of(database, job_id) == []
    # the same worker name with the old attempt is not the lease either
    with pytest.raises(queue.TaskLeaseLost):
        await complete(database, mine, "w2", outcome("x", "y"))

    await complete(database, theirs, "w2", outcome("x", "y"))
    job = await job_row(database, job_id)
    assert job.status == "succeeded" and job.accepted == 2 and job.completed == 2
    events = await events_of(database, job_id)
    assert (0, "reclaimed", "w2") in events


async def test_heartbeat_keeps_the_lease(database: Database) -> None:
    await add_job(database, item_payloads(1, 1))
    [task] = await claim(database, "w1", lease=0.4)
    for _ in range(4):
        await asyncio.sleep(0.2)
        async with database.transaction() as session:
            expires = await queue.heartbeat(
                session=session, task_id=task.id, worker="w1", attempt=1, lease_seconds=0.4
            )
        assert expires > utcnow()
        assert await claim(database, "w2") == []


async def test_lapsing_on_the_last_attempt_fails_the_task_and_the_job(database: Database) -> None:
    job_id = await add_job(database, item_payloads(3, 1), max_attempts=2)
    [a] = await claim(database, "w1", lease=0.1)
    await asyncio.sleep(0.15)
    [b] = await claim(database, "w2", lease=0.1)
    assert (b.id, b.attempt) == (a.id, 2)
    await asyncio.sleep(0.15)
    assert await claim(database, "w3") == []  # reaped instead: the job failed
    job = await job_row(database, job_id)
    assert job.status == "failed" and job.finished_at is not None
    assert job.error is not None and job.error.startswith("task 0 failed after 2 attempts")
    assert "lease lapsed" in job.error and "w2" in job.error
    assert [t.status for t in await tasks_of(database, job_id)] == [
        "failed",
        "cancelled",
        "cancelled",
    ]


async def test_failures_retry_with_backoff_then_fail_the_job(database: Database) -> None:
    job_id = await add_job(database, item_payloads(3, 1), max_attempts=3)
    [done] = await claim(database, "w1")
    await complete(database, done, "w1", outcome("kept"))

    [task] = await claim(database, "w1")
    before = utcnow()
    status = await fail(database, task, "w1", retry_base_seconds=10, retry_max_seconds=100)
    assert status == "queued"
    [row] = [t for t in await tasks_of(database, job_id) if t.id == task.id]
    assert row.status == "queued" and row.attempts == 1 and row.last_error == "boom"
    assert (
        before + dt.timedelta(seconds=4.9) <= row.run_after <= utcnow() + dt.timedelta(seconds=10)
    )
    [other] = await claim(database, "w1")  # the retried task waits; the next one runs
    assert other.seq == 2
    await complete(database, other, "w1", outcome("also kept"))

    for attempt in (2, 3):
        async with database.transaction() as session:  # skip the wait
            await session.execute(update(Task).where(Task.id == task.id).values(run_after=utcnow()))
        [again] = await claim(database, "w1")
        assert (again.id, again.attempt) == (task.id, attempt)
        status = await fail(
            database, again, "w1", error="TeacherUnavailable: down", retry_base_seconds=0
        )
    assert status == "failed"
    job = await job_row(database, job_id)
    assert job.status == "failed"
    assert job.error == "task 1 failed after 3 attempts: TeacherUnavailable: down"
    assert (job.completed, job.accepted) == (2, 2)  # what was accepted stays
    assert len(await examples_of(database, job_id)) == 2
    history = [e for s, e, _ in await events_of(database, job_id) if s == 1]
    assert history == [
        "enqueued",
        "claimed",
        "retry_scheduled",
        "claimed",
        "retry_scheduled",
        "claimed",
        "failed",
    ]


async def test_a_final_failure_cancels_queued_tasks(database: Database) -> None:
    job_id = await add_job(database, item_payloads(3, 1))
    [task] = await claim(database, "w1")
    assert await fail(database, task, "w1", error="bad prompt", retryable=False) == "failed"
    job = await job_row(database, job_id)
    assert job.status == "failed" and job.error == "task 0 failed after 1 attempt: bad prompt"
    assert [t.status for t in await tasks_of(database, job_id)] == [
        "failed",
        "cancelled",
        "cancelled",
    ]
    assert await claim(database, "w2") == []


async def test_release_puts_the_task_back_at_once_without_counting(database: Database) -> None:
    job_id = await add_job(database, item_payloads(1, 1))
    [task] = await claim(database, "w1")
    async with database.transaction() as session:
        await queue.release_task(session=session, task_id=task.id, worker="w1", attempt=1)
    [row] = await tasks_of(database, job_id)
    assert (row.status, row.attempts, row.lease_owner) == ("queued", 0, None)
    [again] = await claim(database, "w2")
    assert (again.id, again.attempt, again.reclaimed_from) == (task.id, 1, None)
    async with database.transaction() as session:
        with pytest.raises(queue.TaskLeaseLost):
            await queue.release_task(session=session, task_id=task.id, worker="w1", attempt=1)
    assert [e for _, e, _ in await events_of(database, job_id)][-2:] == ["released", "claimed"]


async def test_duplicates_are_kept_as_rejected_and_a_repeat_writes_nothing(
    database: Database,
) -> None:
    dataset_id = await add_dataset(database)
    job_id = await add_job(database, item_payloads(6, 3), dataset_id=dataset_id)
    [a] = await claim(database, "w1")
    await complete(database, a, "w1", outcome("one", "two", "three"))
    [b] = await claim(database, "w1")
    result = await complete(database, b, "w1", outcome("ONE ", "four", "four"))
    assert (result.accepted, result.rejected, result.duplicates) == (1, 2, 2)
    again = await complete(database, b, "w1", outcome("ONE ", "four", "four"))
    assert again.already_done

    rows = await examples_of(database, job_id)
    assert len(rows) == 6
    dups = [r for r in rows if r.reject_reason == "duplicate"]
    assert sorted(r.instruction for r in dups) == ["ONE ", "four"]
    assert all(r.status == "rejected" and r.dedup_key is None for r in dups)
    job = await job_row(database, job_id)
    assert (job.accepted, job.rejected, job.completed, job.status) == (4, 2, 6, "succeeded")


async def test_followups_get_the_next_seq_and_keep_the_job_running(database: Database) -> None:
    job_id = await add_job(database, [{"items": [0]}, {"items": [1]}])
    [t0] = await claim(database, "w1")
    await complete(database, t0, "w1", outcome("r0", followups=[{"items": [2]}, {"items": [3]}]))
    [t1] = await claim(database, "w1")
    result = await complete(database, t1, "w1", outcome("r1", stop_reason="target reached"))
    assert result.job_status == "running"  # the follow-ups are still queued
    seqs = [(t.seq, t.status, t.payload) for t in await tasks_of(database, job_id)]
    assert seqs[2:] == [(2, "queued", {"items": [2]}), (3, "queued", {"items": [3]})]
    for _ in range(2):
        [t] = await claim(database, "w1")
        await complete(database, t, "w1", outcome(f"r{t.seq}"))
    job = await job_row(database, job_id)
    assert job.status == "succeeded" and job.stop_reason == "target reached"
    assert job.completed == 4


async def test_max_accepted_keeps_an_exact_target(database: Database) -> None:
    """Rounds capped at the job's total: what would overshoot is kept as `over_target`."""
    job_id = await add_job(database, [{"round": 0}, {"round": 1}], total=3)
    [a, b] = await claim(database, "w1", limit=2)  # both rounds run at once
    await complete(database, a, "w1", outcome("a1", "a2", max_accepted=3))
    result = await complete(database, b, "w1", outcome("b1", "b2", "b3", max_accepted=3))
    assert (result.accepted, result.rejected) == (1, 2)
    job = await job_row(database, job_id)
    assert (job.accepted, job.rejected, job.completed) == (3, 2, 3)
    over = [r.instruction for r in await examples_of(database, job_id) if r.status == "rejected"]
    assert sorted(over) == ["b2", "b3"]


async def test_cancel(database: Database) -> None:
    queued_only = await add_job(database, item_payloads(2, 1))
    async with database.transaction() as session:
        job = await queue.cancel_job(session=session, job_id=queued_only)
    assert job.status == "cancelled" and job.finished_at is not None

    job_id = await add_job(database, item_payloads(3, 1))
    [a, b] = await claim(database, "w1", limit=2)
    async with database.transaction() as session:
        job = await queue.cancel_job(session=session, job_id=job_id)
    assert job.status == "running" and job.cancel_requested
    assert [t.status for t in await tasks_of(database, job_id)] == [
        "running",
        "running",
        "cancelled",
    ]
    assert await claim(database, "w2") == []
    # a task that finishes anyway keeps its results; the other stops without writing
    await complete(database, a, "w1", outcome("finished"))
    async with database.transaction() as session:
        status = await queue.cancel_task(session=session, task_id=b.id, worker="w1", attempt=1)
    assert status == "cancelled"
    job = await job_row(database, job_id)
    assert job.status == "cancelled" and job.accepted == 1
    assert [r.instruction for r in await examples_of(database, job_id)] == ["finished"]
    from app.errors import JobNotCancellable

    async with database.transaction() as session:
        with pytest.raises(JobNotCancellable):
            await queue.cancel_job(session=session, job_id=job_id)


async def test_cancel_reaps_tasks_of_a_dead_worker(database: Database) -> None:
    job_id = await add_job(database, item_payloads(1, 1))
    await claim(database, "dead", lease=0.1)
    async with database.transaction() as session:
        await queue.cancel_job(session=session, job_id=job_id)
    await asyncio.sleep(0.15)
    assert await claim(database, "w2") == []
    assert (await job_row(database, job_id)).status == "cancelled"


async def test_claims_follow_the_teacher_model_and_kinds(database: Database) -> None:
    other = await add_job(database, item_payloads(1, 1), teacher_model="other-model")
    mine = await add_job(database, item_payloads(1, 1), teacher_model="my-model")
    anyone = await add_job(database, item_payloads(1, 1))
    unknown_kind = await add_job(database, item_payloads(1, 1), kind="expansion")
    got = await claim(database, "w1", limit=10, kinds=["echo"], teacher_model="my-model")
    assert {t.job_id for t in got} == {mine, anyone}
    assert await claim(database, "w2", limit=10, kinds=["echo"]) == []
    got = await claim(database, "w3", limit=10, kinds=["echo"], teacher_model="other-model")
    assert {t.job_id for t in got} == {other}
    assert await claim(database, "w4", limit=10, kinds=[]) == []
    got = await claim(database, "w5", limit=10)
    assert {t.job_id for t in got} == {unknown_kind}


async def test_notify_is_delivered_at_commit(pg_database_url: str) -> None:
    import asyncpg

    db = Database.from_url(pg_database_url)
    dsn = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    got: asyncio.Queue[str] = asyncio.Queue()
    await conn.add_listener(queue.NOTIFY_CHANNEL, lambda *args: got.put_nowait(args[2]))
    try:
        await add_job(db, item_payloads(1, 1))
        assert await asyncio.wait_for(got.get(), 5) == queue.NOTIFY_CHANNEL
    finally:
        await conn.close()
        await db.engine.dispose()


async def test_a_completion_that_fails_halfway_leaves_nothing(database: Database) -> None:
    """Results, counters, events and the task's status are one transaction."""
    job_id = await add_job(database, item_payloads(2, 2))
    [task] = await claim(database, "w1")
    before = await events_of(database, job_id)
    # the examples go in first; the follow-up cannot be stored (not JSON) and aborts it all
    broken = outcome("a", "b", followups=[{"not json": object()}])
    with pytest.raises(Exception, match=r"serializ"):
        await complete(database, task, "w1", broken)
    assert await examples_of(database, job_id) == []
    job = await job_row(database, job_id)
    assert (job.completed, job.accepted, job.status) == (0, 0, "running")
    [row] = await tasks_of(database, job_id)
    assert row.status == "running" and row.lease_owner == "w1"
    assert await events_of(database, job_id) == before
    await complete(database, task, "w1", outcome("a", "b"))
    assert (await job_row(database, job_id)).accepted == 2
