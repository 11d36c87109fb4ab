"""The curation report of a job: what the teacher wrote, what was kept, why the rest was not.

Counts come from the job's stored examples (every candidate is a row, rejected ones with their
reason) and from the job's counters; nothing is estimated.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections import Counter
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.models import Example, Job

DUPLICATE_REASONS = ("duplicate", "near_duplicate")
DIVERSITY_SAMPLE = 20_000
_WORD = re.compile(r"[a-z0-9']+")


async def job_report(*, session: AsyncSession, job: Job) -> dict[str, Any]:
    rows = await session.execute(
        select(Example.status, Example.reject_reason, func.count())
        .where(Example.job_id == job.id)
        .group_by(Example.status, Example.reject_reason)
    )
    by_status: Counter[str] = Counter()
    by_reason: Counter[str] = Counter()
    for status, reason, n in rows:
        by_status[status] += n
        if status == "rejected":
            by_reason[reason or "unknown"] += n
    instructions = (
        await session.scalars(
            select(Example.instruction)
            .where(Example.job_id == job.id, Example.status == "accepted")
            .order_by(Example.id)
            .limit(DIVERSITY_SAMPLE)
        )
    ).all()
    wall = _wall_seconds(job)
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
    }


def _teacher_wait(job: Job) -> float:
    """Seconds of teacher unavailability, the outage still open included."""
    open_for = 0.0
    if job.teacher_down_since is not None:
        end = job.finished_at or utcnow()
        open_for = max(0.0, (end - job.teacher_down_since).total_seconds())
    return job.teacher_wait_seconds + open_for


def _wall_seconds(job: Job) -> float | None:
    if job.started_at is None:
        return None
    end: dt.datetime = job.finished_at or utcnow()
    return max((end - job.started_at).total_seconds(), 0.0)


def diversity(instructions: list[str], top: int = 10) -> dict[str, Any]:
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
