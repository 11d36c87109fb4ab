"""GET /v1/jobs/{id}/events over real HTTP: a served app with an in-process worker and a scripted
teacher held at a gate, so the stream is read while the job is provably mid-way."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select

from app.config import Settings
from app.main import create_app
from app.models import TaskEvent
from app.state import Database
from tests.conftest import LiveServer
from tests.factories import make_dataset, seed_items, upload_seeds
from tests.scripted_teacher import ScriptedTeacher
from tests.test_api_datasets import assert_error
from tests.test_auth import create_key
from workers import runner
from workers.methods import METHODS

PROMPTS = 24
CHUNK = 4


class GatedServer(LiveServer):
    """The API with an in-process worker whose teacher waits at a gate the test opens."""

    def __init__(self, settings: Settings) -> None:
        self.teacher = ScriptedTeacher(delay=0.01)
        self.teacher.gate = asyncio.Event()
        self.loop: asyncio.AbstractEventLoop | None = None

        async def keep_loop(_db: Database) -> None:
            self.loop = asyncio.get_running_loop()

        worker = runner.embedded_worker(settings, self.teacher, methods=METHODS, concurrency=1)
        super().__init__(settings, create_app(settings, background=[worker, keep_loop]))

    def open_gate(self) -> None:
        assert self.loop is not None and self.teacher.gate is not None
        self.loop.call_soon_threadsafe(self.teacher.gate.set)


@pytest.fixture
def fast(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "poll_interval_seconds": 0.05,
            "events_poll_seconds": 0.05,
            "heartbeat_seconds": 0.2,
        }
    )


@pytest.fixture
def server(fast: Settings) -> Iterator[GatedServer]:
    live = GatedServer(fast)
    live.start()
    yield live
    live.open_gate()
    live.stop()


def read_events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """The events of an SSE response as {"id", "event", "data"} (keep-alive comments skipped)."""
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if not line:
            if fields:
                yield {"id": fields.get("id"), "event": fields.get("event"),
                       "data": orjson.loads(fields.get("data", "null"))}  # fmt: skip
            fields = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(": ")
        fields[name] = value


def start_job(client: httpx.Client) -> str:
    ds = make_dataset(client)
    items = seed_items(PROMPTS, with_output=False)
    upload_seeds(client, ds["id"], items)
    body = {"dataset_id": ds["id"], "kind": "labeling", "params": {"chunk_size": CHUNK}}
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def task_event_ids(database: Database, job_id: str) -> list[int]:
    async with database.reading() as session:
        rows = await session.scalars(
            select(TaskEvent.id).where(TaskEvent.job_id == uuid.UUID(job_id)).order_by(TaskEvent.id)
        )
        return list(rows)


async def test_stream_of_a_running_job(server: GatedServer, database: Database) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        job_id = start_job(client)
        seen: list[dict[str, Any]] = []
        with client.stream("GET", f"/v1/jobs/{job_id}/events") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            for event in read_events(response):
                seen.append(event)
                if len(seen) == 1:  # the gate holds the first task: nothing completed yet
                    assert event["event"] == "progress"
                    assert event["data"]["job"]["progress"]["completed"] == 0
                    server.open_gate()
            report = client.get(f"/v1/jobs/{job_id}/report").json()
            job = client.get(f"/v1/jobs/{job_id}").json()
    names = [e["event"] for e in seen]
    assert names[-1] == "finished" and names.count("finished") == 1
    progress = [e["data"] for e in seen if e["event"] == "progress"]
    completed = [p["job"]["progress"]["completed"] for p in progress]
    assert completed == sorted(completed) and completed[0] == 0 and completed[-1] == PROMPTS
    assert progress[-1]["report"]["accepted"] == PROMPTS
    assert progress[-1]["report"]["tokens"]["total"] == report["tokens"]["total"] > 0
    assert {"examples_per_minute", "tokens_per_second", "wall_seconds"} <= set(
        progress[-1]["report"]
    )
    statuses = [e["data"] for e in seen if e["event"] == "status"]
    assert statuses and statuses[-1] == {"from": "running", "to": "succeeded"}
    tasks = [e for e in seen if e["event"] == "task"]
    ids = [int(e["id"]) for e in tasks]
    assert ids == [e["data"]["id"] for e in tasks]
    assert ids == await task_event_ids(database, job_id)  # every one, in order, once
    assert {e["data"]["event"] for e in tasks} >= {"claimed", "succeeded"}
    finished = seen[-1]["data"]
    assert finished["report"] == report and finished["job"] == job
    assert all(e["id"] for e in seen)


def test_progress_counts_the_requests_at_the_teacher(server: GatedServer) -> None:
    """The gate holds the first task's CHUNK requests: workers and the stream say so."""
    with httpx.Client(base_url=server.url, timeout=60) as client:
        job_id = start_job(client)
        at_teacher: list[int | None] = []
        with client.stream("GET", f"/v1/jobs/{job_id}/events") as response:
            for event in read_events(response):
                if event["event"] == "progress":
                    at_teacher.append(event["data"]["report"]["in_flight"])
                    # the heartbeat after the claim reported the gated requests (once: later
                    # snapshots may still show them until the next heartbeat)
                    if at_teacher.count(CHUNK) == 1 and at_teacher[-1] == CHUNK:
                        workers = client.get("/v1/workers").json()["data"]
                        assert [w["teacher_in_flight"] for w in workers] == [CHUNK]
                        server.open_gate()
                if event["event"] == "finished":
                    break
    assert at_teacher[0] in (0, CHUNK) and CHUNK in at_teacher
    assert at_teacher[-1] is None  # finished: nobody is at the teacher for it


