"""Rationales (`params.rationale`) for labeling, expansion and evol: the reasoning stored apart
from the answer, unreadable replies asked again, and each export placement."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from app.config import Settings
from app.export import think_block, to_alpaca, to_messages, with_rationale
from tests.evol_teacher import EvolTeacher
from tests.factories import make_dataset, upload_seeds
from tests.selfinstruct_teacher import SelfInstructTeacher
from tests.test_expansion import export, fast, start, wait_for  # noqa: F401  (fixture)
from workers.methods.common import (
    RATIONALE_SCHEMA,
    answer_example,
    answer_request,
    read_rationales,
    to_retry,
)
from workers.teachers.base import (
    Generation,
    SamplingParams,
    TeacherBadResponse,
    TeacherRequest,
    TeacherResult,
)

QUESTIONS = [
    {"instruction": "Why is the sky blue on a clear day?"},
    {"instruction": "What causes the tides along the coast?"},
    {"instruction": "How do bees find their way home? zqbroken"},  # first reply not JSON
    {"instruction": "Name the capital of Japan.", "output": "Tokyo"},  # answered: no rationale
    {
        "instruction": "Plan a short trip",
        "messages": [
            {"role": "user", "content": "I have two days in Lisbon."},
            {"role": "assistant", "content": "Nice! What do you enjoy?"},
            {"role": "user", "content": "Food and old streets: plan my trip."},
        ],
    },
]


def quick(settings: Settings) -> Settings:
    return settings.model_copy(update={"retry_base_seconds": 0.05, "retry_max_seconds": 0.2})


def test_labeling_stores_rationale_and_exports_each_form(fast: Settings) -> None:  # noqa: F811
    teacher = EvolTeacher(seed=5)
    for client in start(quick(fast), teacher):
        ds = make_dataset(client)["id"]
        upload_seeds(client, ds, QUESTIONS)
        body = {"dataset_id": ds, "kind": "labeling", "params": {"rationale": True}}
        job = wait_for(client, client.post("/v1/jobs", json=body).json()["id"])
        assert job["status"] == "succeeded", job
        assert job["progress"]["completed"] == job["progress"]["accepted"] == 4
        assert teacher.broken  # the unreadable reply was asked again, not stored
        labeled = client.get(f"/v1/datasets/{ds}/examples", params={"origin": "generated"}).json()[
            "data"
        ]
        assert len(labeled) == 4
        for row in labeled:
            assert row["rationale"].startswith("First, consider")
            assert row["output"].startswith("Here is a careful answer")  # the answer alone
            raw = orjson.loads(row["raw_output"])
            assert raw == {"rationale": row["rationale"], "answer": row["output"]}
        answers = {r["instruction"]: r for r in labeled}

        def expected(instruction: str, answers: dict[str, Any] = answers) -> str:
            row = answers[instruction]
            return think_block(row["rationale"], row["output"])

        # think (the default): the answer after a <think> block, wherever the format puts it
        alpaca = export(client, ds)
        assert len(alpaca) == 5
        for row in alpaca:
            if row["instruction"] == "Name the capital of Japan.":
                assert row == {"instruction": row["instruction"], "input": "", "output": "Tokyo"}
            elif row.get("history"):  # the conversation, in LLaMA-Factory's form
                assert row["output"] == expected("Plan a short trip")
            else:
                assert row["output"] == expected(row["instruction"])
                assert "rationale" not in row
        messages = export(client, ds, format="messages")
        thought = [m["messages"][-1]["content"] for m in messages]
        assert sum(t.startswith("<think>\n") for t in thought) == 4 and "Tokyo" in thought
        assert expected("Plan a short trip") in thought
        sharegpt = export(client, ds, format="sharegpt")
        assert sum(r["conversations"][-1]["value"].startswith("<think>") for r in sharegpt) == 4
        completions = export(client, ds, format="prompt_completion")
        texts = [
            c["completion"] if isinstance(c["completion"], str) else c["completion"][0]["content"]
            for c in completions
        ]
        assert sum(t.startswith("<think>\n") for t in texts) == 4
        # field: a separate key, the answer alone where it was
        fields = export(client, ds, rationale="field")
        with_key = [r for r in fields if "rationale" in r]
        assert len(with_key) == 4
        assert all(r["output"] == answers_of(answers, r)["output"] for r in with_key)
        assert all(r["rationale"] == answers_of(answers, r)["rationale"] for r in with_key)
        chat = export(client, ds, format="messages", rationale="field")
        assert sum("rationale" in r for r in chat) == 4
        assert not any(m["messages"][-1]["content"].startswith("<think>") for m in chat)
        # none: left out
        plain = export(client, ds, rationale="none", format="messages")
        assert not any("rationale" in r for r in plain)
        assert not any(m["messages"][-1]["content"].startswith("<think>") for m in plain)
        assert client.get(f"/v1/datasets/{ds}/export", params={"rationale": "x"}).status_code == 422


def answers_of(answers: dict[str, dict[str, Any]], row: dict[str, Any]) -> dict[str, Any]:
    if row.get("history"):
        return answers["Plan a short trip"]
    return answers[row["instruction"]]


class ExpansionTeacher:
    """Self-Instruct proposals from one double, rationale answers from the other."""

    backend = "scripted"
    model = "mixed-model"

    def __init__(self) -> None:
        self.proposer = SelfInstructTeacher(seed=7)
        self.answerer = EvolTeacher(seed=7)

    async def generate(self, requests: Sequence[TeacherRequest]) -> list[TeacherResult]:
        results = []
        for request in requests:
            double: Any = (
                self.answerer if request.json_schema == RATIONALE_SCHEMA else self.proposer
            )
            results += await double.generate([request])
        return results

    async def aclose(self) -> None:
        pass


def test_expansion_and_evol_answers_carry_rationales(fast: Settings) -> None:  # noqa: F811
    for client in start(fast, ExpansionTeacher()):
        ds = make_dataset(client)["id"]
        upload_seeds(client, ds, [{"instruction": f"Seed task {i}: define kalo{i} mine{i} rusa{i}",
                                   "output": "x"} for i in range(8)])  # fmt: skip
        body = {"dataset_id": ds, "kind": "expansion",
                "params": {"target": 12, "calls_per_round": 2, "rationale": True}}  # fmt: skip
        job = wait_for(client, client.post("/v1/jobs", json=body).json()["id"])
        assert job["status"] == "succeeded" and job["progress"]["accepted"] == 12, job
        rows = client.get(
            f"/v1/datasets/{ds}/examples",
            params={"job_id": job["id"], "status": "accepted", "limit": 100},
        ).json()["data"]
        assert len(rows) == 12 and all(r["rationale"] and r["output"] for r in rows)
    for client in start(fast, EvolTeacher(seed=8)):
        ds = make_dataset(client)["id"]
        upload_seeds(client, ds, [{"instruction": f"Seed task {i}: define kalo{i} mine{i} rusa{i}",
                                   "output": "x"} for i in range(3)])  # fmt: skip
        body = {"dataset_id": ds, "kind": "evol", "params": {"generations": 2, "rationale": True}}
        job = wait_for(client, client.post("/v1/jobs", json=body).json()["id"])
        assert job["status"] == "succeeded" and job["progress"]["accepted"] == 6, job
        rows = export(client, ds, origin="generated", rationale="field")
        assert len(rows) == 6 and all(r["rationale"].startswith("First") for r in rows)


def test_rationale_combinations_that_cannot_work_are_422(fast: Settings) -> None:  # noqa: F811
    for client in start(fast, EvolTeacher()):
        ds = make_dataset(client)["id"]
        upload_seeds(client, ds, [{"instruction": "Why is the sky blue on a clear day?"}])
        for kind, params, teacher in (
            ("labeling", {"rationale": True}, {"top_logprobs": 5}),
            ("expansion", {"target": 5, "rationale": True, "two_stage": False}, {}),
            ("evol", {"rationale": True, "answer": False}, {}),
        ):
            body = {"dataset_id": ds, "kind": kind, "params": params, "teacher": teacher}
            response = client.post("/v1/jobs", json=body)
            assert response.status_code == 422, (kind, response.text)
            assert response.json()["error"]["details"][0]["loc"] == ["body", "params", "rationale"]


def _result(text: str, finish: str = "stop") -> TeacherResult:
    return TeacherResult(generations=[Generation(text, finish)])


def test_replies_are_validated_never_stored_half() -> None:
    good = (
        '```json\n{"rationale": "Because light scatters.", "answer": "Rayleigh scattering."}\n```'
    )
    half = '{"rationale": "Because light scatters.", "answer": ""}'
    prose = "Rayleigh scattering."
    cut = '{"rationale": "Because light scat'
    results, reasoning = read_rationales(
        [_result(good), _result(half), _result(prose), _result(cut, "length")], True
    )
    assert results[0].generations[0].text == "Rayleigh scattering."
    assert reasoning[0] is not None and reasoning[0].rationale == "Because light scatters."
    assert reasoning[0].raw == good
    for bad in (1, 2):  # asked again, as a malformed body is
        assert isinstance(results[bad].error, TeacherBadResponse) and reasoning[bad] is None
    assert to_retry(results) == [1, 2]
    example = answer_example(
        item_index=3,
        instruction="Why is the sky blue?",
        input="",
        result=results[3],
        filter_names=[],  # even without the truncation filter: never the JSON fragment
        prompt_id="labeling",
        prompt_version="v1",
        sampling=SamplingParams(),
        meta={},
        reasoning=reasoning[3],
    )
    assert example.status == "rejected" and example.reject_reason == "truncated"
    assert example.output is None and example.raw_output == cut
    assert read_rationales([_result(prose)], False)[0][0].generations[0].text == prose
    request = answer_request(
        "system", "Why?", "", sampling=SamplingParams(), request_id="r", rationale=True
    )
    assert request.json_schema == RATIONALE_SCHEMA
    assert request.messages[-1]["content"].startswith("Why?")
    assert '"rationale"' in request.messages[-1]["content"]


def test_export_placements_leave_rows_without_rationale_alone() -> None:
    conversation = {
        "instruction": "Plan a trip",
        "input": "",
        "output": "Day 1: Alfama.",
        "rationale": "Two days, food and old streets.",
        "messages": [
            {"role": "user", "content": "Plan my trip."},
            {"role": "assistant", "content": "Day 1: Alfama."},
        ],
    }
    think = with_rationale(to_messages, "think")(conversation, None)
    assert think["messages"][-1]["content"] == think_block(
        "Two days, food and old streets.", "Day 1: Alfama."
    )
    assert len(think["messages"]) == 2
    plain = {**conversation, "rationale": None}
    for mode in ("think", "field", "none"):
        assert with_rationale(to_messages, mode)(plain, None) == to_messages(plain, None)
        assert with_rationale(to_alpaca, mode)(plain, None) == to_alpaca(plain, None)
    field = with_rationale(to_alpaca, "field")(conversation, None)
    assert field["output"] == "Day 1: Alfama." and field["rationale"].startswith("Two days")
