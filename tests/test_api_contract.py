"""The API contract: docs without a CDN, DELETE of datasets and skills, error messages in the
client's words, and the content types a body may have."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from app import validation
from app.config import Settings
from app.models import Example, Job, Task, TaskEvent
from app.state import Database
from tests.factories import make_dataset, seed_items, upload_seeds
from tests.scripted_teacher import ScriptedTeacher
from tests.test_api_datasets import assert_error
from tests.test_auth import auth_server, create_key  # noqa: F401 (fixture)
from tests.test_expansion import fast, start, wait_for  # noqa: F401 (fixture)

NDJSON = {"content-type": "application/x-ndjson"}
URL_ATTR = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url\s*[:=]\s*["']([^"']+)["']""")

# --- docs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_use_no_cdn(client: httpx.Client, page: str) -> None:
    response = client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", html, re.IGNORECASE), html
    urls = {a or b for a, b in URL_ATTR.findall(html)}
    assert "/openapi.json" in urls
    assets = urls - {"/openapi.json"}
    assert assets, html
    types = {".js": "javascript", ".css": "text/css", ".png": "image/png"}
    for url in assets:
        assert url.startswith("/"), url
        asset = client.get(url)
        assert asset.status_code == 200, url
        expected = next(t for ext, t in types.items() if url.endswith(ext))
        assert expected in asset.headers["content-type"], (url, asset.headers["content-type"])
        assert len(asset.content) > 1000
    assert client.get("/openapi.json").status_code == 200


# --- DELETE ----------------------------------------------------------------------------------


def _count_rows(settings: Settings, dataset_id: str, job_ids: list[str]) -> dict[str, int]:
    async def count() -> dict[str, int]:
        db = Database.from_url(settings.database_url)
        ids = [uuid.UUID(j) for j in job_ids]
        try:
            async with db.reading() as session:
                return {
                    "examples": await session.scalar(
                        select(func.count())
                        .select_from(Example)
                        .where(Example.dataset_id == uuid.UUID(dataset_id))
                    )
                    or 0,
                    "jobs": await session.scalar(
                        select(func.count()).select_from(Job).where(Job.id.in_(ids))
                    )
                    or 0,
                    "tasks": await session.scalar(
                        select(func.count()).select_from(Task).where(Task.job_id.in_(ids))
                    )
                    or 0,
                    "task_events": await session.scalar(
                        select(func.count()).select_from(TaskEvent).where(TaskEvent.job_id.in_(ids))
                    )
                    or 0,
                }
        finally:
            await db.engine.dispose()

    return asyncio.run(count())


def test_delete_dataset_with_finished_jobs_and_refuse_while_one_runs(
    fast: Settings,  # noqa: F811
) -> None:
    teacher = ScriptedTeacher()
    for client in start(fast, teacher):
        ds = make_dataset(client)["id"]
        other = make_dataset(client)["id"]
        upload_seeds(client, ds, seed_items(6, with_output=False))
        upload_seeds(client, other, seed_items(3, with_output=False))
        done = wait_for(
            client,
            client.post("/v1/jobs", json={"dataset_id": ds, "kind": "labeling"}).json()["id"],
        )
        assert done["status"] == "succeeded" and done["progress"]["accepted"] == 6
        before = _count_rows(fast, ds, [done["id"]])
        assert before["examples"] == 12 and before["tasks"] >= 1 and before["task_events"] >= 1

        teacher.delay = 1.0  # the next job stays queued or running for a while
        upload_seeds(client, ds, seed_items(2, with_output=False, prefix="More"))
        running = client.post("/v1/jobs", json={"dataset_id": ds, "kind": "labeling"}).json()
        error = assert_error(client.delete(f"/v1/datasets/{ds}"), 409, "conflict")
        assert f"cancel job {running['id']} first" in error["message"]
        assert client.get(f"/v1/datasets/{ds}").status_code == 200  # nothing deleted
        client.post(f"/v1/jobs/{running['id']}/cancel")
        assert wait_for(client, running["id"])["status"] == "cancelled"

        assert client.delete(f"/v1/datasets/{ds}").status_code == 204
        assert_error(client.get(f"/v1/datasets/{ds}"), 404, "not_found")
        assert_error(client.get(f"/v1/jobs/{done['id']}"), 404, "not_found")
        assert_error(client.delete(f"/v1/datasets/{ds}"), 404, "not_found")
        after = _count_rows(fast, ds, [done["id"], running["id"]])
        assert after == {"examples": 0, "jobs": 0, "tasks": 0, "task_events": 0}
        # the other dataset is untouched
        assert client.get(f"/v1/datasets/{other}").json()["total_examples"] == 3


