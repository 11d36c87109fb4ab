"""The client in the `distillery` command, end to end: the real command (a subprocess) against a
real `distillery serve` (a subprocess on a free loopback port) whose teacher is the emulator."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from app.client.commands import parse_pairs
from app.client.watch import parse_sse
from tests.emulator_proc import EmulatorProcess, running_emulator

DISTILLERY = str(Path(sys.executable).parent / "distillery")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Service:
    url: str
    env: dict[str, str]
    process: subprocess.Popen[str]

    def run(self, *args: str, api_key: str | None = None) -> subprocess.CompletedProcess[str]:
        """`distillery ARGS` against this service."""
        env = {**self.env, "DISTILLERY_URL": self.url, "COLUMNS": "200"}
        if api_key is not None:
            env["DISTILLERY_API_KEY"] = api_key
        return subprocess.run(
            [DISTILLERY, *args], env=env, capture_output=True, text=True, timeout=180
        )

    def ok(self, *args: str, api_key: str | None = None) -> str:
        result = self.run(*args, api_key=api_key)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result.stdout.strip()


@contextmanager
def serving(
    database_url: str, emulator: EmulatorProcess, cwd: Path, port: int | None = None, **env: str
) -> Iterator[Service]:
    port = port or free_port()
    full_env = {
        **os.environ,
        "DISTILLERY_DATABASE_URL": database_url,
        "DISTILLERY_TEACHER__BASE_URL": emulator.base_url,
        "DISTILLERY_POLL_INTERVAL_SECONDS": "0.1",
        **env,
    }
    process = subprocess.Popen(
        [DISTILLERY, "serve", "--port", str(port)],
        env=full_env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()[1][-2000:]
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield Service(url, full_env, process)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorProcess]:
    with running_emulator(model="teacher", base_latency=0.02) as emu:
        yield emu


def test_end_to_end(database_url: str, emulator: EmulatorProcess, tmp_path: Path) -> None:
    with serving(database_url, emulator, tmp_path) as service:
        ds = service.ok(
            "datasets", "create", "capitals", "--description", "world capitals",
            "--license", "cc-by-4.0",
        )  # fmt: skip
        assert service.ok("datasets", "show", "capitals", "--json").count(ds) == 1

        # JSONL, one duplicate of the first line
        jsonl = tmp_path / "seeds.jsonl"
        jsonl.write_text(
            '{"instruction": "What is the capital of France?"}\n\n'
            '{"instruction": "Name the capital of Japan.", "output": "Tokyo"}\n'
            '{"instruction": "What is the capital of France?"}\n'
        )
        assert service.ok("seeds", "push", ds, str(jsonl)) == "inserted 2, duplicates 1"
        # rerunning is safe: everything is a duplicate now
        assert service.ok("seeds", "push", ds, str(jsonl)) == "inserted 0, duplicates 3"

        # JSON: a list, and {"examples": [...]}
        listed = tmp_path / "list.json"
        listed.write_text(json.dumps([{"instruction": "What is the capital of Peru?"}]))
        assert service.ok("seeds", "push", ds, str(listed)) == "inserted 1, duplicates 0"
        wrapped = tmp_path / "wrapped.json"
        wrapped.write_text(json.dumps({"examples": [{"instruction": "Capital of Chile?"}]}))
        assert service.ok("seeds", "push", ds, str(wrapped)) == "inserted 1, duplicates 0"

        # CSV with a header row; an empty cell is an absent field; metadata holds JSON
        table = tmp_path / "seeds.csv"
        with table.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["instruction", "input", "output", "metadata"])
            writer.writerow(["Capital of Kenya?", "", "", '{"src": "csv"}'])
            writer.writerow(["Capital of Egypt,\nplease?", "", "Cairo", ""])
        assert service.ok("seeds", "push", ds, str(table)) == "inserted 2, duplicates 0"

        # a Hugging Face datasets folder, written by the real library; in chunks of 2 rows
        import datasets

        hf = tmp_path / "hf"
        rows = [{"instruction": f"Capital number {i}?", "output": None} for i in range(5)]
        datasets.Dataset.from_list(rows).save_to_disk(str(hf))
        pushed = service.ok("seeds", "push", ds, str(hf), "--chunk-rows", "2")
        assert pushed == "inserted 5, duplicates 0"

        # a bad line: its number and field, exit 1, nothing stored (the good lines neither)
        bad = tmp_path / "bad.jsonl"
        bad.write_text('{"instruction": "Capital of Fiji?"}\n{"instruction": "x", "outptu": 1}\n')
        result = service.run("seeds", "push", ds, str(bad))
        assert result.returncode == 1
        assert result.stdout == ""
        assert "line 2" in result.stderr and "outptu" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        counts = json.loads(service.ok("datasets", "show", ds, "--json"))
        assert counts["total_examples"] == 11
        bad_csv = tmp_path / "bad.csv"
        bad_csv.write_text("instruction,output\nfine,yes\n ,no answer\n")
        result = service.run("seeds", "push", ds, str(bad_csv))
        assert (
            result.returncode == 1 and "line 3" in result.stderr and "instruction" in result.stderr
        )

        # a labeling job, watched live until it ends: exit 0 and the final counts
        result = service.run(
            "jobs", "start", ds, "--kind", "labeling",
            "--teacher", "temperature=0.2", "--teacher", "max_tokens=64", "--watch",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "succeeded: 9 of 9 accepted, 0 rejected, 0 failed"
        job = json.loads(service.ok("jobs", "list", "--dataset", "capitals", "--json"))[0]
        assert job["status"] == "succeeded" and job["progress"]["accepted"] == 9
        report = service.ok("jobs", "report", job["id"])
        assert "kept" in report and "tokens" in report
        # watching a finished job says the same and exits the same
        again = service.run("jobs", "watch", job["id"])
        assert (again.returncode, again.stdout.strip()) == (0, result.stdout.strip())

        # export: one row per prompt (2 seeds with answers, 9 labeled), no .part left; the
        # card beside it
        out = tmp_path / "export" / "capitals.jsonl"
        out.parent.mkdir()
        printed = service.ok("export", ds, "-o", str(out), "--format", "messages", "--card")
        lines = out.read_text().splitlines()
        assert len(lines) == 11
        assert all(json.loads(line)["messages"][-1]["role"] == "assistant" for line in lines)
        assert printed.splitlines()[0] == f"wrote 11 rows to {out}"
        assert not list(out.parent.glob("*.part"))
        card = (out.parent / "README.md").read_text()
        assert card.startswith("---\n") and "\nlicense: cc-by-4.0\n" in card

        # an error from the server is one line on stderr, exit 1
        result = service.run("jobs", "start", ds, "--kind", "labeling", "--param", "relabel=yes")
        assert result.returncode == 1
        assert len(result.stderr.strip().splitlines()) == 1
        assert "relabel" in result.stderr
        result = service.run("export", ds, "-o", str(tmp_path / "x.jsonl"), "--format", "nope")
        assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "x.jsonl").exists() and not (tmp_path / "x.jsonl.part").exists()

        # skills from YAML, listed; datasets listed and deleted
        skill = tmp_path / "skill.yaml"
        skill.write_text("name: geography\ndescription: answer in one sentence\n")
        skill_id = service.ok("skills", "create", str(skill))
        assert skill_id in service.ok("skills", "list")
        assert ds in service.ok("datasets", "list")
        other = service.ok("datasets", "create", "scratch")
        assert service.ok("datasets", "delete", "scratch") == f"deleted {other}"
        assert other not in service.ok("datasets", "list")


def test_auth_and_unreachable(
    sqlite_database_url: str, emulator: EmulatorProcess, tmp_path: Path
) -> None:
    with serving(sqlite_database_url, emulator, tmp_path, DISTILLERY_AUTH="true") as service:
        created = service.ok("keys", "create", "--tenant", "acme")
        key = created.splitlines()[-1].strip()
        result = service.run("datasets", "list")
        assert result.returncode == 1
        assert result.stderr.startswith("error: 401") and len(result.stderr.splitlines()) == 1
        ds = service.ok("datasets", "create", "mine", api_key=key)
        assert ds in service.ok("datasets", "list", "--api-key", key)
        url = service.url
    # the service is gone: one line naming the URL
    result = subprocess.run(
        [DISTILLERY, "datasets", "list", "--url", url], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert url in result.stderr and len(result.stderr.strip().splitlines()) == 1


def watched_job(
    service: Service, tmp_path: Path, name: str, prompts: int
) -> tuple[str, subprocess.Popen[str]]:
    """A labeling job of `prompts` questions in a new dataset, started through the client, and a
    `distillery jobs watch` of it running as a subprocess."""
    ds = service.ok("datasets", "create", name)
    seeds = tmp_path / "s.jsonl"
    seeds.write_text("".join(f'{{"instruction": "Question {i}?"}}\n' for i in range(prompts)))
    service.ok("seeds", "push", ds, str(seeds))
    job = service.ok("jobs", "start", ds, "--kind", "labeling")
    env = {**service.env, "DISTILLERY_URL": service.url}
    watcher = subprocess.Popen(
        [DISTILLERY, "jobs", "watch", job], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    return job, watcher


def test_watch_reconnects_across_a_restart(sqlite_database_url: str, tmp_path: Path) -> None:
    """The server goes away mid-job and comes back on the same port: the watch reconnects with
    Last-Event-ID and ends with the job. The job outlasts the server's shutdown grace (its open
    event stream is cut 5 s after SIGTERM, while the embedded worker goes on meanwhile)."""
    port = free_port()
    with running_emulator(model="teacher", base_latency=0.5) as slow:
        with serving(
            sqlite_database_url, slow, tmp_path, port=port, DISTILLERY_LABELING_CHUNK_SIZE="1",
            DISTILLERY_WORKER_CONCURRENCY="1",
        ) as service:  # fmt: skip
            job, watcher = watched_job(service, tmp_path, "slow", prompts=40)
            assert watcher.stderr is not None
            assert "Ctrl-C stops watching" in watcher.stderr.readline()  # it follows the job
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # some progress first
                state = httpx.get(f"{service.url}/v1/jobs/{job}").json()
                if state["progress"]["completed"] >= 2:
                    break
                time.sleep(0.2)
        assert watcher.poll() is None  # the server is down; the watch waits for it
        with serving(sqlite_database_url, slow, tmp_path, port=port):
            stdout, stderr = watcher.communicate(timeout=120)
    assert watcher.returncode == 0, stderr
    assert stdout.strip() == "succeeded: 40 of 40 accepted, 0 rejected, 0 failed"


def test_cancelled_job_exits_2(sqlite_database_url: str, tmp_path: Path) -> None:
    with running_emulator(model="teacher", base_latency=1.0) as slow, serving(
        sqlite_database_url, slow, tmp_path, DISTILLERY_LABELING_CHUNK_SIZE="1",
        DISTILLERY_WORKER_CONCURRENCY="1",
    ) as service:  # fmt: skip
        job, watcher = watched_job(service, tmp_path, "to-cancel", prompts=20)
        assert "cancel requested" in service.ok("jobs", "cancel", job)
        stdout, stderr = watcher.communicate(timeout=120)
    assert watcher.returncode == 2, stderr
    assert stdout.startswith("cancelled: ")


def test_parse_pairs_json_values_and_dotted_keys() -> None:
    assert parse_pairs(
        ["target=100", "two_stage=false", "languages=[\"en\"]", "name=plain text",
         "filters.length.max=200", "filters.length.min=3", "seed=07x"],
        "--param",
    ) == {
        "target": 100, "two_stage": False, "languages": ["en"], "name": "plain text",
        "filters": {"length": {"max": 200, "min": 3}}, "seed": "07x",
    }  # fmt: skip


def test_parse_sse_follows_the_spec() -> None:
    lines = [
        ": keep-alive", "", "id: 1-1", "event: progress", 'data: {"a":', "data: 1}", "",
        "event: status", "data: {}", "", "id: 7", "event: finished", "data:x", "",
    ]  # fmt: skip
    events = list(parse_sse(lines))
    assert [(e.event, e.data, e.id) for e in events] == [
        ("progress", '{"a":\n1}', "1-1"),
        ("status", "{}", "1-1"),  # the last id persists
        ("finished", "x", "7"),
    ]


def test_seed_columns_are_the_schemas_fields() -> None:
    from app.client.seeds import FIELDS
    from app.schemas import ExampleIn

    assert tuple(ExampleIn.model_fields) == FIELDS
