"""The only code that moves a task's or a job's state.

This module holds enqueue and cancel of queued jobs; claim, heartbeat, complete, fail, release
and reclaim come with the worker runtime. Every transition appends a row to ``task_events`` and
logs structured data (``action``, ``job_id``, ``task_id``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.errors import JobNotCancellable
from app.models import TERMINAL_STATUSES, Job, Task, TaskEvent

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "distillery_tasks"


async def enqueue_job(
    *, session: AsyncSession, job: Job, payloads: Sequence[dict[str, Any]], max_attempts: int
) -> list[Task]:
    """Add `job` and one queued task per payload in the caller's transaction; wake the workers."""
    session.add(job)
    await session.flush()
    tasks = [
        Task(
            job_id=job.id,
            seq=seq,
            payload=payload,
            teacher_model=job.teacher_model,
            max_attempts=max_attempts,
        )
        for seq, payload in enumerate(payloads)
    ]
    session.add_all(tasks)
    await session.flush()
    session.add_all(TaskEvent(job_id=job.id, task_id=t.id, event="enqueued") for t in tasks)
    await notify(session)
    log.info(
        "job enqueued",
        extra={"action": "job_enqueued", "job_id": str(job.id), "tasks": len(tasks)},
    )
    return tasks


async def notify(session: AsyncSession) -> None:
    """Wake idle workers (Postgres NOTIFY, delivered at commit). A hint only: workers also poll."""
    if session.bind.dialect.name == "postgresql":
        await session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": NOTIFY_CHANNEL})


async def cancel_job(*, session: AsyncSession, job_id: uuid.UUID) -> Job:
    """Cancel a job: queued tasks are cancelled now; running ones stop at their next check.

    A job with no task running is cancelled at once; otherwise it is marked `cancel_requested`
    and its workers finish it as `cancelled` between teacher calls. Accepted results stay.
    """
    job = (await session.scalars(select(Job).where(Job.id == job_id).with_for_update())).one()
    if job.status in TERMINAL_STATUSES:
        raise JobNotCancellable(f"job {job.id} is already {job.status}")
    now = utcnow()
    cancelled = await session.scalars(
        update(Task)
        .where(Task.job_id == job.id, Task.status == "queued")
        .values(status="cancelled", finished_at=now)
        .returning(Task.id)
    )
    session.add_all(
        TaskEvent(job_id=job.id, task_id=task_id, event="cancelled") for task_id in cancelled
    )
    running = await session.scalar(
        select(Task.id).where(Task.job_id == job.id, Task.status == "running").limit(1)
    )
    job.cancel_requested = True
    if running is None:
        job.status = "cancelled"
        job.finished_at = now
    log.info(
        "job cancel requested",
        extra={"action": "job_cancel", "job_id": str(job.id), "status": job.status},
    )
    return job
