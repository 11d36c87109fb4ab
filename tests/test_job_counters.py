"""Completions that run at the same time without the job's (or the dataset's) row lock: counters
in shard rows (app.job_counters) count exactly, the job settles exactly once, answers to one
prompt keep the first; the migration moves counts into the shards and back."""

from __future__ import annotations

import asyncio
import random
import uuid

from alembic import command
from sqlalchemy import bindparam, func, select, text

from app import job_counters, migrate, queue
from app.db import utcnow
from app.ids import uuid7
from app.models import DEFAULT_TENANT_ID, Dataset, Example, Job, JobCounter, Task, TaskEvent
from app.state import Database
from tests.worker_proc import add_dataset, add_job, item_payloads
from workers.methods.base import ExampleOut, TaskOutcome

LEASE = 60.0


def counted(i: int) -> TaskOutcome:
    """An outcome that only moves counters: the completion path that leaves the job row free."""
    return TaskOutcome(completed=1, prompt_tokens=3, completion_tokens=5 + i, teacher_seconds=0.25)


async def complete_held(db: Database, task: queue.ClaimedTask, worker: str, hold: float) -> str:
    """Complete `task`, then keep the transaction open `hold` seconds before it commits, so that
    other completions run their checks while this one is not yet visible."""
    async with db.transaction() as session:
        done = await queue.complete_task(
            session=session,
            task_id=task.id,
            worker=worker,
            attempt=task.attempt,
            outcome=counted(task.seq),
        )
        await asyncio.sleep(hold)
    return done.job_status


async def settled_events(db: Database, job_id: uuid.UUID) -> list[str]:
    async with db.reading() as session:
        return list(
            (
                await session.scalars(
                    select(TaskEvent.event).where(
                        TaskEvent.job_id == job_id,
                        TaskEvent.task_id.is_(None),
                        TaskEvent.event.in_(["job_succeeded", "job_failed", "job_cancelled"]),
                    )
                )
            ).all()
        )


async def test_concurrent_completions_count_exactly_and_settle_once(database_url: str) -> None:
    """Every task of a job completes at once, from separate connection pools, each transaction
    held open a while: the counts are exact and the job succeeds once (no completion sees the
    others commit, so one that settled without a lock would leave the job running)."""
    setup = Database.from_url(database_url)
    pools = [Database.from_url(database_url) for _ in range(4)]
    rng = random.Random(7)
    try:
        for n_tasks in (2, 12, 24):
            job_id = await add_job(setup, item_payloads(n_tasks, 1))
            async with setup.transaction() as session:
                tasks = await queue.claim_tasks(
                    session=session, worker="w", lease_seconds=LEASE, limit=n_tasks
                )
            assert len(tasks) == n_tasks
            statuses = await asyncio.gather(
                *(
                    complete_held(pools[i % len(pools)], t, "w", rng.uniform(0.05, 0.2))
                    for i, t in enumerate(tasks)
                )
            )
            assert set(statuses) <= {"running", "succeeded"}
            async with setup.reading() as session:
                job = await session.get(Job, job_id, populate_existing=True)
                assert job is not None
                await job_counters.load(session, [job])
                left = await session.scalar(
                    select(func.count())
                    .select_from(Task)
                    .where(Task.job_id == job_id, Task.status != "succeeded")
                )
            assert left == 0
            assert job.status == "succeeded" and job.finished_at is not None
            assert (job.completed, job.accepted, job.rejected, job.failed) == (n_tasks, 0, 0, 0)
            assert job.prompt_tokens == 3 * n_tasks
            assert job.completion_tokens == sum(5 + t.seq for t in tasks)
            assert abs(job.teacher_seconds - 0.25 * n_tasks) < 1e-9
            assert await settled_events(setup, job_id) == ["job_succeeded"]
            async with setup.reading() as session:
                shards = await session.scalar(
                    select(func.count()).select_from(JobCounter).where(JobCounter.job_id == job_id)
                )
            assert shards is not None and 1 <= shards <= job_counters.SHARDS
    finally:
        for db in (setup, *pools):
            await db.engine.dispose()


