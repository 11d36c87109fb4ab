"""The teacher as judge, end to end: feedback jobs (pointwise and pairwise, samples and existing
responses, scores, pairs, order-swap agreement, retried and failed judgments, teacher outages)
and the judge filter of labeling and expansion (`low_score`). Jobs are posted over HTTP and run
by an in-process worker with a scripted judge (tests/judge_teacher.py)."""

from __future__ import annotations

import re
import uuid
import zlib
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app.config import Settings
from app.models import Example, PreferencePair, Task
from app.state import Database
from tests.factories import make_dataset, upload_seeds
from tests.judge_teacher import JudgeTeacher
from tests.scripted_teacher import ScriptedTeacher
from tests.selfinstruct_teacher import SelfInstructTeacher
from tests.test_answers import run
from tests.test_queue import job_row
from workers.methods import judging
from workers.teachers.base import TeacherRequest, TeacherUnavailable


def post(client: httpx.Client, ds: str, kind: str, **params: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"dataset_id": ds, "kind": kind, "params": params}
    if "teacher" in params:
        body["teacher"] = params.pop("teacher")
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    return response.json()  # type: ignore[no-any-return]


def by_temperature(request: TeacherRequest) -> str:
    """A sample whose quality marker is its temperature x 10: the judge scores it so."""
    t = request.sampling.temperature
    return f"sample at {t} for {request.messages[-1]['content']} [q={round(t * 10)}]"


def sampler() -> ScriptedTeacher:
    teacher = ScriptedTeacher()
    teacher.respond = by_temperature
    return teacher


async def rows_of(database: Database, ds: str) -> list[Example]:
    async with database.reading() as session:
        stmt = select(Example).where(Example.dataset_id == uuid.UUID(ds)).order_by(Example.id)
        return list((await session.scalars(stmt)).all())


async def pairs_of(database: Database, job_id: str) -> list[PreferencePair]:
    async with database.reading() as session:
        stmt = select(PreferencePair).where(PreferencePair.job_id == uuid.UUID(job_id))
        return list((await session.scalars(stmt)).all())


async def summaries(database: Database, job_id: str) -> list[dict[str, Any]]:
    async with database.reading() as session:
        stmt = select(Task.result).where(
            Task.job_id == uuid.UUID(job_id), Task.status == "succeeded"
        )
        return [dict(r or {}) for r in (await session.scalars(stmt)).all()]


def total(summary: list[dict[str, Any]], key: str) -> Any:
    return sum(s.get(key, 0) for s in summary)


