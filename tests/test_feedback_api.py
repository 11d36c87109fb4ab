"""Feedback jobs through the API: planning (prompt groups), the `preference` and `kto` exports,
`min_score` / `max_score` on every format, and the report's feedback section.

Candidates, scores and pairs are written through app.queue.complete_task, as the feedback
method hands them back, so these tests stand without the method itself.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import update

from app import queue
from app.models import Example
from app.outcomes import ExampleOut, PairOut, TaskOutcome
from app.state import Database
from tests.factories import make_dataset, upload_seeds
from tests.test_api_datasets import assert_error

WORKER = "test-worker"


def lines(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-ndjson"
    return [orjson.loads(line) for line in response.content.splitlines()]


def examples_by(client: httpx.Client, ds: str, **params: Any) -> dict[str, dict[str, Any]]:
    """The dataset's examples keyed by output (or instruction when there is none)."""
    found: dict[str, dict[str, Any]] = {}
    cursor = None
    while True:
        page = client.get(
            f"/v1/datasets/{ds}/examples",
            params={"limit": 500, **params, **({"cursor": cursor} if cursor else {})},
        ).json()
        for ex in page["data"]:
            found[ex["output"] if ex["output"] is not None else ex["instruction"]] = ex
        cursor = page["next_cursor"]
        if cursor is None:
            return found


def create_job(
    client: httpx.Client, ds: str, kind: str = "feedback", **params: Any
) -> httpx.Response:
    return client.post("/v1/jobs", json={"dataset_id": ds, "kind": kind, "params": params})


def start_job(client: httpx.Client, ds: str, kind: str = "feedback", **params: Any) -> str:
    response = create_job(client, ds, kind, **params)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def run_tasks(
    database: Database, job_id: str, outcome: Callable[[queue.ClaimedTask], TaskOutcome]
) -> list[queue.ClaimedTask]:
    """Claim every task of the job and complete each with `outcome(task)`."""
    done = []
    while True:
        async with database.transaction() as session:
            claimed = await queue.claim_tasks(
                session=session, worker=WORKER, lease_seconds=60, limit=100
            )
        if not claimed:
            return done
        for task in claimed:
            assert str(task.job_id) == job_id, "a task of another job is still queued"
            async with database.transaction() as session:
                await queue.complete_task(
                    session=session,
                    task_id=task.id,
                    worker=WORKER,
                    attempt=task.attempt,
                    outcome=outcome(task),
                )
            done.append(task)


async def planned_groups(database: Database, job_id: str) -> list[list[dict[str, Any]]]:
    """The `groups` of the job's task payloads, in task order (without running them)."""
    from sqlalchemy import select

    from app.models import Task

    async with database.reading() as session:
        payloads = (
            await session.scalars(
                select(Task.payload).where(Task.job_id == uuid.UUID(job_id)).order_by(Task.seq)
            )
        ).all()
    return [p["groups"] for p in payloads]


async def set_example(database: Database, example_id: str, **values: Any) -> None:
    async with database.transaction() as session:
        await session.execute(
            update(Example).where(Example.id == uuid.UUID(example_id)).values(**values)
        )


def judged(overall: float, job_id: str, **aspects: int) -> dict[str, Any]:
    """A pointwise judgment as the feedback method stores it in `scores`."""
    return {
        "overall": overall,
        "mode": "pointwise",
        "aspects": {a: {"score": s, "rationale": "because"} for a, s in aspects.items()},
        "judge": {
            "model": "teacher",
            "prompt_id": "judge",
            "prompt_version": "v1",
            "job_id": job_id,
        },
    }


# --- planning --------------------------------------------------------------------------------


SHARED = [
    {"instruction": "What is 2+2?", "output": "4"},
    {"instruction": "what is  2+2? ", "output": "four"},  # the same prompt, normalised
    {  # a conversation whose prompt is the same single user turn
        "messages": [
            {"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": "2+2=4"},
        ]
    },
    {"instruction": "Name a colour."},  # a prompt without an answer (pending)
    {
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Tell me a joke"},
            {"role": "assistant", "content": "joke A"},
        ]
    },
    {  # the same conversation up to its last user turn: one prompt with the one above
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Tell me a joke"},
            {"role": "assistant", "content": "joke B"},
        ]
    },
    {  # an earlier turn differs: another prompt
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hey!"},
            {"role": "user", "content": "Tell me a joke"},
            {"role": "assistant", "content": "joke C"},
        ]
    },
    {"instruction": "Translate cat", "input": "to French", "output": "chat"},
    {"instruction": "Translate cat\n\nto French", "output": "le chat"},  # the same user turn
    {"instruction": "A prompt rejected later", "output": "gone"},
]


