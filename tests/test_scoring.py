"""Teacher scoring (``kind: "scoring"``) through the HTTP API, with a worker running the
transformers backend on a tiny offline model: the stored soft targets are the model's own
log_softmax at every response token; rescore, named examples, a teacher without white-box
support, retries that store nothing twice. Also: soft targets captured by labeling with
``teacher.top_logprobs``, and job priority (a small job overtakes a queued bulk job)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import func, select, update

pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from app import queue
from app.config import Settings
from app.models import Example, SoftTarget, Task
from app.outcomes import TaskOutcome
from app.soft_targets import SoftTargets, unpack
from app.state import Database
from tests.factories import make_dataset, upload_seeds
from tests.scripted_teacher import ScriptedTeacher
from tests.test_api_datasets import assert_error
from tests.test_queue import claim, complete, job_row, tasks_of
from tests.test_runner import running, status_is, until
from tests.tiny_model import CHAT_TEMPLATE, build_tiny_model
from tests.worker_proc import add_job, item_payloads
from workers.methods.common import answer_messages
from workers.prompts import skill_system_prompt
from workers.teachers.base import (
    ScoreRequest,
    ScoreResult,
    TeacherUnavailable,
    TokenizerInfo,
)
from workers.teachers.transformers import TransformersTeacher

FINISHED = ("succeeded", "failed", "cancelled")
TOLERANCE = 1e-3  # the bar: the teacher's values to fp16 precision

SAMPLES: list[dict[str, Any]] = [
    {"instruction": "Write a short poem about the sea.", "output": "The sea is wide and blue."},
    {"instruction": "Translate into French:", "input": "good morning", "output": "bonjour"},
    {
        "messages": [
            {"role": "user", "content": "List three prime numbers."},
            {"role": "assistant", "content": "2, 3 and 5."},
            {"role": "user", "content": "Why are they prime?"},
            {"role": "assistant", "content": "Each has no divisor but 1 and itself."},
        ]
    },
    {"instruction": "A prompt without an answer yet"},  # pending: nothing to score
]


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def teacher(tiny_model_dir: Path) -> Iterator[TransformersTeacher]:
    teacher = TransformersTeacher(model=str(tiny_model_dir), device="cpu", batch_size=4)
    yield teacher
    asyncio.run(teacher.aclose())


class Reference:
    """The tiny model's full distribution, computed here one sequence at a time."""

    def __init__(self, folder: Path) -> None:
        self.tokenizer: Any = AutoTokenizer.from_pretrained(folder)
        self.model: Any = AutoModelForCausalLM.from_pretrained(folder).eval()

    def prompt_ids(self, messages: Sequence[dict[str, str]]) -> list[int]:
        text = self.tokenizer.apply_chat_template(
            list(messages), add_generation_prompt=True, tokenize=False
        )
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def completion_ids(self, messages: Sequence[dict[str, str]], completion: str) -> list[int]:
        """The completion's ids after the prompt, end-of-turn included (the chat template)."""
        full = [*messages, {"role": "assistant", "content": completion}]
        text = self.tokenizer.apply_chat_template(full, tokenize=False)
        ids = list(self.tokenizer.encode(text, add_special_tokens=False))
        prompt = self.prompt_ids(messages)
        assert ids[: len(prompt)] == prompt
        return ids[len(prompt) :]

    def logprobs(self, prompt: list[int], completion: list[int]) -> torch.Tensor:
        """[len(completion), vocab]: log_softmax of the next-token logits at each position."""
        with torch.no_grad():
            logits = self.model(torch.tensor([prompt + completion])).logits[0]
        return logits.float().log_softmax(-1)[len(prompt) - 1 : len(prompt) + len(completion) - 1]


@pytest.fixture(scope="module")
def reference(tiny_model_dir: Path) -> Reference:
    return Reference(tiny_model_dir)