async def test_pointwise_judges_samples_and_existing_responses(
    client: httpx.Client, database: Database, quick: Settings
) -> None:
    ds = make_dataset(client)["id"]
    upload_seeds(
        client,
        ds,
        [
            {"instruction": "Q0", "output": "seed answer 0 [q=4]"},
            {"instruction": "Q1", "output": "seed answer 1 [q=4]"},
            {"instruction": "Q2", "output": "unreadable seed [q=4]"},
        ],
    )
    # the judge's first two answers about one response are garbage, and always about another
    bad = {"seed answer 1 [q=4]": 2, "unreadable seed [q=4]": -1}
    teacher = JudgeTeacher(sampler(), garbage=lambda text: bad.get(text, 0))
    job = post(client, ds, "feedback", samples=2, temperatures=[0.2, 0.9], chunk_size=2)
    assert job["progress"]["total"] == 3
    await run(database, quick, teacher, job)

    rows = await rows_of(database, ds)
    seeds = {r.instruction: r for r in rows if r.origin == "seed"}
    candidates = [r for r in rows if r.status == "candidate"]
    assert len(candidates) == 6 and not [r for r in rows if r.status == "rejected"]
    for row in candidates:
        assert row.source_id == seeds[row.instruction].id and row.job_id == uuid.UUID(job["id"])
        assert row.sampling["temperature"] in (0.2, 0.9)
        assert row.scores["overall"] == round(row.sampling["temperature"] * 10)
        assert row.scores["mode"] == "pointwise"
        assert set(row.scores["aspects"]) == {
            "helpfulness", "honesty", "instruction_following", "truthfulness"
        }  # fmt: skip
        assert row.scores["aspects"]["honesty"] == {
            "score": row.scores["overall"],
            "rationale": "honesty of it",
        }
        assert row.scores["judge"] == {
            "model": "scripted-model",
            "prompt_id": "judge/pointwise",
            "prompt_version": "v1",
            "job_id": job["id"],
        }
    # existing responses are judged in place; an unreadable judgment never becomes a score
    assert seeds["Q0"].scores["overall"] == 4.0 and seeds["Q1"].scores["overall"] == 4.0
    assert seeds["Q2"].scores is None and seeds["Q2"].status == "accepted"

    pairs = await pairs_of(database, job["id"])
    assert len(pairs) == 3
    for pair in pairs:
        chosen = next(r for r in rows if r.id == pair.chosen_id)
        rejected = next(r for r in rows if r.id == pair.rejected_id)
        assert (chosen.scores["overall"], rejected.scores["overall"]) == (9, 2)
        assert (pair.chosen_score, pair.rejected_score, pair.margin) == (9, 2, 7)
        assert pair.mode == "pointwise" and pair.prompt_id == chosen.source_id
    summary = await summaries(database, job["id"])
    assert total(summary, "prompts") == 3 and total(summary, "prompts_with_pair") == 3
    assert sorted(m for s in summary for m in s["margins"]) == [7, 7, 7]
    assert total(summary, "judge_failed") == 1 and total(summary, "judged") == 8
    # 9 responses; 2 + 2 more asks for Q1's seed, 3 for Q2's
    assert total(summary, "judge_calls") == 9 + 2 + 2 == len(teacher.judge_requests)
    aspects = {a: v for s in summary for a, v in s["aspects"].items()}
    assert set(aspects) == set(judging.criteria({}, None).aspects)
    assert teacher.inner.requests == 6  # the samples
    finished = await job_row(database, uuid.UUID(job["id"]))
    assert (finished.completed, finished.failed) == (3, 0)
    # the web page's report shows the pairs and their margins as text, not JSON
    page = client.get(f"/ui/jobs/{job['id']}/report")
    assert page.status_code == 200, page.text[:500]
    text = " ".join(re.sub(r"<[^>]+>", " ", page.text).split())
    assert "prompts judged 3 prompts with a pair 3 preference pairs 3" in text
    assert "margin min / median / max 7.00 / 7.00 / 7.00" in text
    assert "7–8: 3" in text and "judgments failed 1" in text  # the histogram's bin of 7
    assert '"pairs":' not in page.text


def q_of(text: str) -> int:
    found = re.search(r"\[q=(\d+)\]", text)
    return int(found.group(1)) if found else 0


async def test_pairwise_counts_only_agreeing_orders(
    client: httpx.Client, database: Database, quick: Settings
) -> None:
    ds = make_dataset(client)["id"]
    upload_seeds(client, ds, [{"instruction": "Q0"}, {"instruction": "Q1"}])
    # the judge is position-biased on 5 vs 9: "A" whichever is shown first
    teacher = JudgeTeacher(sampler(), biased=lambda a, b: {q_of(a), q_of(b)} == {5, 9})
    job = post(
        client, ds, "feedback", samples=3, temperatures=[0.2, 0.5, 0.9], mode="pairwise",
        pairs="all", min_margin=2,
    )  # fmt: skip
    await run(database, quick, teacher, job)

    summary = await summaries(database, job["id"])
    assert total(summary, "comparisons") == 2 * 3 and total(summary, "disagreements") == 2
    assert total(summary, "judge_calls") == 2 * 3 * 2  # every pair in both orders
    assert all(r.sampling.temperature == 0.0 for r in teacher.judge_requests)
    rows = await rows_of(database, ds)
    candidates = {(r.instruction, q_of(r.output or "")): r for r in rows if r.status == "candidate"}
    assert len(candidates) == 6
    low, mid, high = (candidates[("Q0", q)].scores for q in (2, 5, 9))
    # 2 lost both agreed comparisons; 5 vs 9 disagreed, so each has one agreed win
    assert (low["wins"], low["losses"], low["comparisons"], low["win_rate"]) == (0, 2, 2, 0.0)
    assert (mid["wins"], mid["comparisons"], mid["overall"]) == (1, 1, 10.0)
    assert (high["wins"], high["comparisons"], high["overall"]) == (1, 1, 10.0)
    assert high["mode"] == "pairwise" and high["judge"]["prompt_id"] == "judge/pairwise"
    assert len(low["rationales"]) == 4  # two comparisons, in both orders
    assert {r["shown_as"] for r in low["rationales"]} == {"A", "B"}
    pairs = await pairs_of(database, job["id"])
    # all: 5 > 2 and 9 > 2 by 10; 5 vs 9 is a tie of win rates (no pair)
    assert len(pairs) == 4 and {p.margin for p in pairs} == {10.0}
    ids = {r.id: q_of(r.output or "") for r in rows}
    assert sorted((ids[p.chosen_id], ids[p.rejected_id]) for p in pairs) == [
        (5, 2), (5, 2), (9, 2), (9, 2)
    ]  # fmt: skip


