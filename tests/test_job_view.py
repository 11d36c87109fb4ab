"""GET /v1/jobs/{id} (app.job_view: Core statements, no ORM session) answers the same JSON as the
ORM path (jobs.get_job + health.health_of + jobs.job_read) in every health state, and 404s
across tenants (Postgres and SQLite, over loopback)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import httpx
from sqlalchemy import update

from app import auth, health, jobs
from app.config import Settings
from app.ids import uuid7
from app.models import DEFAULT_TENANT_ID, Job, Task, Worker
from app.state import Database
from tests.test_health import new_job, register


async def orm_view(db: Database, job_id: str) -> dict[str, Any]:
    """The job as the ORM path reads it, as JSON."""
    async with db.reading() as session:
        job = await jobs.get_job(
            session=session, tenant_id=DEFAULT_TENANT_ID, job_id=uuid.UUID(job_id)
        )
        states = await health.health_of(session=session, jobs=[job], heartbeat_seconds=5.0)
    read = jobs.job_read(job, states[job.id])
    return read.model_dump(mode="json")


async def same(db: Database, client: httpx.Client, job_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/jobs/{job_id}")
    assert response.status_code == 200, response.text
    got = response.json()
    assert got == await orm_view(db, job_id)
    assert list(got) == list(await orm_view(db, job_id))  # same keys, same order
    return got  # type: ignore[no-any-return]


async def test_same_json_as_the_orm_path(settings: Settings, client: httpx.Client) -> None:
    db = Database.from_url(settings.database_url)
    try:
        job = new_job(client, model="m1")
        job_id = job["id"]
        got = await same(db, client, job_id)  # queued, nobody serves it
        assert got["health"]["state"] == "waiting_for_worker"
        assert got["progress"]["total"] == 2

        await register(db, "labeler")
        assert (await same(db, client, job_id))["health"]["state"] == "ok"

        async with db.transaction() as session:  # running, a task waits to be retried
            await session.execute(
                update(Job).where(Job.id == uuid.UUID(job_id)).values(
                    status="running", started_at=Job.created_at, completed=1, accepted=1,
                    last_teacher_error="TeacherTimeout: no answer",
                )
            )  # fmt: skip
            session.add(
                Task(
                    id=uuid7(), job_id=uuid.UUID(job_id), seq=99, payload={"example_ids": []},
                    max_attempts=5, last_error="TeacherTimeout: no answer",
                )
            )  # fmt: skip
        got = await same(db, client, job_id)
        assert got["health"]["state"] == "retrying"
        assert got["progress"]["completed"] == 1 and got["progress"]["accepted"] == 1

        since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=3)
        async with db.transaction() as session:  # the only worker's teacher is down
            await session.execute(
                update(Worker).values(
                    teacher_state="down", teacher_down_since=since,
                    last_teacher_error="TeacherUnavailable: refused",
                )
            )  # fmt: skip
        got = await same(db, client, job_id)
        assert got["health"]["state"] == "waiting_for_teacher"
        assert got["health"]["last_error"] == "TeacherUnavailable: refused"

        async with db.transaction() as session:  # finished
            await session.execute(
                update(Job).where(Job.id == uuid.UUID(job_id)).values(
                    status="failed", error="teacher unavailable", finished_at=Job.created_at
                )
            )  # fmt: skip
        got = await same(db, client, job_id)
        assert got["status"] == "failed" and got["health"]["message"] == "teacher unavailable"
    finally:
        await db.engine.dispose()


async def test_other_tenants_job_is_not_found(settings: Settings, client: httpx.Client) -> None:
    db = Database.from_url(settings.database_url)
    try:
        job_id = new_job(client)["id"]
        async with db.transaction() as session:
            _, key = await auth.add_key(session=session, tenant_name="other", name="k")
        response = client.get(f"/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 404, response.text
        assert response.json()["error"]["message"] == f"job {job_id} not found"
        unknown = client.get(f"/v1/jobs/{uuid7()}")
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    finally:
        await db.engine.dispose()