def test_delete_skill_refused_while_a_job_uses_it(client: httpx.Client) -> None:
    ds = make_dataset(client)["id"]
    upload_seeds(client, ds, seed_items(3, with_output=False))
    skill = client.post("/v1/skills", json={"name": "s", "guidelines": "be brief"}).json()
    job = client.post(
        "/v1/jobs", json={"dataset_id": ds, "kind": "labeling", "skill_id": skill["id"]}
    ).json()
    assert job["status"] == "queued"  # no worker here
    error = assert_error(client.delete(f"/v1/skills/{skill['id']}"), 409, "conflict")
    assert f"cancel job {job['id']}" in error["message"]
    assert client.post(f"/v1/jobs/{job['id']}/cancel").json()["status"] == "cancelled"
    assert client.delete(f"/v1/skills/{skill['id']}").status_code == 204
    assert_error(client.get(f"/v1/skills/{skill['id']}"), 404, "not_found")
    kept = client.get(f"/v1/jobs/{job['id']}").json()
    assert kept["skill_id"] is None
    assert kept["params"]["skill_spec"]["guidelines"] == "be brief"
    assert_error(client.delete(f"/v1/skills/{skill['id']}"), 404, "not_found")


def test_delete_is_another_tenants_404(
    auth_server: Any,  # noqa: F811
    database_url: str,
) -> None:
    alice, bob = create_key(database_url, "alice"), create_key(database_url, "bob")
    as_alice = {"authorization": f"Bearer {alice}"}
    as_bob = {"authorization": f"Bearer {bob}"}
    with httpx.Client(base_url=auth_server.url, timeout=30) as client:
        ds = client.post("/v1/datasets", json={"name": "d"}, headers=as_alice).json()["id"]
        skill = client.post("/v1/skills", json={"name": "s"}, headers=as_alice).json()["id"]
        assert_error(client.delete(f"/v1/datasets/{ds}", headers=as_bob), 404, "not_found")
        assert_error(client.delete(f"/v1/skills/{skill}", headers=as_bob), 404, "not_found")
        assert client.get(f"/v1/datasets/{ds}", headers=as_alice).status_code == 200
        assert client.delete(f"/v1/datasets/{ds}", headers=as_alice).status_code == 204
        assert client.delete(f"/v1/skills/{skill}", headers=as_alice).status_code == 204


# --- error messages --------------------------------------------------------------------------

INTERNALS = (
    re.compile(r"\bbody\."),
    re.compile(r"\b(?:function|json|lax|tagged|nullable)-"),
    re.compile(r"[a-z_-]+\[[^\]]*\]"),  # pydantic's segment names: list[...], union[...]
    re.compile(r"pattern|\\S|\^\[|\]\{\d+\}\$"),  # a regular expression quoted
    re.compile(r"Value error, "),
)


def assert_plain(error: dict[str, Any]) -> None:
    for text in [error["message"], *(str(d.get("msg", "")) for d in error["details"])]:
        for internal in INTERNALS:
            assert not internal.search(text), (internal.pattern, text)


def test_error_messages_name_fields_as_the_client_wrote_them(client: httpx.Client) -> None:
    ds = make_dataset(client)["id"]
    upload_seeds(client, ds, seed_items(2))
    skill = client.post("/v1/skills", json={"name": "s"}).json()["id"]
    bench = client.post("/v1/benchmarks", json={"name": "b", "items": [{"text": "t"}]}).json()
    job = {"dataset_id": ds}
    cases: list[tuple[str, str, Any, str]] = [
        ("POST", "/v1/datasets", {}, "name: Field required"),
        ("POST", "/v1/datasets", {"name": "   "}, "name: must not be empty"),
        ("POST", "/v1/datasets", {"name": 5}, "name: "),
        ("POST", "/v1/datasets", {"name": "x", "colour": 1}, "colour: "),
        ("POST", "/v1/datasets", [1], "request body: "),
        ("POST", "/v1/skills", {"name": " "}, "name: must not be empty"),
        (
            "POST",
            "/v1/skills",
            {"name": "s", "taxonomy": {"topics": [{"name": "a/b"}]}},
            "taxonomy.topics.0.name: must not be blank and must not contain '/'",
        ),
        ("PATCH", f"/v1/skills/{skill}", {"name": "\t"}, "name: must not be empty"),
        (
            "POST",
            "/v1/jobs",
            {**job, "kind": "expansion", "params": {"target": "x"}},
            "params.target: ",
        ),
        ("POST", "/v1/jobs", {**job, "kind": "expansion", "params": {}}, "params.target: Field"),
        (
            "POST",
            "/v1/jobs",
            {**job, "kind": "labeling", "params": {"chunk_size": 0}},
            "params.chunk_size: ",
        ),
        (
            "POST",
            "/v1/jobs",
            {**job, "kind": "labeling", "params": {"languages": ["xx"]}},
            "params.languages.0: ",
        ),
        (
            "POST",
            "/v1/jobs",
            {**job, "kind": "labeling", "teacher": {"temperature": 9}},
            "teacher.temperature: ",
        ),
        ("POST", "/v1/jobs", {**job, "kind": "painting"}, "kind: "),
        (
            "POST",
            "/v1/jobs",
            {**job, "kind": "labeling", "params": {"judge": {"min_score": 99}}},
            "params.judge.min_score: ",
        ),
        ("PATCH", f"/v1/benchmarks/{bench['id']}", {"default": "maybe"}, "default: "),
        ("POST", f"/v1/datasets/{ds}/decontaminate", {"benchmarks": ["x"]}, "benchmarks.0: "),
        (
            "POST",
            f"/v1/datasets/{ds}/seeds",
            {"examples": [{"instruction": " "}]},
            "examples.0.instruction: must not be empty",
        ),
        ("POST", f"/v1/datasets/{ds}/seeds", {"examples": [{"messages": []}]}, "needs a non-blank"),
        (
            "POST",
            "/v1/benchmarks",
            {"name": "b", "items": [{"text": " "}]},
            "items.0.text: must not be empty",
        ),
        ("GET", "/v1/datasets?cursor=nope", None, "query parameter cursor: must be the"),
        ("GET", "/v1/datasets?limit=0", None, "query parameter limit: "),
        ("GET", f"/v1/datasets/{ds}/export?topic=/", None, "query parameter topic: must name"),
        ("GET", "/v1/datasets/not-an-id", None, "path parameter dataset_id: "),
        ("GET", f"/v1/jobs?dataset_id={ds}&status=done", None, "query parameter status: "),
    ]
    for method, url, body, expected in cases:
        response = client.request(method, url, json=body)
        assert response.status_code == 422, (url, body, response.text)
        error = response.json()["error"]
        assert expected in error["message"], (url, body, error["message"])
        assert_plain(error)
        if error["details"] and "loc" in error["details"][0]:
            assert isinstance(error["details"][0]["loc"], list)  # raw, for machines