async def test_pairwise_best_worst_from_win_rates(
    client: httpx.Client, database: Database, quick: Settings
) -> None:
    ds = make_dataset(client)["id"]
    upload_seeds(client, ds, [{"instruction": "Q0", "output": "the seed [q=6]"}])
    teacher = JudgeTeacher(sampler())
    job = post(client, ds, "feedback", samples=2, temperatures=[0.3, 0.8], mode="pairwise")
    await run(database, quick, teacher, job)
    [pair] = await pairs_of(database, job["id"])
    rows = {r.id: r for r in await rows_of(database, ds)}
    assert q_of(rows[pair.chosen_id].output or "") == 8
    assert q_of(rows[pair.rejected_id].output or "") == 3 and pair.margin == 10.0
    seed = next(r for r in rows.values() if r.origin == "seed")
    assert seed.scores["win_rate"] == 0.5 and seed.scores["overall"] == 5.0


async def test_a_judge_outage_retries_the_group_without_drawing_samples_again(
    client: httpx.Client, database: Database, quick: Settings
) -> None:
    ds = make_dataset(client)["id"]
    upload_seeds(client, ds, [{"instruction": f"Q{i}"} for i in range(3)])
    down = {"calls": 0}

    def outage(request: TeacherRequest) -> TeacherUnavailable | None:
        down["calls"] += 1
        return TeacherUnavailable("judge down") if down["calls"] <= 4 else None

    teacher = JudgeTeacher(sampler(), fail_when=outage)
    job = post(client, ds, "feedback", samples=2, temperatures=[0.1, 0.7])
    await run(database, quick, teacher, job)
    assert teacher.inner.requests == 6  # the samples were carried, not asked again
    rows = await rows_of(database, ds)
    assert len([r for r in rows if r.status == "candidate"]) == 6
    assert len(await pairs_of(database, job["id"])) == 3
    summary = await summaries(database, job["id"])
    assert total(summary, "retried") >= 1 and total(summary, "prompts") == 3
    assert total(summary, "judge_failed") == 0
    finished = await job_row(database, uuid.UUID(job["id"]))
    assert finished.completed == 3 and finished.status == "succeeded"


async def test_duplicate_and_filtered_samples_are_not_judged(
    client: httpx.Client, database: Database, quick: Settings
) -> None:
    ds = make_dataset(client)["id"]
    upload_seeds(client, ds, [{"instruction": "Q0", "output": "same text [q=7]"}])
    inner = ScriptedTeacher()
    texts = iter(
        ["same text [q=7]", "As an AI language model, I cannot help with that.", "new [q=2]"]
    )
    inner.respond = lambda request: next(texts)
    teacher = JudgeTeacher(inner)
    job = post(client, ds, "feedback", samples=3, pairs="all")
    await run(database, quick, teacher, job)
    rows = await rows_of(database, ds)
    generated = {r.output: r for r in rows if r.origin == "generated"}
    assert generated["same text [q=7]"].reject_reason == "duplicate"
    assert generated["As an AI language model, I cannot help with that."].reject_reason == "refusal"
    assert generated["new [q=2]"].status == "candidate"
    assert len(teacher.judge_requests) == 2  # the seed and the new sample
    [pair] = await pairs_of(database, job["id"])
    assert (pair.chosen_score, pair.rejected_score) == (7, 2)


