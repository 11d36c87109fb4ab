"""Datasets, skills, health and the error envelope over real HTTP, on SQLite and Postgres."""

from __future__ import annotations

import uuid

import httpx

from tests.factories import make_dataset


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


def test_create_list_and_read(client: httpx.Client) -> None:
    created = [make_dataset(client, f"ds-{i}", description=f"d{i}") for i in range(5)]
    page1 = client.get("/v1/datasets", params={"limit": 2}).json()
    assert [d["name"] for d in page1["data"]] == ["ds-0", "ds-1"]
    page2 = client.get("/v1/datasets", params={"limit": 2, "cursor": page1["next_cursor"]}).json()
    page3 = client.get("/v1/datasets", params={"limit": 2, "cursor": page2["next_cursor"]}).json()
    assert [d["name"] for d in page2["data"] + page3["data"]] == ["ds-2", "ds-3", "ds-4"]
    assert page3["next_cursor"] is None
    one = client.get(f"/v1/datasets/{created[3]['id']}").json()
    assert one["description"] == "d3"
    assert one["counts"] == {
        "seed": {"accepted": 0, "rejected": 0, "pending": 0, "candidate": 0},
        "generated": {"accepted": 0, "rejected": 0, "pending": 0, "candidate": 0},
    }
    assert one["total_examples"] == 0


def test_duplicate_name_is_a_conflict(client: httpx.Client) -> None:
    make_dataset(client, "same")
    assert_error(client.post("/v1/datasets", json={"name": "same"}), 409, "conflict")
    assert len(client.get("/v1/datasets").json()["data"]) == 1


def test_bad_dataset_bodies(client: httpx.Client) -> None:
    post = client.post
    err = assert_error(post("/v1/datasets", json={"name": "  "}), 422, "validation_error")
    assert "name" in err["message"]
    err = assert_error(post("/v1/datasets", json={"name": 5}), 422, "validation_error")
    assert err["details"][0]["loc"] == ["body", "name"]
    assert_error(post("/v1/datasets", json={}), 422, "validation_error")
    assert_error(post("/v1/datasets", json={"name": "x", "bogus": 1}), 422, "validation_error")
    assert_error(post("/v1/datasets", json={"name": "x" * 201}), 422, "validation_error")
    headers = {"content-type": "application/json"}
    assert_error(post("/v1/datasets", content=b'{"name": ', headers=headers), 400, "bad_request")
    assert_error(post("/v1/datasets", content=b"", headers=headers), 422, "validation_error")
    assert_error(post("/v1/datasets", content=b"\xff\xfe", headers=headers), 400, "bad_request")
    assert client.get("/v1/datasets").json()["data"] == []


def test_unknown_and_malformed_ids(client: httpx.Client) -> None:
    assert_error(client.get(f"/v1/datasets/{uuid.uuid4()}"), 404, "not_found")
    err = assert_error(client.get("/v1/datasets/not-a-uuid"), 422, "validation_error")
    assert err["details"][0]["loc"] == ["path", "dataset_id"]
    assert_error(client.get("/v1/datasets", params={"cursor": "!!"}), 422, "validation_error")
    assert_error(client.get("/v1/datasets", params={"limit": 0}), 422, "validation_error")
    assert_error(client.get("/v1/nothing-here"), 404, "not_found")
    assert_error(client.delete("/v1/datasets"), 405, "method_not_allowed")


def test_skills(client: httpx.Client) -> None:
    body = {"name": "sql", "description": "write SQL from a schema", "guidelines": "use CTEs"}
    created = client.post("/v1/skills", json=body)
    assert created.status_code == 201
    skill = created.json()
    assert skill["guidelines"] == "use CTEs"
    assert client.get(f"/v1/skills/{skill['id']}").json() == skill
    assert client.get("/v1/skills").json()["data"] == [skill]
    assert_error(client.get(f"/v1/skills/{uuid.uuid4()}"), 404, "not_found")
    assert_error(client.post("/v1/skills", json={"name": ""}), 422, "validation_error")


def test_health(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["database"] in {"sqlite", "postgresql"}
