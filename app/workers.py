"""The worker registry: workers register at start, heartbeat every few seconds, mark their stop.

A worker is *live* while its last heartbeat is recent (within :data:`LIVE_HEARTBEATS` heartbeat
periods) and it has not stopped. Job health (app.health) reads the live workers to say whether
anyone serves a job and whether their teacher answers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.models import Worker

LIVE_HEARTBEATS = 3  # heartbeats a live worker may miss
MIN_LIVE_SECONDS = 10.0
FORGET_AFTER = dt.timedelta(days=1)  # rows of workers gone this long are deleted


def live_window(heartbeat_seconds: float) -> float:
    """Seconds since its last heartbeat within which a worker counts as live."""
    return max(MIN_LIVE_SECONDS, LIVE_HEARTBEATS * heartbeat_seconds)


def is_live(worker: Worker, now: dt.datetime, window_seconds: float) -> bool:
    return worker.stopped_at is None and (now - worker.last_seen_at).total_seconds() <= (
        window_seconds
    )


async def register(
    *,
    session: AsyncSession,
    name: str,
    host: str,
    pid: int | None,
    model: str | None,
    backend: str | None,
    kinds: Sequence[str],
    concurrency: int,
) -> None:
    """Add the worker, or refresh its row when the name is known (a restart)."""
    now = utcnow()
    await session.execute(
        delete(Worker).where(Worker.last_seen_at < now - FORGET_AFTER, Worker.name != name)
    )
    values: dict[str, Any] = {
        "host": host,
        "pid": pid,
        "model": model,
        "backend": backend,
        "kinds": sorted(kinds),
        "concurrency": concurrency,
        "in_flight": 0,
        "teacher_in_flight": 0,
        "teacher_state": "ok",
        "teacher_down_since": None,
        "last_teacher_error": None,
        "last_teacher_error_at": None,
        "started_at": now,
        "last_seen_at": now,
        "stopped_at": None,
    }
    found = await session.scalar(select(Worker.id).where(Worker.name == name).with_for_update())
    if found is None:
        session.add(Worker(name=name, **values))
    else:
        await session.execute(update(Worker).where(Worker.id == found).values(**values))


async def heartbeat(
    *,
    session: AsyncSession,
    name: str,
    in_flight: int,
    teacher_state: str,
    teacher_in_flight: int = 0,
    teacher_down_since: dt.datetime | None,
    last_teacher_error: str | None,
    last_teacher_error_at: dt.datetime | None,
    model: str | None = None,
) -> bool:
    """Refresh the worker's row; False when it is gone (the caller registers again)."""
    values: dict[str, Any] = {
        "in_flight": in_flight,
        "teacher_in_flight": teacher_in_flight,
        "teacher_state": teacher_state,
        "teacher_down_since": teacher_down_since,
        "last_teacher_error": last_teacher_error,
        "last_teacher_error_at": last_teacher_error_at,
        "last_seen_at": utcnow(),
        "stopped_at": None,
    }
    if model:
        values["model"] = model
    got = await session.scalar(
        update(Worker).where(Worker.name == name).values(**values).returning(Worker.id)
    )
    return got is not None


async def stopped(*, session: AsyncSession, name: str) -> None:
    now = utcnow()
    await session.execute(
        update(Worker)
        .where(Worker.name == name)
        .values(stopped_at=now, last_seen_at=now, in_flight=0, teacher_in_flight=0)
    )


async def list_workers(*, session: AsyncSession) -> list[Worker]:
    """Every registered worker, the most recently seen first."""
    return list((await session.scalars(select(Worker).order_by(Worker.last_seen_at.desc()))).all())


async def live_workers(*, session: AsyncSession, window_seconds: float) -> list[Worker]:
    now = utcnow()
    rows = await session.scalars(
        select(Worker).where(
            Worker.stopped_at.is_(None),
            Worker.last_seen_at >= now - dt.timedelta(seconds=window_seconds),
        )
    )
    return list(rows.all())