async def test_the_last_two_completions_commit_together(database_url: str) -> None:
    """The two last tasks complete in transactions open at the same time: whichever commits
    second settles the job, once."""
    setup = Database.from_url(database_url)
    pools = [Database.from_url(database_url) for _ in range(2)]
    try:
        for _ in range(3):
            job_id = await add_job(setup, item_payloads(5, 1))
            async with setup.transaction() as session:
                tasks = await queue.claim_tasks(
                    session=session, worker="w", lease_seconds=LEASE, limit=5
                )
            for task in tasks[:3]:
                await complete_held(setup, task, "w", 0)
            await asyncio.gather(
                complete_held(pools[0], tasks[3], "w", 0.15),
                complete_held(pools[1], tasks[4], "w", 0.15),
            )
            async with setup.reading() as session:
                job = await session.get(Job, job_id, populate_existing=True)
                assert job is not None
                await job_counters.load(session, [job])
            assert job.status == "succeeded"
            assert job.completed == 5
            assert await settled_events(setup, job_id) == ["job_succeeded"]
    finally:
        for db in (setup, *pools):
            await db.engine.dispose()


def test_migration_moves_counts_into_shards_and_back(database_url: str) -> None:
    """Upgrade moves a job's counts into its shard 0 (totals unchanged); downgrade adds the
    shards, later completions' included, back into the job's columns."""
    before = "8e2b6d41c9a7"
    cfg = migrate.alembic_config(database_url)
    command.downgrade(cfg, before)
    counts = {
        "completed": 7,
        "accepted": 5,
        "rejected": 2,
        "failed": 1,
        "prompt_tokens": 1000,
        "completion_tokens": 2000,
        "teacher_seconds": 3.5,
    }

    async def make() -> tuple[uuid.UUID, uuid.UUID]:
        """A dataset and two jobs, one with counts, written in SQL: the models are head's."""
        jobs, datasets = Job.__table__.c, Dataset.__table__.c
        dataset_id, job_id, idle = uuid7(), uuid7(), uuid7()  # idle: no counts, no shard row
        now = utcnow()
        db = Database.from_url(database_url)
        try:
            async with db.transaction() as session:
                await session.execute(
                    text(
                        "INSERT INTO datasets (id, tenant_id, name, description, created_at) "
                        "VALUES (:id, :tenant, 'ds', '', :now)"
                    ).bindparams(
                        bindparam("id", type_=datasets.id.type),
                        bindparam("tenant", type_=datasets.tenant_id.type),
                        bindparam("now", type_=datasets.created_at.type),
                    ),
                    {"id": dataset_id, "tenant": DEFAULT_TENANT_ID, "now": now},
                )
                for one, values in ((job_id, counts), (idle, dict.fromkeys(counts, 0))):
                    names = ", ".join(values)
                    await session.execute(
                        text(
                            "INSERT INTO jobs (id, tenant_id, dataset_id, kind, params, teacher, "
                            "status, total, cancel_requested, teacher_errors, "
                            f"teacher_wait_seconds, priority, created_at, updated_at, {names}) "
                            "VALUES (:id, :tenant, :dataset, 'bench', '{}', '{}', 'running', 2, "
                            f"false, '{{}}', 0, 0, :now, :now, :{', :'.join(values)})"
                        ).bindparams(
                            bindparam("id", type_=jobs.id.type),
                            bindparam("tenant", type_=jobs.tenant_id.type),
                            bindparam("dataset", type_=jobs.dataset_id.type),
                            bindparam("now", type_=jobs.created_at.type),
                        ),
                        {
                            "id": one,
                            "tenant": DEFAULT_TENANT_ID,
                            "dataset": dataset_id,
                            "now": now,
                            **values,
                        },
                    )
            return job_id, idle
        finally:
            await db.engine.dispose()

    async def after_upgrade(job_id: uuid.UUID, idle: uuid.UUID) -> None:
        db = Database.from_url(database_url)
        try:
            async with db.reading() as session:
                rows = (
                    await session.execute(
                        text("SELECT job_id, shard FROM job_counters ORDER BY shard")
                    )
                ).all()
                column = await session.scalar(select(Job.accepted).where(Job.id == job_id))
                totals = await job_counters.totals(session, [job_id, idle])
            assert [(uuid.UUID(str(r[0])), r[1]) for r in rows] == [(job_id, 0)]
            assert column == 0
            assert totals[job_id] == counts
            assert totals[idle] == dict.fromkeys(counts, 0) | {"teacher_seconds": 0.0}
            async with db.transaction() as session:  # a completion after the upgrade
                extra = {name: 1 for name in job_counters.COUNTERS}
                await job_counters.add(session, job_id, uuid.UUID(int=5), extra)
        finally:
            await db.engine.dispose()

    async def after_downgrade(job_id: uuid.UUID) -> None:
        db = Database.from_url(database_url)
        try:
            async with db.reading() as session:
                row = (
                    await session.execute(
                        select(*(getattr(Job, name) for name in counts)).where(Job.id == job_id)
                    )
                ).one()
            assert dict(zip(counts, row, strict=True)) == {k: v + 1 for k, v in counts.items()}
        finally:
            await db.engine.dispose()

    job_id, idle = asyncio.run(make())
    migrate.upgrade(database_url)
    asyncio.run(after_upgrade(job_id, idle))
    command.downgrade(cfg, before)
    asyncio.run(after_downgrade(job_id))
    migrate.upgrade(database_url)