async def test_planning_groups_prompts_with_their_answers_and_candidates(
    client: httpx.Client, database: Database
) -> None:
    ds = make_dataset(client)["id"]
    upload_seeds(client, ds, SHARED)
    ex = examples_by(client, ds)
    colour = ex["Name a colour."]["id"]
    await set_example(database, ex["gone"]["id"], status="rejected", reject_reason="contaminated")

    # a labeling job answers the pending prompt; its task also writes a rejected answer and a
    # generated root (as an expansion would)
    labeling = start_job(client, ds, "labeling")
    await run_tasks(
        database,
        labeling,
        lambda task: TaskOutcome(
            examples=[
                ExampleOut(0, "Name a colour.", output="Blue", source_id=colour),
                ExampleOut(
                    1,
                    "Name a colour.",
                    output="???",
                    source_id=colour,
                    status="rejected",
                    reject_reason="refusal",
                ),
                ExampleOut(2, "A generated task", output="generated answer"),
            ],
            completed=1,
        ),
    )
    # an earlier feedback job left candidates (one rejected by curation)
    first = start_job(client, ds, example_ids=[colour])
    await run_tasks(
        database,
        first,
        lambda task: TaskOutcome(
            examples=[
                ExampleOut(0, "Name a colour.", output="Red", status="candidate", source_id=colour),
                ExampleOut(
                    1,
                    "Name a colour.",
                    output="",
                    status="rejected",
                    reject_reason="empty",
                    source_id=colour,
                ),
            ],
            completed=1,
        ),
    )
    ex = examples_by(client, ds)
    # a relabel replaced an answer: only the current one is a response
    await set_example(database, ex["joke C"]["id"], superseded_by=uuid.UUID(ex["Blue"]["id"]))

    job = start_job(client, ds, chunk_size=2)
    assert client.get(f"/v1/jobs/{job}").json()["progress"]["total"] == 6
    chunks = await planned_groups(database, job)
    assert [len(c) for c in chunks] == [2, 2, 2]
    groups = {g["prompt_id"]: g["responses"] for c in chunks for g in c}
    ids = {k: v["id"] for k, v in ex.items()}
    assert groups == {
        ids["4"]: [ids["4"], ids["four"], ids["2+2=4"]],  # lowest root id holds the prompt
        colour: [ids["Blue"], ids["Red"]],  # the answer and the earlier candidate
        ids["joke A"]: [ids["joke A"], ids["joke B"]],
        ids["joke C"]: [],  # its own output was replaced (and the answer points elsewhere)
        ids["chat"]: [ids["chat"], ids["le chat"]],
        ids["generated answer"]: [ids["generated answer"]],
    }
    assert list(groups) == sorted(groups, key=uuid.UUID)  # prompt order

    # example_ids: an answer or candidate stands for its prompt; a named prompt brings its group
    job = start_job(client, ds, example_ids=[ids["Red"], ids["four"]])
    [chunk] = await planned_groups(database, job)
    assert {g["prompt_id"] for g in chunk} == {colour, ids["4"]}
    for bad in (ids["gone"], str(uuid.uuid4())):
        response = create_job(client, ds, example_ids=[ids["4"], bad])
        assert_error(response, 422, "validation_error")
        assert response.json()["error"]["details"][0]["loc"] == ["body", "params", "example_ids"]
        assert bad in response.json()["error"]["details"][0]["msg"]

    # origin picks groups by their roots' origin
    job = start_job(client, ds, origin="generated")
    assert [[g["prompt_id"] for g in c] for c in await planned_groups(database, job)] == [
        [ids["generated answer"]]
    ]
    job = start_job(client, ds, origin="seed", samples=0)  # groups without responses drop out
    assert client.get(f"/v1/jobs/{job}").json()["progress"]["total"] == 4

    # pairwise needs two responses per group (samples included)
    job = start_job(client, ds, mode="pairwise", samples=0)
    prompts = {g["prompt_id"] for c in await planned_groups(database, job) for g in c}
    assert prompts == {ids["4"], colour, ids["joke A"], ids["chat"]}
    job = start_job(client, ds, mode="pairwise", samples=1)
    assert client.get(f"/v1/jobs/{job}").json()["progress"]["total"] == 5  # not joke C

    # existing=false: only the teacher's samples are judged
    job = start_job(client, ds, existing=False, samples=2)
    planned = [g for c in await planned_groups(database, job) for g in c]
    assert len(planned) == 6 and all(g["responses"] == [] for g in planned)
    response = create_job(client, ds, existing=False, samples=0)
    assert_error(response, 422, "validation_error")
    assert response.json()["error"]["details"][0]["loc"] == ["body", "params", "samples"]


