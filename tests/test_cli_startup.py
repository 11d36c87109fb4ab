"""`distillery` as a user runs it (a subprocess): database URLs in their common forms, startup
errors as one line on stderr with a non-zero exit (never a traceback), defaults told truly."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.config import Settings
from tests.conftest import PG_BASE, _pg_admin, _run

ROOT = Path(__file__).resolve().parent.parent
PG = PG_BASE.split("://", 1)[1]  # user@host:port


def distillery(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLERY_")}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=cwd,
        env={**clean, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def empty_pg_database() -> Iterator[str]:
    """A created, unmigrated Postgres database (what `createdb` leaves)."""
    name = f"distillery_cli_{uuid.uuid4().hex[:10]}"
    _run(_pg_admin(f"CREATE DATABASE {name}"))
    yield name
    _run(_pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def test_common_url_forms_get_the_async_driver() -> None:
    cases = {
        "postgresql://u:p@h:5432/d": "postgresql+asyncpg://u:p@h:5432/d",
        "postgres://u@h/d?ssl=require": "postgresql+asyncpg://u@h/d?ssl=require",
        "sqlite:///file.db": "sqlite+aiosqlite:///file.db",
        "sqlite:////abs/file.db": "sqlite+aiosqlite:////abs/file.db",
        "postgresql+asyncpg://h/d": "postgresql+asyncpg://h/d",
    }
    for given, expected in cases.items():
        assert Settings(database_url=given).database_url == expected


def test_db_upgrade_takes_plain_postgres_and_sqlite_urls(
    empty_pg_database: str, tmp_path: Path
) -> None:
    for scheme in ("postgresql", "postgres"):
        result = distillery(
            "db", "upgrade", "--database-url", f"{scheme}://{PG}/{empty_pg_database}", cwd=tmp_path
        )
        assert result.returncode == 0, result.stderr
    result = distillery(
        "db", "upgrade", cwd=tmp_path, env={"DISTILLERY_DATABASE_URL": "sqlite:///f.db"}
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "f.db").stat().st_size > 0


def test_bad_url_is_one_line(tmp_path: Path) -> None:
    line = assert_one_line_error(
        distillery("db", "upgrade", "--database-url", "not a url", cwd=tmp_path), "database_url"
    )
    assert "postgresql://" in line  # says what would work
    assert_one_line_error(
        distillery("serve", cwd=tmp_path, env={"DISTILLERY_DATABASE_URL": "mysql://h/d"}),
        "database_url",
        "mysql",
    )


@pytest.mark.parametrize("command", [["db", "upgrade"], ["serve", "--port", "0"], ["worker"]])
def test_missing_database_is_one_line(command: list[str], tmp_path: Path) -> None:
    missing = f"distillery_missing_{uuid.uuid4().hex[:8]}"
    url = f"postgresql://{PG.replace('@', ':s3cret@', 1) if '@' in PG else PG}/{missing}"
    line = assert_one_line_error(
        distillery(*command, "--database-url", url, cwd=tmp_path), missing, "does not exist"
    )
    assert "s3cret" not in line  # the password is not printed


def test_unreachable_database_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://postgres@127.0.0.1:{port}/distillery"
    for command in (["db", "upgrade"], ["serve", "--port", "0"], ["keys", "list"]):
        assert_one_line_error(distillery(*command, "--database-url", url, cwd=tmp_path), str(port))


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = distillery("serve", "--port", str(port), "--no-worker", cwd=tmp_path)
    assert_one_line_error(result, str(port), "in use")
    assert not (tmp_path / "distillery.db").exists()  # it stopped before touching the database


def test_worker_concurrency_default_is_told_truly() -> None:
    default = Settings.model_fields["worker_concurrency"].default
    result = CliRunner().invoke(cli, ["worker", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    flat = " ".join(result.output.replace("│", " ").split())
    assert f"DISTILLERY_WORKER_CONCURRENCY, {default})" in flat
    queue_doc = (ROOT / "docs" / "queue.md").read_text()
    table = queue_doc.split("## Settings", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \|", table, re.M)
    documented = {name.lower(): value.strip() for name, value in rows}
    assert documented["worker_concurrency"] == str(default)
    for name, value in documented.items():  # every number in the table is the code's
        field_default = Settings.model_fields[name].default
        if isinstance(field_default, int | float) and not isinstance(field_default, bool):
            assert float(value) == field_default, name