def test_jsonl_line_errors_are_plain(client: httpx.Client) -> None:
    ds = make_dataset(client)["id"]
    lines = b'{"instruction": "fine"}\n{"instruction": "  "}\n'
    error = assert_error(
        client.post(f"/v1/datasets/{ds}/seeds", content=lines, headers=NDJSON),
        422,
        "validation_error",
    )
    assert error["message"] == "line 2: instruction: must not be empty or only spaces"
    assert_plain(error)


def test_every_pattern_of_the_schema_has_a_meaning(client: httpx.Client) -> None:
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("pattern"), str):
                found.add(node["pattern"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(client.get("/openapi.json").json())
    assert found and found <= set(validation.PATTERN_MEANINGS), found - set(
        validation.PATTERN_MEANINGS
    )


def test_client_path_drops_union_tags_and_validator_names() -> None:
    body = {"kind": "expansion", "params": {"target": "x"}}
    assert validation.client_path(["expansion", "params", "target"], body) == ["params", "target"]
    assert validation.client_path(["function-after[f(), X]", "name"], {}) == ["name"]
    assert validation.field_name(["body"], [1]) == "request body"
    assert validation.field_name(["query", "limit"], None) == "query parameter limit"


# --- content types ---------------------------------------------------------------------------


def test_bodies_without_or_with_a_wrong_content_type_get_415(client: httpx.Client) -> None:
    ds = make_dataset(client)["id"]
    skill = client.post("/v1/skills", json={"name": "s"}).json()["id"]
    bench = client.post("/v1/benchmarks", json={"name": "b", "items": [{"text": "t"}]}).json()
    routes = [
        ("POST", "/v1/datasets", b'{"name": "x"}', False),
        ("POST", f"/v1/datasets/{ds}/seeds", b'{"examples": [{"instruction": "a"}]}', True),
        ("POST", "/v1/skills", b'{"name": "x"}', False),
        ("PATCH", f"/v1/skills/{skill}", b'{"name": "y"}', False),
        ("POST", "/v1/jobs", b'{"dataset_id": "%s", "kind": "labeling"}' % ds.encode(), False),
        ("POST", "/v1/benchmarks", b'{"name": "c", "items": [{"text": "t"}]}', True),
        ("PATCH", f"/v1/benchmarks/{bench['id']}", b'{"default": true}', False),
        ("POST", f"/v1/datasets/{ds}/decontaminate", b'{"benchmarks": []}', False),
    ]
    for method, url, body, jsonl in routes:
        for headers in (
            {},
            {"content-type": "text/plain"},
            {"content-type": "multipart/form-data"},
        ):
            response = client.request(method, url, content=body, headers=headers)
            error = assert_error(response, 415, "unsupported_media_type")
            assert "application/json" in error["message"], error
            assert ("application/x-ndjson" in error["message"]) is jsonl, error
            if not headers:
                assert "no Content-Type" in error["message"]
    assert client.get(f"/v1/datasets/{ds}").json()["total_examples"] == 0  # nothing stored
    # a body-less POST needs no content type; JSON with a charset is JSON
    bodiless = client.post(f"/v1/datasets/{ds}/decontaminate")
    assert bodiless.status_code == 422 and "no benchmarks named" in bodiless.text, bodiless.text
    made = client.post(
        "/v1/datasets",
        content=b'{"name": "charset"}',
        headers={"content-type": "Application/JSON; charset=utf-8"},
    )
    assert made.status_code == 201, made.text
