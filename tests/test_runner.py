"""workers.runner in-process, against real databases, with a scripted teacher."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import select, update

from app.config import Settings, TeacherSettings
from app.main import create_app
from app.models import Example, Task, TaskEvent
from app.state import Database
from tests.factories import make_dataset
from tests.scripted_teacher import ScriptedTeacher
from tests.test_queue import events_of, examples_of, job_row, tasks_of
from tests.worker_proc import METHODS, add_job, item_payloads
from workers import runner as runner_mod
from workers.runner import Runner
from workers.teachers.base import TeacherRejected, TeacherRequest, TeacherUnavailable


@pytest.fixture
def fast(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "lease_seconds": 2.0,
            "heartbeat_seconds": 0.5,
            "poll_interval_seconds": 0.1,
            "retry_base_seconds": 0.05,
            "retry_max_seconds": 0.5,
            "shutdown_grace_seconds": 1.0,
            "worker_concurrency": 2,
        }
    )


@contextlib.asynccontextmanager
async def running(
    db: Database, settings: Settings, teacher: ScriptedTeacher, **kw: Any
) -> AsyncIterator[Runner]:
    kw.setdefault("methods", METHODS)
    kw.setdefault("worker_id", f"w-{uuid.uuid4().hex[:6]}")
    runner = Runner(db=db, settings=settings, teacher=teacher, **kw)
    task = asyncio.create_task(runner.run())
    try:
        yield runner
    finally:
        runner.stop()
        await asyncio.wait_for(task, 30)


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> float:
    """Wait until `check()` is true; returns the seconds it took."""
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def job_status(db: Database, job_id: uuid.UUID) -> str:
    return (await job_row(db, job_id)).status


def status_is(db: Database, job_id: uuid.UUID, *statuses: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await job_status(db, job_id) in statuses

    return check


async def test_runs_a_job_to_success(database: Database, fast: Settings) -> None:
    teacher = ScriptedTeacher(delay=0.05)
    job_id = await add_job(database, item_payloads(24, 4), params={"batch": 2})
    async with running(database, fast, teacher) as runner:
        await until(status_is(database, job_id, "succeeded", "failed"))
    job = await job_row(database, job_id)
    assert job.status == "succeeded" and job.error is None
    assert (job.total, job.completed, job.accepted, job.rejected, job.failed) == (24, 24, 24, 0, 0)
    assert job.completion_tokens == 24 * 3 and job.prompt_tokens == 24 * 2
    assert job.teacher_seconds == pytest.approx(12 * 0.05)
    rows = await examples_of(database, job_id)
    assert sorted(r.instruction for r in rows) == sorted(f"item {i}" for i in range(24))
    assert all(r.output == f"answer to: {r.instruction}" for r in rows)
    assert {(r.teacher_backend, r.teacher_model, r.prompt_id) for r in rows} == {
        ("scripted", "scripted-model", "echo")
    }
    assert teacher.calls == 12 and teacher.closed is False
    assert runner.stats["succeeded"] == 6 and runner.max_in_flight == 2  # bounded, and used
    assert teacher.max_in_flight == 2
    events = await events_of(database, job_id)
    assert [e for s, e, _ in events if s == 0] == ["enqueued", "claimed", "succeeded"]
    assert events[-1][:2] == (None, "job_succeeded")


async def test_a_slow_teacher_call_keeps_its_lease(database: Database, fast: Settings) -> None:
    """One teacher call lasts 2.5 leases; heartbeats keep the task, a second worker waits.

    The lease leaves 1.75 s of slack over the heartbeat: a loaded CI machine stalled a
    0.4 s slack (lease 0.6 s) long enough to lose the lease.
    """
    settings = fast.model_copy(update={"lease_seconds": 2.0, "heartbeat_seconds": 0.25})
    job_id = await add_job(database, item_payloads(2, 2), params={"batch": 2})
    slow, other = ScriptedTeacher(delay=5.0), ScriptedTeacher()
    async with running(database, settings, slow):
        await asyncio.wait_for(slow.started.wait(), 10)
        async with running(database, settings, other) as second:
            await until(status_is(database, job_id, "succeeded", "failed"))
    [task] = await tasks_of(database, job_id)
    assert task.status == "succeeded" and task.attempts == 1
    assert other.calls == 0 and second.stats["claimed"] == 0
    assert "reclaimed" not in [e for _, e, _ in await events_of(database, job_id)]


async def test_a_lost_lease_stops_the_task_and_writes_nothing(
    database: Database, fast: Settings
) -> None:
    settings = fast.model_copy(update={"heartbeat_seconds": 0.1})
    teacher = ScriptedTeacher()
    teacher.gate = asyncio.Event()  # the teacher call never returns on its own
    job_id = await add_job(database, item_payloads(2, 2))
    async with running(database, settings, teacher) as runner:
        await asyncio.wait_for(teacher.started.wait(), 10)
        async with database.transaction() as session:  # another worker took the task over
            await session.execute(
                update(Task)
                .where(Task.job_id == job_id)
                .values(lease_owner="thief", attempts=Task.attempts + 1)
            )

        async def stopped() -> bool:
            return runner.stats["lease_lost"] == 1 and runner.in_flight == 0

        await until(stopped, 5)
        teacher.gate.set()
        await asyncio.sleep(0.2)
    assert await examples_of(database, job_id) == []
    [task] = await tasks_of(database, job_id)
    assert (task.status, task.lease_owner) == ("running", "thief")
    assert (await job_row(database, job_id)).completed == 0


async def test_a_transient_teacher_failure_is_retried_with_backoff(
    database: Database, fast: Settings
) -> None:
    settings = fast.model_copy(update={"retry_base_seconds": 0.2, "retry_max_seconds": 5})
    teacher = ScriptedTeacher(fail_calls=[TeacherUnavailable("HTTP 503"), TeacherUnavailable()])
    job_id = await add_job(database, item_payloads(2, 2), params={"batch": 2})
    started = time.monotonic()
    async with running(database, settings, teacher) as runner:
        await until(status_is(database, job_id, "succeeded", "failed"))
    elapsed = time.monotonic() - started
    assert await job_status(database, job_id) == "succeeded"
    [task] = await tasks_of(database, job_id)
    assert task.attempts == 3 and task.last_error is not None
    assert task.last_error.startswith("TeacherUnavailable: ")
    assert runner.stats["retried"] == 2 and teacher.calls == 3
    async with database.reading() as session:
        delays = [
            e.detail["delay_s"]
            for e in (
                await session.scalars(
                    select(TaskEvent)
                    .where(TaskEvent.event == "retry_scheduled")
                    .order_by(TaskEvent.id)
                )
            ).all()
        ]
    assert 0.1 <= delays[0] <= 0.2 and 0.2 <= delays[1] <= 0.4  # base * 2**(n-1), jittered
    assert elapsed >= sum(delays)
    assert len(await examples_of(database, job_id)) == 2


async def test_a_teacher_that_fails_for_good_fails_the_job_and_results_survive(
    fast: Settings, live_server: Any, client: httpx.Client
) -> None:
    settings = fast.model_copy(update={"worker_concurrency": 1})
    db = Database.from_url(settings.database_url)

    def refuse(request: TeacherRequest) -> TeacherRejected | None:
        prompt = str(request.messages[-1]["content"])
        return (
            TeacherRejected("HTTP 400: prompt refused", status=400) if "poison" in prompt else None
        )

    teacher = ScriptedTeacher(fail_when=refuse)
    payloads = [
        {"prompts": ["good 1", "good 2"]},
        {"prompts": ["good 3", "poison"]},
        {"prompts": ["good 4"]},
    ]
    try:
        dataset_id = uuid.UUID(make_dataset(client)["id"])
        job_id = await add_job(db, payloads, dataset_id=dataset_id)
        async with running(db, settings, teacher):
            await until(status_is(db, job_id, "succeeded", "failed"))
        body = client.get(f"/v1/jobs/{job_id}").json()
        assert body["status"] == "failed"
        assert body["error"] == (
            "task 1 failed after 1 attempt: TeacherRejected: HTTP 400: prompt refused"
        )
        assert body["progress"]["accepted"] == 2 and body["progress"]["completed"] == 2
        assert [t.status for t in await tasks_of(db, job_id)] == [
            "succeeded",
            "failed",
            "cancelled",
        ]
        export = client.get(f"/v1/datasets/{dataset_id}/export", params={"format": "alpaca"})
        assert export.status_code == 200
        lines = [line for line in export.text.splitlines() if line]
        assert sorted(lines) == sorted(
            f'{{"instruction":"good {i}","input":"","output":"answer to: good {i}"}}'
            for i in (1, 2)
        )
    finally:
        await db.engine.dispose()


async def test_retryable_failures_become_final_after_max_attempts(
    database: Database, fast: Settings
) -> None:
    teacher = ScriptedTeacher(fail_when=lambda r: TeacherUnavailable("connection refused"))
    job_id = await add_job(database, item_payloads(1, 1), max_attempts=3)
    async with running(database, fast, teacher) as runner:
        await until(status_is(database, job_id, "succeeded", "failed"))
    job = await job_row(database, job_id)
    assert job.error == "task 0 failed after 3 attempts: TeacherUnavailable: connection refused"
    assert runner.stats["retried"] == 2 and runner.stats["failed"] == 1


async def test_an_unexpected_method_error_is_retried(database: Database, fast: Settings) -> None:
    calls = []

    class Flaky:
        @staticmethod
        async def run(task: Any, ctx: Any) -> Any:
            calls.append(task.attempt)
            if task.attempt == 1:
                raise KeyError("surprise")
            return await METHODS["echo"].run(task, ctx)

    job_id = await add_job(database, item_payloads(1, 1))
    async with running(database, fast, ScriptedTeacher(), methods={"echo": Flaky}):
        await until(status_is(database, job_id, "succeeded", "failed"))
    assert await job_status(database, job_id) == "succeeded"
    assert calls == [1, 2]
    [task] = await tasks_of(database, job_id)
    assert task.last_error == "KeyError: 'surprise'"


async def test_cancel_stops_a_running_job_within_seconds(
    fast: Settings, live_server: Any, client: httpx.Client
) -> None:
    db = Database.from_url(fast.database_url)
    teacher = ScriptedTeacher(delay=0.1)
    # 30 tasks of 10 items, 2 per teacher call: ~0.5 s a task, ~8 s for the job at 2 in flight
    job_id = await add_job(db, item_payloads(300, 10), params={"batch": 2})
    try:
        async with running(db, fast, teacher) as runner:

            async def some_done() -> bool:
                return (await job_row(db, job_id)).completed >= 20

            await until(some_done)
            # in a thread: a blocking call here would stop the runner (same event loop) while it
            # may hold SQLite's write lock, which the cancel needs
            response = await asyncio.to_thread(client.post, f"/v1/jobs/{job_id}/cancel")
            assert response.status_code == 202 and response.json()["cancel_requested"] is True
            # within 5 s (the job alone needs ~8 s more), see the status asserted below
            await until(status_is(db, job_id, "cancelled", "succeeded", "failed"), 5)
            calls_at_cancel = teacher.calls
            await asyncio.sleep(0.3)
            assert teacher.calls == calls_at_cancel  # nothing more asked of the teacher
            assert runner.stats["cancelled"] >= 1
        body = client.get(f"/v1/jobs/{job_id}").json()
        assert body["status"] == "cancelled" and body["finished_at"] is not None
        tasks = await tasks_of(db, job_id)
        assert {t.status for t in tasks} == {"succeeded", "cancelled"}
        rows = await examples_of(db, job_id)
        per_task = {t.id: 0 for t in tasks}
        for row in rows:
            per_task[row.task_id] += 1  # type: ignore[index]
        for task in tasks:  # no half-written task: all ten items or none
            assert per_task[task.id] == (10 if task.status == "succeeded" else 0)
        done = sum(t.status == "succeeded" for t in tasks)
        assert 2 <= done < 30
        assert body["progress"]["completed"] == body["progress"]["accepted"] == 10 * done
    finally:
        await db.engine.dispose()


async def test_graceful_shutdown_releases_for_another_worker_at_once(
    database: Database, fast: Settings
) -> None:
    settings = fast.model_copy(update={"lease_seconds": 30.0, "shutdown_grace_seconds": 0.3})
    stuck = ScriptedTeacher()
    stuck.gate = asyncio.Event()
    job_id = await add_job(database, item_payloads(2, 2))
    async with running(database, settings, stuck, worker_id="leaving") as leaving:
        await asyncio.wait_for(stuck.started.wait(), 10)
    assert leaving.stats["released"] == 1
    [task] = await tasks_of(database, job_id)
    assert (task.status, task.attempts, task.lease_owner) == ("queued", 0, None)

    start = time.monotonic()
    async with running(database, settings, ScriptedTeacher(), worker_id="next"):
        await until(status_is(database, job_id, "succeeded"), 5)
    assert time.monotonic() - start < 3  # far less than the 30 s lease
    [task] = await tasks_of(database, job_id)
    assert task.attempts == 1 and task.lease_owner == "next"
    history = [(e, w) for s, e, w in await events_of(database, job_id) if s == 0]
    assert history == [
        ("enqueued", None),
        ("claimed", "leaving"),
        ("released", "leaving"),
        ("claimed", "next"),
        ("succeeded", "next"),
    ]


async def test_graceful_shutdown_lets_short_tasks_finish(
    database: Database, fast: Settings
) -> None:
    job_id = await add_job(database, item_payloads(2, 2))
    teacher = ScriptedTeacher(delay=0.4)
    async with running(database, fast, teacher) as runner:
        await asyncio.wait_for(teacher.started.wait(), 10)
    assert runner.stats["released"] == 0 and runner.stats["succeeded"] == 1
    assert await job_status(database, job_id) == "succeeded"


async def test_notify_wakes_an_idle_worker(pg_database_url: str) -> None:
    settings = Settings(database_url=pg_database_url, poll_interval_seconds=30)
    db = Database.from_url(pg_database_url)
    try:
        async with running(db, settings, ScriptedTeacher(), listen=False) as deaf:

            async def polled_once() -> bool:
                return deaf._reaped_at > 0  # its first (empty) claim is done

            await until(polled_once, 10)
            job_id = await add_job(db, item_payloads(1, 1))
            await asyncio.sleep(1.5)
            assert deaf.stats["claimed"] == 0  # polling alone would wait 30 s
        async with running(db, settings, ScriptedTeacher()) as runner:
            await asyncio.wait_for(runner.listening.wait(), 10)
            await asyncio.sleep(0.3)
            job_id = await add_job(db, item_payloads(1, 1))
            took = await until(status_is(db, job_id, "succeeded"), 5)
        assert took < 2
    finally:
        await db.engine.dispose()


async def test_a_worker_takes_only_jobs_for_its_model(database: Database, fast: Settings) -> None:
    theirs = await add_job(database, item_payloads(1, 1), teacher_model="big-model")
    mine = await add_job(database, item_payloads(1, 1), teacher_model="scripted-model")
    anyone = await add_job(database, item_payloads(1, 1))
    async with running(database, fast, ScriptedTeacher()):
        await until(status_is(database, mine, "succeeded"))
        await until(status_is(database, anyone, "succeeded"))
        await asyncio.sleep(0.3)
    assert await job_status(database, theirs) == "queued"


async def test_the_embedded_worker_runs_in_the_apps_lifespan(fast: Settings) -> None:
    """create_app(background=...) runs the runner in the server's loop; labeling-shaped tasks
    read their examples through the method context."""
    teacher = ScriptedTeacher()
    worker = runner_mod.embedded_worker(fast, teacher, methods={"labeling": METHODS["echo"]})
    config = uvicorn.Config(
        create_app(fast, background=[worker]), host="127.0.0.1", port=0, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            assert thread.is_alive()
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            dataset = (await client.post("/v1/datasets", json={"name": "emb"})).json()
            seeds = [{"instruction": f"question {i}"} for i in range(5)]
            assert (
                await client.post(f"/v1/datasets/{dataset['id']}/seeds", json={"examples": seeds})
            ).status_code == 201
            job = (
                await client.post(
                    "/v1/jobs",
                    json={"dataset_id": dataset["id"], "kind": "labeling", "params": {}},
                )
            ).json()

            async def finished() -> bool:
                got = (await client.get(f"/v1/jobs/{job['id']}")).json()
                return got["status"] in ("succeeded", "failed")

            await until(finished)
            got = (await client.get(f"/v1/jobs/{job['id']}")).json()
            assert got["status"] == "succeeded"
            assert got["progress"]["completed"] == got["progress"]["accepted"] == 5
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, 30)
    assert not thread.is_alive() and teacher.closed  # stopped with the app


def test_serve_without_a_teacher_warns_and_runs_no_worker(
    caplog: pytest.LogCaptureFixture, settings: Settings
) -> None:
    from app import cli

    nothing = settings.model_copy(update={"teacher": TeacherSettings(backend="auto")})
    with caplog.at_level(logging.WARNING):
        assert cli.embedded_workers(nothing) == []
    assert "no teacher configured" in caplog.text and "without a worker" in caplog.text
    assert "no worker will run jobs" in caplog.text


async def test_fetch_examples_keeps_the_order_given(database: Database, fast: Settings) -> None:
    """The context's reads: examples by id in the order asked, only from the task's dataset."""
    job_id = await add_job(database, item_payloads(3, 3))
    async with running(database, fast, ScriptedTeacher()):
        await until(status_is(database, job_id, "succeeded"))
    async with database.reading() as session:
        rows = (await session.scalars(select(Example).where(Example.job_id == job_id))).all()
    [task] = await tasks_of(database, job_id)
    claimed = runner_mod.queue.ClaimedTask(
        id=task.id, job_id=job_id, dataset_id=rows[0].dataset_id, skill_id=None, seq=0,
        attempt=1, max_attempts=5, kind="echo", params={}, teacher={}, payload={},
        lease_expires_at=task.created_at, reclaimed_from=None,
    )  # fmt: skip
    runner = Runner(db=database, settings=fast, teacher=ScriptedTeacher(), methods=METHODS)
    ctx = runner_mod._Context(runner, claimed)
    ids = [str(r.id) for r in reversed(rows)]
    got = await ctx.fetch_examples([*ids, str(uuid.uuid4())])
    assert [g["id"] for g in got] == ids and got[0]["metadata"] == {"seq": 0}
    pool = await ctx.dataset_pool()
    assert sorted(pool) == ["item 0", "item 1", "item 2"]
    async with database.transaction() as session:
        session.add(
            Example(
                dataset_id=rows[0].dataset_id, origin="seed", status="accepted",
                instruction="a seed", output="its answer", content_hash="x" * 64,
            )
        )  # fmt: skip
    demos = await ctx.sample_demos(5, 2)
    assert [d["origin"] for d in demos] == ["seed", "generated", "generated"]
    assert demos[0]["instruction"] == "a seed" and demos[0]["output"] == "its answer"
    progress = await ctx.job_progress()
    assert progress["completed"] == 3 and progress["status"] == "succeeded"
    with pytest.raises(runner_mod.JobCancelled):
        await ctx.check_cancel()  # the job has ended
