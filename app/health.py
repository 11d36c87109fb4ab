"""A job's health: can it make progress now, and if not, why.

States (in this order of precedence, for a queued or running job)::

    waiting_for_worker   no live worker serves the job's model and kind
    waiting_for_teacher  the live workers serving it report their teacher down, or the job's
                         own tasks got no answer from the teacher lately (an open outage)
    retrying             some of its tasks wait to be tried again after failures
    ok                   none of the above

A finished job is ``ok``, or carries its error. Reading it costs one query on the workers table
(shared by a page of jobs) and, for running jobs, one on their queued tasks.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app import workers
from app.models import TERMINAL_STATUSES, Job, Task, Worker
from app.schemas import JobHealth

NO_WORKER = (
    "no live worker serves this job ({what}); it waits until one registers: start "
    "`distillery worker` with a teacher configured (DISTILLERY_TEACHER__*)"
)


def serves(worker: Worker, job: Job) -> bool:
    """True when `worker` may claim the job's tasks (the same rule as the queue's claim)."""
    model_ok = job.teacher_model is None or worker.model == job.teacher_model
    return model_ok and job.kind in (worker.kinds or [])


def job_health(job: Job, live: Sequence[Worker], retrying: bool) -> JobHealth:
    """The health of `job`, given the live workers and whether tasks of it wait to retry."""
    if job.status in TERMINAL_STATUSES:
        return JobHealth(
            state="ok",
            message=job.error or f"job {job.status}",
            since=job.finished_at,
            last_error=job.error,
        )
    mine = [w for w in live if serves(w, job)]
    if not mine:
        what = f"kind {job.kind}, model {job.teacher_model or 'any'}"
        return JobHealth(
            state="waiting_for_worker",
            message=NO_WORKER.format(what=what),
            since=job.started_at or job.created_at,
            last_error=job.last_teacher_error,
        )
    down = [w for w in mine if w.teacher_state == "down"]
    if len(down) == len(mine) or job.teacher_down_since is not None:
        since = min(
            [w.teacher_down_since for w in down if w.teacher_down_since is not None]
            + ([job.teacher_down_since] if job.teacher_down_since else []),
            default=None,
        )
        last = next((w.last_teacher_error for w in down if w.last_teacher_error), None)
        return JobHealth(
            state="waiting_for_teacher",
            message=f"the teacher does not answer ({len(down)} of {len(mine)} workers report it "
            f"down); items are retried until the teacher unavailability budget is spent",
            since=since,
            last_error=last or job.last_teacher_error,
        )
    if retrying:
        return JobHealth(
            state="retrying",
            message="some tasks wait to be retried after teacher errors",
            since=None,
            last_error=job.last_teacher_error,
        )
    return JobHealth(state="ok", message="", since=None, last_error=job.last_teacher_error)


async def health_of(
    *, session: AsyncSession, jobs: Sequence[Job], heartbeat_seconds: float
) -> dict[uuid.UUID, JobHealth]:
    """The health of each of `jobs` (a page at most: a few small queries for all of them)."""
    active = [j for j in jobs if j.status not in TERMINAL_STATUSES]
    live: list[Worker] = []
    retrying: set[uuid.UUID] = set()
    if active:
        live = await workers.live_workers(
            session=session, window_seconds=workers.live_window(heartbeat_seconds)
        )
        suspects = [j.id for j in active if j.status == "running"]
        if suspects:
            retrying = set(
                (
                    await session.scalars(
                        select(Task.job_id)
                        .where(
                            Task.job_id.in_(suspects),
                            Task.status == "queued",
                            Task.last_error.is_not(None),
                        )
                        .distinct()
                    )
                ).all()
            )
    return {j.id: job_health(j, live, j.id in retrying) for j in jobs}
