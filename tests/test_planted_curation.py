"""A planted expansion run through the HTTP API: every class curation must catch, and every class
it must keep (tests/planted.py), with exact ROUGE-L (rouge_score) as the near-duplicate truth."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from typing import Any

import orjson
import pytest

from app.config import Settings
from tests import planted
from tests.factories import make_dataset, upload_seeds
from tests.test_expansion import start, wait_for
from workers.teachers.base import Generation, TeacherRequest, TeacherResult, Usage

THRESHOLD = 0.7


class PlantedTeacher:
    """Proposes the planted instructions in a fixed shuffled order, then nothing; answers each
    with its planted answer (a refusal for the refused class, a plain answer otherwise)."""

    backend = "scripted"
    model = "planted-model"

    def __init__(self, proposals: Sequence[str], answers: dict[str, str]) -> None:
        self.queue = list(proposals)
        self.answers = answers

    async def generate(self, requests: Sequence[TeacherRequest]) -> list[TeacherResult]:
        return [self._one(r) for r in requests]

    def _one(self, request: TeacherRequest) -> TeacherResult:
        prompt = str(request.messages[-1]["content"])
        if request.json_schema is not None or "Come up with" in prompt:
            count = 10
            batch, self.queue = self.queue[:count], self.queue[count:]
            text = orjson.dumps({"tasks": [{"instruction": t, "input": ""} for t in batch]})
            out = text.decode()
        else:
            out = next((a for q, a in self.answers.items() if q in prompt), None) or (
                "A clear answer starts with the key idea, adds a concrete example, and ends "
                "with a one-line summary the reader can remember."
            )
        usage = Usage(prompt_tokens=len(prompt.split()), completion_tokens=len(out.split()))
        return TeacherResult(generations=[Generation(out, "stop")], usage=usage, latency_s=0.0)

    async def aclose(self) -> None:
        pass


def rouge_l(a: str, b: str) -> float:
    scorer = pytest.importorskip("rouge_score.rouge_scorer").RougeScorer(["rougeL"])
    return float(scorer.score(a, b)["rougeL"].fmeasure)


def test_planted_classes_through_the_api(settings: Settings) -> None:
    fast = settings.model_copy(update={"poll_interval_seconds": 0.05})
    for a, b in planted.NEAR_DUPLICATES:
        assert rouge_l(a, b) >= THRESHOLD, (a, b)
    for a, b in planted.BORDERLINE:
        assert 0.45 <= rouge_l(a, b) < THRESHOLD, (a, b)

    classes: dict[str, list[str]] = {
        "clean": list(planted.CLEAN),
        "near_dup_pair": [t for pair in planted.NEAR_DUPLICATES for t in pair],
        "borderline_pair": [t for pair in planted.BORDERLINE for t in pair],
        "refused": [q for q, _ in planted.REFUSED],
        "non_text": list(planted.NON_TEXT),
        "non_english": list(planted.NON_ENGLISH),
        "leak": list(planted.LEAKS),
    }
    proposals = [t for texts in classes.values() for t in texts]
    random.Random(5).shuffle(proposals)
    teacher = PlantedTeacher(proposals, dict(planted.REFUSED))

    for client in start(fast, teacher):
        ds = make_dataset(client)["id"]
        upload_seeds(client, ds, [{"instruction": q, "output": a} for q, a in planted.SEEDS])
        bench = client.post(
            "/v1/benchmarks",
            json={"name": "my-test-set", "items": [{"text": t} for t in planted.BENCHMARK]},
        )
        assert bench.status_code == 201, bench.text
        rounds = len(proposals) // 40 + 2
        body = {
            "dataset_id": ds,
            "kind": "expansion",
            "params": {
                "target": 1000, "calls_per_round": 4, "candidates_per_call": 10,
                "parallel_rounds": 1, "max_rounds": rounds,
                "decontaminate": [bench.json()["id"]],
            },
        }  # fmt: skip
        response = client.post("/v1/jobs", json=body)
        assert response.status_code == 202, response.text
        job = wait_for(client, response.json()["id"])
        assert job["status"] == "succeeded", job
        rows: list[dict[str, Any]] = client.get(
            f"/v1/datasets/{ds}/examples", params={"origin": "generated", "limit": 1000}
        ).json()["data"]

    by_text: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_text.setdefault(row["instruction"], []).append(row)
    accepted = {t for t, rs in by_text.items() if any(r["status"] == "accepted" for r in rs)}

    figures: dict[str, dict[str, Any]] = {}
    for name, texts in classes.items():
        kept = [t for t in texts if t in accepted]
        reasons = Counter(
            r["reject_reason"]
            for t in texts
            for r in by_text.get(t, [])
            if r["status"] == "rejected"
        )
        figures[name] = {"n": len(texts), "accepted": len(kept), "reasons": dict(reasons)}
    print("\nplanted run:", orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode())

    # every proposal was judged (nothing silently lost)
    assert set(proposals) <= set(by_text), set(proposals) - set(by_text)
    assert figures["clean"]["accepted"] == len(planted.CLEAN), figures["clean"]
    assert figures["borderline_pair"]["accepted"] == 2 * len(planted.BORDERLINE)
    for a, b in planted.NEAR_DUPLICATES:
        assert (a in accepted) != (b in accepted), (a, b)
    for name in ("refused", "non_text", "non_english", "leak"):
        assert figures[name]["accepted"] == 0, (name, figures[name], classes[name])
    assert set(figures["leak"]["reasons"]) == {"contaminated"}, figures["leak"]
    # no accepted pair (seeds included) at exact ROUGE-L >= the threshold
    kept = sorted(accepted) + [q for q, _ in planted.SEEDS]
    for i, a in enumerate(kept):
        for b in kept[i + 1 :]:
            assert rouge_l(a, b) < THRESHOLD, (a, b)
