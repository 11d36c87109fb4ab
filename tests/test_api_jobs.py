"""Jobs over HTTP: validation of kind and params, first tasks planned, cancel of queued jobs."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import func, select

from app.models import Task, TaskEvent
from app.state import Database
from tests.factories import make_dataset, seed_items, upload_seeds
from tests.test_api_datasets import assert_error


async def task_payloads(database: Database, job_id: str) -> list[dict]:
    async with database.reading() as session:
        rows = await session.scalars(
            select(Task).where(Task.job_id == uuid.UUID(job_id)).order_by(Task.seq)
        )
        return [t.payload for t in rows]


@pytest.fixture
def dataset(client: httpx.Client) -> dict:
    ds = make_dataset(client)
    upload_seeds(client, ds["id"], seed_items(5) + seed_items(150, with_output=False, prefix="Q"))
    return ds


async def test_labeling_job_plans_chunks(
    client: httpx.Client, dataset: dict, database: Database
) -> None:
    body = {"dataset_id": dataset["id"], "kind": "labeling", "params": {"chunk_size": 64},
            "teacher": {"model": "tiny", "temperature": 0.2, "max_tokens": 256}}  # fmt: skip
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["status"] == "queued"
    assert job["progress"] == {
        "total": 150,
        "completed": 0,
        "accepted": 0,
        "rejected": 0,
        "failed": 0,
    }
    assert job["teacher"]["model"] == "tiny" and job["teacher"]["top_p"] == 1.0
    assert job["params"]["relabel"] is False
    payloads = await task_payloads(database, job["id"])
    assert [len(p["example_ids"]) for p in payloads] == [64, 64, 22]
    assert len({i for p in payloads for i in p["example_ids"]}) == 150
    assert client.get(f"/v1/jobs/{job['id']}").json() == job

    relabel = client.post("/v1/jobs", json={**body, "params": {"relabel": True}}).json()
    assert relabel["progress"]["total"] == 155


async def test_expansion_job_starts_one_round(
    client: httpx.Client, dataset: dict, database: Database
) -> None:
    response = client.post(
        "/v1/jobs",
        json={"dataset_id": dataset["id"], "kind": "expansion", "params": {"target": 300}},
    )
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["progress"]["total"] == 300
    assert job["params"]["two_stage"] is True
    # one chain of rounds per lane (parallel_rounds, default 4)
    assert await task_payloads(database, job["id"]) == [{"round": i} for i in range(4)]


def test_job_validation(client: httpx.Client, dataset: dict) -> None:
    ds = dataset["id"]
    err = assert_error(
        client.post("/v1/jobs", json={"dataset_id": ds, "kind": "painting"}),
        422,
        "validation_error",
    )
    assert "painting" in err["message"]
    err = assert_error(
        client.post(
            "/v1/jobs", json={"dataset_id": ds, "kind": "expansion", "params": {"target": -1}}
        ),
        422,
        "validation_error",
    )
    assert err["details"][0]["loc"] == ["body", "expansion", "params", "target"]
    assert_error(
        client.post("/v1/jobs", json={"dataset_id": ds, "kind": "expansion", "params": {}}),
        422,
        "validation_error",
    )
    assert_error(
        client.post("/v1/jobs", json={"dataset_id": ds, "kind": "labeling", "params": {"nope": 1}}),
        422,
        "validation_error",
    )
    assert_error(
        client.post(
            "/v1/jobs", json={"dataset_id": ds, "kind": "labeling", "teacher": {"temperature": 9}}
        ),
        422,
        "validation_error",
    )
    assert_error(
        client.post("/v1/jobs", json={"dataset_id": str(uuid.uuid4()), "kind": "labeling"}),
        404,
        "not_found",
    )
    assert_error(
        client.post(
            "/v1/jobs", json={"dataset_id": ds, "kind": "labeling", "skill_id": str(uuid.uuid4())}
        ),
        404,
        "not_found",
    )
    assert_error(
        client.post(
            "/v1/jobs",
            json={
                "dataset_id": ds,
                "kind": "labeling",
                "params": {"example_ids": [str(uuid.uuid4())]},
            },
        ),
        422,
        "validation_error",
    )
    assert client.get("/v1/jobs").json()["data"] == []


def test_nothing_to_do(client: httpx.Client) -> None:
    """An empty dataset is a conflict; a fully answered one gives a job that succeeds at once."""
    ds = make_dataset(client)
    assert_error(
        client.post(
            "/v1/jobs", json={"dataset_id": ds["id"], "kind": "expansion", "params": {"target": 5}}
        ),
        409,
        "conflict",
    )
    assert_error(
        client.post("/v1/jobs", json={"dataset_id": ds["id"], "kind": "labeling"}), 409, "conflict"
    )
    upload_seeds(client, ds["id"], seed_items(3))
    response = client.post("/v1/jobs", json={"dataset_id": ds["id"], "kind": "labeling"})
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["status"] == "succeeded" and job["progress"]["total"] == 0
    assert "relabel" in job["stop_reason"]


async def test_cancel_queued_job(client: httpx.Client, dataset: dict, database: Database) -> None:
    job = client.post("/v1/jobs", json={"dataset_id": dataset["id"], "kind": "labeling"}).json()
    other = client.post(
        "/v1/jobs", json={"dataset_id": dataset["id"], "kind": "expansion", "params": {"target": 9}}
    ).json()
    response = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert response.status_code == 202
    cancelled = response.json()
    assert cancelled["status"] == "cancelled" and cancelled["finished_at"] is not None
    assert_error(client.post(f"/v1/jobs/{job['id']}/cancel"), 409, "job_not_cancellable")
    assert_error(client.post(f"/v1/jobs/{uuid.uuid4()}/cancel"), 404, "not_found")
    async with database.reading() as session:
        statuses = set(
            (
                await session.scalars(
                    select(Task.status).where(Task.job_id == uuid.UUID(job["id"]))
                )
            ).all()
        )
        events = await session.scalar(
            select(func.count()).select_from(TaskEvent).where(TaskEvent.event == "cancelled")
        )
    assert statuses == {"cancelled"}
    assert events == 3
    listed = client.get("/v1/jobs", params={"status": "queued"}).json()["data"]
    assert [j["id"] for j in listed] == [other["id"]]
    by_dataset = client.get("/v1/jobs", params={"dataset_id": dataset["id"]}).json()["data"]
    assert len(by_dataset) == 2
