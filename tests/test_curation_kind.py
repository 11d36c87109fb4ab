"""Curation jobs (taxonomy-driven generation with quotas per leaf) end to end through HTTP, with
an in-process worker; the per-leaf cap at commit; kill -9 of workers mid-job."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from app import jobs
from app.config import Settings
from app.models import DEFAULT_TENANT_ID, Example, Job, Skill, Task
from app.schemas import CurationJobCreate
from app.state import Database
from tests.curation_teacher import CurationTeacher, proposed_paths
from tests.factories import make_dataset
from tests.kill_loop import Workers, kill_until_done, workers_factory  # noqa: F401  (fixture)
from tests.test_expansion import (
    assert_no_near_duplicates,
    export,
    fast,  # noqa: F401  (fixture)
    start,
    wait_for,
)
from tests.test_queue import claim, complete, examples_of, job_row, outcome
from tests.worker_proc import add_dataset, add_job
from workers.methods import curation

TAXONOMY = {
    "topics": [
        {
            "name": "Algebra",
            "description": "symbolic manipulation",
            "subtopics": [
                {"name": "Linear equations", "quota": 4},
                {"name": "Quadratics", "description": "roots, factoring, the formula"},
            ],
        },
        {"name": "Geometry", "subtopics": [{"name": "Circles"}, {"name": "Triangles"}]},
        {"name": "Probability"},  # a topic without subtopics is a leaf itself
    ]
}
LEAVES = {
    "Algebra/Linear equations": 4,
    "Algebra/Quadratics": 6,
    "Geometry/Circles": 6,
    "Geometry/Triangles": 6,
    "Probability": 6,
}


def make_skill(client: httpx.Client, taxonomy: dict[str, Any] | None = TAXONOMY) -> str:
    body: dict[str, Any] = {"name": "maths tutor", "description": "teach school maths"}
    if taxonomy is not None:
        body["taxonomy"] = taxonomy
    response = client.post("/v1/skills", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def curation_job(client: httpx.Client, ds: str, skill: str | None, **params: Any) -> httpx.Response:
    body: dict[str, Any] = {"dataset_id": ds, "kind": "curation", "params": params}
    if skill is not None:
        body["skill_id"] = skill
    return client.post("/v1/jobs", json=body)


def coverage(client: httpx.Client, job_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    report = client.get(f"/v1/jobs/{job_id}/report").json()
    return report, {leaf["path"]: leaf for leaf in report["curation"]["coverage"]}


def test_exact_quotas_per_leaf_in_parallel_with_coverage_and_topic_exports(
    fast: Settings,  # noqa: F811
) -> None:
    teacher = CurationTeacher(seed=1, copy_every=4)
    for client in start(fast, teacher, concurrency=4):
        ds = make_dataset(client)["id"]
        skill = make_skill(client)
        params = {"quota_per_leaf": 6, "calls_per_leaf": 2, "candidates_per_call": 4}
        created = curation_job(client, ds, skill, **params)
        assert created.status_code == 202, created.text
        assert created.json()["progress"]["total"] == sum(LEAVES.values()) == 28
        job = wait_for(client, created.json()["id"])
        assert job["status"] == "succeeded", job
        assert job["stop_reason"] == curation.ALL_MET
        assert job["progress"]["accepted"] == job["progress"]["total"] == 28
        assert job["progress"]["completed"] == 28  # what the commit rejected counts for nothing

        # every leaf exactly at its quota (exports filter by leaf; a topic takes its leaves)
        rows = export(client, ds, metadata=True)
        assert Counter(r["metadata"]["topic"] for r in rows) == LEAVES
        for path, quota in LEAVES.items():
            assert len(export(client, ds, topic=path)) == quota
        assert len(export(client, ds, topic="Algebra/")) == 10
        assert len(export(client, ds, topic="Algebra")) == 10
        assert export(client, ds, topic="Algebra/Lin") == []  # a leaf's path, not any prefix
        for bad in ("", "/"):
            response = client.get(f"/v1/datasets/{ds}/export", params={"topic": bad})
            assert response.status_code == 422, response.text
            assert response.json()["error"]["details"][0]["loc"] == ["query", "topic"]
        for meta in (r["metadata"] for r in rows):
            assert meta["method"] == "curation" and meta["job_id"] == job["id"]
            assert meta["prompt_id"] == "expansion/answer"  # the answer call is expansion's
        # each example is stored under the leaf it was proposed for
        emitted = set(teacher.emitted)
        assert all((r["metadata"]["topic"], r["instruction"]) in emitted for r in rows)

        # dedup is dataset-wide: copies of other leaves' tasks were caught, none accepted
        assert teacher.copies > 0
        assert_no_near_duplicates([r["instruction"] for r in rows])
        report, leaves = coverage(client, job["id"])
        assert report["duplicates"] > 0
        assert report["curation"] == {
            **report["curation"],
            "proposed": False,
            "leaves": 5,
            "leaves_met": 5,
            "quota": 28,
            "accepted": 28,
        }
        assert list(leaves) == list(LEAVES)  # taxonomy order
        for path, leaf in leaves.items():
            assert (leaf["accepted"], leaf["quota"], leaf["done"]) == (
                LEAVES[path],
                LEAVES[path],
                "quota met",
            )
            assert leaf["rounds"] >= 1
            assert sum(leaf["rejected_by_reason"].values()) == leaf["rejected"]
        assert sum(leaf["rejected"] for leaf in leaves.values()) == report["rejected"]
        assert (
            sum(
                leaf["rejected_by_reason"].get(r, 0)
                for leaf in leaves.values()
                for r in ("duplicate", "near_duplicate")
            )
            == report["duplicates"]
        )


def test_a_leaf_whose_budget_is_spent_stops_with_its_reason(
    fast: Settings,  # noqa: F811
) -> None:
    taxonomy = {"topics": [{"name": "A", "subtopics": [{"name": "dry"}, {"name": "wet"}]}]}
    teacher = CurationTeacher(seed=2, dry={"A/dry"})
    for client in start(fast, teacher, concurrency=3):
        ds = make_dataset(client)["id"]
        skill = make_skill(client, taxonomy)
        params = {"quota_per_leaf": 3, "calls_per_leaf": 1, "candidates_per_call": 3,
                  "max_rounds_per_leaf": 2}  # fmt: skip
        job = wait_for(client, curation_job(client, ds, skill, **params).json()["id"])
        assert job["status"] == "succeeded", job
        assert job["progress"] == {**job["progress"], "total": 6, "accepted": 4}
        assert job["stop_reason"] is not None and "'A/dry' stopped at 1/3" in job["stop_reason"]
        report, leaves = coverage(client, job["id"])
        dry, wet = leaves["A/dry"], leaves["A/wet"]
        assert (dry["accepted"], dry["rounds"], dry["done"]) == (
            1,
            2,
            "round budget spent (2 rounds)",
        )
        assert dry["rejected_by_reason"]["duplicate"] >= 2
        assert (wet["accepted"], wet["done"]) == (3, "quota met")
        assert report["curation"]["leaves_met"] == 1
        assert teacher.by_leaf["A/dry"] == 2  # the budget: two rounds of one call


def test_propose_review_patch_then_generate(
    fast: Settings,  # noqa: F811
) -> None:
    teacher = CurationTeacher(seed=3, unusable=1)
    for client in start(fast, teacher):
        ds = make_dataset(client)["id"]
        skill = make_skill(client, taxonomy=None)
        # a curation job needs a skill, and a skill with a taxonomy unless it may propose one
        response = curation_job(client, ds, None)
        assert response.status_code == 422
        assert response.json()["error"]["details"][0]["loc"] == ["body", "skill_id"]
        response = curation_job(client, ds, skill)
        assert response.status_code == 422
        assert response.json()["error"]["details"][0]["loc"] == ["body", "params", "propose"]

        created = curation_job(client, ds, skill, propose=True, review=True, topics=2, subtopics=2)
        assert created.status_code == 202 and created.json()["progress"]["total"] == 0
        job = wait_for(client, created.json()["id"])
        assert job["status"] == "succeeded", job
        assert job["stop_reason"] == curation.REVIEW
        assert job["progress"]["total"] == 0 and job["progress"]["accepted"] == 0
        assert teacher.taxonomy_calls == 2  # the unusable first reply was asked again
        stored = client.get(f"/v1/skills/{skill}").json()["taxonomy"]
        paths = ["/".join([t["name"], s["name"]]) for t in stored["topics"] for s in t["subtopics"]]
        assert paths == proposed_paths(2, 2)  # "/" cleaned, the repeat and the extra dropped
        assert coverage(client, job["id"])[0]["curation"]["proposed"] is True
        assert export(client, ds, status="all") == []

        # the user edits the taxonomy; the next job generates from the edit
        stored["topics"] = stored["topics"][:1]
        stored["topics"][0]["subtopics"][0]["quota"] = 2
        assert client.patch(f"/v1/skills/{skill}", json={"taxonomy": stored}).status_code == 200
        created = curation_job(client, ds, skill, quota_per_leaf=3, calls_per_leaf=1)
        assert created.json()["progress"]["total"] == 5
        job = wait_for(client, created.json()["id"])
        assert job["status"] == "succeeded" and job["progress"]["accepted"] == 5, job
        counts = Counter(r["metadata"]["topic"] for r in export(client, ds, metadata=True))
        assert counts == dict(zip(proposed_paths(1, 2), (2, 3), strict=True))
        assert coverage(client, job["id"])[0]["curation"]["proposed"] is False
        assert teacher.taxonomy_calls == 2


def test_propose_then_generate_in_one_job(
    fast: Settings,  # noqa: F811
) -> None:
    teacher = CurationTeacher(seed=4)
    for client in start(fast, teacher, concurrency=3):
        ds = make_dataset(client)["id"]
        skill = make_skill(client, taxonomy=None)
        params = {"propose": True, "topics": 2, "subtopics": 2, "quota_per_leaf": 3,
                  "calls_per_leaf": 1}  # fmt: skip
        job = wait_for(client, curation_job(client, ds, skill, **params).json()["id"])
        assert job["status"] == "succeeded", job
        assert job["progress"]["total"] == job["progress"]["accepted"] == 12
        assert job["stop_reason"] == curation.ALL_MET
        stored = client.get(f"/v1/skills/{skill}").json()["taxonomy"]
        assert len(stored["topics"]) == 2
        counts = Counter(r["metadata"]["topic"] for r in export(client, ds, metadata=True))
        assert counts == dict.fromkeys(proposed_paths(2, 2), 3)
        report, leaves = coverage(client, job["id"])
        assert report["curation"]["proposed"] is True and list(leaves) == proposed_paths(2, 2)


def test_cancel_keeps_what_was_accepted_and_stops_every_leaf(
    fast: Settings,  # noqa: F811
) -> None:
    teacher = CurationTeacher(seed=5, delay=0.3)
    for client in start(fast, teacher, concurrency=2):
        ds = make_dataset(client)["id"]
        skill = make_skill(client)
        params = {"quota_per_leaf": 50, "calls_per_leaf": 1, "candidates_per_call": 2}
        job_id = curation_job(client, ds, skill, **params).json()["id"]
        deadline = time.monotonic() + 60
        while client.get(f"/v1/jobs/{job_id}").json()["progress"]["accepted"] < 3:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 202
        job = wait_for(client, job_id)
        assert job["status"] == "cancelled"
        calls = teacher.calls
        time.sleep(1.0)
        assert teacher.calls == calls  # nothing runs after the cancel
        rows = export(client, ds)
        assert len(rows) == job["progress"]["accepted"] >= 3
        _, leaves = coverage(client, job_id)
        assert all(leaf["done"] == "cancelled" for leaf in leaves.values())
        assert sum(leaf["accepted"] for leaf in leaves.values()) == len(rows)


async def test_the_leaf_cap_at_commit_keeps_quotas_exact(database: Database) -> None:
    """Tasks of one leaf committing at once: at most the leaf's quota stays accepted, the rest
    is `over_target`; another leaf's examples are not counted against it."""
    job_id = await add_job(database, [{"round": 0}, {"round": 1}, {"round": 2}], total=10)
    tasks = await claim(database, "w1", limit=3)

    def leaf(topic: str, *texts: str) -> Any:
        done = outcome(*texts, max_accepted=10, max_accepted_topic=(topic, 3))
        for example in done.examples:
            example.topic = topic
        return done

    await complete(database, tasks[0], "w1", leaf("a/b", "a1", "a2"))
    other = await complete(database, tasks[1], "w1", leaf("a/c", "c1", "c2", "c3"))
    late = await complete(database, tasks[2], "w1", leaf("a/b", "a3", "a4", "a5"))
    assert (other.accepted, late.accepted, late.rejected) == (3, 1, 2)
    rows = await examples_of(database, job_id)
    accepted = Counter(r.topic for r in rows if r.status == "accepted")
    assert accepted == {"a/b": 3, "a/c": 3}
    assert sorted(r.instruction for r in rows if r.reject_reason == "over_target") == ["a4", "a5"]
    job = await job_row(database, job_id)
    assert (job.accepted, job.completed) == (6, 6)