def post_job(client: httpx.Client, dataset_id: str, kind: str, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/jobs", json={"dataset_id": dataset_id, "kind": kind, **body})
    assert response.status_code == 202, response.text
    return response.json()  # type: ignore[no-any-return]


async def run_jobs(
    database: Database, settings: Settings, teacher: Any, *jobs: dict[str, Any]
) -> None:
    """Run a worker until every job has finished."""
    async with running(database, settings, teacher):
        for job in jobs:
            await until(status_is(database, uuid.UUID(job["id"]), *FINISHED), timeout=60)


async def stored_targets(database: Database, dataset_id: str) -> dict[str, SoftTarget]:
    async with database.reading() as session:
        rows = await session.scalars(
            select(SoftTarget).where(SoftTarget.dataset_id == uuid.UUID(dataset_id))
        )
        return {str(row.example_id): row for row in rows}


async def example_count(database: Database, dataset_id: str) -> int:
    async with database.reading() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(Example)
            .where(Example.dataset_id == uuid.UUID(dataset_id))
        )
        return int(count or 0)


def examples_by_output(client: httpx.Client, dataset_id: str) -> dict[str | None, dict[str, Any]]:
    page = client.get(f"/v1/datasets/{dataset_id}/examples", params={"limit": 100}).json()
    return {e["output"]: e for e in page["data"]}


def assert_matches(targets: SoftTargets, token_ids: list[int], logp: torch.Tensor, k: int) -> None:
    """Stored soft targets against the reference distribution, position by position."""
    assert targets.token_ids == token_ids
    assert targets.positions == len(token_ids) == logp.shape[0]
    for t, token in enumerate(token_ids):
        assert abs(targets.token_logprobs[t] - float(logp[t, token])) <= TOLERANCE
        assert len(targets.top_ids[t]) == k
        best = logp[t].topk(k).values.tolist()
        assert targets.top_logprobs[t] == sorted(targets.top_logprobs[t], reverse=True)
        for stored, expected in zip(targets.top_logprobs[t], best, strict=True):
            assert abs(stored - expected) <= TOLERANCE
        for token_id, stored in zip(targets.top_ids[t], targets.top_logprobs[t], strict=True):
            assert abs(stored - float(logp[t, token_id])) <= TOLERANCE  # ties may swap ids


# --- scoring ----------------------------------------------------------------------------------