async def test_answers_to_one_prompt_from_concurrent_jobs_keep_the_first(
    database_url: str,
) -> None:
    """Two jobs answer one prompt in transactions open at the same time (Postgres: no dataset
    lock, a lock per prompt): one answer is stored as the prompt's answer, the other as
    rejected ``already_answered``."""
    db = Database.from_url(database_url)
    other = Database.from_url(database_url)
    try:
        dataset_id = await add_dataset(db)
        async with db.transaction() as session:
            prompt = Example(
                dataset_id=dataset_id,
                origin="seed",
                status="accepted",
                instruction="Name a prime number.",
                content_hash="prompt",
            )
            session.add(prompt)
            await session.flush()
            prompt_id = prompt.id
        job_ids = [await add_job(db, item_payloads(1, 1), dataset_id=dataset_id) for _ in "ab"]
        async with db.transaction() as session:
            tasks = await queue.claim_tasks(
                session=session, worker="w", lease_seconds=LEASE, limit=2
            )
        assert {t.job_id for t in tasks} == set(job_ids)

        async def answer(pool: Database, task: queue.ClaimedTask, output: str) -> None:
            async with pool.transaction() as session:
                await queue.complete_task(
                    session=session,
                    task_id=task.id,
                    worker="w",
                    attempt=task.attempt,
                    outcome=TaskOutcome(
                        examples=[
                            ExampleOut(
                                item_index=0,
                                instruction="Name a prime number.",
                                output=output,
                                source_id=str(prompt_id),
                            )
                        ],
                        completed=1,
                    ),
                )
                await asyncio.sleep(0.2)

        await asyncio.gather(answer(db, tasks[0], "2"), answer(other, tasks[1], "3"))
        async with db.reading() as session:
            rows = (
                await session.execute(
                    select(Example.status, Example.reject_reason).where(
                        Example.source_id == prompt_id
                    )
                )
            ).all()
        assert sorted((r.status, r.reject_reason) for r in rows) == [
            ("accepted", None),
            ("rejected", "already_answered"),
        ]
    finally:
        await db.engine.dispose()
        await other.engine.dispose()
