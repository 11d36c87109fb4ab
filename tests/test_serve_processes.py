"""`distillery serve --api-processes 2` as a user runs it (a subprocess, Postgres): two processes
answer on one port, the job read path works in them, and SIGTERM to the parent stops them all."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from app.cli import api_process_count
from app.config import Settings
from tests.factories import make_dataset, seed_items, upload_seeds

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(pg_database_url: str, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLERY_")}
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--no-worker", "--no-migrate",
         "--api-processes", "2", "--port", str(port), "--database-url", pg_database_url],
        cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}, stdout=log, stderr=log,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert proc.poll() is None, (tmp_path / "serve.log").read_text()
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        log.close()


def api_children(parent: psutil.Process, port: int) -> list[psutil.Process]:
    """The parent's children that listen on the port (not multiprocessing's resource tracker)."""
    out = []
    for child in parent.children():
        conns = child.net_connections(kind="tcp")
        if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in conns):
            out.append(child)
    return out


def owner_of(children: list[psutil.Process], client: socket.socket) -> int | None:
    """The pid of the child holding the server end of `client`'s connection."""
    here = client.getsockname()
    for child in children:
        for conn in child.net_connections(kind="tcp"):
            if conn.raddr and (conn.raddr.ip, conn.raddr.port) == here:
                return child.pid
    return None


def test_two_processes_answer_and_sigterm_stops_both(
    served: tuple[subprocess.Popen[bytes], str],
) -> None:
    proc, url = served
    port = int(url.rsplit(":", 1)[1])
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + 60
    while len(children := api_children(parent, port)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(children) == 2, [c.cmdline() for c in parent.children()]

    with httpx.Client(base_url=url, timeout=30) as client:  # the lean job read in a child
        dataset = make_dataset(client)["id"]
        upload_seeds(client, dataset, seed_items(3, with_output=False))
        job = client.post("/v1/jobs", json={"dataset_id": dataset, "kind": "labeling"}).json()
        got = client.get(f"/v1/jobs/{job['id']}").json()
        assert got["progress"]["total"] == 3 and got["health"]["state"] == "waiting_for_worker"

    answered: set[int] = set()
    for _ in range(300):  # new connections until each process has answered one
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            assert conn.recv(4096).startswith(b"HTTP/1.1 200")
            pid = owner_of(children, conn)
            if pid is not None:
                answered.add(pid)
        if len(answered) == 2:
            break
    assert answered == {c.pid for c in children}

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    _gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, alive


def test_process_count_defaults() -> None:
    pg = Settings(database_url="postgresql://u@h/db")
    cores = len(os.sched_getaffinity(0))
    assert api_process_count(pg, with_worker=False) == cores
    assert api_process_count(pg, with_worker=True) == 1  # the worker shares the API's process
    assert api_process_count(Settings(database_url="sqlite:///x.db"), with_worker=False) == 1
    explicit = Settings(database_url="sqlite:///x.db", api_processes=3)
    assert api_process_count(explicit, with_worker=True) == 3