async def test_scoring_stores_the_teachers_distribution_at_every_response_token(
    client: httpx.Client,
    database: Database,
    quick: Settings,
    teacher: TransformersTeacher,
    reference: Reference,
) -> None:
    ds = make_dataset(client)["id"]
    upload_seeds(client, ds, SAMPLES)
    job = post_job(client, ds, "scoring", params={"top_logprobs": 5, "chunk_size": 2})
    assert job["status"] == "queued" and job["progress"]["total"] == 3  # not the pending one
    assert job["params"] == {
        "top_logprobs": 5,
        "example_ids": None,
        "rescore": False,
        "chunk_size": 2,
    }
    await run_jobs(database, quick, teacher, job)

    row = await job_row(database, uuid.UUID(job["id"]))
    assert row.status == "succeeded", row.error
    assert (row.completed, row.failed, row.accepted, row.rejected) == (3, 0, 0, 0)
    assert row.system_prompt == skill_system_prompt(None)
    read = client.get(f"/v1/jobs/{job['id']}").json()
    tokenizer = read["tokenizer"]
    assert tokenizer["vocab_size"] == len(reference.tokenizer)
    assert tokenizer["chat_template"] == CHAT_TEMPLATE and len(tokenizer["sha256"]) == 64
    # the soft targets belong to the samples: no example row was written
    assert await example_count(database, ds) == len(SAMPLES)

    stored = await stored_targets(database, ds)
    by_output = examples_by_output(client, ds)
    assert len(stored) == 3
    for sample in SAMPLES[:3]:
        output = sample.get("output") or sample["messages"][-1]["content"]
        example = by_output[output]
        target = stored[example["id"]]
        assert (target.source, target.k, target.job_id) == ("scoring", 5, uuid.UUID(job["id"]))
        messages = answer_messages(
            skill_system_prompt(None),
            example["instruction"],
            example["input"],
            example.get("messages"),
        )
        assert messages[0] == {"role": "system", "content": skill_system_prompt(None)}
        prompt = reference.prompt_ids(messages)
        ids = reference.completion_ids(messages, output)
        assert ids[-1] == reference.tokenizer.eos_token_id  # the end of turn is scored too
        targets = unpack(target.data, target.positions, target.k, target.source)
        assert_matches(targets, ids, reference.logprobs(prompt, ids), 5)
    # the conversation is scored after its earlier turns, as the teacher would have seen it
    conversation = by_output[SAMPLES[2]["messages"][-1]["content"]]
    turns = answer_messages("s", "", "", conversation["messages"])
    assert [m["role"] for m in turns] == ["system", "user", "assistant", "user"]

    # the kd export carries what was scored: the prompt the teacher saw, ids, logprobs, tokenizer
    response = client.get(f"/v1/datasets/{ds}/export", params={"format": "kd"})
    assert response.status_code == 200, response.text
    rows = {r["completion"]: r for r in map(orjson.loads, response.content.splitlines())}
    assert len(rows) == 3
    for output, row in rows.items():
        example = by_output[output]
        messages = answer_messages(
            skill_system_prompt(None), example["instruction"], example["input"], example["messages"]
        )
        assert row["messages"] == messages
        assert row["source"] == "scoring" and row["k"] == 5
        assert row["tokenizer"]["sha256"] == tokenizer["sha256"]
        ids = reference.completion_ids(messages, output)
        assert row["completion_token_ids"] == ids
        logp = reference.logprobs(reference.prompt_ids(messages), ids)
        for t, token in enumerate(ids):
            assert abs(row["token_logprobs"][t] - float(logp[t, token])) <= TOLERANCE
            assert row["top_logprobs"][t][0] == pytest.approx(float(logp[t].max()), abs=TOLERANCE)


async def test_rescore_named_examples_and_what_cannot_be_scored(
    client: httpx.Client, database: Database, quick: Settings, teacher: TransformersTeacher
) -> None:
    empty = make_dataset(client)["id"]
    upload_seeds(client, empty, [{"instruction": "no answer"}])
    err = assert_error(
        client.post("/v1/jobs", json={"dataset_id": empty, "kind": "scoring"}), 409, "conflict"
    )
    assert "no accepted example with a response" in err["message"]

    ds = make_dataset(client)["id"]
    upload_seeds(client, ds, SAMPLES)
    first = post_job(client, ds, "scoring", params={"top_logprobs": 4})
    await run_jobs(database, quick, teacher, first)
    before = await stored_targets(database, ds)
    assert len(before) == 3 and {t.k for t in before.values()} == {4}

    # everything has soft targets: the next job has nothing to do
    again = post_job(client, ds, "scoring")
    assert again["status"] == "succeeded" and again["progress"]["total"] == 0
    assert again["stop_reason"].startswith("nothing to score")
    assert await tasks_of(database, uuid.UUID(again["id"])) == []

    by_output = examples_by_output(client, ds)
    pending = by_output[None]["id"]
    scored = by_output["bonjour"]["id"]
    unknown = str(uuid.uuid4())
    for named, flag in (([pending, unknown], True), ([scored], False)):
        params = {"example_ids": named, "rescore": flag}
        response = client.post(
            "/v1/jobs", json={"dataset_id": ds, "kind": "scoring", "params": params}
        )
        err = assert_error(response, 422, "validation_error")
        assert [d["msg"] for d in err["details"]] == [f"not eligible: {i}" for i in named]
        assert all(d["loc"] == ["body", "params", "example_ids"] for d in err["details"])
    for bad in ({"top_logprobs": 0}, {"top_logprobs": "5"}, {"rescore": "yes"}, {"k": 5}):
        response = client.post(
            "/v1/jobs", json={"dataset_id": ds, "kind": "scoring", "params": bad}
        )
        assert_error(response, 422, "validation_error")

    rescore = post_job(
        client, ds, "scoring", params={"example_ids": [scored], "rescore": True, "top_logprobs": 2}
    )
    assert rescore["progress"]["total"] == 1
    await run_jobs(database, quick, teacher, rescore)
    assert (await job_row(database, uuid.UUID(rescore["id"]))).status == "succeeded"
    after = await stored_targets(database, ds)
    assert set(after) == set(before)
    assert (after[scored].k, after[scored].job_id) == (2, uuid.UUID(rescore["id"]))
    for example_id, target in after.items():  # the others are untouched
        if example_id != scored:
            assert (target.k, target.data) == (4, before[example_id].data)
    # rescore of everything replaces every row, one per example
    everything = post_job(client, ds, "scoring", params={"rescore": True, "top_logprobs": 3})
    assert everything["progress"]["total"] == 3
    await run_jobs(database, quick, teacher, everything)
    final = await stored_targets(database, ds)
    assert len(final) == 3 and {t.k for t in final.values()} == {3}
    assert await example_count(database, ds) == len(SAMPLES)