def test_nothing_to_judge_is_a_conflict(client: httpx.Client) -> None:
    ds = make_dataset(client)["id"]
    assert_error(create_job(client, ds), 409, "conflict")  # no examples at all
    upload_seeds(client, ds, [{"instruction": "Q1"}, {"instruction": "Q2", "output": "A2"}])
    assert_error(create_job(client, ds, samples=0, mode="pairwise"), 409, "conflict")
    response = create_job(client, ds, samples=0)  # pointwise judges the one answer
    assert response.status_code == 202, response.text
    assert response.json()["progress"]["total"] == 1
    for params in ({"samples": "2"}, {"mode": "both"}, {"chunk_size": 0}):
        assert_error(create_job(client, ds, **params), 422, "validation_error")


# --- exports ---------------------------------------------------------------------------------


def feedback_outcome(
    job_id: str, student_ids: dict[str, str], system_prompt: str | None = "You are a teacher."
) -> Callable[[queue.ClaimedTask], TaskOutcome]:
    """A feedback task's result: per prompt three teacher samples scored 9, 6 and 3 ("good",
    "mid", "bad"), every pair over the margin (so "mid" is chosen once and rejected once), and a
    prompt's existing response (a student's) scored 2 and beaten by "good"."""

    def outcome(task: queue.ClaimedTask) -> TaskOutcome:
        examples: list[ExampleOut] = []
        pairs: list[PairOut] = []
        updates: dict[str, dict[str, Any]] = {}
        for group in task.payload["groups"]:
            prompt = group["prompt_id"]
            base = len(examples)
            for offset, (name, score) in enumerate((("good", 9), ("mid", 6), ("bad", 3))):
                examples.append(
                    ExampleOut(
                        base + offset,
                        "prompt",
                        output=f"{name} answer to {prompt[-4:]}",
                        status="candidate",
                        source_id=prompt,
                        scores=judged(float(score), job_id, helpfulness=score, honesty=score + 1),
                    )
                )
            good, mid, bad = base, base + 1, base + 2
            pairs += [
                PairOut(prompt, good, mid, 3.0, "pointwise", 9.0, 6.0),
                PairOut(prompt, good, bad, 6.0, "pointwise", 9.0, 3.0),
                PairOut(prompt, mid, bad, 3.0, "pointwise", 6.0, 3.0),
            ]
            for response in group["responses"]:
                if response in student_ids.values():
                    updates[response] = judged(2.0, job_id, helpfulness=2, honesty=2)
                    pairs.append(PairOut(prompt, good, response, 7.0, "pointwise", 9.0, 2.0))
        return TaskOutcome(
            examples=examples,
            pairs=pairs,
            score_updates=updates,
            completed=len(task.payload["groups"]),
            system_prompt=system_prompt,
            summary={
                "prompts": len(task.payload["groups"]),
                "prompts_with_pair": len(task.payload["groups"]),
                "comparisons": 4,
                "disagreements": 1,
                "judge_failed": 1,
            },
        )

    return outcome


def trl_tokenizer(tmp_path: Path) -> Any:
    from transformers import AutoTokenizer

    from tests.tiny_model import build_tiny_model

    return AutoTokenizer.from_pretrained(build_tiny_model(tmp_path / "tiny"))


