"""The curation report of a job: what the teacher wrote, what was kept, why the rest was not.

Counts come from the job's stored examples (every candidate is a row, rejected ones with their
reason) and from the job's counters; nothing is estimated.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import statistics
import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.models import Example, Job, PreferencePair, SoftTarget, Task

DUPLICATE_REASONS = ("duplicate", "near_duplicate")
DIVERSITY_SAMPLE = 20_000
_WORD = re.compile(r"[a-z0-9']+")


async def example_counts(
    session: AsyncSession, job_id: uuid.UUID
) -> tuple[Counter[str], Counter[str]]:
    """The job's examples by status, and its rejected ones by reason: one GROUP BY."""
    rows = await session.execute(
        select(Example.status, Example.reject_reason, func.count())
        .where(Example.job_id == job_id)
        .group_by(Example.status, Example.reject_reason)
    )
    by_status: Counter[str] = Counter()
    by_reason: Counter[str] = Counter()
    for status, reason, n in rows.tuples():
        by_status[status] += n
        if status == "rejected":
            by_reason[reason or "unknown"] += n
    return by_status, by_reason


async def job_report(*, session: AsyncSession, job: Job) -> dict[str, Any]:
    by_status, by_reason = await example_counts(session, job.id)
    instructions = (
        await session.scalars(
            select(Example.instruction)
            .where(Example.job_id == job.id, Example.status == "accepted")
            .order_by(Example.id)
            .limit(DIVERSITY_SAMPLE)
        )
    ).all()
    wall = wall_seconds(job)
    accepted = by_status["accepted"]
    return {
        "job_id": job.id,
        "kind": job.kind,
        "status": job.status,
        "stop_reason": job.stop_reason,
        "candidates": sum(by_status.values()),
        "accepted": accepted,
        "rejected": by_status["rejected"],
        "pending": by_status["pending"],
        "rejected_by_reason": dict(by_reason.most_common()),
        "duplicates": sum(by_reason[r] for r in DUPLICATE_REASONS),
        "failed": job.failed,
        "tokens": {
            "prompt": job.prompt_tokens,
            "completion": job.completion_tokens,
            "total": job.prompt_tokens + job.completion_tokens,
        },
        "teacher_seconds": round(job.teacher_seconds, 3),
        "teacher_errors": dict(job.teacher_errors or {}),
        "last_teacher_error": job.last_teacher_error,
        "teacher_wait_seconds": round(_teacher_wait(job), 3),
        "wall_seconds": round(wall, 3) if wall is not None else None,
        "examples_per_minute": round(accepted / wall * 60, 2) if wall else None,
        "diversity": diversity(instructions),
        "feedback": (
            await feedback_report(session=session, job=job) if job.kind == "feedback" else None
        ),
        "soft_targets": await soft_targets_report(session=session, job=job),
        "dialogue": (
            await dialogue_report(session=session, job=job) if job.kind == "dialogue" else None
        ),
        "evol": await evol_report(session=session, job=job) if job.kind == "evol" else None,
        "curation": (
            await curation_report(session=session, job=job) if job.kind == "curation" else None
        ),
        **await wasted_tokens(
            session=session, job=job, total=job.prompt_tokens + job.completion_tokens
        ),
    }


# rejections at commit (app.queue): a parallel round's near copy, the job's target reached, or
# content already stored; the answer of such an example was paid for nothing
_COMMIT_DROPS = ("%by a parallel round%", "the job's target was reached",
                 "same content as an example already in the dataset")  # fmt: skip


async def wasted_tokens(*, session: AsyncSession, job: Job, total: int) -> dict[str, Any]:
    """Teacher tokens spent on candidates that were thrown away for being too many, not for
    being bad: tasks kept but left unanswered over the target (their share of their proposal
    call, from the tasks' summaries) and answered examples dropped at commit (their answer's
    usage); and their share of all the job's tokens."""
    unanswered = await session.scalar(
        select(func.sum(Task.result["over_target_tokens"].as_integer())).where(
            Task.job_id == job.id
        )
    )
    usage = func.coalesce(Example.usage["prompt_tokens"].as_integer(), 0) + func.coalesce(
        Example.usage["completion_tokens"].as_integer(), 0
    )
    answered = await session.scalar(
        select(func.sum(usage)).where(
            Example.job_id == job.id,
            Example.status == "rejected",
            Example.output.is_not(None),
            or_(
                Example.reject_reason == "over_target",
                *(Example.reject_detail.like(pattern) for pattern in _COMMIT_DROPS),
            ),
        )
    )
    wasted = int(unanswered or 0) + int(answered or 0)
    return {
        "wasted_tokens": wasted,
        "wasted_token_share": round(wasted / total, 4) if total else 0.0,
    }