async def test_a_teacher_without_token_ids_fails_the_job_at_its_first_task(
    client: httpx.Client, database: Database, quick: Settings
) -> None:
    ds = make_dataset(client)["id"]
    upload_seeds(client, ds, [*SAMPLES, {"instruction": "another open prompt"}])
    scripted = ScriptedTeacher()
    scoring = post_job(client, ds, "scoring", params={"chunk_size": 1})
    capture = post_job(client, ds, "labeling", teacher={"top_logprobs": 2})
    await run_jobs(database, quick, scripted, scoring, capture)
    for job in (scoring, capture):
        row = await job_row(database, uuid.UUID(job["id"]))
        assert row.status == "failed"
        assert row.error is not None and "cannot give token ids" in row.error, row.error
        assert row.completed == 0 and row.tokenizer is None
        statuses = {t.status for t in await tasks_of(database, uuid.UUID(job["id"]))}
        assert "succeeded" not in statuses
    assert scripted.requests == 0  # refused before any teacher call
    assert await stored_targets(database, ds) == {}
    assert await example_count(database, ds) == len(SAMPLES) + 1
    # the same teacher labels without soft targets
    plain = post_job(client, ds, "labeling")
    await run_jobs(database, quick, scripted, plain)
    assert (await job_row(database, uuid.UUID(plain["id"]))).status == "succeeded"


class FlakyScorer:
    """The transformers teacher, except that the first score call fails the items that
    `fails` picks with a retryable error (an outage as the backend reports it)."""

    def __init__(self, inner: TransformersTeacher, fails: Callable[[ScoreRequest], bool]) -> None:
        self.inner = inner
        self.backend = inner.backend
        self.model = inner.model
        self.fails = fails
        self.calls: list[int] = []

    async def generate(self, requests: Sequence[Any]) -> list[Any]:
        return await self.inner.generate(requests)

    async def tokenizer_info(self) -> TokenizerInfo:
        return await self.inner.tokenizer_info()

    async def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        self.calls.append(len(requests))
        results = await self.inner.score(requests)
        if len(self.calls) > 1:
            return results
        outage = TeacherUnavailable("connection reset")
        return [
            ScoreResult(tokens=[], error=outage, attempt_errors={"connection": 1})
            if self.fails(request)
            else result
            for request, result in zip(requests, results, strict=True)
        ]

    async def aclose(self) -> None:
        """The module's teacher is closed by its fixture."""