async def test_a_proposed_taxonomy_never_overwrites_one_the_skill_has(database: Database) -> None:
    async with database.transaction() as session:
        given = Skill(tenant_id=DEFAULT_TENANT_ID, name="s", taxonomy={"topics": [{"name": "x"}]})
        bare = Skill(tenant_id=DEFAULT_TENANT_ID, name="t")
        session.add_all([given, bare])
        await session.flush()
    proposal = {"topics": [{"name": "proposed", "quota": None, "description": "", "subtopics": []}]}
    for skill in (given, bare):
        job_id = await add_job(database, [{"propose": True}], total=0)
        async with database.transaction() as session:
            await session.execute(
                Job.__table__.update().where(Job.id == job_id).values(skill_id=skill.id)
            )
        [task] = await claim(database, "w1")
        await complete(database, task, "w1", outcome(taxonomy=proposal, total=7))
        assert (await job_row(database, job_id)).total == 7
    async with database.reading() as session:
        assert (await session.get(Skill, given.id, populate_existing=True)).taxonomy == {  # type: ignore[union-attr]
            "topics": [{"name": "x"}]
        }
        assert (await session.get(Skill, bare.id, populate_existing=True)).taxonomy == proposal  # type: ignore[union-attr]


# --- kill -9 --------------------------------------------------------------------------------

