"""GET /v1/jobs/{id} (app.job_view: Core statements, no ORM session) answers the same JSON as the
ORM path (jobs.get_job + health.health_of + jobs.job_read) in every health state, and 404s
across tenants (Postgres and SQLite, over loopback)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import httpx
from pydantic import TypeAdapter
from sqlalchemy import text, update

from app import auth, health, jobs
from app.config import Settings
from app.ids import uuid7
from app.models import DEFAULT_TENANT_ID, Job, Task, Worker
from app.schemas import JobRead
from app.state import Database
from tests.conftest import LiveServer
from tests.test_health import new_job, register


async def orm_read(db: Database, job_id: str) -> JobRead:
    """The job as the ORM path reads it."""
    async with db.reading() as session:
        job = await jobs.get_job(
            session=session, tenant_id=DEFAULT_TENANT_ID, job_id=uuid.UUID(job_id)
        )
        states = await health.health_of(session=session, jobs=[job], heartbeat_seconds=5.0)
    return jobs.job_read(job, states[job.id])


async def orm_view(db: Database, job_id: str) -> dict[str, Any]:
    """The job as the ORM path reads it, as JSON."""
    return (await orm_read(db, job_id)).model_dump(mode="json")


async def same(db: Database, client: httpx.Client, job_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/jobs/{job_id}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    got = response.json()
    assert got == await orm_view(db, job_id)
    assert list(got) == list(await orm_view(db, job_id))  # same keys, same order
    # byte for byte what FastAPI sends for a JobRead (`response_model`): the route sends
    # pre-serialised bytes, so spacing, key order, datetime and UUID forms must not drift
    fastapi_bytes = TypeAdapter(JobRead).dump_json(await orm_read(db, job_id))
    assert response.content == fastapi_bytes
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


async def test_dead_pooled_connections_are_replaced(pg_database_url: str) -> None:
    """Postgres reads go straight to asyncpg (app.asyncpg_reads): a pooled connection the
    server dropped (restart, terminated backend) is invalidated and the read retried, so the
    poll answers 200 (with and without a key), not 503."""
    settings = Settings(database_url=pg_database_url, auto_migrate=False, auth=True)
    db = Database.from_url(pg_database_url)
    server = LiveServer(settings).start()
    try:
        async with db.transaction() as session:
            _, key = await auth.add_key(session=session, tenant_name="t", name="k")
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
            job_id = new_job(client)["id"]
            assert client.get(f"/v1/jobs/{job_id}").status_code == 200
            for _ in range(2):  # the key lookup, then the job read, each meets a dead one
                async with db.engine.connect() as conn:
                    await conn.execute(
                        text(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                        )
                    )
                await db.engine.dispose()
                response = client.get(f"/v1/jobs/{job_id}")
                assert response.status_code == 200, response.text
                assert response.json()["id"] == job_id
            revoked = client.get(f"/v1/jobs/{job_id}", headers={"Authorization": "Bearer dk_x"})
            assert revoked.status_code == 401
    finally:
        server.stop()
        await db.engine.dispose()