async def curation_report(*, session: AsyncSession, job: Job) -> dict[str, Any]:
    """Coverage per taxonomy leaf of a curation job: the leaves and their quotas as the job
    froze them (its tasks' payloads), rounds and the reason each leaf stopped (its tasks'
    summaries), accepted and rejected by reason (its examples, grouped by ``topic``)."""
    tasks = await session.execute(
        select(
            Task.payload["propose"].as_boolean(),
            Task.payload[("leaf", "path")].as_string(),
            Task.payload[("leaf", "quota")].as_integer(),
            Task.payload["round"].as_integer(),
            Task.result["proposed"].as_integer(),
            Task.result["done"].as_string(),
        )
        .where(Task.job_id == job.id)
        .order_by(Task.seq)
    )
    proposed = False
    leaves: dict[str, dict[str, Any]] = {}
    rounds: dict[str, set[int]] = {}
    for propose, path, quota, round_no, ran, done in tasks.tuples():
        proposed = proposed or bool(propose)
        if path is None:
            continue
        leaf = leaves.setdefault(
            path, {"path": path, "quota": int(quota or 0), "accepted": 0, "rejected": 0,
                   "rejected_by_reason": Counter(), "rounds": 0, "done": None},
        )  # fmt: skip
        if ran is not None:  # a round that asked the teacher (a retried one counts once)
            rounds.setdefault(path, set()).add(int(round_no or 0))
        if done:
            leaf["done"] = done
    counts = await session.execute(
        select(Example.topic, Example.status, Example.reject_reason, func.count())
        .where(Example.job_id == job.id, Example.topic.is_not(None))
        .group_by(Example.topic, Example.status, Example.reject_reason)
    )
    for topic, status, reason, n in counts.tuples():
        found = leaves.get(topic) if topic is not None else None
        if found is None:
            continue
        leaf = found
        if leaf is None:
            continue
        if status == "accepted":
            leaf["accepted"] += n
        elif status == "rejected":
            leaf["rejected"] += n
            leaf["rejected_by_reason"][reason or "unknown"] += n
    for path, leaf in leaves.items():
        leaf["rounds"] = len(rounds.get(path, ()))
        leaf["rejected_by_reason"] = dict(leaf["rejected_by_reason"].most_common())
        if leaf["accepted"] >= leaf["quota"]:  # an answer retry may land after the last round
            leaf["done"] = "quota met"
        elif leaf["done"] is None and job.status in ("cancelled", "failed"):
            leaf["done"] = job.status
    coverage = list(leaves.values())
    return {
        "proposed": proposed,
        "leaves": len(coverage),
        "leaves_met": sum(1 for leaf in coverage if leaf["accepted"] >= leaf["quota"]),
        "quota": sum(leaf["quota"] for leaf in coverage),
        "accepted": sum(leaf["accepted"] for leaf in coverage),
        "coverage": coverage,
    }


