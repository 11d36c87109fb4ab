"""Run the loopback teacher emulator (``python -m bench.emulator``) as a subprocess for tests.

``start_emulator(...)`` starts it on 127.0.0.1 with a free port, waits for its ``READY <port>``
line and returns a handle; ``handle.stop()`` ends it by its pid. Use it from a fixture that
stops it at teardown::

    @pytest.fixture(scope="module")
    def emulator():
        with running_emulator(base_latency=0.05) as emu:
            yield emu
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"


@dataclass
class EmulatorProcess:
    """A running emulator: its URLs, its control routes, and ``stop``."""

    process: subprocess.Popen[str]
    port: int
    model: str
    log: IO[bytes]

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{HOST}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI base URL (``.../v1``)."""
        return f"{self.root_url}/v1"

    def stats(self) -> dict[str, Any]:
        """``GET /stats``."""
        return httpx.get(f"{self.root_url}/stats").raise_for_status().json()

    def reset_stats(self) -> None:
        """``POST /stats/reset``."""
        httpx.post(f"{self.root_url}/stats/reset").raise_for_status()

    def set_faults(self, faults: dict[str, Any] | None = None) -> dict[str, Any]:
        """``POST /faults`` (None or {} clears them)."""
        response = httpx.post(f"{self.root_url}/faults", json=faults or {})
        return response.raise_for_status().json()

    def stderr(self) -> str:
        """What the emulator wrote to stderr so far (for failure messages)."""
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")

    def stop(self) -> None:
        """SIGTERM by pid, SIGKILL if it does not exit within 5 s."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.log.close()


def start_emulator(
    *,
    model: str = "emulator-model",
    base_latency: float = 0.0,
    per_token: float = 0.0,
    max_in_flight: int = 256,
    faults: dict[str, Any] | None = None,
    extra_args: tuple[str, ...] = (),
    ready_timeout_s: float = 20.0,
) -> EmulatorProcess:
    """Start the emulator and wait until it listens."""
    args = [
        sys.executable,
        "-m",
        "bench.emulator",
        "--host",
        HOST,
        "--port",
        "0",
        "--model",
        model,
        "--base-latency",
        str(base_latency),
        "--per-token",
        str(per_token),
        "--max-in-flight",
        str(max_in_flight),
        *extra_args,
    ]
    if faults:
        args += ["--faults", json.dumps(faults)]
    return spawn_server(args, model=model, ready_timeout_s=ready_timeout_s)


def spawn_server(args: list[str], *, model: str, ready_timeout_s: float) -> EmulatorProcess:
    """Run ``args`` (a loopback server that prints ``READY <port>``) and wait until it listens;
    also used for ``tests/hf_server.py``."""
    log = tempfile.TemporaryFile()  # noqa: SIM115 -- closed by EmulatorProcess.stop()
    process = subprocess.Popen(
        args, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1
    )
    handle = EmulatorProcess(process=process, port=0, model=model, log=log)
    try:
        handle.port = _read_ready(process, ready_timeout_s)
    except BaseException as exc:
        message = f"{exc}; stderr:\n{handle.stderr()}"
        handle.stop()
        raise RuntimeError(message) from None
    return handle


def _read_ready(process: subprocess.Popen[str], timeout_s: float) -> int:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        readable, _, _ = select.select([process.stdout], [], [], 0.1)
        if readable:
            line = process.stdout.readline()
            if line.startswith("READY "):
                return int(line.split()[1])
            if not line and process.poll() is not None:
                break
    raise RuntimeError(f"server did not start (exit code {process.poll()})")


@contextmanager
def running_emulator(**kwargs: Any) -> Iterator[EmulatorProcess]:
    """``start_emulator(**kwargs)``, stopped on exit."""
    handle = start_emulator(**kwargs)
    try:
        yield handle
    finally:
        handle.stop()