def load_jsonl(path: Path, rows: list[dict[str, Any]]) -> Any:
    """The rows through `datasets.load_dataset("json")`, as a trainer would read the file."""
    import datasets

    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return datasets.load_dataset("json", data_files=str(path), split="train")


async def test_preference_and_kto_exports_of_single_turn_prompts(
    client: httpx.Client, database: Database, tmp_path: Path
) -> None:
    from trl.data_utils import is_conversational, maybe_apply_chat_template

    ds = make_dataset(client)["id"]
    upload_seeds(
        client,
        ds,
        [
            {"instruction": "Explain gravity."},
            {"instruction": "Say hi", "input": "in French", "output": "student: hola"},
        ],
    )
    ex = examples_by(client, ds)
    gravity, hi = ex["Explain gravity."]["id"], ex["student: hola"]["id"]
    job = start_job(client, ds, samples=3)
    await run_tasks(database, job, feedback_outcome(job, {"hi": hi}))
    base = f"/v1/datasets/{ds}/export"

    rows = lines(client.get(base, params={"format": "preference"}))
    assert len(rows) == 7  # three pairs per prompt, and the student's answer beaten
    assert rows[0] == {
        "prompt": "Explain gravity.",
        "chosen": f"good answer to {gravity[-4:]}",
        "rejected": f"mid answer to {gravity[-4:]}",
    }
    student = [r for r in rows if r["rejected"] == "student: hola"]
    assert student == [
        {
            "prompt": "Say hi\n\nin French",
            "chosen": f"good answer to {hi[-4:]}",
            "rejected": "student: hola",
        }
    ]
    assert not any(is_conversational(r) for r in rows)

    # metadata: ids, margin, scores, judge
    meta = lines(client.get(base, params={"format": "preference", "metadata": "true"}))
    first = meta[0]["metadata"]
    assert first["prompt_id"] == gravity and first["job_id"] == job
    assert (first["margin"], first["chosen_score"], first["rejected_score"]) == (3.0, 9.0, 6.0)
    assert first["scores"] == {"chosen": 9.0, "rejected": 6.0}
    assert (first["chosen_origin"], meta[-1]["metadata"]["rejected_origin"]) == (
        "generated",
        "seed",
    )
    assert first["judge"]["job_id"] == job and first["judge"]["model"] == "teacher"
    candidates = examples_by(client, ds, status="candidate")
    assert {m["metadata"]["chosen_id"] for m in meta} == {
        candidates[f"{name} answer to {p[-4:]}"]["id"]
        for name in ("good", "mid")
        for p in (gravity, hi)
    }

    # min_score bounds the chosen side, max_score the rejected one
    kept = lines(client.get(base, params={"format": "preference", "min_score": 8}))
    assert len(kept) == 5 and all(r["chosen"].startswith("good") for r in kept)
    kept = lines(client.get(base, params={"format": "preference", "max_score": 2.5}))
    assert [r["rejected"] for r in kept] == ["student: hola"]
    kept = lines(client.get(base, params={"format": "preference", "min_score": 8, "max_score": 3}))
    assert len(kept) == 3  # good vs bad twice, good vs the student

    # job_id filters the pairs by the feedback job
    assert (
        lines(client.get(base, params={"format": "preference", "job_id": str(uuid.uuid4())})) == []
    )
    assert len(lines(client.get(base, params={"format": "preference", "job_id": job}))) == 7

    # kto: chosen sides true, rejected false; "mid" (both) is left out
    kto = lines(client.get(base, params={"format": "kto"}))
    assert sorted((r["completion"].split()[0], r["label"]) for r in kto) == [
        ("bad", False), ("bad", False), ("good", True), ("good", True), ("student:", False),
    ]  # fmt: skip
    assert {r["prompt"] for r in kto} == {"Explain gravity.", "Say hi\n\nin French"}
    kto = lines(client.get(base, params={"format": "kto", "min_score": 5, "metadata": "true"}))
    assert [(r["label"], r["metadata"]["score"]) for r in kto] == [(True, 9.0), (True, 9.0)]
    assert kto[0]["metadata"]["job_id"] == job

    # the candidates are not training data by themselves: default exports leave them out
    assert len(lines(client.get(base))) == 1  # the student's answer
    assert len(lines(client.get(base, params={"status": "candidate"}))) == 6

    # a side rejected afterwards (say, contaminated) drops its pairs and its kto row
    bad = examples_by(client, ds, status="candidate")[f"bad answer to {gravity[-4:]}"]["id"]
    await set_example(database, bad, status="rejected", reject_reason="contaminated")
    assert len(lines(client.get(base, params={"format": "preference"}))) == 5
    assert len(lines(client.get(base, params={"format": "kto"}))) == 4

    # trainers read the files: datasets.load_dataset("json"), TRL's chat template utilities
    tokenizer = trl_tokenizer(tmp_path)
    for fmt in ("preference", "kto"):
        for system in ("false", "true"):
            exported = lines(client.get(base, params={"format": fmt, "system": system}))
            loaded = load_jsonl(tmp_path / f"{fmt}-{system}.jsonl", exported)
            assert loaded.num_rows == len(exported) > 0
            assert loaded[0] == exported[0]
            assert is_conversational(exported[0]) is (system == "true")
            applied = maybe_apply_chat_template(exported[0], tokenizer)
            if system == "true":
                assert exported[0]["prompt"][0] == {
                    "role": "system",
                    "content": "You are a teacher.",
                }
                assert applied["prompt"].startswith("<|bos|><|system|>You are a teacher.")
                assert applied["prompt"].endswith("<|assistant|>")
            else:
                assert applied == exported[0]  # plain text passes through


