"""Evol-Instruct end to end through HTTP with an in-process worker (and, killed with -9, worker
processes): exact totals, lineage, each elimination rule planted, curation, cancellation."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app import examples as examples_store
from app import jobs
from app.config import Settings
from app.kinds import EVOL_OPERATIONS
from app.models import DEFAULT_TENANT_ID, Example
from app.schemas import EvolJobCreate, ExampleIn
from app.state import Database
from tests.evol_teacher import EvolTeacher
from tests.factories import make_dataset, upload_seeds
from tests.kill_loop import Workers, kill_until_done, workers_factory  # noqa: F401  (fixture)
from tests.selfinstruct_teacher import vocabulary
from tests.test_expansion import export, fast, start, wait_for  # noqa: F401  (fixture)
from tests.worker_proc import add_dataset
from workers.curation import dedup, filters
from workers.curation.types import Candidate
from workers.methods import evol

WORDS = vocabulary(400, seed=5)


def seeds(n: int, marker: str = "", offset: int = 0) -> list[dict[str, str]]:
    return [
        {
            "instruction": f"Seed task {offset + i}: define "
            + " ".join(WORDS[(offset + i) * 5 : (offset + i) * 5 + 5])
            + (f" {marker}" if marker else ""),
            "output": f"A definition of {WORDS[(offset + i) * 5]}.",
        }
        for i in range(n)
    ]


def evolve(client: httpx.Client, ds: str, timeout: float = 120, **params: Any) -> dict[str, Any]:
    response = client.post("/v1/jobs", json={"dataset_id": ds, "kind": "evol", "params": params})
    assert response.status_code == 202, response.text
    return wait_for(client, response.json()["id"], timeout=timeout)


def lineage(row: dict[str, Any]) -> dict[str, Any]:
    return row["metadata"]["metadata"]  # type: ignore[no-any-return]


def check_lineages(rows: list[dict[str, Any]], roots: set[str], generations: int) -> None:
    """Each lineage step stored once; each evolution's parent is the last kept evolution of its
    lineage before it (the root at first)."""
    steps = Counter((lineage(r)["root_id"], lineage(r)["generation"]) for r in rows)
    assert set(steps.values()) == {1}, steps.most_common(3)
    assert {root for root, _ in steps} == roots
    assert {g for _, g in steps} == set(range(1, generations + 1))
    by_root: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_root.setdefault(lineage(r)["root_id"], []).append(r)
    for root, line in by_root.items():
        line.sort(key=lambda r: lineage(r)["generation"])
        parent = root
        for r in line:
            assert lineage(r)["parent_id"] == parent, (root, lineage(r))
            assert lineage(r)["operation"] in EVOL_OPERATIONS
            if r["metadata"]["status"] == "accepted":
                parent = r["metadata"]["id"]


def test_evolves_every_lineage_exactly_with_lineage_and_report(fast: Settings) -> None:  # noqa: F811
    teacher = EvolTeacher(seed=1)
    for client in start(fast, teacher):
        ds = make_dataset(client)["id"]
        upload_seeds(client, ds, seeds(10))
        roots = {r["id"] for r in client.get(f"/v1/datasets/{ds}/examples").json()["data"]}
        job = evolve(client, ds, generations=3, chunk_size=4)
        assert job["status"] == "succeeded", job
        assert job["progress"] == {
            "total": 30, "completed": 30, "accepted": 30, "rejected": 0, "failed": 0,
        }  # fmt: skip
        rows = export(client, ds, origin="generated", metadata=True, status="all")
        assert len(rows) == 30
        check_lineages(rows, roots, 3)
        by_id = {r["metadata"]["id"]: r for r in rows}
        for r in rows:
            meta = r["metadata"]
            assert meta["method"] == "evol" and meta["job_id"] == job["id"]
            breadth = lineage(r)["operation"] == "breadth"
            assert meta["prompt_id"] == ("evol/breadth" if breadth else "evol/depth")
            assert meta["prompt_version"] == "v1"
            assert r["output"].startswith("Here is a careful answer")
            parent = by_id.get(lineage(r)["parent_id"])
            if parent is not None and not breadth:  # in depth: its parent's text, and more
                assert r["instruction"].startswith(parent["instruction"].rstrip("."))
        # every step: one evolution, one equality check, one answer
        assert teacher.seen == {"evolve": 30, "equal": 30, "answer": 30}
        report = client.get(f"/v1/jobs/{job['id']}/report").json()
        assert report["evol"]["generations"] == [
            {"generation": g, "evolved": 10, "accepted": 10, "pending": 0, "eliminated": {},
             "rejected": {}}
            for g in (1, 2, 3)
        ]  # fmt: skip
        assert sum(op["evolved"] for op in report["evol"]["operations"].values()) == 30
        examples = client.get(
            f"/v1/datasets/{ds}/examples", params={"origin": "generated", "limit": 1}
        ).json()["data"]
        assert examples[0]["usage"]["completion_tokens"] > 0 and examples[0]["raw_output"]


PLANTED = {
    "zqcopy": "evol_copied_prompt",
    "zqsame": "evol_no_new_information",
    "zqequal": "evol_no_new_information",
    "zqsorry": "evol_refusal",
    "zqrefuse": "evol_refusal",
    "zqdegenerate": "evol_degenerate_answer",
}


def test_each_elimination_rule_drops_its_plants_and_the_lineage_goes_on(
    fast: Settings,  # noqa: F811
) -> None:
    for client in start(fast, EvolTeacher(seed=2)):
        ds = make_dataset(client)["id"]
        items = seeds(6)
        for k, marker in enumerate(PLANTED):
            items += seeds(1, marker, offset=10 + k)
        # curation applies to evolutions too: this one's evolutions keep "draw a picture"
        items.append({"instruction": "Draw a picture of the sunset over the harbour city."})
        upload_seeds(client, ds, items)
        stored = client.get(f"/v1/datasets/{ds}/examples", params={"limit": 100}).json()["data"]
        root_of = {r["instruction"]: r["id"] for r in stored}
        depth = [op for op in EVOL_OPERATIONS if op != "breadth"]
        job = evolve(client, ds, generations=2, chunk_size=5, operations=depth)
        assert job["status"] == "succeeded", job
        assert job["progress"]["total"] == job["progress"]["completed"] == 26
        assert job["progress"]["accepted"] == 12 and job["progress"]["rejected"] == 14
        rows = export(client, ds, origin="generated", metadata=True, status="all")
        check_lineages(rows, set(root_of.values()), 2)
        assert {lineage(r)["operation"] for r in rows} <= set(depth)
        for r in rows:
            root = lineage(r)["root_id"]
            text = next(t for t, i in root_of.items() if i == root)
            marker = next((m for m in PLANTED if m in text), None)
            if marker is not None:
                assert r["metadata"]["reject_reason"] == PLANTED[marker], (marker, r)
                assert lineage(r)["parent_id"] == root  # eliminated: goes on from the root
            elif text.startswith("Draw"):
                assert r["metadata"]["reject_reason"] == "non_text", r
            else:
                assert r["metadata"]["status"] == "accepted", r
        report = client.get(f"/v1/jobs/{job['id']}/report").json()
        for generation in report["evol"]["generations"]:
            assert generation["evolved"] == 13 and generation["accepted"] == 6
            assert generation["eliminated"] == {
                "evol_copied_prompt": 1, "evol_no_new_information": 2, "evol_refusal": 2,
                "evol_degenerate_answer": 1,
            }  # fmt: skip
            assert generation["rejected"] == {"non_text": 1}
        assert report["rejected_by_reason"]["evol_refusal"] == 4
        # an eliminated evolution is kept with its reason and what the teacher wrote
        copied = [r for r in rows if r["metadata"]["reject_reason"] == "evol_copied_prompt"]
        assert all("#Rewritten Prompt#" in r["instruction"] for r in copied)
        assert all(r["metadata"]["reject_detail"] for r in rows if r["metadata"]["reject_reason"])


def test_unanswered_evolutions_without_equality_check(fast: Settings) -> None:  # noqa: F811
    teacher = EvolTeacher(seed=3)
    for client in start(fast, teacher):
        ds = make_dataset(client)["id"]
        upload_seeds(client, ds, seeds(4) + seeds(1, "zqsame", offset=20))
        job = evolve(client, ds, generations=2, answer=False, equality_check=False)
        assert job["status"] == "succeeded", job
        assert job["progress"]["completed"] == 10 and job["progress"]["accepted"] == 0
        assert teacher.seen == {"evolve": 10}  # no equality checks, no answers
        rows = export(client, ds, origin="generated", metadata=True, status="pending")
        assert len(rows) == 8 and all(r["output"] is None for r in rows)
        report = client.get(f"/v1/jobs/{job['id']}/report").json()
        assert [g["pending"] for g in report["evol"]["generations"]] == [4, 4]
        # a second job evolves the pending evolutions too: they are prompts of the dataset
        body = {"dataset_id": ds, "kind": "evol", "params": {"generations": 1, "answer": False}}
        again = client.post("/v1/jobs", json=body).json()
        assert again["progress"]["total"] == 13
        assert wait_for(client, again["id"])["status"] == "succeeded"


def test_planning_errors_name_the_field(fast: Settings) -> None:  # noqa: F811
    for client in start(fast, EvolTeacher()):
        ds = make_dataset(client)["id"]
        empty = client.post("/v1/jobs", json={"dataset_id": ds, "kind": "evol"})
        assert empty.status_code == 409 and "nothing to evolve" in empty.text
        upload_seeds(client, ds, seeds(2))
        bad = client.post(
            "/v1/jobs",
            json={"dataset_id": ds, "kind": "evol", "params": {"example_ids": [str(uuid.uuid4())]}},
        )
        assert bad.status_code == 422
        assert bad.json()["error"]["details"][0]["loc"] == ["body", "params", "example_ids"]
        for params in ({"generations": 0}, {"operations": ["invent"]}, {"operations": []}):
            response = client.post(
                "/v1/jobs", json={"dataset_id": ds, "kind": "evol", "params": params}
            )
            assert response.status_code == 422, params
        root = client.get(f"/v1/datasets/{ds}/examples").json()["data"][0]["id"]
        job = client.post(
            "/v1/jobs",
            json={"dataset_id": ds, "kind": "evol",
                  "params": {"example_ids": [root], "generations": 4}},
        ).json()  # fmt: skip
        assert job["progress"]["total"] == 4


def test_cancel_stops_between_calls_and_keeps_what_was_stored(fast: Settings) -> None:  # noqa: F811
    teacher = EvolTeacher(seed=4, delay=0.2)
    for client in start(fast, teacher, concurrency=1):
        ds = make_dataset(client)["id"]
        upload_seeds(client, ds, seeds(40))
        job_id = client.post(
            "/v1/jobs",
            json={"dataset_id": ds, "kind": "evol", "params": {"generations": 3, "chunk_size": 4}},
        ).json()["id"]
        deadline = time.monotonic() + 60
        while client.get(f"/v1/jobs/{job_id}").json()["progress"]["completed"] < 8:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 202
        job = wait_for(client, job_id)
        assert job["status"] == "cancelled"
        rows = export(client, ds, origin="generated", metadata=True, status="all")
        assert 8 <= len(rows) == job["progress"]["completed"] < 120
        steps = Counter((lineage(r)["root_id"], lineage(r)["generation"]) for r in rows)
        assert set(steps.values()) == {1}
        time.sleep(0.5)  # nothing is written after the job ended
        assert len(export(client, ds, origin="generated", status="all")) == len(rows)


def test_elimination_rules() -> None:
    parent = {"id": "p", "instruction": "Explain how tides work on the coast.", "input": ""}
    evolved = Candidate("Explain how tides work on the rocky coast, for a child of eight.")
    assert evol.no_new_information(evolved, [parent]) is None
    same = Candidate("explain how tides work, on the coast!")
    assert evol.no_new_information(same, [parent]).reason == "evol_no_new_information"  # type: ignore[union-attr]
    assert evol.copied_prompt(Candidate("Rewrite the given prompt to be shorter")) is not None
    assert evol.copied_prompt(Candidate("x", "#Created Prompt#: a task")) is not None
    assert evol.copied_prompt(evolved) is None
    assert evol.refusal_like("I'm sorry, but I can't do that.") is not None
    assert evol.refusal_like("Sorry to hear that. " + "Here is a long answer. " * 20) is None
    assert evol.refusal_like("Tides follow the moon.") is None
    assert evol.degenerate("... the, and of it?!") is not None
    assert evol.degenerate("!!!") is not None
    assert evol.degenerate("42") is None and evol.degenerate("It is the moon.") is None
    assert evol.parse_evolution('```json\n{"instruction": " Do X ", "input": null}\n```') == (
        "Do X",
        "",
    )
    assert evol.parse_evolution('{"instruction": ""}') is None
    assert evol.parse_evolution("Rewritten: do X") is None


def test_evolutions_are_deduplicated_but_not_against_their_own_lineage() -> None:
    def row(i: str, text: str) -> dict[str, Any]:
        return {"id": i, "instruction": text, "input": "", "status": "accepted"}

    a_root = row("a", "Explain how tides work along the rocky coast of Brittany.")
    b_root = row("b", "Summarize the history of the printing press in Europe briefly.")
    c_root = row("c", "Describe the rules of chess for a complete beginner today.")
    other = "List the planets of the solar system in order from the sun outwards."

    def step(index: int, root: dict[str, Any], evolution: str) -> evol.Step:
        made = evol.Step(index, root["id"], [], root, [root], "deepen", 1)
        made.candidate = Candidate(evolution)
        return made

    steps = [
        # close to another lineage's root: a near duplicate (and not a match for the next one)
        step(0, b_root, "Explain how tides work along the rocky coast of Brittany in summer."),
        # close to its own parent (ROUGE-L 0.8): what an evolution is meant to be
        step(1, a_root, "Explain how tides work along the rocky coast of Brittany, with examples."),
        # close to an example of the dataset outside the task
        step(2, c_root, "List the planets of the solar system in order from the sun, with moons."),
    ]
    pool = [a_root["instruction"], b_root["instruction"], c_root["instruction"], other]
    config = filters.FilterConfig()
    evol.curate_evolutions(steps, steps, pool, [], config, None, dedup.DedupConfig())
    assert steps[1].rejection is None
    assert steps[0].rejection is not None and steps[0].rejection.reason == "near_duplicate"
    assert "another lineage" in steps[0].rejection.detail
    assert steps[2].rejection is not None and steps[2].rejection.reason == "near_duplicate"


async def start_job(db: Database, n: int, generations: int, chunk: int) -> uuid.UUID:
    dataset_id = await add_dataset(db)
    async with db.transaction() as session:
        items = [ExampleIn.model_validate(s) for s in seeds(n)]
        await examples_store.add_seeds(session=session, dataset_id=dataset_id, examples=items)
        request = EvolJobCreate(
            dataset_id=dataset_id,
            kind="evol",
            params={"generations": generations, "chunk_size": chunk},
        )
        job = await jobs.create_job(
            session=session, tenant_id=DEFAULT_TENANT_ID, request=request, settings=Settings()
        )
        return job.id


@pytest.mark.slow
async def test_kill9_during_evol_loses_and_doubles_nothing(
    database_url: str,
    tmp_path: Path,
    workers_factory: list[Workers],  # noqa: F811
) -> None:
    lineages, generations = 60, 3
    db = Database.from_url(database_url)
    job_id = await start_job(db, lineages, generations, chunk=5)
    workers = Workers(database_url, tmp_path, "--teacher", "evol", "--lease", "2",
                      "--heartbeat", "0.5", "--concurrency", "2", "--delay", "0.15")  # fmt: skip
    workers_factory.append(workers)
    try:
        run = await kill_until_done(
            db, job_id, workers, start=2, timeout=150, max_kills=8,
            progress=lambda job: job.completed, kill_below=lineages * generations * 0.8,
        )  # fmt: skip
        job, kills, seed = run.job, run.kills, run.seed
        assert job.status == "succeeded", (job.error, seed)
        assert job.completed == job.total == lineages * generations, seed
        async with db.reading() as session:
            rows = (
                await session.execute(
                    select(Example.meta, Example.status, Example.task_id, Example.item_index).where(
                        Example.job_id == job_id
                    )
                )
            ).all()
        assert len(rows) == lineages * generations, seed  # none lost, none twice
        steps = Counter((r.meta["root_id"], r.meta["generation"]) for r in rows)
        assert set(steps.values()) == {1} and len(steps) == lineages * generations
        assert len({(r.task_id, r.item_index) for r in rows}) == len(rows)
        assert job.accepted == sum(r.status == "accepted" for r in rows)
        assert kills >= 3, f"the job finished before enough kills (seed {seed})"
        print(f"seed {seed}: {kills} kills")
    finally:
        workers.stop_all()
        await db.engine.dispose()
