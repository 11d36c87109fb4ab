"""Dataset listings carry example counts (one grouped query a page), and an expansion job without
a skill_id takes the dataset's description as its skill, all the way into the teacher's prompt."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
from sqlalchemy import event

from app.config import Settings
from app.main import create_app
from app.state import Database
from tests.conftest import LiveServer
from tests.factories import make_dataset, seed_items, upload_seeds
from tests.selfinstruct_teacher import SelfInstructTeacher
from tests.test_expansion import WorkerServer, seeds, wait_for
from workers.teachers.base import TeacherRequest, TeacherResult


def test_list_counts_every_dataset_in_one_query(settings: Settings) -> None:
    db = Database.from_url(settings.database_url)
    example_queries: list[str] = []

    @event.listens_for(db.engine.sync_engine, "before_cursor_execute")
    def _count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "examples" in statement.lower():
            example_queries.append(statement)

    server = LiveServer(settings, create_app(settings, db)).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            full = make_dataset(client, "full")["id"]
            half = make_dataset(client, "half")["id"]
            make_dataset(client, "empty")
            upload_seeds(client, full, seed_items(3))
            upload_seeds(client, half, seed_items(2, with_output=False))
            example_queries.clear()
            page = client.get("/v1/datasets").json()["data"]
            assert len(example_queries) == 1, example_queries
            by_name = {d["name"]: d for d in page}
            assert {n: d["total_examples"] for n, d in by_name.items()} == {
                "full": 3, "half": 2, "empty": 0
            }  # fmt: skip
            for dataset in page:  # the same counts as the one-dataset read
                one = client.get(f"/v1/datasets/{dataset['id']}").json()
                assert dataset["counts"] == one["counts"]
                assert set(one["counts"]) == {"seed", "generated"}
            assert sum(by_name["full"]["counts"]["seed"].values()) == 3
    finally:
        server.stop()
        import asyncio

        asyncio.run(db.engine.dispose())


def test_expansion_without_skill_and_description_is_422(client: httpx.Client) -> None:
    ds = make_dataset(client, description="  ")["id"]
    upload_seeds(client, ds, seed_items(3))
    response = client.post(
        "/v1/jobs", json={"dataset_id": ds, "kind": "expansion", "params": {"target": 5}}
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert "skill_id" in error["message"]
    assert error["details"][0]["loc"] == ["body", "skill_id"]
    assert client.get("/v1/jobs").json()["data"] == []  # nothing stored


class RecordingTeacher(SelfInstructTeacher):
    """The self-instruct double, keeping every request it was sent."""

    def __init__(self) -> None:
        super().__init__(seed=5)
        self.requests: list[TeacherRequest] = []

    async def generate(self, requests: Sequence[TeacherRequest]) -> list[TeacherResult]:
        self.requests.extend(requests)
        return await super().generate(requests)


def test_expansion_without_skill_uses_the_dataset_description(settings: Settings) -> None:
    description = "Write riddles about invented words, one line each."
    teacher = RecordingTeacher()
    fast = settings.model_copy(update={"poll_interval_seconds": 0.05})
    server = WorkerServer(fast, teacher).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            ds = make_dataset(client, "riddles", description=description)["id"]
            upload_seeds(client, ds, seeds())
            body = {"dataset_id": ds, "kind": "expansion", "params": {"target": 10}}
            created = client.post("/v1/jobs", json=body)
            assert created.status_code == 202, created.text
            assert created.json()["params"]["skill_from_dataset"]["description"] == description
            job = wait_for(client, created.json()["id"])
            assert job["status"] == "succeeded", job
    finally:
        server.stop()
    assert teacher.requests
    for request in teacher.requests:  # proposals and answers alike show the skill
        system = request.messages[0]
        assert system["role"] == "system" and description in system["content"]
