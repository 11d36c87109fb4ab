"""Choosing the teacher backend (``auto``), building it, and ``distillery teacher check``."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import workers.teachers as teachers
from app.config import TeacherSettings
from tests.emulator_proc import EmulatorProcess, running_emulator
from workers.teachers import TeacherMissingExtra, make_teacher, resolve_backend
from workers.teachers.check import check_teacher, main
from workers.teachers.openai import OpenAITeacher

MODEL = "check-model"
REPO_ROOT = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).parent / "distillery"


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorProcess]:
    with running_emulator(model=MODEL, base_latency=0.05) as emu:
        yield emu


@pytest.fixture
def closed_port_url() -> str:
    """An OpenAI base URL where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


# --- choosing the backend ---------------------------------------------------------------------


def fake_environment(
    monkeypatch: pytest.MonkeyPatch, *, modules: set[str], gpu: bool = False
) -> None:
    monkeypatch.setattr(teachers, "installed", lambda name: name in modules)
    monkeypatch.setattr(teachers, "cuda_available", lambda: gpu)


@pytest.mark.parametrize(
    ("modules", "gpu", "model", "base_url", "expected"),
    [
        ({"vllm", "torch", "transformers"}, True, "m", "http://h/v1", "vllm"),
        ({"vllm", "torch", "transformers"}, False, "m", "http://h/v1", "transformers"),
        ({"torch", "transformers"}, True, "m", None, "transformers"),
        ({"torch", "transformers"}, False, None, "http://h/v1", "openai"),
        ({"vllm", "torch"}, True, None, "http://h/v1", "openai"),
        (set(), False, "m", "http://h/v1", "openai"),
    ],
)
def test_auto_picks_the_backend(
    monkeypatch: pytest.MonkeyPatch,
    modules: set[str],
    gpu: bool,
    model: str | None,
    base_url: str | None,
    expected: str,
) -> None:
    fake_environment(monkeypatch, modules=modules, gpu=gpu)
    settings = TeacherSettings(backend="auto", model=model, base_url=base_url)
    assert resolve_backend(settings) == expected


def test_auto_with_nothing_configured_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_environment(monkeypatch, modules={"torch", "transformers"})
    with pytest.raises(ValueError, match="DISTILLERY_TEACHER__BASE_URL"):
        resolve_backend(TeacherSettings())


def test_explicit_backend_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_environment(monkeypatch, modules=set())
    assert resolve_backend(TeacherSettings(backend="vllm", model="m")) == "vllm"


def test_missing_library_is_a_missing_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_environment(monkeypatch, modules=set())
    with pytest.raises(TeacherMissingExtra, match="distillery\\[vllm\\]"):
        make_teacher(TeacherSettings(backend="vllm", model="m"))
    with pytest.raises(TeacherMissingExtra, match="transformers"):
        make_teacher(TeacherSettings(backend="transformers", model="m"))


async def test_make_openai_teacher_from_settings(caplog: pytest.LogCaptureFixture) -> None:
    settings = TeacherSettings(
        backend="auto",
        base_url="http://127.0.0.1:9/v1/",
        model="m",
        api_key="k",
        max_concurrency=7,
        request_timeout_s=3.0,
        max_retries=2,
    )
    settings = settings.model_copy(update={"model": None})  # no local model: openai
    with caplog.at_level(logging.INFO, logger="workers.teachers"):
        teacher = make_teacher(settings)
    assert isinstance(teacher, OpenAITeacher)
    assert (teacher.backend, teacher.base_url) == ("openai", "http://127.0.0.1:9/v1")
    assert (teacher.max_concurrency, teacher.request_timeout_s, teacher.max_retries) == (7, 3, 2)
    assert teacher._headers["Authorization"] == "Bearer k"
    [record] = [r for r in caplog.records if getattr(r, "action", None) == "teacher_selected"]
    assert record.backend == "openai"
    await teacher.aclose()


# --- teacher check ----------------------------------------------------------------------------


async def test_check_teacher_reports_latency_and_tokens(emulator: EmulatorProcess) -> None:
    settings = TeacherSettings(backend="openai", base_url=emulator.base_url, model=MODEL)
    report = await check_teacher(settings)
    assert (report.backend, report.model) == ("openai", MODEL)
    assert report.latency_s >= 0.05  # the emulator's latency
    assert report.completion_tokens > 0
    assert report.tokens_per_s == pytest.approx(report.completion_tokens / report.latency_s)


def test_main_ok(emulator: EmulatorProcess, capsys: pytest.CaptureFixture[str]) -> None:
    settings = TeacherSettings(backend="openai", base_url=emulator.base_url, model=MODEL)
    assert main(settings) == 0
    out = capsys.readouterr().out
    assert "openai" in out and MODEL in out and "latency" in out and "tokens/s" in out


def test_main_discovers_the_model(
    emulator: EmulatorProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(TeacherSettings(backend="openai", base_url=emulator.base_url)) == 0
    assert MODEL in capsys.readouterr().out


def test_main_no_server(closed_port_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    settings = TeacherSettings(backend="openai", base_url=closed_port_url, model=MODEL)
    assert main(settings) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.strip().splitlines()
    assert "no teacher server" in line and closed_port_url in line


def test_main_unknown_model(emulator: EmulatorProcess, capsys: pytest.CaptureFixture[str]) -> None:
    settings = TeacherSettings(backend="openai", base_url=emulator.base_url, model="nope")
    assert main(settings) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "unknown model 'nope'" in line and "404" in line


def test_main_nothing_configured(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_environment(monkeypatch, modules=set())
    assert main(TeacherSettings()) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "no teacher configured" in line


def test_main_missing_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_environment(monkeypatch, modules=set())
    assert main(TeacherSettings(backend="vllm", model="m")) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("teacher check failed: missing extra") and "vllm" in line


def test_main_with_a_local_transformers_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("transformers")
    from tests.tiny_model import build_tiny_model

    model_dir = str(build_tiny_model(tmp_path / "tiny"))
    settings = TeacherSettings(backend="transformers", model=model_dir, device="cpu")
    assert main(settings) == 0
    out = capsys.readouterr().out
    assert "transformers" in out and "tokens/s" in out


# --- the CLI command --------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLERY_TEACHER")}
    env["COLUMNS"] = "200"
    return subprocess.run(
        [str(CLI), "teacher", "check", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.skipif(not CLI.exists(), reason="the distillery script is not installed")
def test_cli_teacher_check(emulator: EmulatorProcess, closed_port_url: str) -> None:
    ok = run_cli("--backend", "openai", "--base-url", emulator.base_url, "--model", MODEL)
    assert ok.returncode == 0, ok.stderr
    assert MODEL in ok.stdout and "latency" in ok.stdout

    down = run_cli("--backend", "openai", "--base-url", closed_port_url, "--model", MODEL)
    assert down.returncode == 1
    assert "no teacher server" in down.stderr