async def test_preference_export_of_conversations(
    client: httpx.Client, database: Database, tmp_path: Path
) -> None:
    from trl.data_utils import extract_prompt, is_conversational, maybe_apply_chat_template

    ds = make_dataset(client)["id"]
    chat = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Tell me a joke"},
    ]
    upload_seeds(
        client,
        ds,
        [
            {"messages": chat},
            {
                "messages": [
                    {"role": "user", "content": "Count to 3"},
                    {"role": "assistant", "content": "student: 1 2"},
                ]
            },
        ],
    )
    ex = examples_by(client, ds)
    joke, count = ex["Hi"]["id"], ex["student: 1 2"]["id"]
    job = start_job(client, ds)
    await run_tasks(database, job, feedback_outcome(job, {"count": count}))
    base = f"/v1/datasets/{ds}/export"
    rows = lines(client.get(base, params={"format": "preference"}))
    assert len(rows) == 7
    assert rows[0] == {
        "prompt": chat,
        "chosen": [{"role": "assistant", "content": f"good answer to {joke[-4:]}"}],
        "rejected": [{"role": "assistant", "content": f"mid answer to {joke[-4:]}"}],
    }
    student = [r for r in rows if r["rejected"][0]["content"] == "student: 1 2"]
    assert student[0]["prompt"] == [{"role": "user", "content": "Count to 3"}]
    # system=true: the job's system prompt, unless the conversation has its own
    with_system = lines(client.get(base, params={"format": "preference", "system": "true"}))
    assert with_system[0]["prompt"][0] == {"role": "system", "content": "be brief"}
    assert with_system[-1]["prompt"][0] == {"role": "system", "content": "You are a teacher."}

    tokenizer = trl_tokenizer(tmp_path)
    loaded = load_jsonl(tmp_path / "preference.jsonl", rows)
    assert loaded.num_rows == 7 and loaded[0]["prompt"] == chat
    for row in rows:
        assert is_conversational(row)
        implicit = extract_prompt(
            {"chosen": row["prompt"] + row["chosen"], "rejected": row["prompt"] + row["rejected"]}
        )
        assert implicit == row
        applied = maybe_apply_chat_template(row, tokenizer)
        assert applied["prompt"].endswith("<|user|>" + row["prompt"][-1]["content"]
                                          + "<|eos|><|assistant|>")  # fmt: skip
        assert applied["chosen"] == row["chosen"][0]["content"] + "<|eos|>"
    kto = lines(client.get(base, params={"format": "kto"}))
    assert all(is_conversational(r) and isinstance(r["label"], bool) for r in kto)
    assert load_jsonl(tmp_path / "kto.jsonl", kto).num_rows == len(kto) == 5


