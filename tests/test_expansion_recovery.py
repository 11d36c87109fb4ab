"""Expansion survives kill -9: workers killed mid-round and restarted, the job still ends with
exactly `target` accepted examples and no near duplicates among them (nor against the seeds)."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from pathlib import Path

from sqlalchemy import select

from app import examples as examples_store
from app import job_counters, jobs
from app.config import Settings
from app.models import DEFAULT_TENANT_ID, Example, Job
from app.schemas import ExampleIn, ExpansionJobCreate
from app.state import Database
from tests.test_crash_recovery import Workers, workers_factory  # noqa: F401  (fixture)
from tests.test_expansion import assert_no_near_duplicates, seeds
from tests.worker_proc import add_dataset

TARGET = 250


async def start_job(db: Database) -> uuid.UUID:
    dataset_id = await add_dataset(db)
    async with db.transaction() as session:
        items = [ExampleIn.model_validate(s) for s in seeds()]
        await examples_store.add_seeds(session=session, dataset_id=dataset_id, examples=items)
        request = ExpansionJobCreate(
            dataset_id=dataset_id, kind="expansion",
            params={"target": TARGET, "calls_per_round": 4, "candidates_per_call": 10,
                    "parallel_rounds": 2},
        )  # fmt: skip
        job = await jobs.create_job(
            session=session, tenant_id=DEFAULT_TENANT_ID, request=request, settings=Settings()
        )
        return job.id


async def test_kill9_during_expansion(
    database_url: str,
    tmp_path: Path,
    workers_factory: list[Workers],  # noqa: F811
) -> None:
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    db = Database.from_url(database_url)
    job_id = await start_job(db)
    workers = Workers(database_url, tmp_path, "--teacher", "selfinstruct", "--lease", "2",
                      "--heartbeat", "0.5", "--concurrency", "2", "--delay", "0.15")  # fmt: skip
    workers_factory.append(workers)
    for _ in range(2):
        workers.start()
    kills = 0
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            async with db.reading() as session:
                job = await session.get(Job, job_id)
                assert job is not None
                await job_counters.load(session, [job])
            assert job is not None
            if job.status not in ("queued", "running"):
                break
            await asyncio.sleep(rng.uniform(0.3, 0.9))
            if kills < 8 and job.accepted < TARGET * 0.8:
                workers.kill9(rng.choice(workers.alive()))
                kills += 1
                workers.start()
        else:
            raise AssertionError(f"job did not finish (seed {seed})\n{workers.tail()}")
        assert job.status == "succeeded", (job.error, seed)
        async with db.reading() as session:
            accepted = (
                await session.scalars(
                    select(Example.instruction).where(
                        Example.job_id == job_id, Example.status == "accepted"
                    )
                )
            ).all()
        assert job.accepted == len(accepted) == TARGET, seed
        assert len(set(accepted)) == TARGET
        assert_no_near_duplicates([s["instruction"] for s in seeds()] + list(accepted))
        assert kills >= 3, f"the job finished before enough kills (seed {seed})"
        print(f"seed {seed}: {kills} kills")
    finally:
        workers.stop_all()
        await db.engine.dispose()