async def test_items_the_teacher_failed_are_scored_by_a_follow_up_and_stored_once(
    client: httpx.Client, database: Database, quick: Settings, teacher: TransformersTeacher
) -> None:
    ds = make_dataset(client)["id"]
    upload_seeds(client, ds, SAMPLES)
    flaky = FlakyScorer(teacher, lambda request: request.completion != "bonjour")
    job = post_job(client, ds, "scoring", params={"top_logprobs": 3})
    await run_jobs(database, quick, flaky, job)
    row = await job_row(database, uuid.UUID(job["id"]))
    assert row.status == "succeeded", row.error
    assert (row.total, row.completed, row.failed) == (3, 3, 0)
    assert flaky.calls == [3, 2]  # the follow-up asked for the two that failed, only
    tasks = sorted(await tasks_of(database, uuid.UUID(job["id"])), key=lambda t: t.seq)
    assert [t.payload.get("retry") for t in tasks] == [None, 1]
    assert [t.status for t in tasks] == ["succeeded", "succeeded"]
    assert len(tasks[1].payload["example_ids"]) == 2
    stored = await stored_targets(database, ds)
    assert len(stored) == 3 and {t.k for t in stored.values()} == {3}
    assert row.teacher_errors == {"connection": 2}


async def test_a_reclaimed_scoring_task_stores_its_soft_targets_once(
    client: httpx.Client, database: Database
) -> None:
    """Kill semantics come from the queue: the worker whose lease lapsed writes nothing, the
    one that took the task over writes once, and a repeat of its completion is a no-op."""
    ds = make_dataset(client)["id"]
    upload_seeds(client, ds, SAMPLES[:2])
    job = post_job(client, ds, "scoring", params={"top_logprobs": 2})
    [mine] = await claim(database, "w1", lease=0.2)
    await asyncio.sleep(0.3)
    [theirs] = await claim(database, "w2")
    assert theirs.id == mine.id and theirs.reclaimed_from == "w1"
    ids = mine.payload["example_ids"]
    targets = SoftTargets([5, 2], [-0.5, -0.1], [[5, 7], [2, 9]], [[-0.5, -1.5], [-0.1, -3.0]])
    outcome = TaskOutcome(
        soft_targets={i: targets for i in ids}, completed=len(ids), tokenizer={"name": "t"}
    )
    with pytest.raises(queue.TaskLeaseLost):
        await complete(database, mine, "w1", outcome)
    assert await stored_targets(database, ds) == {}
    await complete(database, theirs, "w2", outcome)
    repeat = await complete(database, theirs, "w2", outcome)
    assert repeat.already_done
    row = await job_row(database, uuid.UUID(job["id"]))
    assert (row.status, row.completed, row.tokenizer) == ("succeeded", 2, {"name": "t"})
    stored = await stored_targets(database, ds)
    assert sorted(stored) == sorted(ids)
    back = unpack(stored[ids[0]].data, stored[ids[0]].positions, stored[ids[0]].k)
    assert back.token_ids == [5, 2] and back.top_ids == [[5, 7], [2, 9]]


# --- capture at generation --------------------------------------------------------------------


async def test_labeling_with_top_logprobs_stores_packed_soft_targets_and_the_tokenizer(
    client: httpx.Client,
    database: Database,
    quick: Settings,
    teacher: TransformersTeacher,
    reference: Reference,
) -> None:
    ds = make_dataset(client)["id"]
    upload_seeds(
        client, ds, [{"instruction": f"Write a short poem, number {i}."} for i in range(3)]
    )
    job = post_job(
        client,
        ds,
        "labeling",
        params={"filters": []},  # random text: keep every answer
        teacher={"top_logprobs": 3, "temperature": 1.0, "max_tokens": 8, "seed": 3},
    )
    await run_jobs(database, quick, teacher, job)
    row = await job_row(database, uuid.UUID(job["id"]))
    assert row.status == "succeeded", row.error
    assert row.tokenizer is not None and row.tokenizer["vocab_size"] == len(reference.tokenizer)
    stored = await stored_targets(database, ds)
    async with database.reading() as session:
        answers = (
            await session.scalars(select(Example).where(Example.job_id == uuid.UUID(job["id"])))
        ).all()
    assert len(answers) == 3 and all(a.status == "accepted" for a in answers), [
        (a.reject_reason, a.output) for a in answers
    ]
    for answer in answers:
        assert "logprobs" not in answer.meta  # packed in soft_targets, no JSON copy
        target = stored[str(answer.id)]
        assert (target.source, target.k, target.job_id) == ("generation", 3, row.id)
        assert answer.usage is not None
        assert target.positions == answer.usage["completion_tokens"]
        targets = unpack(target.data, target.positions, target.k, target.source)
        messages = answer_messages(skill_system_prompt(None), answer.instruction, answer.input)
        prompt = reference.prompt_ids(messages)
        assert_matches(targets, targets.token_ids, reference.logprobs(prompt, targets.token_ids), 3)