async def test_score_bounds_on_every_format(
    client: httpx.Client, database: Database, tmp_path: Path
) -> None:
    ds = make_dataset(client)["id"]
    upload_seeds(client, ds, [{"instruction": f"Question {i}"} for i in range(3)])
    job = start_job(client, ds, "labeling")
    ex = examples_by(client, ds)
    prompts = [ex[f"Question {i}"]["id"] for i in range(3)]
    scores = [judged(3.0, job), judged(7.5, job), None]  # the last is never judged
    await run_tasks(
        database,
        job,
        lambda task: TaskOutcome(
            examples=[
                ExampleOut(i, f"Question {i}", output=f"answer {i}", source_id=p, scores=s)
                for i, (p, s) in enumerate(zip(prompts, scores, strict=True))
            ],
            completed=3,
        ),
    )
    answers = examples_by(client, ds)
    base = f"/v1/datasets/{ds}/export"
    for fmt in ("alpaca", "messages", "sharegpt", "prompt_completion"):

        def get(**params: Any) -> list[dict[str, Any]]:
            return lines(client.get(base, params={"format": fmt, "metadata": "true", **params}))  # noqa: B023

        assert len(get()) == 3
        assert [r["metadata"]["id"] for r in get(min_score=5)] == [answers["answer 1"]["id"]]
        assert len(get(max_score=5)) == 1
        assert len(get(min_score=3, max_score=7.5)) == 2  # bounds included
        assert get(min_score=8) == []
        assert len(get(min_score=0)) == 2  # the unjudged answer is left out
        plain = lines(client.get(base, params={"format": fmt, "min_score": 0}))
        loaded = load_jsonl(tmp_path / f"{fmt}.jsonl", plain)  # as trainers read it
        assert loaded.num_rows == 2 and loaded[0] == plain[0]
    response = client.get(base, params={"min_score": 8, "max_score": 2})
    assert_error(response, 422, "validation_error")
    assert response.json()["error"]["details"][0]["loc"] == ["query", "min_score"]
    for bad in ({"min_score": "high"}, {"max_score": "nan"}, {"status": "judged"}):
        assert_error(client.get(base, params=bad), 422, "validation_error")


# --- report ----------------------------------------------------------------------------------


async def test_feedback_report(client: httpx.Client, database: Database) -> None:
    ds = make_dataset(client)["id"]
    upload_seeds(
        client,
        ds,
        [
            {"instruction": "P1"},
            {"instruction": "P2", "output": "student two"},
            {"instruction": "P3"},
        ],
    )
    hi = examples_by(client, ds)["student two"]["id"]
    job = start_job(client, ds, chunk_size=2)
    tasks = await run_tasks(database, job, feedback_outcome(job, {"two": hi}))
    assert len(tasks) == 2
    report = client.get(f"/v1/jobs/{job}/report").json()
    feedback = report["feedback"]
    assert feedback["prompts_judged"] == 3
    assert feedback["prompts_with_pair"] == 3
    assert feedback["pairs"] == 10  # 3 per prompt, and the student's
    margin = feedback["margin"]
    assert (margin["min"], margin["median"], margin["max"]) == (3.0, 3.0, 7.0)
    histogram = {b["low"]: b["pairs"] for b in margin["histogram"]}
    assert len(histogram) == 10 and sum(histogram.values()) == 10
    assert (histogram[3], histogram[6], histogram[7]) == (6, 3, 1)
    assert (feedback["comparisons"], feedback["disagreements"]) == (8, 2)
    assert feedback["disagreement_rate"] == 0.25
    assert feedback["judge_failed"] == 2
    # nine candidates (9, 6, 3 on helpfulness; one more on honesty) and the student (2, 2)
    assert feedback["aspects"] == {"helpfulness": 5.6, "honesty": 6.5}
    assert report["candidates"] == 9
    labeling = start_job(client, ds, "labeling")
    assert client.get(f"/v1/jobs/{labeling}/report").json()["feedback"] is None


# --- end to end: the README's feedback walk-through and self-knowledge recipe ------------------


