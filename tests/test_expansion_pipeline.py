"""Expansion as a pipeline (issue 15): the worker's incremental index of a dataset's pool, answers
sent as each proposal returns, candidates sized to the target, and the report's wasted tokens."""

from __future__ import annotations

import asyncio
import types
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from app import examples as examples_store
from app.config import Settings
from app.models import Example, Task
from app.schemas import ExampleIn
from app.state import Database
from tests.factories import make_dataset, upload_seeds
from tests.selfinstruct_teacher import SelfInstructTeacher
from tests.test_curation_dedup import make_corpus
from tests.test_expansion import SKILL, seeds, start, wait_for
from tests.worker_proc import add_dataset
from workers import runner
from workers.curation import dedup
from workers.methods import pool_index
from workers.teachers.base import TeacherRequest, TeacherResult


def test_check_batch_equals_adding_one_at_a_time_and_leaves_the_pool() -> None:
    texts = make_corpus(1200, seed=3)
    pool, probes = texts[:900], texts[900:]
    index = dedup.NearDupIndex.from_rows(pool)
    found, matches = dedup.check_batch(probes, index)
    assert len(index) == len(pool)
    assert any(r is not None for r in found)
    for text, rejection, match in zip(probes, found, matches, strict=True):
        (alone,), (where,) = dedup.dedupe_batch_matches([text], dedup.NearDupIndex.from_rows(pool))
        assert (rejection is None) == (alone is None)
        if rejection is not None and alone is not None:
            assert (rejection.reason, match) == (alone.reason, where)


def context(db: Database, dataset_id: uuid.UUID) -> Any:
    """The runner's context of a task of `dataset_id` (only what dataset reads use)."""
    ctx = runner._Context.__new__(runner._Context)
    ctx._runner = types.SimpleNamespace(db=db)  # type: ignore[assignment]
    ctx._claimed = types.SimpleNamespace(dataset_id=dataset_id, job_id=uuid.uuid4())  # type: ignore[assignment]
    return ctx


async def test_index_is_fed_with_rows_another_worker_stored_since(database: Database) -> None:
    dataset_id = await add_dataset(database)

    async def store(*texts: str) -> None:
        async with database.transaction() as session:
            await examples_store.add_seeds(
                session=session,
                dataset_id=dataset_id,
                examples=[ExampleIn(instruction=t, output="an answer") for t in texts],
            )

    await store("Write a haiku about the first frost on a mountain lake.", "Name three rivers.")
    pool_index.forget()
    ctx = context(database, dataset_id)
    config = dedup.DedupConfig()
    pool, _ = await pool_index.pool_index(ctx, str(dataset_id), config)
    assert len(pool.index) == 2
    copy = "Explain how a steam engine turns heat into motion, step by step, for children."
    near = "Explain how a steam engine turns heat into motion, step by step, for kids."
    assert dedup.check_batch([near], pool.index)[0] == [None]

    await store(copy)  # committed by another worker after the index was built
    again, snapshot = await pool_index.pool_index(ctx, str(dataset_id), config)
    assert again is pool and pool.reads == 2
    assert len(pool.index) == 3  # the new row only: rows read before are not added again
    (rejection,), (match,) = dedup.check_batch([near], pool.index)
    assert rejection is not None and rejection.reason == "near_duplicate"
    assert pool.index.text(match) == copy
    # the commit-time recheck skips what the index holds already
    stored = await ids_of(database, dataset_id)
    assert pool.seen_since(snapshot - pool_index.RECHECK_MARGIN) == stored
    pool_index.forget()


async def ids_of(db: Database, dataset_id: uuid.UUID) -> frozenset[str]:
    async with db.reading() as session:
        rows = await session.scalars(select(Example.id).where(Example.dataset_id == dataset_id))
        return frozenset(str(i) for i in rows.all())