# --- priority ---------------------------------------------------------------------------------


async def set_priority(database: Database, job_id: uuid.UUID, priority: int) -> None:
    async with database.transaction() as session:
        await session.execute(update(Task).where(Task.job_id == job_id).values(priority=priority))


async def test_a_high_priority_job_is_claimed_before_a_queued_bulk_job(
    database: Database,
) -> None:
    bulk = await add_job(database, item_payloads(12, 2))  # 6 tasks, queued first
    urgent = await add_job(database, item_payloads(4, 2))
    await set_priority(database, urgent, 10)
    low = await add_job(database, item_payloads(2, 2))
    await set_priority(database, low, -5)
    claimed = [(await claim(database, f"w{i}"))[0] for i in range(9)]
    assert [c.job_id for c in claimed] == [urgent] * 2 + [bulk] * 6 + [low]
    # a follow-up keeps its task's priority
    await complete(database, claimed[0], "w0", TaskOutcome(followups=[{"items": [9]}]))
    [follow_up] = [t for t in await tasks_of(database, urgent) if t.status == "queued"]
    assert follow_up.priority == 10


async def test_priority_through_the_api_overtakes_a_running_bulk_job(
    client: httpx.Client, database: Database, quick: Settings
) -> None:
    settings = quick.model_copy(update={"worker_concurrency": 1})
    bulk_ds, small_ds = make_dataset(client)["id"], make_dataset(client)["id"]
    upload_seeds(client, bulk_ds, [{"instruction": f"bulk prompt {i}"} for i in range(12)])
    upload_seeds(client, small_ds, [{"instruction": f"urgent prompt {i}"} for i in range(2)])
    for bad in (101, -101, "10", True, 2.5):
        body = {"dataset_id": small_ds, "kind": "labeling", "priority": bad}
        err = assert_error(client.post("/v1/jobs", json=body), 422, "validation_error")
        assert err["details"][0]["loc"][-1] == "priority"
    bulk = post_job(client, bulk_ds, "labeling", params={"chunk_size": 1})
    teacher = ScriptedTeacher(delay=0.1)
    async with running(database, settings, teacher):
        await asyncio.wait_for(teacher.started.wait(), 10)
        # from a thread: a blocking call on this loop would stall the worker holding SQLite's lock
        urgent = await asyncio.to_thread(
            post_job, client, small_ds, "labeling", params={"chunk_size": 1}, priority=10
        )
        assert urgent["priority"] == 10
        assert {t.priority for t in await tasks_of(database, uuid.UUID(urgent["id"]))} == {10}
        await until(status_is(database, uuid.UUID(urgent["id"]), *FINISHED))
        queued = [
            t for t in await tasks_of(database, uuid.UUID(bulk["id"])) if t.status == "queued"
        ]
        await until(status_is(database, uuid.UUID(bulk["id"]), *FINISHED), timeout=30)
    assert (await job_row(database, uuid.UUID(urgent["id"]))).status == "succeeded"
    # the urgent job finished while most of the bulk job was still waiting
    assert len(queued) >= 6, len(queued)
