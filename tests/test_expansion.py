"""Labeling and Self-Instruct expansion end to end through HTTP, with a worker in the server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from app.config import Settings
from app.main import create_app
from tests.conftest import LiveServer
from tests.factories import make_dataset, upload_seeds
from tests.selfinstruct_teacher import SelfInstructTeacher, vocabulary
from workers import runner
from workers.curation import dedup
from workers.methods import METHODS

SKILL = {
    "name": "trivia",
    "description": "answer questions about invented words {{ 7*7 }}",
    "guidelines": "be brief",
}


class WorkerServer(LiveServer):
    """The API with an in-process worker, as `distillery serve` runs it."""

    def __init__(self, settings: Settings, teacher: Any, concurrency: int = 2) -> None:
        worker = runner.embedded_worker(settings, teacher, methods=METHODS, concurrency=concurrency)
        super().__init__(settings, create_app(settings, background=[worker]))


def seeds(n: int = 20) -> list[dict[str, str]]:
    words = vocabulary(200, seed=99)
    return [
        {
            "instruction": f"Seed task {i}: define {' '.join(words[i * 5 : i * 5 + 5])}",
            "output": f"A definition of {words[i * 5]}.",
        }
        for i in range(n)
    ]


def wait_for(client: httpx.Client, job_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job  # type: ignore[no-any-return]
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def export(client: httpx.Client, ds: str, **params: Any) -> list[dict[str, Any]]:
    response = client.get(f"/v1/datasets/{ds}/export", params=params)
    assert response.status_code == 200
    return [orjson.loads(line) for line in response.content.splitlines()]


@pytest.fixture
def fast(settings: Settings) -> Settings:
    return settings.model_copy(update={"poll_interval_seconds": 0.05})


def start(settings: Settings, teacher: Any, concurrency: int = 2) -> Iterator[httpx.Client]:
    server = WorkerServer(settings, teacher, concurrency).start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            yield client
    finally:
        server.stop()


def assert_no_near_duplicates(instructions: list[str]) -> None:
    index = dedup.NearDupIndex()
    for text in instructions:
        score, match = index.max_similarity(text)
        assert score < 0.7, f"{text!r} ~ {instructions[match]!r} ({score:.2f})"
        index.add(text)


def test_expansion_reaches_target_with_provenance(fast: Settings) -> None:
    teacher = SelfInstructTeacher(seed=1)
    for client in start(fast, teacher):
        ds = make_dataset(client)["id"]
        upload_seeds(client, ds, seeds())
        skill = client.post("/v1/skills", json=SKILL).json()
        body = {
            "dataset_id": ds,
            "kind": "expansion",
            "skill_id": skill["id"],
            "params": {"target": 300, "calls_per_round": 8, "candidates_per_call": 10},
            "teacher": {"temperature": 0.9, "max_tokens": 512, "seed": 3},
        }
        job = wait_for(client, client.post("/v1/jobs", json=body).json()["id"])
        assert job["status"] == "succeeded", job
        assert job["stop_reason"] == "target reached"
        assert job["progress"]["accepted"] == 300
        rows = export(client, ds, origin="generated", metadata=True)
        assert len(rows) == 300
        instructions = [r["instruction"] for r in rows]
        assert len(set(instructions)) == 300 and all(
            i and r["output"] for i, r in zip(instructions, rows, strict=True)
        )
        assert_no_near_duplicates([s["instruction"] for s in seeds()] + instructions)
        for meta in (r["metadata"] for r in rows):
            assert meta["method"] == "expansion" and meta["job_id"] == job["id"]
            assert meta["prompt_id"] == "expansion/answer" and meta["prompt_version"] == "v1"
            assert meta["teacher_backend"] == "scripted" and meta["teacher_model"] == teacher.model
        for fmt, key in (("messages", "messages"), ("sharegpt", "conversations")):
            converted = export(client, ds, origin="generated", format=fmt)
            assert len(converted) == 300 and all(len(r[key]) == 2 for r in converted)
        examples = client.get(
            f"/v1/datasets/{ds}/examples", params={"origin": "generated", "limit": 5}
        ).json()["data"]
        assert (
            examples[0]["sampling"]["temperature"] == 0.9
            and examples[0]["usage"]["completion_tokens"] > 0
        )
        assert examples[0]["raw_output"]
        report = client.get(f"/v1/jobs/{job['id']}/report").json()
        assert report["accepted"] == 300
        assert report["candidates"] == report["accepted"] + report["rejected"] + report["pending"]
        assert sum(report["rejected_by_reason"].values()) == report["rejected"]
        assert (
            report["tokens"]["total"]
            == report["tokens"]["prompt"] + report["tokens"]["completion"]
            > 0
        )
        assert report["diversity"]["instructions"] == 300 and report["diversity"]["leading_words"]


def test_hostile_teacher_is_curated(fast: Settings) -> None:
    teacher = SelfInstructTeacher(seed=2, hostile=True, seeds=[s["instruction"] for s in seeds()])
    for client in start(fast, teacher):
        ds = make_dataset(client)["id"]
        upload_seeds(client, ds, seeds())
        body = {
            "dataset_id": ds,
            "kind": "expansion",
            "params": {"target": 150, "calls_per_round": 8},
        }
        job = wait_for(client, client.post("/v1/jobs", json=body).json()["id"])
        assert job["status"] == "succeeded", job
        report = client.get(f"/v1/jobs/{job['id']}/report").json()
        reasons = report["rejected_by_reason"]
        for reason in (
            "duplicate",
            "near_duplicate",
            "non_text",  # the injected "Draw a picture of ..." (the default filters since issue 11)
            "refusal",
            "unparseable",
            "truncated",
        ):
            assert reasons.get(reason, 0) > 0, (reason, reasons, teacher.injected)
        rows = export(client, ds, origin="generated")
        assert len(rows) == 150
        seed_set = {s["instruction"] for s in seeds()}
        assert not any(r["instruction"] in seed_set for r in rows)
        assert not any("picture" in r["instruction"] or "As an AI" in r["output"] for r in rows)
        assert_no_near_duplicates([*seed_set, *(r["instruction"] for r in rows)])
        rejected = client.get(
            f"/v1/datasets/{ds}/examples", params={"status": "rejected", "limit": 1000}
        ).json()["data"]
        assert all(
            r["reject_reason"] and r["raw_output"] is not None
            for r in rejected
            if r["reject_reason"] != "over_target"
        )


def test_parallel_rounds_keep_target_exact(fast: Settings) -> None:
    teacher = SelfInstructTeacher(seed=3)
    for client in start(fast, teacher, concurrency=4):
        ds = make_dataset(client)["id"]
        upload_seeds(client, ds, seeds())
        body = {
            "dataset_id": ds,
            "kind": "expansion",
            "params": {"target": 200, "parallel_rounds": 4, "calls_per_round": 4},
        }
        job = wait_for(client, client.post("/v1/jobs", json=body).json()["id"])
        assert job["status"] == "succeeded" and job["progress"]["accepted"] == 200
        rows = export(client, ds, origin="generated")
        assert len(rows) == 200
        assert_no_near_duplicates([r["instruction"] for r in rows])


def test_labeling_answers_pending_examples(fast: Settings) -> None:
    for client in start(fast, SelfInstructTeacher(seed=4)):
        ds = make_dataset(client)["id"]
        questions = [
            {"instruction": f"Question {i}: what is {w}?"} for i, w in enumerate(vocabulary(40))
        ]
        upload_seeds(client, ds, questions)
        body = {"dataset_id": ds, "kind": "labeling", "params": {"chunk_size": 16}}
        job = wait_for(client, client.post("/v1/jobs", json=body).json()["id"])
        assert job["status"] == "succeeded", job
        assert job["progress"]["completed"] == 40 and job["progress"]["accepted"] == 40
        rows = export(client, ds, origin="generated", metadata=True)
        assert sorted(r["instruction"] for r in rows) == sorted(q["instruction"] for q in questions)
        assert all(r["output"].startswith("Here is a careful answer") for r in rows)
        assert all(r["metadata"]["prompt_id"] == "labeling" for r in rows)


def test_tiny_transformers_teacher_ends_cleanly(fast: Settings, tmp_path: Path) -> None:
    """A real (random, offline) model writes gibberish: the job must end and say why."""
    from tests.tiny_model import build_tiny_model
    from workers.teachers.transformers import TransformersTeacher

    teacher = TransformersTeacher(model=str(build_tiny_model(tmp_path / "tiny")), device="cpu")
    for client in start(fast, teacher):
        ds = make_dataset(client)["id"]
        upload_seeds(client, ds, seeds(6))
        body = {"dataset_id": ds, "kind": "expansion",
                "params": {"target": 20, "max_rounds": 2, "calls_per_round": 2,
                           "demos_per_prompt": 2, "candidates_per_call": 3},
                "teacher": {"max_tokens": 24, "seed": 1}}  # fmt: skip
        job = wait_for(client, client.post("/v1/jobs", json=body).json()["id"], timeout=300)
        assert job["status"] == "succeeded", job
        assert job["stop_reason"] == "round limit reached (2 rounds)"
        assert job["progress"]["accepted"] < 20
        report = client.get(f"/v1/jobs/{job['id']}/report").json()
        assert report["rejected"] > 0 and report["tokens"]["completion"] > 0
        assert set(report["rejected_by_reason"]) <= {
            "unparseable", "truncated", "too_short", "too_long", "bad_start", "empty",
            "near_duplicate", "duplicate", "refusal", "blocklist", "repeats_input", "over_target",
            "non_text", "wrong_language",
        }  # fmt: skip
        # whatever it accepted is exported, with the model recorded as its teacher
        rows = export(client, ds, origin="generated", metadata=True)
        assert len(rows) == report["accepted"]
        assert all(r["metadata"]["teacher_backend"] == "transformers" for r in rows)
