"""Hostile bodies: NUL characters, deep nesting, wrong encodings, slow drip. 4xx, nothing stored."""

from __future__ import annotations

import contextlib
import socket
import time

import httpx
import pytest

from app.config import Settings
from tests.conftest import LiveServer
from tests.factories import make_dataset
from tests.test_api_datasets import assert_error
from tests.test_api_seeds import NDJSON, count


def test_nul_characters_are_refused(client: httpx.Client) -> None:
    err = assert_error(
        client.post("/v1/datasets", json={"name": "a\x00b"}), 422, "validation_error"
    )
    assert "NUL" in err["message"]
    ds = make_dataset(client)
    url = f"/v1/datasets/{ds['id']}/seeds"
    body = {"examples": [{"instruction": "ok", "metadata": {"k": ["\x00"]}}]}
    err = assert_error(client.post(url, json=body), 422, "validation_error")
    assert "metadata.k.0" in err["message"]
    lines = b'{"instruction": "fine"}\n{"instruction": "bad\\u0000"}\n'
    err = assert_error(client.post(url, content=lines, headers=NDJSON), 422, "validation_error")
    assert err["message"].startswith("line 2")
    assert count(client, ds["id"]) == 0


def test_deeply_nested_and_wrongly_encoded(client: httpx.Client) -> None:
    deep = b'{"name": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    headers = {"content-type": "application/json"}
    assert_error(client.post("/v1/datasets", content=deep, headers=headers), 400, "bad_request")
    ds = make_dataset(client)
    url = f"/v1/datasets/{ds['id']}/seeds"
    assert_error(
        client.post(url, content=b'{"examples": ' + b"[" * 100_000, headers=headers),
        400,
        "bad_request",
    )
    nested = b'{"instruction": "x", "metadata": ' + b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"}\n"
    assert client.post(url, content=nested, headers=NDJSON).status_code in (400, 422)
    utf16 = '{"examples": [{"instruction": "hello"}]}'.encode("utf-16")
    assert_error(client.post(url, content=utf16, headers=headers), 400, "bad_request")
    assert count(client, ds["id"]) == 0
    assert client.get("/v1/datasets").status_code == 200


@pytest.fixture
def impatient(settings: Settings) -> Settings:
    return settings.model_copy(update={"body_timeout_seconds": 1.0})


def test_slow_drip_body_gets_408(impatient: Settings) -> None:
    server = LiveServer(impatient).start()
    try:
        with httpx.Client(base_url=server.url) as client:
            ds = make_dataset(client)
        host, port = server.url.removeprefix("http://").split(":")
        body = b'{"examples": [{"instruction": "slow"}]}'
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(
                f"POST /v1/datasets/{ds['id']}/seeds HTTP/1.1\r\nHost: x\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            )
            started = time.monotonic()
            reply = b""
            for byte in body:  # one byte every 0.2 s: the whole body would take ~8 s
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    break
                time.sleep(0.2)
                sock.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    reply += sock.recv(4096)
                sock.setblocking(True)
                if reply:
                    break
            sock.settimeout(5)
            while b"\r\n\r\n" not in reply:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
        assert time.monotonic() - started < 6
        with httpx.Client(base_url=server.url) as client:
            assert count(client, ds["id"]) == 0
    finally:
        server.stop()