async def test_resume_with_last_event_id(server: GatedServer, database: Database) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        job_id = start_job(client)
        first: list[dict[str, Any]] = []
        with client.stream("GET", f"/v1/jobs/{job_id}/events") as response:
            for event in read_events(response):
                first.append(event)
                if event["event"] == "task" and event["data"]["event"] == "claimed":
                    break  # the first task is claimed, held at the gate
        assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "running"
        server.open_gate()
        second: list[dict[str, Any]] = []
        headers = {"Last-Event-ID": first[-1]["id"]}
        with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers) as response:
            second = list(read_events(response))
        assert second[0]["event"] in ("task", "progress") and second[-1]["event"] == "finished"
        # a client that cannot set headers resumes from the query; the header wins over it
        cursor = first[-1]["id"]
        with client.stream(
            "GET", f"/v1/jobs/{job_id}/events", params={"last_event_id": cursor}
        ) as response:
            third = list(read_events(response))
        with client.stream(
            "GET",
            f"/v1/jobs/{job_id}/events",
            params={"last_event_id": "0"},
            headers={"Last-Event-ID": cursor},
        ) as response:
            fourth = list(read_events(response))
    before = [int(e["id"]) for e in first if e["event"] == "task"]
    after = [int(e["id"]) for e in second if e["event"] == "task"]
    assert before and after
    assert before + after == await task_event_ids(database, job_id)  # none repeated, none lost
    assert [e["event"] for e in third][-2:] == ["progress", "finished"]
    assert [int(e["id"]) for e in third if e["event"] == "task"] == after
    assert [int(e["id"]) for e in fourth if e["event"] == "task"] == after


def test_unknown_job_and_bad_cursor(server: GatedServer) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        assert_error(client.get(f"/v1/jobs/{uuid.uuid4()}/events"), 404, "not_found")
        job_id = start_job(client)
        err = assert_error(
            client.get(f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": "abc"}),
            422,
            "validation_error",
        )
        assert "Last-Event-ID" in err["message"]
        err = assert_error(
            client.get(f"/v1/jobs/{job_id}/events", params={"last_event_id": "x-1"}),
            422,
            "validation_error",
        )
        assert "last_event_id" in err["message"]


def test_events_need_the_key_of_the_jobs_tenant(settings: Settings, database_url: str) -> None:
    alice, bob = create_key(database_url, "alice"), create_key(database_url, "bob")
    live = LiveServer(settings.model_copy(update={"auth": True})).start()
    try:
        a = httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {alice}"})
        b = httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {bob}"})
        anon = httpx.Client(base_url=live.url)
        with a, b, anon:
            job_id = start_job(a)
            assert_error(anon.get(f"/v1/jobs/{job_id}/events"), 401, "unauthorized")
            assert_error(b.get(f"/v1/jobs/{job_id}/events"), 404, "not_found")
            with a.stream("GET", f"/v1/jobs/{job_id}/events") as response:
                assert response.status_code == 200
                event = next(read_events(response))  # no worker: it stays queued
            assert event["event"] == "progress" and event["id"] == "0-1"
            assert event["data"]["job"]["status"] == "queued"
            assert event["data"]["eta_seconds"] is None
    finally:
        live.stop()
