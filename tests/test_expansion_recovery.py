"""Expansion survives kill -9: workers killed mid-round and restarted, the job still ends with
exactly `target` accepted examples and no near duplicates among them (nor against the seeds)."""

from __future__ import annotations

import uuid
from pathlib import Path

from sqlalchemy import select

from app import examples as examples_store
from app import jobs
from app.config import Settings
from app.models import DEFAULT_TENANT_ID, Example
from app.schemas import ExampleIn, ExpansionJobCreate
from app.state import Database
from tests.kill_loop import Workers, kill_until_done, workers_factory  # noqa: F401  (fixture)
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
    db = Database.from_url(database_url)
    job_id = await start_job(db)
    workers = Workers(database_url, tmp_path, "--teacher", "selfinstruct", "--lease", "2",
                      "--heartbeat", "0.5", "--concurrency", "2", "--delay", "0.15")  # fmt: skip
    workers_factory.append(workers)
    try:
        run = await kill_until_done(
            db, job_id, workers, start=2, timeout=120, max_kills=8,
            progress=lambda job: job.accepted, kill_below=TARGET * 0.8,
        )  # fmt: skip
        job, kills, seed = run.job, run.kills, run.seed
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
