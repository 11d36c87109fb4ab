"""The error contract at the edges, over real HTTP: a database outage is a 503 with Retry-After
(never a 500 with a traceback), a 405 names the allowed methods, every OpenAPI `$ref` resolves."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.main import create_app
from tests.conftest import LiveServer, _pg_admin, _run, pg_url


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) > 0
    assert response.json()["error"]["code"] == "unavailable"
    assert "Traceback" not in response.text and "asyncpg" not in response.text


def serve(url: str) -> Iterator[httpx.Client]:
    server = LiveServer(Settings(database_url=url, auto_migrate=False)).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            yield client
    finally:
        server.stop()


@pytest.mark.parametrize("where", ["postgres_closed_port", "sqlite_missing_directory"])
def test_unreachable_database_is_503(where: str, tmp_path: Path) -> None:
    url = {
        "postgres_closed_port": pg_url("distillery").replace(":5432/", f":{closed_port()}/"),
        "sqlite_missing_directory": f"sqlite+aiosqlite:///{tmp_path / 'gone' / 'x.db'}",
    }[where]
    for client in serve(url):
        assert_unavailable(client.get("/v1/datasets"))
        assert_unavailable(client.get(f"/v1/jobs/{uuid.uuid4()}"))
        assert_unavailable(client.post("/v1/datasets", json={"name": "x"}))
        assert client.get("/healthz").status_code == 200  # the process itself is fine


def test_dropped_database_is_503(pg_database_url: str) -> None:
    for client in serve(pg_database_url):
        assert client.post("/v1/datasets", json={"name": "before"}).status_code == 201
        name = pg_database_url.rsplit("/", 1)[1]
        _run(_pg_admin(f"DROP DATABASE {name} WITH (FORCE)"))
        assert_unavailable(client.get("/v1/datasets"))
        assert_unavailable(client.post("/v1/datasets", json={"name": "after"}))


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/v1/datasets", {"GET", "POST"}),
        ("PUT", f"/v1/datasets/{uuid.uuid4()}", {"GET", "PATCH", "DELETE"}),
        ("GET", f"/v1/datasets/{uuid.uuid4()}/seeds", {"POST"}),
        ("DELETE", f"/v1/jobs/{uuid.uuid4()}/cancel", {"POST"}),
        ("POST", "/healthz", {"GET"}),
    ],
)
def test_405_names_the_allowed_methods(
    client: httpx.Client, method: str, path: str, allowed: set[str]
) -> None:
    response = client.request(method, path)
    assert response.status_code == 405, response.text
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert {m.strip() for m in response.headers["allow"].split(",")} == allowed
    for other in allowed:  # what Allow names is served (any status but 405)
        assert client.request(other, path, json={}).status_code != 405


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"{ref} points outside the document"
    node: Any = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"{ref} does not resolve"
        node = node[part]
    return node


def test_every_openapi_ref_resolves() -> None:
    # two apps: the second must not see what building the first one's document changed
    for _ in range(2):
        doc = create_app(Settings()).openapi()
        found = list(refs(doc))
        assert len(found) > 20
        for ref in found:
            resolve(doc, ref)
        body = doc["paths"]["/v1/datasets/{dataset_id}/seeds"]["post"]["requestBody"]
        items = body["content"]["application/json"]["schema"]["properties"]["examples"]["items"]
        example_in = resolve(doc, items["$ref"])
        assert "instruction" in example_in["properties"]
        assert "$defs" not in str(doc)
