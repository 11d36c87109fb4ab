"""A job's live events: progress, status changes, the tasks' durable history, and the end.

:func:`job_events` yields :class:`Event` objects for one job until it is terminal;
:func:`sse` renders one as server-sent-event text and :func:`sse_stream` adds keep-alive
comments between events (GET /v1/jobs/{id}/events wraps both; the web UI reuses them).

Events (``data`` is JSON)::

    progress  {"job": JobRead, "report": {...counts, tokens, rates, in_flight}, "eta_seconds": ...}
              first, then whenever the job or the counts change (polled every
              ``events_poll_seconds``; the counts, which cost a query, at most every 2 s)
    status    {"from": old, "to": new} on every status change seen while connected
    task      a ``task_events`` row {"id", "task_id", "event", "worker", "detail", "created_at"},
              in id order: the durable history that makes the stream resumable
    finished  {"job": JobRead, "report": <GET /v1/jobs/{id}/report>} once the job is terminal;
              the stream ends after it

Event ids: a ``task`` event's id is its ``task_events.id`` (``"42"``); every other event's id is
the id of the last task event sent before it, a dash and a counter (``"42-7"``; ``"0-1"`` before
any). A client that reconnects with ``Last-Event-ID`` gets the task events after the number
before the dash (none repeated, none lost), then a fresh progress snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app import health, jobs, reports, workers
from app.config import Settings
from app.db import utcnow
from app.errors import ValidationFailed
from app.models import TERMINAL_STATUSES, Job, Task, TaskEvent, Worker
from app.schemas import JobReport
from app.state import Database

REPORT_EVERY_S = 2.0  # the counts of the progress event cost a GROUP BY: at most this often
KEEPALIVE_S = 15.0  # a comment line this often when nothing else is sent (proxies, dead peers)
TASK_EVENTS_PAGE = 500  # task events read per poll at most


@dataclass(frozen=True, slots=True)
class Event:
    """One server-sent event: its id, its name and its JSON data."""

    id: str
    event: str
    data: dict[str, Any]


# what `Last-Event-ID` may be: an id this stream gave, or empty (from the start)
EVENT_ID = r"^([0-9]{1,18}(-[0-9]{1,18})?)?$"


def parse_last_event_id(
    value: str | None, loc: tuple[str, str] = ("header", "Last-Event-ID")
) -> int:
    """The task-event cursor in a ``Last-Event-ID`` (``"42"`` or ``"42-7"``); 0 for none.

    A value that is not an id this stream gave is a 422 naming the field (`loc`).
    """
    if value is None or not value.strip():
        return 0
    head = value.strip().split("-", 1)[0]
    if not (head.isascii() and head.isdigit()) or len(head) > 18:
        raise ValidationFailed(
            f"{loc[1]}: {value[:40]!r} is not an event id of this stream (e.g. '42' or '42-7')",
            details=[{"loc": list(loc), "msg": "expected <number>[-<number>]"}],
        )
    return int(head)


def sse(event: Event) -> str:
    """`event` as server-sent-event text (data is one line of JSON)."""
    data = orjson.dumps(event.data).decode()
    return f"id: {event.id}\nevent: {event.event}\ndata: {data}\n\n"


async def sse_stream(
    events: AsyncIterator[Event], keepalive_s: float = KEEPALIVE_S
) -> AsyncIterator[str]:
    """`events` as SSE text, with a ``: keep-alive`` comment after `keepalive_s` of silence."""
    pending: asyncio.Task[Event] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(events))
            done, _ = await asyncio.wait({pending}, timeout=keepalive_s)
            if not done:
                yield ": keep-alive\n\n"
                continue
            try:
                event = pending.result()
            except StopAsyncIteration:
                return
            finally:
                pending = None
            yield sse(event)
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await pending
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()


async def job_events(
    *,
    db: Database,
    settings: Settings,
    tenant_id: uuid.UUID,
    job_id: uuid.UUID,
    last_event_id: str | None,
) -> AsyncIterator[Event]:
    """The job's events from `last_event_id` on, until it is terminal (see the module docstring).

    Raises NotFound (before yielding anything) for an unknown job or another tenant's.
    """
    cursor = parse_last_event_id(last_event_id)
    fresh = cursor == 0
    counter = 0
    async with db.reading() as session:  # 404 before the first event
        await jobs.get_job(session=session, tenant_id=tenant_id, job_id=job_id)

    def next_id() -> str:
        nonlocal counter
        counter += 1
        return f"{cursor}-{counter}"

    status: str | None = None
    sent_key: Any = None
    counts: dict[str, Any] | None = None
    counted_at = -REPORT_EVERY_S
    counted_for: Any = None
    while True:
        async with db.reading() as session:
            job = await jobs.get_job(session=session, tenant_id=tenant_id, job_id=job_id)
            terminal = job.status in TERMINAL_STATUSES
            rows = (
                await session.scalars(
                    select(TaskEvent)
                    .where(TaskEvent.job_id == job_id, TaskEvent.id > cursor)
                    .order_by(TaskEvent.id)
                    .limit(TASK_EVENTS_PAGE)
                )
            ).all()
            states = await health.health_of(
                session=session, jobs=[job], heartbeat_seconds=settings.heartbeat_seconds
            )
            job_data = jobs.job_read(job, states[job.id]).model_dump(mode="json")
            counters = (job.accepted, job.rejected, job.completed, job.prompt_tokens,
                        job.completion_tokens, job.status)  # fmt: skip
            now = time.monotonic()
            if counts is None or (
                counters != counted_for and (terminal or now - counted_at >= REPORT_EVERY_S)
            ):
                counts = await _counts(session, job.id)
                counted_at, counted_for = now, counters
            report = await reports.job_report(session=session, job=job) if terminal else None
            at_teacher = None if terminal else await teacher_in_flight(session, job.id, settings)
        counts = {**counts, "in_flight": at_teacher}
        key = (orjson.dumps(job_data), orjson.dumps(counts))
        if fresh:  # a new stream starts with progress; a resumed one with the missed history
            fresh = False
            sent_key, status = key, job.status
            yield Event(next_id(), "progress", _progress(job, job_data, counts))
        for row in rows:
            cursor = row.id
            yield Event(str(row.id), "task", _task_event(row))
        if len(rows) == TASK_EVENTS_PAGE:
            continue  # more history first; progress once caught up
        if status is not None and job.status != status:
            yield Event(next_id(), "status", {"from": status, "to": job.status})
        status = job.status
        if key != sent_key:
            sent_key = key
            yield Event(next_id(), "progress", _progress(job, job_data, counts))
        if report is not None:
            full = JobReport.model_validate(report).model_dump(mode="json")
            yield Event(next_id(), "finished", {"job": job_data, "report": full})
            return
        await asyncio.sleep(settings.events_poll_seconds)


async def _counts(session: AsyncSession, job_id: uuid.UUID) -> dict[str, Any]:
    """Candidates, accepted, rejected (by reason) of the job."""
    by_status, by_reason = await reports.example_counts(session, job_id)
    return {
        "candidates": sum(by_status.values()),
        "accepted": by_status["accepted"],
        "rejected": by_status["rejected"],
        "rejected_by_reason": dict(by_reason.most_common()),
    }


async def teacher_in_flight(session: AsyncSession, job_id: uuid.UUID, settings: Settings) -> int:
    """Teacher requests in flight at the live workers running a task of the job, as of their
    last heartbeat (a worker running several jobs' tasks counts all its requests)."""
    since = utcnow() - dt.timedelta(seconds=workers.live_window(settings.heartbeat_seconds))
    holders = (
        select(Task.lease_owner)
        .where(Task.job_id == job_id, Task.status == "running")
        .distinct()
        .scalar_subquery()
    )
    total = await session.scalar(
        select(func.coalesce(func.sum(Worker.teacher_in_flight), 0)).where(
            Worker.name.in_(holders), Worker.last_seen_at >= since, Worker.stopped_at.is_(None)
        )
    )
    return int(total or 0)


def _progress(job: Job, job_data: dict[str, Any], counts: dict[str, Any]) -> dict[str, Any]:
    wall = reports.wall_seconds(job)
    tokens = job.prompt_tokens + job.completion_tokens
    report = {
        **counts,
        "tokens": {
            "prompt": job.prompt_tokens,
            "completion": job.completion_tokens,
            "total": tokens,
        },
        "examples_per_minute": round(counts["accepted"] / wall * 60, 2) if wall else None,
        "tokens_per_second": round(tokens / wall, 2) if wall else None,
        "wall_seconds": round(wall, 3) if wall is not None else None,
    }
    return {"job": job_data, "report": report, "eta_seconds": eta_seconds(job, wall)}


def eta_seconds(job: Job, wall: float | None) -> float | None:
    """Seconds left at the rate so far (progress units completed per second of the job's
    wall time); None when there is no total, no progress yet, or the job is not running."""
    if job.status != "running" or not wall or job.total <= 0 or job.completed <= 0:
        return None
    left = max(job.total - job.completed, 0)
    return round(left / (job.completed / wall), 1)


def _task_event(row: TaskEvent) -> dict[str, Any]:
    return {
        "id": row.id,
        "task_id": str(row.task_id) if row.task_id is not None else None,
        "event": row.event,
        "worker": row.worker,
        "detail": row.detail,
        "created_at": row.created_at.isoformat(),
    }
