"""Job health and the worker registry, through the API over loopback (Postgres and SQLite)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import httpx
from sqlalchemy import update

from app import workers
from app.config import Settings
from app.ids import uuid7
from app.models import Job, Task, Worker
from app.state import Database
from tests.factories import make_dataset, seed_items, upload_seeds


def new_job(client: httpx.Client, **teacher: Any) -> dict[str, Any]:
    dataset = make_dataset(client)["id"]
    upload_seeds(client, dataset, seed_items(2, with_output=False))
    body: dict[str, Any] = {"dataset_id": dataset, "kind": "labeling", "params": {}}
    if teacher:
        body["teacher"] = teacher
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    return response.json()  # type: ignore[no-any-return]


def health(client: httpx.Client, job_id: str) -> dict[str, Any]:
    return client.get(f"/v1/jobs/{job_id}").json()["health"]  # type: ignore[no-any-return]


async def register(db: Database, name: str, **fields: Any) -> None:
    async with db.transaction() as session:
        await workers.register(
            session=session,
            name=name,
            host="h",
            pid=1,
            model=fields.pop("model", "m1"),
            backend="openai",
            kinds=fields.pop("kinds", ["labeling", "expansion"]),
            concurrency=4,
        )
    if fields:
        async with db.transaction() as session:
            await session.execute(update(Worker).where(Worker.name == name).values(**fields))


async def test_health_follows_the_workers(settings: Settings, client: httpx.Client) -> None:
    db = Database.from_url(settings.database_url)
    try:
        created = new_job(client)
        # no worker at all: the job says so from the start (`serve` without a teacher)
        assert created["health"]["state"] == "waiting_for_worker"
        assert "distillery worker" in created["health"]["message"]
        job_id = created["id"]
        other = new_job(client, model="m2")["id"]

        await register(db, "expander", kinds=["expansion"])  # serves another kind
        assert health(client, job_id)["state"] == "waiting_for_worker"

        await register(db, "labeler")  # model m1: any-model jobs yes, m2 jobs no
        assert health(client, job_id) == {
            "state": "ok", "message": "", "since": None, "last_error": None
        }  # fmt: skip
        assert health(client, other)["state"] == "waiting_for_worker"
        assert "model m2" in health(client, other)["message"]

        since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
        async with db.transaction() as session:
            await workers.heartbeat(
                session=session, name="labeler", in_flight=0, teacher_state="down",
                teacher_down_since=since, last_teacher_error="TeacherUnavailable: refused",
                last_teacher_error_at=since,
            )  # fmt: skip
        got = health(client, job_id)
        assert got["state"] == "waiting_for_teacher"
        assert got["last_error"] == "TeacherUnavailable: refused"
        assert dt.datetime.fromisoformat(got["since"]) == since
        listed = client.get(f"/v1/jobs?dataset_id={created['dataset_id']}").json()["data"]
        assert [j["health"]["state"] for j in listed] == ["waiting_for_teacher"]

        # a worker that stopped heartbeating is not live: nobody serves the job any more
        old = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
        async with db.transaction() as session:
            await session.execute(update(Worker).values(last_seen_at=old))
        assert health(client, job_id)["state"] == "waiting_for_worker"
        listed_workers = client.get("/v1/workers").json()["data"]
        assert sorted(w["name"] for w in listed_workers) == ["expander", "labeler"]
        assert all(w["live"] is False for w in listed_workers)
    finally:
        await db.engine.dispose()


async def test_retrying_and_finished_jobs(settings: Settings, client: httpx.Client) -> None:
    db = Database.from_url(settings.database_url)
    try:
        await register(db, "labeler")
        job_id = new_job(client)["id"]
        async with db.transaction() as session:  # a task waits to be retried after an error
            await session.execute(
                update(Job).where(Job.id == uuid.UUID(job_id)).values(
                    status="running", last_teacher_error="TeacherTimeout: no answer"
                )
            )  # fmt: skip
            session.add(
                Task(
                    id=uuid7(), job_id=uuid.UUID(job_id), seq=99, payload={"example_ids": []},
                    max_attempts=5, last_error="TeacherTimeout: no answer",
                )
            )  # fmt: skip
        got = health(client, job_id)
        assert got["state"] == "retrying" and got["last_error"] == "TeacherTimeout: no answer"

        async with db.transaction() as session:
            await session.execute(
                update(Job)
                .where(Job.id == uuid.UUID(job_id))
                .values(status="failed", error="teacher unavailable", finished_at=Job.created_at)
            )
        got = health(client, job_id)
        assert got["state"] == "ok" and got["last_error"] == "teacher unavailable"
    finally:
        await db.engine.dispose()


async def test_a_running_worker_registers_and_says_when_it_stops(
    settings: Settings, client: httpx.Client
) -> None:
    from tests.scripted_teacher import ScriptedTeacher
    from workers.runner import Runner

    fast = settings.model_copy(update={"heartbeat_seconds": 0.2, "poll_interval_seconds": 0.1})
    db = Database.from_url(settings.database_url)
    runner = Runner(db=db, settings=fast, teacher=ScriptedTeacher(), worker_id="w-reg")
    task = asyncio.create_task(runner.run())
    try:
        for _ in range(100):
            listed = client.get("/v1/workers").json()["data"]
            if listed:
                break
            await asyncio.sleep(0.05)
        [worker] = listed
        assert worker["name"] == "w-reg" and worker["live"] is True
        assert (worker["model"], worker["backend"]) == ("scripted-model", "scripted")
        assert worker["teacher_state"] == "ok" and worker["concurrency"] == fast.worker_concurrency
        first_seen = worker["last_seen_at"]
        await asyncio.sleep(0.5)
        assert client.get("/v1/workers").json()["data"][0]["last_seen_at"] > first_seen
    finally:
        runner.stop()
        await asyncio.wait_for(task, 30)
        await db.engine.dispose()
    [worker] = client.get("/v1/workers").json()["data"]
    assert worker["live"] is False and worker["stopped_at"] is not None


def test_a_full_postgres_is_unavailable_not_an_error() -> None:
    """max_connections reached is a 503 with Retry-After (the catch-all would make it a 500)."""
    import asyncpg
    from sqlalchemy import exc as sa_exc

    from app.db import is_db_unavailable

    full = asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already")
    wrapped = sa_exc.DBAPIError("connect", None, full)
    wrapped.orig = full
    assert is_db_unavailable(full) and is_db_unavailable(wrapped)
    assert not is_db_unavailable(asyncpg.exceptions.UniqueViolationError("duplicate key"))
