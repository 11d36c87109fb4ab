"""Dialogue jobs: multi-turn conversations through the HTTP API with an in-process worker and a
scripted teacher playing both roles (tests/dialogue_teacher.py), on SQLite and Postgres.

Exact totals, the exports of a conversation (messages, sharegpt, alpaca history form), a user
simulator that breaks character cut or rejected, teacher failures redone and never rejected,
taxonomy openings recording their leaf, cancellation, and kill -9 of workers mid-job.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from app import examples as examples_store
from app import jobs
from app.config import Settings
from app.contamination import build_index
from app.models import DEFAULT_TENANT_ID
from app.outcomes import ExampleOut
from app.schemas import DialogueJobCreate, ExampleIn
from app.state import Database
from tests.dialogue_teacher import BREAK_TEXT, DialogueTeacher, answer_text, user_text
from tests.factories import make_dataset, upload_seeds
from tests.kill_loop import Workers, kill_until_done, workers_factory  # noqa: F401  (fixture)
from tests.test_api_datasets import assert_error
from tests.test_queue import examples_of, job_row, tasks_of
from tests.test_runner import running, status_is, until
from tests.worker_proc import add_dataset
from workers.curation.simulator import check_user_turn
from workers.methods.dialogue import reject_contaminated_turns
from workers.prompts import skill_system_prompt
from workers.teachers.base import TeacherRejected, TeacherRequest, TeacherUnavailable

FINISHED = ("succeeded", "failed", "cancelled")
SEED = 7  # the teacher spec's seed: call seeds are SEED + 100 n + 2 turn + role
SKILL = {"name": "study coach", "description": "help people learn a subject step by step"}


@pytest.fixture
def quick(quick: Settings) -> Settings:
    return quick.model_copy(update={"retry_max_seconds": 0.3})


def post_job(
    client: httpx.Client, ds: str, skill: str | None = None, **params: Any
) -> httpx.Response:
    body: dict[str, Any] = {
        "dataset_id": ds,
        "kind": "dialogue",
        "params": params,
        "teacher": {"seed": SEED},
    }
    if skill is not None:
        body["skill_id"] = skill
    return client.post("/v1/jobs", json=body)


def start_job(client: httpx.Client, ds: str, skill: str | None = None, **params: Any) -> str:
    response = post_job(client, ds, skill, **params)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def run_jobs(
    database: Database, settings: Settings, teacher: DialogueTeacher, *ids: str
) -> None:
    async with running(database, settings, teacher):
        for job_id in ids:
            await until(status_is(database, uuid.UUID(job_id), *FINISHED), 60)
    for job_id in ids:
        row = await job_row(database, uuid.UUID(job_id))
        assert row.status == "succeeded", row.error


def export(client: httpx.Client, ds: str, **params: Any) -> list[dict[str, Any]]:
    response = client.get(f"/v1/datasets/{ds}/export", params=params)
    assert response.status_code == 200, response.text
    return [orjson.loads(line) for line in response.content.splitlines()]


def make_skill(client: httpx.Client, **extra: Any) -> dict[str, Any]:
    response = client.post("/v1/skills", json={**SKILL, **extra})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def conversation(opening: str, n: int, turns: int) -> list[dict[str, str]]:
    """The conversation the dialogue teacher writes for conversation `n` of an opening."""
    messages = [{"role": "user", "content": opening}]
    for turn in range(1, turns + 1):
        base = SEED + 100 * n + 2 * turn
        if turn > 1:
            messages.append({"role": "user", "content": user_text(turn, f"s{base}")})
        messages.append({"role": "assistant", "content": answer_text(turn, f"s{base + 1}")})
    return messages


def progress(client: httpx.Client, job_id: str) -> dict[str, Any]:
    return client.get(f"/v1/jobs/{job_id}").json()["progress"]  # type: ignore[no-any-return]


# --- the user simulator's check ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("User: what is a list?\nAssistant: A list holds items.", "breaks_character"),
        ("**Assistant:** Lists hold items in order.", "breaks_character"),
        ("<|assistant|> Lists hold items.", "breaks_character"),
        ("As an AI language model, I can explain lists.", "breaks_character"),
        ("I'm your assistant. What would you like to know?", "breaks_character"),
        (
            "Great, I hope this helps! Let me know if you have any other questions.",
            "breaks_character",
        ),
        ("Sure! A list is an ordered collection of items. " * 4, "breaks_character"),
        ("   ", "empty"),
        ("A list keeps its items in order and allows duplicates.", "copies_turn"),
    ],
)
def test_a_user_turn_out_of_character_is_caught(text: str, reason: str) -> None:
    found = check_user_turn(
        text, previous_assistant="A list keeps its items in order and allows duplicates."
    )
    assert found is not None and found.reason == reason, found


@pytest.mark.parametrize(
    "text",
    [
        "What is the difference between a list and a tuple?",
        "Sure, that makes sense. But why would I pick a tuple then?",
        "Thanks. I tried it and it still fails with a KeyError on line 3.",
        "I used to work as an AI researcher; how do transformers scale with data?",
        "My user interface shows the list twice. Why?",
        "Here's my code: for x in items: print(x). " * 4 + "It prints nothing, though.",
    ],
)
def test_a_user_turn_in_character_passes(text: str) -> None:
    assert check_user_turn(text, previous_assistant="Lists hold items in order.") is None


def test_decontamination_checks_every_turn_of_a_conversation() -> None:
    question = "What is the boiling point of ethanol at sea level in degrees Celsius?"
    index = build_index([("b1", "chem-bench", 0, question)])
    clean = conversation("Why is the sea salty?", 0, 3)
    leaked = [*clean[:2], {"role": "user", "content": question}, *clean[3:]]
    examples = [
        ExampleOut(item_index=i, instruction=m[0]["content"], output=m[-1]["content"], messages=m)
        for i, m in enumerate((clean, leaked))
    ]
    reject_contaminated_turns(examples, index)
    assert examples[0].status == "accepted"
    assert (examples[1].status, examples[1].reject_reason) == ("rejected", "contaminated")
    assert (
        examples[1].reject_detail.startswith("turn 2: ")
        and "chem-bench" in examples[1].reject_detail
    )


# --- jobs through the API ---------------------------------------------------------------------


async def test_conversations_are_stored_and_exported_exactly(
    client: httpx.Client, database: Database, quick: Settings
) -> None:
    ds = make_dataset(client)["id"]
    upload_seeds(
        client,
        ds,
        [
            {"instruction": "Explain recursion to a beginner."},
            {
                "instruction": "Summarise this text.",
                "input": "Water boils at 100 C.",
                "output": "x",
            },
        ],
    )
    skill = make_skill(client)
    teacher = DialogueTeacher(delay=0.02)
    job = start_job(client, ds, skill["id"], turns=3, conversations_per_prompt=2)
    assert progress(client, job)["total"] == 4
    await run_jobs(database, quick, teacher, job)

    p = progress(client, job)
    assert (p["total"], p["completed"], p["accepted"], p["rejected"], p["failed"]) == (
        4,
        4,
        4,
        0,
        0,
    )
    assert teacher.assistant_requests == 4 * 3 and teacher.user_requests == 4 * 2
    assert teacher.max_in_flight > 1  # the conversations of a task ran at once
    openings = ["Explain recursion to a beginner.", "Summarise this text.\n\nWater boils at 100 C."]
    expected = {(opening, n): conversation(opening, n, 3) for opening in openings for n in range(2)}
    rows = await examples_of(database, uuid.UUID(job))
    assert len(rows) == 4
    seen = {}
    for row in rows:
        assert row.status == "accepted" and row.method == "dialogue"
        assert row.meta["turns"] == 3 and row.meta["truncated_at"] is None
        assert row.meta["persona"] is None and row.meta["opening_id"]
        assert row.source_id is None  # a conversation is not the answer of its opening
        n = (row.sampling["seed"] - SEED) // 100
        seen[(row.instruction, n)] = row
        assert row.messages == expected[(row.instruction, n)]
        assert row.output == row.messages[-1]["content"]
        assert row.usage["completion_tokens"] == 3 * 5  # 5 calls, 3 tokens each (scripted)
    assert set(seen) == set(expected)  # the two conversations of an opening differ
    # a second job on the dataset opens from the prompts only, not from the conversations
    assert progress(client, start_job(client, ds, turns=1))["total"] == 2

    job_rows = {
        r["messages"][0]["content"]: r for r in export(client, ds, format="messages", job_id=job)
    }
    assert len(job_rows) == 2  # per opening: both conversations start with it
    by_msgs = [r["messages"] for r in export(client, ds, format="messages", job_id=job)]
    assert sorted(map(orjson.dumps, by_msgs)) == sorted(map(orjson.dumps, expected.values()))
    three = expected[(openings[0], 0)]
    sharegpt = export(client, ds, format="sharegpt", job_id=job)
    assert {
        "conversations": [
            {"from": "human" if m["role"] == "user" else "gpt", "value": m["content"]}
            for m in three
        ]
    } in sharegpt
    alpaca = export(client, ds, format="alpaca", job_id=job)
    assert {
        "instruction": three[4]["content"],
        "input": "",
        "output": three[5]["content"],
        "history": [
            [three[0]["content"], three[1]["content"]],
            [three[2]["content"], three[3]["content"]],
        ],
    } in alpaca
    system = skill_system_prompt({**SKILL, "id": skill["id"]})
    with_system = export(client, ds, format="messages", job_id=job, system="true")
    assert {"messages": [{"role": "system", "content": system}, *three]} in with_system
    alpaca_system = export(client, ds, format="alpaca", job_id=job, system="true")
    assert all(r["system"] == system for r in alpaca_system)
    meta = export(client, ds, format="messages", job_id=job, metadata="true")
    assert {r["metadata"]["metadata"]["turns"] for r in meta} == {3}
    assert {r["metadata"]["prompt_id"] for r in meta} == {"dialogue"}

    report = client.get(f"/v1/jobs/{job}/report").json()
    assert report["dialogue"] == {
        "conversations": 4, "turns": {"3": 4}, "mean_turns": 3.0, "full": 4, "truncated": 0,
        "cut_by_reason": {}, "rejected_by_reason": {},
    }  # fmt: skip
    assert report["tokens"]["completion"] == 4 * 5 * 3


async def test_a_user_that_breaks_character_is_cut_or_rejected(
    client: httpx.Client, database: Database, quick: Settings
) -> None:
    # a dataset per job: the same seed writes the same conversations, exact duplicates in one
    datasets = [make_dataset(client)["id"] for _ in range(3)]
    for ds in datasets:
        upload_seeds(
            client, ds, [{"instruction": "How do plants grow?"}, {"instruction": "What is rain?"}]
        )
    plants = lambda opening: opening.startswith("How do plants")  # noqa: E731
    teacher = DialogueTeacher(break_user_at=3, when=plants)
    cut = start_job(client, datasets[0], turns=4)  # truncate: plants ends after its 2nd answer
    strict = start_job(client, datasets[1], turns=4, on_failure="reject")
    too_few = start_job(client, datasets[2], turns=4, min_turns=3)
    ds = datasets[1]
    await run_jobs(database, quick, teacher, cut, strict, too_few)

    for job, accepted, rejected in ((cut, 2, 0), (strict, 1, 1), (too_few, 1, 1)):
        p = progress(client, job)
        assert (p["total"], p["completed"], p["accepted"], p["rejected"], p["failed"]) == (
            2, 2, accepted, rejected, 0
        )  # fmt: skip

    rows = {r.instruction: r for r in await examples_of(database, uuid.UUID(cut))}
    plant = rows["How do plants grow?"]
    assert plant.status == "accepted" and plant.messages == conversation(
        "How do plants grow?", 0, 2
    )
    assert plant.output == plant.messages[-1]["content"]
    assert plant.meta["turns"] == 2 and plant.meta["truncated_at"] == 3
    assert plant.meta["cut_reason"] == "breaks_character"
    assert plant.meta["cut_turn"] == {"role": "user", "content": BREAK_TEXT}
    assert plant.raw_output == plant.output  # the cut turn is kept in meta, not as the output
    assert rows["What is rain?"].meta["turns"] == 4
    report = client.get(f"/v1/jobs/{cut}/report").json()["dialogue"]
    assert report["turns"] == {"2": 1, "4": 1} and report["mean_turns"] == 3.0
    assert report["cut_by_reason"] == {"breaks_character": 1} and report["truncated"] == 1

    rows = {r.instruction: r for r in await examples_of(database, uuid.UUID(strict))}
    plant = rows["How do plants grow?"]
    assert plant.status == "rejected" and plant.reject_reason == "breaks_character"
    assert plant.reject_detail.startswith(
        "turn 3 (user): breaks_character: speaks as the assistant"
    )
    assert plant.messages[-1] == {"role": "user", "content": BREAK_TEXT}  # what was said is kept
    assert plant.output is None  # no answer follows the failed turn: exports add none
    assert plant.raw_output == BREAK_TEXT
    assert rows["What is rain?"].status == "accepted"
    report = client.get(f"/v1/jobs/{strict}/report").json()
    assert report["rejected_by_reason"] == {"breaks_character": 1}
    assert report["dialogue"]["rejected_by_reason"] == {"breaks_character": 1}

    rows = {r.instruction: r for r in await examples_of(database, uuid.UUID(too_few))}
    plant = rows["How do plants grow?"]
    assert plant.status == "rejected" and plant.reject_reason == "too_few_turns"
    assert "2 good assistant turns < min_turns" in plant.reject_detail
    # only accepted conversations are exported by default, rejected ones on request
    assert len(export(client, ds, format="messages", job_id=strict, status="accepted")) == 1
    assert len(export(client, ds, format="messages", job_id=strict, status="rejected")) == 1


async def test_a_bad_answer_cuts_at_the_last_good_turn_and_teacher_failures_are_redone(
    client: httpx.Client, database: Database, quick: Settings
) -> None:
    ds = make_dataset(client)["id"]
    upload_seeds(client, ds, [{"instruction": f"Tell me about planet {i}."} for i in range(4)])
    calls = Counter[str]()

    def outage(request: TeacherRequest) -> TeacherUnavailable | TeacherRejected | None:
        key = str(request.request_id).split(":", 1)[1]
        calls[key] += 1
        opening = next(m["content"] for m in request.messages if m["role"] == "user")
        if "planet 1" in opening and key.endswith(":2:user") and calls[key] == 1:
            return TeacherUnavailable("down for a moment")  # retryable: redone, not rejected
        if "planet 2" in opening and key.endswith(":3:assistant"):
            return TeacherRejected("context too long", status=400)  # this request, for good
        return None

    teacher = DialogueTeacher(
        bad_answer_at=2, when=lambda opening: "planet 3" in opening, fail_when=outage
    )
    job = start_job(client, ds, turns=3, chunk_size=4)
    await run_jobs(database, quick, teacher, job)

    p = progress(client, job)
    assert (p["total"], p["completed"], p["accepted"], p["rejected"], p["failed"]) == (
        4,
        4,
        4,
        0,
        0,
    )
    rows = {r.instruction: r for r in await examples_of(database, uuid.UUID(job))}
    assert len(rows) == 4  # the conversation whose call failed was stored once, whole
    assert rows["Tell me about planet 0."].meta["turns"] == 3
    assert rows["Tell me about planet 1."].messages == conversation("Tell me about planet 1.", 0, 3)
    refused = rows["Tell me about planet 2."]
    assert refused.meta["turns"] == 2 and refused.meta["cut_reason"] == "teacher_refused"
    assert refused.meta["cut_turn"] is None
    bad = rows["Tell me about planet 3."]
    assert bad.meta["turns"] == 1 and bad.meta["cut_reason"] == "refusal"
    assert bad.messages == conversation("Tell me about planet 3.", 0, 1)
    tasks = await tasks_of(database, uuid.UUID(job))
    assert [t.payload.get("retry") for t in tasks] == [None, 1]
    assert [c["opening_id"] for c in tasks[1].payload["conversations"]] == [
        str(rows["Tell me about planet 1."].meta["opening_id"])
    ]
    report = client.get(f"/v1/jobs/{job}/report").json()
    assert report["dialogue"]["cut_by_reason"] == {"refusal": 1, "teacher_refused": 1}
    assert report["rejected_by_reason"] == {} and report["teacher_errors"]


async def test_taxonomy_openings_record_their_leaf(
    client: httpx.Client, database: Database, quick: Settings
) -> None:
    ds = make_dataset(client)["id"]
    taxonomy = {
        "topics": [
            {
                "name": "Algebra",
                "subtopics": [{"name": "Linear equations"}, {"name": "Quadratics"}],
            },
            {"name": "Geometry", "description": "shapes and angles"},
        ]
    }
    skill = make_skill(client, taxonomy=taxonomy)
    teacher = DialogueTeacher()
    job = start_job(
        client, ds, skill["id"], from_taxonomy=True, turns=2, conversations_per_prompt=2
    )
    assert progress(client, job)["total"] == 6  # an empty dataset is fine: openings are leaves
    await run_jobs(database, quick, teacher, job)
    rows = await examples_of(database, uuid.UUID(job))
    assert Counter(r.topic for r in rows) == {
        "Algebra/Linear equations": 2, "Algebra/Quadratics": 2, "Geometry": 2
    }  # fmt: skip
    for row in rows:
        assert row.status == "accepted" and row.meta["opening_id"] is None
        topic = " / ".join(row.topic.split("/"))
        assert row.instruction == row.messages[0]["content"]
        assert row.instruction.startswith(f"I want to learn about {topic}.")
        assert [m["role"] for m in row.messages] == ["user", "assistant"] * 2
    assert len({r.instruction for r in rows}) == 6  # the two openings of a leaf differ
    assert teacher.user_requests == 6 * 2 and teacher.assistant_requests == 6 * 2


async def test_job_creation_refuses_what_cannot_run(client: httpx.Client) -> None:
    ds = make_dataset(client)["id"]
    assert_error(post_job(client, ds), 409, "conflict")  # no prompts to open with
    plain = make_skill(client)
    error = assert_error(
        post_job(client, ds, plain["id"], from_taxonomy=True), 422, "validation_error"
    )
    assert error["details"][0]["loc"] == ["body", "params", "from_taxonomy"]
    error = assert_error(post_job(client, ds, from_taxonomy=True), 422, "validation_error")
    assert error["details"][0]["loc"] == ["body", "skill_id"]
    upload_seeds(client, ds, [{"instruction": "Why is the sky blue?"}])
    error = assert_error(post_job(client, ds, turns=2, min_turns=3), 422, "validation_error")
    assert error["details"][0]["loc"] == ["body", "params", "min_turns"]
    error = assert_error(
        post_job(client, ds, example_ids=[str(uuid.uuid4())]), 422, "validation_error"
    )
    assert error["details"][0]["loc"] == ["body", "params", "example_ids"]
    error = assert_error(post_job(client, ds, turns=0), 422, "validation_error")
    assert "turns" in str(error["details"])
    rows = client.get(f"/v1/datasets/{ds}/examples").json()["data"]
    named = start_job(client, ds, example_ids=[rows[0]["id"]], conversations_per_prompt=3)
    assert progress(client, named)["total"] == 3


async def test_cancel_stops_a_dialogue_job_within_seconds(
    client: httpx.Client, database: Database, quick: Settings
) -> None:
    ds = make_dataset(client)["id"]
    upload_seeds(
        client, ds, [{"instruction": f"Question number {i} about rivers?"} for i in range(40)]
    )
    # 10 tasks of ~2.3 s, 2 at a time: the cancel lands while tasks are mid-conversation (with
    # ~1.1 s tasks a loaded machine could finish both in flight before it was seen)
    teacher = DialogueTeacher(delay=0.2)
    job = start_job(client, ds, turns=6, chunk_size=4)
    job_id = uuid.UUID(job)
    async with running(database, quick, teacher) as runner:

        async def some_done() -> bool:
            return (await job_row(database, job_id)).completed >= 4

        await until(some_done, 30)
        response = await asyncio.to_thread(client.post, f"/v1/jobs/{job}/cancel")
        assert response.status_code == 202
        await until(status_is(database, job_id, *FINISHED), 5)
        calls = teacher.calls
        await asyncio.sleep(0.5)
        assert teacher.calls == calls  # nothing more asked of the teacher
        assert runner.stats["cancelled"] >= 1
    body = client.get(f"/v1/jobs/{job}").json()
    assert body["status"] == "cancelled"
    tasks = await tasks_of(database, job_id)
    rows = await examples_of(database, job_id)
    per_task = Counter(r.task_id for r in rows)
    for task in tasks:  # no half-written task: all its conversations or none
        assert per_task[task.id] == (4 if task.status == "succeeded" else 0)
    done = sum(t.status == "succeeded" for t in tasks)
    assert 1 <= done < 10 and body["progress"]["accepted"] == 4 * done
    assert all(len(r.messages) == 12 for r in rows)


# --- kill -9 ----------------------------------------------------------------------------------

OPENINGS = 30
PER_OPENING = 2


async def start_dialogue(db: Database) -> uuid.UUID:
    dataset_id = await add_dataset(db)
    async with db.transaction() as session:
        items = [
            ExampleIn.model_validate({"instruction": f"Teach me topic {i} in simple words."})
            for i in range(OPENINGS)
        ]
        await examples_store.add_seeds(session=session, dataset_id=dataset_id, examples=items)
        request = DialogueJobCreate(
            dataset_id=dataset_id, kind="dialogue", teacher={"seed": SEED},
            params={"turns": 4, "conversations_per_prompt": PER_OPENING, "chunk_size": 6},
        )  # fmt: skip
        job = await jobs.create_job(
            session=session, tenant_id=DEFAULT_TENANT_ID, request=request, settings=Settings()
        )
        return job.id


@pytest.mark.slow
async def test_kill9_during_dialogue(
    database_url: str,
    tmp_path: Path,
    workers_factory: list[Workers],  # noqa: F811
) -> None:
    db = Database.from_url(database_url)
    job_id = await start_dialogue(db)
    workers = Workers(database_url, tmp_path, "--teacher", "dialogue", "--lease", "2",
                      "--heartbeat", "0.5", "--concurrency", "2", "--delay", "0.1")  # fmt: skip
    workers_factory.append(workers)
    total = OPENINGS * PER_OPENING
    try:
        run = await kill_until_done(
            db, job_id, workers, start=2, timeout=120, max_kills=6,
            progress=lambda job: job.completed, kill_below=total * 0.8,
        )  # fmt: skip
        job, kills, seed = run.job, run.kills, run.seed
        assert job.status == "succeeded", (job.error, seed)
        assert (job.total, job.completed, job.accepted, job.rejected, job.failed) == (
            total, total, total, 0, 0
        ), seed  # fmt: skip
        rows = await examples_of(db, job_id)
        assert len(rows) == total, seed  # none lost, none twice
        keys = Counter((r.meta["opening_id"], r.sampling["seed"]) for r in rows)
        assert len(keys) == total and set(keys.values()) == {1}
        assert all(r.meta["turns"] == 4 and len(r.messages) == 8 for r in rows)
        assert all(r.messages == conversation(r.instruction, (r.sampling["seed"] - SEED) // 100, 4)
                   for r in rows)  # fmt: skip
        assert kills >= 2, f"the job finished before enough kills (seed {seed})"
    finally:
        workers.stop_all()
        await db.engine.dispose()