CRASH_TAXONOMY = {
    "topics": [
        {"name": f"T{t}", "subtopics": [{"name": f"S{s}"} for s in range(3)]} for t in range(3)
    ]
}
CRASH_QUOTA = 20


async def start_crash_job(db: Database) -> uuid.UUID:
    dataset_id = await add_dataset(db)
    async with db.transaction() as session:
        skill = Skill(tenant_id=DEFAULT_TENANT_ID, name="trivia", taxonomy=CRASH_TAXONOMY)
        session.add(skill)
        await session.flush()
        request = CurationJobCreate(
            dataset_id=dataset_id, kind="curation", skill_id=skill.id,
            params={"quota_per_leaf": CRASH_QUOTA, "calls_per_leaf": 2, "candidates_per_call": 5},
        )  # fmt: skip
        job = await jobs.create_job(
            session=session, tenant_id=DEFAULT_TENANT_ID, request=request, settings=Settings()
        )
        return job.id


async def test_kill9_during_curation_loses_and_doubles_nothing(
    database_url: str,
    tmp_path: Path,
    workers_factory: list[Workers],  # noqa: F811
) -> None:
    db = Database.from_url(database_url)
    job_id = await start_crash_job(db)
    total = 9 * CRASH_QUOTA
    # the self-instruct double answers the leaves' "Come up with N" proposals
    workers = Workers(database_url, tmp_path, "--teacher", "selfinstruct", "--lease", "2",
                      "--heartbeat", "0.5", "--concurrency", "3", "--delay", "0.15")  # fmt: skip
    workers_factory.append(workers)
    try:
        run = await kill_until_done(
            db, job_id, workers, start=2, timeout=150, max_kills=8,
            progress=lambda job: job.accepted, kill_below=total * 0.8,
        )  # fmt: skip
        job, kills, seed = run.job, run.kills, run.seed
        assert job.status == "succeeded", (job.error, seed, workers.tail())
        async with db.reading() as session:
            rows = (
                await session.execute(
                    select(Example.topic, Example.instruction).where(
                        Example.job_id == job_id, Example.status == "accepted"
                    )
                )
            ).all()
            keys = await session.scalar(
                select(func.count()).select_from(
                    select(Example.task_id, Example.item_index).distinct().subquery()
                )
            )
            stored = await session.scalar(
                select(func.count()).select_from(Example).where(Example.job_id == job_id)
            )
            unfinished = await session.scalar(
                select(func.count())
                .select_from(Task)
                .where(Task.job_id == job_id, Task.status != "succeeded")
            )
        assert job.accepted == len(rows) == total, seed
        assert Counter(r.topic for r in rows) == {
            f"T{t}/S{s}": CRASH_QUOTA for t in range(3) for s in range(3)
        }, seed
        assert keys == stored and unfinished == 0  # no row written twice, no task left
        assert len({r.instruction for r in rows}) == total
        assert_no_near_duplicates([r.instruction for r in rows])
        assert kills >= 3, f"the job finished before enough kills (seed {seed})"
        print(f"seed {seed}: {kills} kills")
    finally:
        workers.stop_all()
        await db.engine.dispose()
