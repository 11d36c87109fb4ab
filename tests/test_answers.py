"""One answer per prompt: labeling answers only prompts without an answer, a relabel replaces
the current answer (kept as history), the default export has one row per prompt, and job
params are strictly typed. Jobs run on the real labeling method with the scripted teacher."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import httpx
import orjson
from sqlalchemy import select

from app.config import Settings
from app.models import Example
from app.state import Database
from tests.factories import make_dataset, upload_seeds
from tests.scripted_teacher import ScriptedTeacher
from tests.test_api_datasets import assert_error
from tests.test_queue import job_row, tasks_of
from tests.test_runner import running, status_is, until
from workers.prompts import skill_system_prompt

FINISHED = ("succeeded", "failed", "cancelled")


def post_job(client: httpx.Client, dataset_id: str, **params: Any) -> dict[str, Any]:
    teacher = params.pop("teacher", None)
    body: dict[str, Any] = {"dataset_id": dataset_id, "kind": "labeling", "params": params}
    if teacher:
        body["teacher"] = teacher
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    return response.json()  # type: ignore[no-any-return]


async def run(
    database: Database, settings: Settings, teacher: ScriptedTeacher, *jobs: dict[str, Any]
) -> None:
    """Run a worker until every job has finished; each must succeed."""
    async with running(database, settings, teacher):
        for job in jobs:
            await until(status_is(database, uuid.UUID(job["id"]), *FINISHED))
    for job in jobs:
        row = await job_row(database, uuid.UUID(job["id"]))
        assert row.status == "succeeded", row.error


def export(client: httpx.Client, dataset_id: str, **params: Any) -> list[dict[str, Any]]:
    response = client.get(f"/v1/datasets/{dataset_id}/export", params=params)
    assert response.status_code == 200, response.text
    return [orjson.loads(line) for line in response.content.splitlines()]


async def current_answers(database: Database, dataset_id: str) -> dict[uuid.UUID, list[str]]:
    """Prompt id -> the outputs of its current answers (an accepted child not superseded, else
    the prompt itself when accepted and not superseded)."""
    async with database.reading() as session:
        rows = (
            await session.execute(
                select(Example).where(Example.dataset_id == uuid.UUID(dataset_id))
            )
        ).scalars()
        found: dict[uuid.UUID, list[str]] = {}
        for ex in rows:
            if ex.status != "accepted" or ex.superseded_by is not None:
                continue
            found.setdefault(ex.source_id or ex.id, []).append(ex.output or "")
        return found


async def test_a_second_labeling_job_has_nothing_to_do(
    client: httpx.Client, database: Database, quick: Settings
) -> None:
    ds = make_dataset(client)["id"]
    upload_seeds(
        client,
        ds,
        [{"instruction": "Q0"}, {"instruction": "Q1"}, {"instruction": "Q2", "output": "given"}],
    )
    teacher = ScriptedTeacher()
    first = post_job(client, ds)
    assert first["progress"]["total"] == 2
    await run(database, quick, teacher, first)
    assert teacher.requests == 2

    second = post_job(client, ds)
    assert second["progress"]["total"] == 0
    assert second["status"] == "succeeded" and second["finished_at"] is not None
    assert second["stop_reason"].startswith("nothing to label")
    assert client.get(f"/v1/jobs/{second['id']}").json()["status"] == "succeeded"
    assert await tasks_of(database, uuid.UUID(second["id"])) == []
    report = client.get(f"/v1/jobs/{second['id']}/report")
    assert report.status_code == 200 and report.json()["candidates"] == 0, report.text

    rows = export(client, ds)
    assert sorted(r["output"] for r in rows) == ["answer to: Q0", "answer to: Q1", "given"]
    # the job recorded the system prompt its teacher calls carried (no skill: the default)
    assert (await job_row(database, uuid.UUID(first["id"]))).system_prompt == (
        skill_system_prompt(None)
    )
    with_system = export(client, ds, system="true")
    by_output = {r["output"]: r["system"] for r in with_system}
    assert by_output == {
        "answer to: Q0": skill_system_prompt(None),
        "answer to: Q1": skill_system_prompt(None),
        "given": "",  # a seed's own answer: no teacher saw it
    }


async def test_relabel_replaces_the_answer_and_keeps_the_old_one(
    client: httpx.Client, database: Database, quick: Settings
) -> None:
    ds = make_dataset(client)["id"]
    upload_seeds(client, ds, [{"instruction": "Q0"}, {"instruction": "Q1", "output": "given"}])
    teacher = ScriptedTeacher()
    await run(database, quick, teacher, post_job(client, ds))

    teacher.prefix = "better: "
    relabel = post_job(client, ds, relabel=True)
    assert relabel["progress"]["total"] == 2  # the prompts, never the answers
    await run(database, quick, teacher, relabel)

    rows = export(client, ds)
    assert sorted(r["output"] for r in rows) == ["better: Q0", "better: Q1"]
    history = export(client, ds, status="all", metadata="true")
    meta = {r["output"]: r["metadata"] for r in history}
    assert len(history) == 5  # 2 seeds, the first answer, 2 new answers
    new = {out: m["id"] for out, m in meta.items() if out and out.startswith("better")}
    assert meta["answer to: Q0"]["status"] == "accepted"  # kept, with a pointer
    assert meta["answer to: Q0"]["superseded_by"] == new["better: Q0"]
    assert meta["given"]["superseded_by"] == new["better: Q1"]
    assert meta["better: Q0"]["superseded_by"] is None
    assert meta["better: Q0"]["source_id"] == meta["answer to: Q0"]["source_id"]
    listed = client.get(f"/v1/datasets/{ds}/examples").json()["data"]
    by_id = {e["id"]: e for e in listed}
    assert by_id[meta["given"]["id"]]["superseded_by"] == new["better: Q1"]
    assert by_id[new["better: Q1"]]["source_id"] == meta["given"]["id"]

    # the same answers again: exact duplicates, rejected; still one current answer per prompt
    again = post_job(client, ds, relabel=True)
    await run(database, quick, teacher, again)
    assert (await job_row(database, uuid.UUID(again["id"]))).rejected == 2
    assert sorted(r["output"] for r in export(client, ds)) == ["better: Q0", "better: Q1"]
    answers = await current_answers(database, ds)
    assert sorted(answers.values()) == [["better: Q0"], ["better: Q1"]]


async def test_conversations_relabeled_twice_keep_one_row_each(
    client: httpx.Client, database: Database, quick: Settings
) -> None:
    ds = make_dataset(client)["id"]
    open_chat = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "and?"},
    ]
    answered = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]
    upload_seeds(client, ds, [{"messages": open_chat}, {"messages": answered}])
    teacher = ScriptedTeacher()
    first = post_job(client, ds)
    assert first["progress"]["total"] == 1
    await run(database, quick, teacher, first)
    for prefix in ("v2: ", "v3: "):
        teacher.prefix = prefix
        job = post_job(client, ds, relabel=True)
        assert job["progress"]["total"] == 2
        await run(database, quick, teacher, job)

    rows = export(client, ds, format="messages")
    assert sorted(r["messages"][-1]["content"] for r in rows) == ["v3: and?", "v3: x"]
    alpaca = {r["instruction"]: r for r in export(client, ds)}
    assert alpaca["and?"] == {
        "instruction": "and?",
        "input": "",
        "output": "v3: and?",
        "system": "be brief",
        "history": [["hi", "hello"]],
    }
    assert alpaca["x"] == {"instruction": "x", "input": "", "output": "v3: x"}
    assert len(export(client, ds, status="all")) == 2 + 1 + 2 + 2


async def test_a_job_planned_before_another_answered_rejects_its_answers(
    client: httpx.Client, database: Database, quick: Settings
) -> None:
    """Two jobs planned on the same unanswered prompts: the one that commits second stores its
    answers as rejected `already_answered`."""
    ds = make_dataset(client)["id"]
    upload_seeds(client, ds, [{"instruction": f"Q{i}"} for i in range(3)])
    first = post_job(client, ds, teacher={"model": "m1"})
    second = post_job(client, ds, teacher={"model": "m2"})
    assert first["progress"]["total"] == second["progress"]["total"] == 3
    await run(database, quick, ScriptedTeacher("m1"), first)
    late = ScriptedTeacher("m2")
    late.prefix = "late: "
    await run(database, quick, late, second)

    job = await job_row(database, uuid.UUID(second["id"]))
    assert (job.accepted, job.rejected) == (0, 3)
    rejected = export(client, ds, status="rejected", metadata="true")
    assert {r["metadata"]["reject_reason"] for r in rejected} == {"already_answered"}
    assert all(r["metadata"]["reject_detail"] for r in rejected)
    listed = client.get(f"/v1/datasets/{ds}/examples", params={"status": "rejected"}).json()
    assert {e["reject_reason"] for e in listed["data"]} == {"already_answered"}
    assert sorted(r["output"] for r in export(client, ds)) == [f"answer to: Q{i}" for i in range(3)]


async def test_example_ids_name_prompts_and_an_answer_stands_for_its_prompt(
    client: httpx.Client, database: Database, quick: Settings
) -> None:
    ds = make_dataset(client)["id"]
    upload_seeds(client, ds, [{"instruction": "Q0"}, {"instruction": "Q1"}])
    await run(database, quick, ScriptedTeacher(), post_job(client, ds))
    listed = client.get(f"/v1/datasets/{ds}/examples").json()["data"]
    answer = next(e for e in listed if e["source_id"] is not None)

    # answered already: refused without relabel, naming the id
    err = assert_error(
        client.post(
            "/v1/jobs",
            json={"dataset_id": ds, "kind": "labeling", "params": {"example_ids": [answer["id"]]}},
        ),
        422,
        "validation_error",
    )
    assert "relabel" in err["message"] and answer["id"] in err["details"][0]["msg"]
    job = post_job(client, ds, relabel=True, example_ids=[answer["id"], answer["source_id"]])
    assert job["progress"]["total"] == 1
    tasks = await tasks_of(database, uuid.UUID(job["id"]))
    assert [t.payload["example_ids"] for t in tasks] == [[answer["source_id"]]]


def test_an_empty_dataset_is_still_a_conflict(client: httpx.Client) -> None:
    ds = make_dataset(client)["id"]
    err = assert_error(
        client.post("/v1/jobs", json={"dataset_id": ds, "kind": "labeling"}), 409, "conflict"
    )
    assert "upload seeds" in err["message"]


BAD_PARAMS = [
    ("labeling", "params", "relabel", "yes"),
    ("labeling", "params", "relabel", 1),
    ("labeling", "params", "relabel", "true"),
    ("labeling", "params", "chunk_size", "10"),
    ("labeling", "params", "chunk_size", 10.5),
    ("labeling", "params", "chunk_size", True),
    ("labeling", "params", "example_ids", "not-a-list"),
    ("labeling", "params", "filters", "length"),
    ("expansion", "params", "target", True),
    ("expansion", "params", "target", "100"),
    ("expansion", "params", "target", [100]),
    ("expansion", "params", "demos_per_prompt", "8"),
    ("expansion", "params", "seed_demo_fraction", "0.5"),
    ("expansion", "params", "seed_demo_fraction", True),
    ("expansion", "params", "candidates_per_call", False),
    ("expansion", "params", "calls_per_round", "16"),
    ("expansion", "params", "max_rounds", 2.5),
    ("expansion", "params", "token_budget", "1000"),
    ("expansion", "params", "two_stage", "no"),
    ("expansion", "params", "two_stage", 0),
    ("expansion", "params", "parallel_rounds", "4"),
    ("expansion", "params", "similarity_threshold", "0.7"),
    ("labeling", "teacher", "temperature", "0.5"),
    ("labeling", "teacher", "top_p", True),
    ("labeling", "teacher", "max_tokens", "256"),
    ("labeling", "teacher", "seed", False),
    ("labeling", "teacher", "top_logprobs", "2"),
    ("labeling", "teacher", "model", 7),
]


def test_job_params_are_strictly_typed(client: httpx.Client) -> None:
    ds = make_dataset(client)["id"]
    upload_seeds(client, ds, [{"instruction": "Q0"}])
    base = {"expansion": {"target": 5}, "labeling": {}}
    for kind, part, field, value in BAD_PARAMS:
        body: dict[str, Any] = {"dataset_id": ds, "kind": kind, "params": dict(base[kind])}
        body.setdefault(part, {})[field] = value
        err = assert_error(client.post("/v1/jobs", json=body), 422, "validation_error")
        assert err["details"][0]["loc"][-1] == field, (kind, field, value, err)
    # what JSON Schema allows is still taken: integers for floats, 5.0 for an integer, ids as
    # strings
    ok = client.post(
        "/v1/jobs",
        json={
            "dataset_id": ds,
            "kind": "expansion",
            "params": {"target": 5.0, "seed_demo_fraction": 1, "similarity_threshold": 1},
            "teacher": {"temperature": 1, "top_p": 1, "max_tokens": 64.0},
        },
    )
    assert ok.status_code == 202, ok.text
    assert ok.json()["params"]["seed_demo_fraction"] == 1.0
    assert ok.json()["params"]["target"] == 5 and ok.json()["teacher"]["max_tokens"] == 64
    seed = client.get(f"/v1/datasets/{ds}/examples").json()["data"][0]
    labeling = client.post(
        "/v1/jobs",
        json={"dataset_id": ds, "kind": "labeling", "params": {"example_ids": [seed["id"]]}},
    )
    assert labeling.status_code == 202, labeling.text
    assert labeling.json()["params"]["example_ids"] == [seed["id"]]


def test_an_upgrade_links_answers_labeled_before_it(database_url: str) -> None:
    """Rows as the previous revision's code wrote them: the answer gets its `source_id` from
    metadata, and of two answers to one prompt the older is marked replaced by the newer."""
    import asyncio

    import sqlalchemy as sa
    from alembic import command

    from app import migrate
    from app.ids import uuid7
    from app.models import DEFAULT_TENANT_ID

    command.downgrade(migrate.alembic_config(database_url), "6a882f4cfc80")
    datasets = sa.table(
        "datasets", sa.column("id", sa.Uuid()), sa.column("tenant_id", sa.Uuid()),
        sa.column("name"), sa.column("description"), sa.column("created_at", sa.DateTime()),
    )  # fmt: skip
    examples = sa.table(
        "examples", sa.column("id", sa.Uuid()), sa.column("dataset_id", sa.Uuid()),
        sa.column("origin"), sa.column("status"), sa.column("instruction"), sa.column("input"),
        sa.column("output"), sa.column("metadata", sa.JSON()), sa.column("content_hash"),
        sa.column("method"), sa.column("created_at", sa.DateTime()),
    )  # fmt: skip
    ds, pending, given, first, second, given_answer = (uuid7() for _ in range(6))
    now = dt.datetime(2026, 11, 1)

    def row(id_: uuid.UUID, status: str, output: str | None, **kw: Any) -> dict[str, Any]:
        return {"id": id_, "dataset_id": ds, "origin": kw.get("origin", "generated"),
                "status": status, "instruction": "q", "input": "", "output": output,
                "metadata": kw.get("meta", {}), "content_hash": uuid7().hex,
                "method": kw.get("method"), "created_at": now}  # fmt: skip

    async def setup() -> dict[uuid.UUID, tuple[uuid.UUID | None, uuid.UUID | None]]:
        db = Database.from_url(database_url)
        try:
            async with db.engine.begin() as conn:
                await conn.execute(sa.insert(datasets).values(
                    id=ds, tenant_id=DEFAULT_TENANT_ID, name="old", description="",
                    created_at=now))  # fmt: skip
                await conn.execute(sa.insert(examples), [
                    row(pending, "pending", None, origin="seed"),
                    row(given, "accepted", "mine", origin="seed"),
                    row(first, "accepted", "a1", method="labeling",
                        meta={"source_example_id": str(pending)}),
                    row(second, "accepted", "a2", method="labeling",
                        meta={"source_example_id": str(pending)}),
                    row(given_answer, "accepted", "b", method="labeling",
                        meta={"source_example_id": str(given)}),
                ])  # fmt: skip
            await asyncio.to_thread(migrate.upgrade, database_url)
            async with db.reading() as session:
                got = await session.execute(
                    select(Example.id, Example.source_id, Example.superseded_by).where(
                        Example.dataset_id == ds
                    )
                )
                return {r.id: (r.source_id, r.superseded_by) for r in got}
        finally:
            await db.engine.dispose()

    assert asyncio.run(setup()) == {
        pending: (None, None),
        given: (None, given_answer),
        first: (pending, second),
        second: (pending, None),
        given_answer: (given, None),
    }
