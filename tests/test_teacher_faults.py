"""Teacher failures in real jobs: retried items, the unavailability budget, the circuit breaker.

The API runs over loopback (live_server) and the real runner with the real methods runs
in-process, against Postgres and SQLite; the teacher is the scripted double.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app.config import Settings
from app.models import Example, Task
from app.state import Database
from tests.factories import make_dataset, seed_items, upload_seeds
from tests.scripted_teacher import ScriptedTeacher
from tests.selfinstruct_teacher import SelfInstructTeacher
from tests.test_expansion import export, seeds, start, wait_for
from workers.breaker import Breaker
from workers.methods import METHODS
from workers.runner import Runner
from workers.teachers.base import (
    TeacherBadResponse,
    TeacherError,
    TeacherRequest,
    TeacherResult,
    TeacherUnavailable,
)


@pytest.fixture
def fast(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "lease_seconds": 2.0,
            "heartbeat_seconds": 0.3,
            "poll_interval_seconds": 0.1,
            "retry_base_seconds": 0.05,
            "retry_max_seconds": 0.2,
            "shutdown_grace_seconds": 1.0,
            "worker_concurrency": 2,
        }
    )


@contextlib.asynccontextmanager
async def running(settings: Settings, teacher: ScriptedTeacher, **kw: Any) -> AsyncIterator[Runner]:
    db = Database.from_url(settings.database_url)
    runner = Runner(db=db, settings=settings, teacher=teacher, worker_id="w-faults", **kw)
    task = asyncio.create_task(runner.run())
    try:
        yield runner
    finally:
        runner.stop()
        await asyncio.wait_for(task, 30)
        await db.engine.dispose()


def labeling_job(client: httpx.Client, n: int, chunk: int) -> tuple[str, str]:
    """A dataset of `n` unanswered prompts ("Task number i: ...") and a labeling job on it."""
    dataset = make_dataset(client)["id"]
    upload_seeds(client, dataset, seed_items(n, with_output=False))
    body = {"dataset_id": dataset, "kind": "labeling", "params": {"chunk_size": chunk}}
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    return dataset, response.json()["id"]


def number(request: TeacherRequest) -> int:
    found = re.search(r"Task number (\d+)", str(request.messages[-1]["content"]))
    return int(found.group(1)) if found else -1


async def finished(client: httpx.Client, job_id: str, timeout: float = 30.0) -> dict[str, Any]:
    for _ in range(int(timeout / 0.05)):
        body = (await asyncio.to_thread(client.get, f"/v1/jobs/{job_id}")).json()
        if body["status"] in ("succeeded", "failed", "cancelled"):
            return body  # type: ignore[no-any-return]
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish within {timeout}s")


async def test_failed_items_are_retried_not_rejected(fast: Settings, client: httpx.Client) -> None:
    """Items 1 and 5 fail twice (HTTP 500, then a malformed body): they are asked again in
    follow-up tasks carrying only them; the items that were answered are not asked again, and
    nothing is stored as a teacher-error rejection."""
    asked: Counter[int] = Counter()
    script: dict[int, list[TeacherError]] = {
        i: [TeacherUnavailable("HTTP 500", status=500), TeacherBadResponse("content is null")]
        for i in (1, 5)
    }

    def flaky(request: TeacherRequest) -> TeacherError | None:
        n = number(request)
        asked[n] += 1
        pending = script.get(n)
        return pending.pop(0) if pending else None

    dataset, job_id = labeling_job(client, 8, chunk=4)
    async with running(fast, ScriptedTeacher(fail_when=flaky)):
        body = await finished(client, job_id)
    assert body["status"] == "succeeded" and body["error"] is None
    assert body["progress"] == {
        "total": 8, "completed": 8, "accepted": 8, "rejected": 0, "failed": 0
    }  # fmt: skip
    assert asked == {0: 1, 1: 3, 2: 1, 3: 1, 4: 1, 5: 3, 6: 1, 7: 1}
    report = client.get(f"/v1/jobs/{job_id}/report").json()
    assert report["teacher_errors"] == {"http_500": 2, "malformed": 2}
    assert report["rejected_by_reason"] == {}
    assert report["last_teacher_error"].startswith("TeacherBadResponse: content is null")
    db = Database.from_url(fast.database_url)
    try:
        async with db.reading() as session:
            tasks = (
                await session.scalars(
                    select(Task).where(Task.job_id == uuid.UUID(job_id)).order_by(Task.seq)
                )
            ).all()
            rows = (
                await session.scalars(select(Example).where(Example.job_id == uuid.UUID(job_id)))
            ).all()
            seeds = {
                e.id: e.instruction
                for e in (
                    await session.scalars(
                        select(Example).where(
                            Example.dataset_id == uuid.UUID(dataset), Example.origin == "seed"
                        )
                    )
                ).all()
            }
    finally:
        await db.engine.dispose()
    assert len(rows) == 8 and {r.status for r in rows} == {"accepted"}
    assert len({r.instruction for r in rows}) == 8  # one answer per prompt
    retries = [t for t in tasks if t.payload.get("retry")]
    assert sorted(t.payload["retry"] for t in retries) == [1, 1, 2, 2]
    for task in retries:  # only the failed item, never the answered ones
        [only] = task.payload["example_ids"]
        assert re.match(r"Task number [15]:", seeds[uuid.UUID(only)])
        assert task.status == "succeeded" and task.last_error is not None
    assert body["health"]["state"] == "ok"


async def test_a_spent_teacher_budget_fails_the_job_and_keeps_what_was_accepted(
    fast: Settings, client: httpx.Client
) -> None:
    """Items 2 and 3 never get an answer: they are retried until the job's budget for teacher
    unavailability (1 s here) is spent; then the job fails naming what is left and why."""
    settings = fast.model_copy(update={"teacher_unavailable_budget_seconds": 1.0})

    def down_for_some(request: TeacherRequest) -> TeacherError | None:
        return TeacherUnavailable("connection refused") if number(request) in (2, 3) else None

    dataset, job_id = labeling_job(client, 4, chunk=2)
    async with running(
        settings, ScriptedTeacher(fail_when=down_for_some), breaker=Breaker(threshold=1000)
    ):
        body = await finished(client, job_id)
    assert body["status"] == "failed"
    assert re.fullmatch(
        r"teacher unavailable for \d+s \(budget 1s\): 2 of 4 items unanswered; "
        r"last teacher error: TeacherUnavailable: connection refused",
        body["error"],
    ), body["error"]
    assert body["progress"]["accepted"] == 2
    report = client.get(f"/v1/jobs/{job_id}/report").json()
    assert report["teacher_errors"]["connection"] >= 2
    assert report["teacher_wait_seconds"] >= 1.0
    assert report["rejected_by_reason"] == {}
    export = client.get(f"/v1/datasets/{dataset}/export", params={"format": "alpaca"})
    assert export.status_code == 200
    assert len([line for line in export.text.splitlines() if line]) == 2


async def test_the_breaker_stops_claiming_while_the_teacher_is_down_and_recovers(
    fast: Settings, client: httpx.Client
) -> None:
    state = {"down": True}

    def outage(_request: TeacherRequest) -> TeacherError | None:
        return TeacherUnavailable("no teacher server at x: refused") if state["down"] else None

    teacher = ScriptedTeacher(fail_when=outage)
    _, first = labeling_job(client, 4, chunk=2)
    async with running(fast, teacher, breaker=Breaker(threshold=2, probe_seconds=0.2)) as runner:
        for _ in range(200):
            if runner.breaker.open:
                break
            await asyncio.sleep(0.05)
        assert runner.breaker.open
        await asyncio.sleep(0.5)  # the registry hears of it at once; give the API a moment
        [worker] = client.get("/v1/workers").json()["data"]
        assert worker["name"] == "w-faults" and worker["live"] is True
        assert worker["teacher_state"] == "down" and worker["teacher_down_since"] is not None
        assert "no teacher server" in worker["last_teacher_error"]
        assert worker["kinds"] == sorted(METHODS)  # every kind it has a method for
        health = client.get(f"/v1/jobs/{first}").json()["health"]
        assert health["state"] == "waiting_for_teacher", health
        assert "no teacher server" in health["last_error"]

        claimed, requests = runner.stats["claimed"], teacher.requests
        _, second = labeling_job(client, 2, chunk=2)
        await asyncio.sleep(1.0)
        assert runner.stats["claimed"] == claimed  # nothing claimed while it is down
        assert client.get(f"/v1/jobs/{second}").json()["status"] == "queued"
        assert client.get(f"/v1/jobs/{second}").json()["health"]["state"] == "waiting_for_teacher"
        assert 1 <= teacher.requests - requests <= 8  # probes only: one request each

        state["down"] = False
        one, two = await finished(client, first), await finished(client, second)
        assert not runner.breaker.open
    assert one["status"] == two["status"] == "succeeded"
    assert one["progress"]["accepted"] == 4 and two["progress"]["accepted"] == 2
    assert client.get(f"/v1/jobs/{first}/report").json()["teacher_wait_seconds"] > 0
    [worker] = client.get("/v1/workers").json()["data"]
    assert worker["live"] is False and worker["stopped_at"] is not None  # stopped cleanly


class FlakySelfInstruct(SelfInstructTeacher):
    """The Self-Instruct double, failing the first two proposal requests (the first round's,
    however they are batched into calls) and every fourth answer of the first answer call."""

    FAILED_PROPOSALS = 2

    def __init__(self) -> None:
        super().__init__(seed=5)
        self.proposals_failed = 0
        self.answer_calls = 0
        self.failed_answers: list[str] = []

    async def generate(self, requests: Sequence[TeacherRequest]) -> list[TeacherResult]:
        results = await super().generate(requests)
        if requests and requests[0].json_schema is not None:
            error = TeacherUnavailable("HTTP 502", status=502)
            out = []
            for result in results:
                if self.proposals_failed < self.FAILED_PROPOSALS:
                    self.proposals_failed += 1
                    result = TeacherResult.failed(error)
                out.append(result)
            return out
        self.answer_calls += 1
        if self.answer_calls != 1:
            return results
        out = []
        for i, (request, result) in enumerate(zip(requests, results, strict=True)):
            if i % 4 == 0:
                self.failed_answers.append(str(request.messages[-1]["content"]))
                out.append(TeacherResult.failed(TeacherBadResponse("content is null")))
            else:
                out.append(result)
        return out


def test_expansion_retries_failed_proposals_and_answers(settings: Settings) -> None:
    fast = settings.model_copy(update={"poll_interval_seconds": 0.05, "retry_base_seconds": 0.05})
    teacher = FlakySelfInstruct()
    for client in start(fast, teacher, concurrency=1):
        ds = make_dataset(client)["id"]
        upload_seeds(client, ds, seeds())
        body = {
            "dataset_id": ds,
            "kind": "expansion",
            "params": {"target": 100, "calls_per_round": 2, "candidates_per_call": 10},
        }
        job = wait_for(client, client.post("/v1/jobs", json=body).json()["id"])
        assert job["status"] == "succeeded", job["error"]
        assert job["progress"]["accepted"] == 100 and job["progress"]["failed"] == 0
        report = client.get(f"/v1/jobs/{job['id']}/report").json()
        assert report["teacher_errors"] == {
            "http_502": 2,
            "malformed": len(teacher.failed_answers),
        }
        assert "teacher_error" not in report["rejected_by_reason"]
        rows = export(client, ds, origin="generated")
        assert len(rows) == 100 and len({r["instruction"] for r in rows}) == 100
        answered = {r["instruction"] for r in rows if r["output"]}
        # what a retry did not answer because the target was reached first is stored too
        late = {
            r["instruction"]
            for r in client.get(
                f"/v1/datasets/{ds}/examples", params={"status": "rejected", "limit": 1000}
            ).json()["data"]
            if r["reject_reason"] == "over_target"
        }
        assert len(teacher.failed_answers) >= 3
        for prompt in teacher.failed_answers:  # each was answered again, or stored: not lost
            assert any(instruction in prompt for instruction in answered | late), prompt


async def test_retries_queued_in_an_outage_run_as_soon_as_the_teacher_is_back(
    fast: Settings, client: httpx.Client
) -> None:
    """Backoffs grow during an outage (a minute here); once a probe finds the teacher back,
    the queued retries are due at once instead of leaving it idle and the job waiting."""
    settings = fast.model_copy(update={"retry_base_seconds": 60.0, "retry_max_seconds": 120.0})
    state = {"down": True}

    def outage(_request: TeacherRequest) -> TeacherError | None:
        return TeacherUnavailable("connection refused") if state["down"] else None

    _, job_id = labeling_job(client, 4, chunk=2)
    teacher = ScriptedTeacher(fail_when=outage)
    async with running(settings, teacher, breaker=Breaker(threshold=2, probe_seconds=0.2)) as run:
        for _ in range(200):
            if run.breaker.open:
                break
            await asyncio.sleep(0.05)
        assert run.breaker.open
        body = client.get(f"/v1/jobs/{job_id}").json()
        assert body["status"] == "running" and body["progress"]["completed"] == 0
        state["down"] = False
        body = await finished(client, job_id, timeout=15)  # not after the 60 s backoff
    assert body["status"] == "succeeded" and body["progress"]["accepted"] == 4
    assert body["health"]["state"] == "ok"