async def evol_report(*, session: AsyncSession, job: Job) -> dict[str, Any]:
    """An evol job per generation (one aggregate query over the lineage in ``meta``): the
    evolutions stored, accepted, pending (unanswered), eliminated by rule (the ``evol_*``
    reasons, WizardLM's elimination) and rejected by curation; and per operation, evolutions and
    those kept (accepted or pending)."""
    generation = Example.meta["generation"].as_integer()
    operation = Example.meta["operation"].as_string()
    rows = await session.execute(
        select(generation, operation, Example.status, Example.reject_reason, func.count())
        .where(Example.job_id == job.id)
        .group_by(generation, operation, Example.status, Example.reject_reason)
    )
    generations: dict[int, dict[str, Any]] = {}
    operations: dict[str, Counter[str]] = {}
    for gen, op, status, reason, n in rows.tuples():
        if gen is None:
            continue
        row = generations.setdefault(
            int(gen),
            {"generation": int(gen), "evolved": 0, "accepted": 0, "pending": 0,
             "eliminated": Counter(), "rejected": Counter()},
        )  # fmt: skip
        row["evolved"] += n
        per_op = operations.setdefault(str(op), Counter())
        per_op["evolved"] += n
        if status in ("accepted", "pending"):
            row[status] += n
            per_op["kept"] += n
        elif reason and reason.startswith("evol_"):
            row["eliminated"][reason] += n
        else:
            row["rejected"][reason or "unknown"] += n
    return {
        "generations": [
            {**row, "eliminated": dict(row["eliminated"]), "rejected": dict(row["rejected"])}
            for _, row in sorted(generations.items())
        ],
        "operations": {
            op: {"evolved": c["evolved"], "kept": c["kept"]} for op, c in sorted(operations.items())
        },
    }


async def dialogue_report(*, session: AsyncSession, job: Job) -> dict[str, Any]:
    """What a dialogue job's conversations came to (one aggregate query over ``meta``): the
    accepted ones by assistant turns, the cut ones by the reason of the turn that ended them,
    the rejected ones by reason."""
    rows = (
        select(
            Example.status.label("status"),
            Example.meta["turns"].as_integer().label("turns"),
            Example.meta["cut_reason"].as_string().label("cut"),
            Example.reject_reason.label("reason"),
        )
        .where(Example.job_id == job.id)
        .subquery()
    )
    # grouped over a subquery: Postgres cannot match two bound JSON paths of SELECT and GROUP BY
    counts = await session.execute(
        select(rows.c.status, rows.c.turns, rows.c.cut, rows.c.reason, func.count()).group_by(
            rows.c.status, rows.c.turns, rows.c.cut, rows.c.reason
        )
    )
    turns: Counter[int] = Counter()
    cut: Counter[str] = Counter()
    rejected: Counter[str] = Counter()
    for status, n_turns, cut_reason, reason, n in counts:
        if status == "accepted":
            turns[int(n_turns or 0)] += n
            if cut_reason:
                cut[cut_reason] += n
        elif status == "rejected":
            rejected[reason or "unknown"] += n
    conversations = sum(turns.values())
    total_turns = sum(t * n for t, n in turns.items())
    return {
        "conversations": conversations,
        "turns": {str(t): turns[t] for t in sorted(turns)},
        "mean_turns": round(total_turns / conversations, 3) if conversations else None,
        "full": conversations - sum(cut.values()),
        "truncated": sum(cut.values()),
        "cut_by_reason": dict(cut.most_common()),
        "rejected_by_reason": dict(rejected.most_common()),
    }


async def soft_targets_report(*, session: AsyncSession, job: Job) -> dict[str, Any] | None:
    """The soft targets the job stored (None when it stored none): examples, positions (completion
    tokens), k, the packed bytes and bytes per token (one aggregate query)."""
    examples, positions, k, stored = (
        await session.execute(
            select(
                func.count(),
                func.coalesce(func.sum(SoftTarget.positions), 0),
                func.max(SoftTarget.k),
                func.coalesce(func.sum(func.length(SoftTarget.data)), 0),
            ).where(SoftTarget.job_id == job.id)
        )
    ).one()
    if not examples:
        return None
    return {
        "examples": examples,
        "positions": int(positions),
        "k": k,
        "stored_bytes": int(stored),
        "bytes_per_token": round(int(stored) / int(positions), 2) if positions else None,
    }


def _teacher_wait(job: Job) -> float:
    """Seconds of teacher unavailability, the outage still open included."""
    open_for = 0.0
    if job.teacher_down_since is not None:
        end = job.finished_at or utcnow()
        open_for = max(0.0, (end - job.teacher_down_since).total_seconds())
    return job.teacher_wait_seconds + open_for


def wall_seconds(job: Job) -> float | None:
    """From the job's start to its end (or now); None before it started."""
    if job.started_at is None:
        return None
    end: dt.datetime = job.finished_at or utcnow()
    return max((end - job.started_at).total_seconds(), 0.0)


