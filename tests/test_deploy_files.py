"""Docker cannot run here: check that the compose file parses and runs commands we have."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from app.cli import cli

ROOT = Path(__file__).resolve().parent.parent


def resolve(argv: list[str]) -> str:
    """Check `argv` names a distillery command with valid options (`--help` after them stops
    before running it; an unknown command or option fails first). Returns the help text."""
    assert argv[0] == "distillery", argv
    result = CliRunner().invoke(cli, [*argv[1:], "--help"])
    assert result.exit_code == 0, f"{argv}: {result.output}"
    return result.output


def test_compose_file_parses_and_commands_exist() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"db", "migrate", "api", "worker"}
    assert services["db"]["healthcheck"]["test"]
    assert "pgdata" in compose["volumes"]
    assert (
        services["worker"]["deploy"]["resources"]["reservations"]["devices"][0]["driver"]
        == "nvidia"
    )
    assert services["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for name in ("migrate", "api", "worker"):
        resolve(services[name]["command"])
        assert services[name]["environment"]["DISTILLERY_DATABASE_URL"].startswith(
            "postgresql+asyncpg://"
        )


def test_dockerfile_targets_and_commands() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "AS api" in text and "AS worker" in text
    api_stage = text.split("AS api", 1)[1].split("FROM ", 1)[0]
    assert "[vllm]" not in api_stage  # the API image has no GPU packages
    for line in text.splitlines():
        if line.startswith("CMD [") and "distillery" in line:
            resolve(yaml.safe_load(line[len("CMD ") :]))


def test_resolve_rejects_unknown_commands() -> None:
    assert "Run the API" in resolve(shlex.split("distillery serve --port 1"))
    with pytest.raises(AssertionError):
        resolve(shlex.split("distillery no-such-command"))
    with pytest.raises(AssertionError):
        resolve(shlex.split("distillery serve --no-such-option"))
