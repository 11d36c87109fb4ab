"""API keys and tenant isolation: no key or a revoked key is a 401, another tenant's data a 404."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from app.config import Settings
from tests.conftest import LiveServer
from tests.test_api_datasets import assert_error


def cli(database_url: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", *args, "--database-url", database_url],
        capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout


def create_key(database_url: str, tenant: str) -> str:
    return cli(database_url, "keys", "create", "--tenant", tenant).strip().splitlines()[-1]


@pytest.fixture
def auth_server(settings: Settings) -> Iterator[LiveServer]:
    server = LiveServer(settings.model_copy(update={"auth": True})).start()
    yield server
    server.stop()


def test_keys_and_isolation(auth_server: LiveServer, database_url: str) -> None:
    alice, bob = create_key(database_url, "alice"), create_key(database_url, "bob")
    assert alice.startswith("dk_") and alice != bob
    a = httpx.Client(base_url=auth_server.url, headers={"Authorization": f"Bearer {alice}"})
    b = httpx.Client(base_url=auth_server.url, headers={"Authorization": f"Bearer {bob}"})
    anon = httpx.Client(base_url=auth_server.url)
    with a, b, anon:
        ds = a.post("/v1/datasets", json={"name": "private"}).json()
        a.post(f"/v1/datasets/{ds['id']}/seeds", json={"examples": [{"instruction": "q"}]})
        skill = a.post("/v1/skills", json={"name": "s"}).json()
        job = a.post("/v1/jobs", json={"dataset_id": ds["id"], "kind": "labeling"}).json()
        routes = [
            ("GET", f"/v1/datasets/{ds['id']}", None),
            ("GET", f"/v1/datasets/{ds['id']}/examples", None),
            ("POST", f"/v1/datasets/{ds['id']}/seeds", {"examples": [{"instruction": "x"}]}),
            ("GET", f"/v1/datasets/{ds['id']}/export", None),
            ("GET", f"/v1/skills/{skill['id']}", None),
            ("GET", f"/v1/jobs/{job['id']}", None),
            ("GET", f"/v1/jobs/{job['id']}/report", None),
            ("POST", f"/v1/jobs/{job['id']}/cancel", None),
            ("POST", "/v1/jobs", {"dataset_id": ds["id"], "kind": "labeling"}),
        ]
        for method, path, body in routes:
            assert_error(anon.request(method, path, json=body), 401, "unauthorized")
            assert_error(b.request(method, path, json=body), 404, "not_found")
        for path in ("/v1/datasets", "/v1/skills", "/v1/jobs"):
            assert_error(anon.get(path), 401, "unauthorized")
            assert b.get(path).json()["data"] == []
            assert len(a.get(path).json()["data"]) == 1
        # bob's dataset of the same name is his own
        assert b.post("/v1/datasets", json={"name": "private"}).status_code == 201
        assert (
            a.get(f"/v1/jobs/{job['id']}").json()["status"] == "queued"
        )  # bob's cancel did nothing
        assert_error(
            anon.get("/v1/datasets", headers={"Authorization": "Bearer dk_not-a-key"}),
            401,
            "unauthorized",
        )
        assert_error(
            anon.get("/v1/datasets", headers={"Authorization": "Basic abc"}), 401, "unauthorized"
        )
        assert anon.get("/healthz").status_code == 200  # health needs no key

        listing = cli(database_url, "keys", "list")
        bob_line = next(line for line in listing.splitlines() if " bob " in line)
        key_id = re.search(r"[0-9a-f]{8}-[0-9a-f-]{27}", bob_line).group(0)  # type: ignore[union-attr]
        cli(database_url, "keys", "revoke", key_id)
        assert_error(b.get("/v1/datasets"), 401, "unauthorized")
        assert a.get("/v1/datasets").status_code == 200


def test_no_auth_refused_off_loopback(database_url: str) -> None:
    command = [sys.executable, "-m", "app.cli", "serve", "--host", "0.0.0.0"]
    result = subprocess.run(
        [*command, "--database-url", database_url],
        capture_output=True, text=True, timeout=60, env={**os.environ, "DISTILLERY_AUTH": "false"},
    )  # fmt: skip
    assert result.returncode == 2
    assert "refusing to serve without API keys" in result.stdout
