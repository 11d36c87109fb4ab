"""The walk-throughs, run as written against `distillery serve` (a subprocess on a free loopback
port, SQLite file, the emulator as teacher): the README's, with the `distillery` client, and
docs/api.md's, with curl. Each must print what its page shows."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.emulator_proc import running_emulator

ROOT = Path(__file__).resolve().parent.parent


def walkthrough(page: str = "README.md") -> tuple[str, list[str]]:
    """The bash block after the walkthrough marker, and the `# -> ...` results it shows."""
    readme = (ROOT / page).read_text()
    block = readme.split("<!-- walkthrough -->", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    return block, [m.strip() for m in re.findall(r"^# -> (.*)$", block, re.MULTILINE)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("page", ["README.md", "docs/api.md"])
def test_walkthrough_gives_the_shown_results(page: str, tmp_path: Path) -> None:
    script, shown = walkthrough(page)
    assert len(shown) == 3
    port = free_port()
    with running_emulator(model="teacher", base_latency=0.05) as emulator:
        env = {
            **os.environ,
            "DISTILLERY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'distillery.db'}",
            "DISTILLERY_TEACHER__BASE_URL": emulator.base_url,
            "DISTILLERY_POLL_INTERVAL_SECONDS": "0.1",
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            work = tmp_path / "work"  # the files the walk-through writes
            work.mkdir()
            result = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", script],
                env={
                    **env,
                    "BASE": f"http://127.0.0.1:{port}",  # curl
                    "DISTILLERY_URL": f"http://127.0.0.1:{port}",  # the client
                    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
                },
                cwd=work,
                capture_output=True,
                text=True,
                timeout=120,
            )
        finally:
            server.send_signal(signal.SIGTERM)
            _, stderr = server.communicate(timeout=30)
    assert result.returncode == 0, result.stderr
    printed = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    assert printed == shown, (printed, stderr[-2000:])
    # uvicorn re-raises the SIGTERM it handled, after a graceful shutdown
    assert "Application shutdown complete" in stderr