def readme_block(after: str) -> str:
    """The first bash block of README.md after the text `after`."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    return readme.split(after, 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]


def test_readme_feedback_walkthrough_and_self_knowledge_recipe(tmp_path: Path) -> None:
    """Both run as written against `distillery serve` (SQLite) with the emulator as teacher and
    the real feedback method; the DPO file loads in `datasets` and TRL reads its rows."""
    from trl.data_utils import is_conversational

    from tests.emulator_proc import running_emulator
    from tests.test_readme import free_port

    script = readme_block("<!-- feedback-walkthrough -->")
    shown = [m.strip() for m in re.findall(r"^# -> (.*)$", script, re.MULTILINE)]
    assert len(shown) == 4
    recipe = readme_block("**Self-knowledge: where the student is wrong.**")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with running_emulator(model="teacher", base_latency=0.02) as emulator:
        env = {
            **os.environ,
            "DISTILLERY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'distillery.db'}",
            "DISTILLERY_TEACHER__BASE_URL": emulator.base_url,
            "DISTILLERY_POLL_INTERVAL_SECONDS": "0.1",
            "BASE": base,
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
            with httpx.Client(base_url=base, timeout=60) as client:
                for _ in range(600):
                    try:
                        if client.get("/readyz").status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    time.sleep(0.1)
                result = subprocess.run(
                    ["bash", "-euo", "pipefail", "-c", script],
                    env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                )  # fmt: skip
                assert result.returncode == 0, result.stderr
                printed = [line.strip() for line in result.stdout.splitlines() if line.strip()]
                assert printed == shown

                # the DPO file: one row per pair of the job, as the report counts them
                rows = [
                    orjson.loads(line)
                    for line in (tmp_path / "dpo.jsonl").read_bytes().splitlines()
                ]
                job = client.get("/v1/jobs", params={"status": "succeeded"}).json()["data"][0]
                report = client.get(f"/v1/jobs/{job['id']}/report").json()["feedback"]
                assert len(rows) == report["pairs"] >= 1 and report["judge_failed"] == 0
                assert all(set(r) == {"prompt", "chosen", "rejected"} for r in rows)
                assert not any(is_conversational(r) for r in rows)
                assert load_jsonl(tmp_path / "loaded.jsonl", rows).num_rows == len(rows)

                # the recipe: a student's samples as seeds, judged pairwise with the teacher's
                ds = make_dataset(client)["id"]
                prompts = ["Why is the sea salty?", "What is a prime number?"]
                upload_seeds(client, ds, [
                    {"instruction": p, "output": f"student sample {k}: not sure",
                     "metadata": {"model": "student-v3"}}
                    for p in prompts for k in range(2)
                ])  # fmt: skip
                params = {"samples": 1, "existing": True, "mode": "pairwise", "pairs": "all",
                          "min_margin": 1}  # fmt: skip
                job_id = start_job(client, ds, **params)
                for _ in range(600):
                    job = client.get(f"/v1/jobs/{job_id}").json()
                    if job["status"] not in ("queued", "running"):
                        break
                    time.sleep(0.1)
                assert job["status"] == "succeeded", job
                assert job["progress"]["total"] == 2  # the samples sharing a prompt are one group
                report = client.get(f"/v1/jobs/{job_id}/report").json()["feedback"]
                assert report["comparisons"] > 0 and report["disagreement_rate"] is not None
                exported = lines(client.get(f"/v1/datasets/{ds}/export", params={
                    "format": "preference", "job_id": job_id, "metadata": "true"}))  # fmt: skip
                assert len(exported) == report["pairs"]
                teacher_wins = [
                    {k: v for k, v in r.items() if k != "metadata"}
                    for r in exported
                    if (r["metadata"]["chosen_origin"], r["metadata"]["rejected_origin"])
                    == ("generated", "seed")
                ]
                out = subprocess.run(
                    ["bash", "-euo", "pipefail", "-c", recipe],
                    env={**env, "DS": ds, "JOB": job_id}, cwd=tmp_path, capture_output=True,
                    text=True, timeout=60,
                )  # fmt: skip
                assert out.returncode == 0, out.stderr
                kept = (tmp_path / "self_knowledge_dpo.jsonl").read_bytes().splitlines()
                assert [orjson.loads(line) for line in kept] == teacher_wins
        finally:
            server.send_signal(signal.SIGTERM)
            _, stderr = server.communicate(timeout=30)
    assert "Application shutdown complete" in stderr