async def test_labeling_judge_rejects_low_scores_and_keeps_the_judgment(
    client: httpx.Client, database: Database, quick: Settings
) -> None:
    ds = make_dataset(client)["id"]
    upload_seeds(client, ds, [{"instruction": f"Q{i}"} for i in range(4)])
    inner = ScriptedTeacher()
    quality = {"Q0": 9, "Q1": 3, "Q2": 6, "Q3": 8}
    inner.respond = lambda r: f"answer [q={quality[r.messages[-1]['content']]}]"
    teacher = JudgeTeacher(inner, garbage=lambda text: -1 if "q=8" in text else 0)
    job = post(client, ds, "labeling", judge={"min_score": 6, "rubric": "Be right."})
    await run(database, quick, teacher, job)

    answers = {r.instruction: r for r in await rows_of(database, ds) if r.origin == "generated"}
    assert answers["Q0"].status == "accepted" and answers["Q0"].scores["overall"] == 9
    assert set(answers["Q0"].scores["aspects"]) == {"rubric"}
    assert answers["Q2"].status == "accepted"  # 6 meets the bar
    low = answers["Q1"]
    assert (low.status, low.reject_reason) == ("rejected", "low_score")
    assert low.scores["overall"] == 3 and "min_score 6" in (low.reject_detail or "")
    # a judgment that stays unreadable is no score and no rejection
    assert answers["Q3"].status == "accepted" and answers["Q3"].scores is None
    assert answers["Q3"].meta["judge_failed"]
    report = client.get(f"/v1/jobs/{job['id']}/report").json()
    assert report["rejected_by_reason"] == {"low_score": 1}
    summary = await summaries(database, job["id"])
    assert total(summary, "low_score") == 1 and total(summary, "judge_failed") == 1
    assert "Be right." in teacher.judge_requests[0].messages[-1]["content"]


@pytest.mark.parametrize("two_stage", [True, False])
async def test_expansion_judge_rejects_low_scores(
    client: httpx.Client, database: Database, quick: Settings, two_stage: bool
) -> None:
    ds = make_dataset(client)["id"]
    upload_seeds(
        client,
        ds,
        [
            {"instruction": f"Seed task {i}: define word {i} for me", "output": "x"}
            for i in range(8)
        ],
    )

    def score(text: str, aspect: str) -> int:
        return 2 if zlib.crc32(text.encode()) % 3 == 0 else 8

    teacher = JudgeTeacher(SelfInstructTeacher(), score=score)
    job = post(
        client, ds, "expansion", target=12, calls_per_round=2, candidates_per_call=5,
        parallel_rounds=1, two_stage=two_stage, judge={"min_score": 5},
    )  # fmt: skip
    await run(database, quick, teacher, job)
    rows = [r for r in await rows_of(database, ds) if r.origin == "generated"]
    accepted = [r for r in rows if r.status == "accepted"]
    low = [r for r in rows if r.reject_reason == "low_score"]
    assert len(accepted) == 12 and low
    assert all(r.scores["overall"] == 8 for r in accepted)
    assert all(r.scores["overall"] == 2 for r in low)
    finished = await job_row(database, uuid.UUID(job["id"]))
    assert finished.accepted == 12 and finished.status == "succeeded"


async def test_a_conversation_prompt_is_sampled_and_judged_as_a_conversation(
    client: httpx.Client, database: Database, quick: Settings
) -> None:
    ds = make_dataset(client)["id"]
    chat = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello [q=5]"},
        {"role": "user", "content": "and then?"},
    ]
    upload_seeds(client, ds, [{"messages": chat}])
    teacher = JudgeTeacher(sampler())
    job = post(client, ds, "feedback", samples=2, temperatures=[0.1, 0.8])
    await run(database, quick, teacher, job)
    candidates = [r for r in await rows_of(database, ds) if r.status == "candidate"]
    assert len(candidates) == 2
    for row in candidates:
        assert row.messages[:-1] == chat and row.messages[-1]["role"] == "assistant"
    judged = teacher.judge_requests[0].messages[-1]["content"]
    assert "SYSTEM: be brief\nUSER: hi\nASSISTANT: hello [q=5]\nUSER: and then?" in judged
    [pair] = await pairs_of(database, job["id"])
    assert (pair.chosen_score, pair.rejected_score) == (8, 1)