def diversity(instructions: Sequence[str], top: int = 10) -> dict[str, Any]:
    """Distinct n-gram ratios and the most common leading words (verbs) of the instructions."""
    unigrams: set[str] = set()
    bigrams: set[tuple[str, str]] = set()
    n_words = n_bigrams = 0
    leading: Counter[str] = Counter()
    for text in instructions:
        words = _WORD.findall(text.lower())
        if not words:
            continue
        leading[words[0]] += 1
        unigrams.update(words)
        pairs = list(itertools.pairwise(words))
        bigrams.update(pairs)
        n_words += len(words)
        n_bigrams += len(pairs)
    return {
        "instructions": len(instructions),
        "distinct_1": round(len(unigrams) / n_words, 4) if n_words else 0.0,
        "distinct_2": round(len(bigrams) / n_bigrams, 4) if n_bigrams else 0.0,
        "leading_words": [{"word": w, "count": c} for w, c in leading.most_common(top)],
    }


MARGIN_BINS = 10  # margins are on a 0-10 scale (pointwise: score points; pairwise: win rate x 10)
_SUMMED = ("prompts", "comparisons", "disagreements", "judge_failed")


async def feedback_report(*, session: AsyncSession, job: Job) -> dict[str, Any]:
    """What a feedback job judged: prompts, pairs and their margins from the pairs table; judge
    disagreement (pairwise: order-swapped comparisons whose two orders disagreed) and failed
    judgments from the tasks' summaries; mean score per aspect over the responses whose
    current judgment is this job's (pointwise)."""
    totals: Counter[str] = Counter()
    for summary in (
        await session.scalars(
            select(Task.result).where(Task.job_id == job.id, Task.status == "succeeded")
        )
    ).all():
        for key in _SUMMED:
            value = (summary or {}).get(key)
            if isinstance(value, int | float):
                totals[key] += int(value)
    margins = sorted(
        (
            await session.scalars(
                select(PreferencePair.margin).where(PreferencePair.job_id == job.id)
            )
        ).all()
    )
    with_pair = await session.scalar(
        select(func.count(func.distinct(PreferencePair.prompt_id))).where(
            PreferencePair.job_id == job.id
        )
    )
    comparisons = totals["comparisons"]
    return {
        "prompts_judged": totals["prompts"],
        "prompts_with_pair": with_pair or 0,
        "pairs": len(margins),
        "margin": margin_distribution(margins),
        "comparisons": comparisons,
        "disagreements": totals["disagreements"],
        "disagreement_rate": (
            round(totals["disagreements"] / comparisons, 4) if comparisons else None
        ),
        "judge_failed": totals["judge_failed"],
        "aspects": await _mean_aspects(session, job),
    }


def margin_distribution(margins: list[float]) -> dict[str, Any]:
    """min / median / max of sorted `margins` and a histogram of unit-wide bins over 0-10 (the
    last one closed: [9, 10])."""
    counts = [0] * MARGIN_BINS
    for m in margins:
        counts[min(max(int(m), 0), MARGIN_BINS - 1)] += 1
    return {
        "min": margins[0] if margins else None,
        "median": statistics.median(margins) if margins else None,
        "max": margins[-1] if margins else None,
        "histogram": [{"low": b, "high": b + 1, "pairs": n} for b, n in enumerate(counts)],
    }


async def _mean_aspects(session: AsyncSession, job: Job) -> dict[str, float]:
    """Mean 1-10 score per aspect over the dataset's responses whose judgment is this job's."""
    judged_here = Example.scores[("judge", "job_id")].as_string() == str(job.id)
    sums: dict[str, float] = {}
    counts: Counter[str] = Counter()
    result = await session.stream_scalars(
        select(Example.scores)
        .where(Example.dataset_id == job.dataset_id, judged_here)
        .execution_options(yield_per=2000)
    )
    async for scores in result:
        aspects = scores.get("aspects") if isinstance(scores, dict) else None
        for name, judged in (aspects or {}).items():
            score = judged.get("score") if isinstance(judged, dict) else judged
            if isinstance(score, int | float) and not isinstance(score, bool):
                sums[name] = sums.get(name, 0.0) + score
                counts[name] += 1
    return {name: round(sums[name] / counts[name], 3) for name in sorted(counts)}