class BlockingTeacher(SelfInstructTeacher):
    """Holds the first proposal call until an answer request has arrived (or 20 s pass)."""

    def __init__(self) -> None:
        super().__init__(seed=5)
        self.answer_seen = asyncio.Event()
        self.events: list[str] = []
        self.blocked_timed_out: bool | None = None

    async def generate(self, requests: Sequence[TeacherRequest]) -> list[TeacherResult]:
        first = requests[0]
        if first.json_schema is None:
            self.events.append("answer")
            self.answer_seen.set()
        elif (first.request_id or "").endswith(":propose:0") and self.blocked_timed_out is None:
            self.blocked_timed_out = False  # the first round's first proposal only
            try:
                await asyncio.wait_for(self.answer_seen.wait(), timeout=20)
            except TimeoutError:
                self.blocked_timed_out = True
            self.events.append("blocked proposal returns")
        return await super().generate(requests)


def test_answers_start_before_the_last_proposal_returns(settings: Settings) -> None:
    teacher = BlockingTeacher()
    fast = settings.model_copy(update={"poll_interval_seconds": 0.05})
    for client in start(fast, teacher):
        ds = make_dataset(client)["id"]
        upload_seeds(client, ds, seeds())
        body = {
            "dataset_id": ds,
            "kind": "expansion",
            "params": {"target": 30, "calls_per_round": 4, "parallel_rounds": 1},
        }
        job = wait_for(client, client.post("/v1/jobs", json=body).json()["id"])
        assert job["status"] == "succeeded" and job["progress"]["accepted"] == 30, job.get("error")
    assert teacher.blocked_timed_out is False  # an answer went out while a proposal was held
    assert teacher.events.index("answer") < teacher.events.index("blocked proposal returns")


def test_candidates_sized_to_the_target_and_wasted_tokens_reported(settings: Settings) -> None:
    fast = settings.model_copy(update={"poll_interval_seconds": 0.05})
    for client in start(fast, SelfInstructTeacher(seed=8), concurrency=4):
        ds = make_dataset(client)["id"]
        upload_seeds(client, ds, seeds())
        skill = client.post("/v1/skills", json=SKILL).json()
        body = {
            "dataset_id": ds,
            "kind": "expansion",
            "skill_id": skill["id"],
            # before sizing: 4 rounds of 8 calls x 10 candidates = 320 for a target of 100
            "params": {"target": 100, "calls_per_round": 8, "parallel_rounds": 4},
        }
        job = wait_for(client, client.post("/v1/jobs", json=body).json()["id"])
        assert job["status"] == "succeeded" and job["progress"]["accepted"] == 100, job
        report = client.get(f"/v1/jobs/{job['id']}/report").json()
    over = report["rejected_by_reason"].get("over_target", 0)
    assert over <= 0.1 * report["candidates"], report
    assert report["stop_reason"] == "target reached"
    total = report["tokens"]["total"]
    # what the report counts: the tasks' unanswered over-target shares plus answered examples
    # dropped at commit, recomputed here from the stored rows
    expected = asyncio.run(wasted_from_rows(fast.database_url, job["id"]))
    assert report["wasted_tokens"] == expected
    assert report["wasted_token_share"] == round(expected / total, 4) <= 0.1


async def wasted_from_rows(url: str, job_id: str) -> int:
    db = Database.from_url(url)
    try:
        async with db.reading() as session:
            results = (
                await session.scalars(select(Task.result).where(Task.job_id == uuid.UUID(job_id)))
            ).all()
            rows = (
                await session.execute(
                    select(Example.usage, Example.reject_reason, Example.reject_detail).where(
                        Example.job_id == uuid.UUID(job_id),
                        Example.status == "rejected",
                        Example.output.is_not(None),
                    )
                )
            ).all()
    finally:
        await db.engine.dispose()
    wasted = sum(int((r or {}).get("over_target_tokens", 0)) for r in results)
    for usage, reason, detail in rows:
        dropped = reason == "over_target" or "by a parallel round" in (detail or "")
        dropped = dropped or detail == "same content as an example already in the dataset"
        if dropped and usage:
            wasted += int(usage.get("prompt_tokens", 0)) + int(usage.get("completion_tokens", 0))
    return wasted
