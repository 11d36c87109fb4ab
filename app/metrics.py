"""The API's Prometheus metrics: gauges read from the database at scrape time.

:func:`render` returns the text exposition of this process's registry (with the embedded
worker's counters when ``serve`` runs one, workers.metrics) plus the database gauges below,
recomputed at most every ``metrics_cache_seconds`` (they cost a few aggregate queries)::

    distillery_jobs{status}                       jobs by status
    distillery_tasks{status}                      tasks by status
    distillery_queue_depth                        tasks queued (due or waiting out a backoff)
    distillery_oldest_queued_task_age_seconds     how long the longest-waiting due task has waited
    distillery_examples{status,reason}            examples by status (rejected: by reason)
    distillery_workers_alive                      workers with a recent heartbeat

Cost: jobs, workers: small tables. Tasks: ``GROUP BY status`` and ``min(run_after)`` of queued
ones use the (status, run_after) index. Examples: one ``GROUP BY status, reject_reason`` over
the table, a sequential scan (no index leads with status); measured in docs/operations.md.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app import workers
from app.db import utcnow
from app.models import Example, Job, Task, Worker
from app.state import Database

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class DatabaseGauges:
    """The database's state at one moment, as gauge families."""

    families: list[GaugeMetricFamily]


async def read_gauges(*, session: AsyncSession, heartbeat_seconds: float) -> DatabaseGauges:
    """The gauges of the module docstring, from a few aggregate queries."""
    jobs = GaugeMetricFamily("distillery_jobs", "Jobs by status", labels=["status"])
    for status, n in await session.execute(select(Job.status, func.count()).group_by(Job.status)):
        jobs.add_metric([status], n)
    tasks = GaugeMetricFamily("distillery_tasks", "Tasks by status", labels=["status"])
    queued = 0
    for status, n in await session.execute(select(Task.status, func.count()).group_by(Task.status)):
        tasks.add_metric([status], n)
        queued = n if status == "queued" else queued
    now = utcnow()
    oldest = await session.scalar(
        select(func.min(Task.run_after)).where(Task.status == "queued", Task.run_after <= now)
    )
    age = max((now - oldest).total_seconds(), 0.0) if oldest is not None else 0.0
    examples = GaugeMetricFamily(
        "distillery_examples",
        "Examples by status and rejection reason (empty unless rejected)",
        labels=["status", "reason"],
    )
    for status, reason, n in await session.execute(
        select(Example.status, Example.reject_reason, func.count()).group_by(
            Example.status, Example.reject_reason
        )
    ):
        examples.add_metric([status, (reason or "unknown") if status == "rejected" else ""], n)
    window = workers.live_window(heartbeat_seconds)
    alive = await session.scalar(
        select(func.count())
        .select_from(Worker)
        .where(
            Worker.stopped_at.is_(None),
            Worker.last_seen_at >= now - dt.timedelta(seconds=window),
        )
    )
    return DatabaseGauges(
        [
            jobs,
            tasks,
            GaugeMetricFamily("distillery_queue_depth", "Tasks queued", value=queued),
            GaugeMetricFamily(
                "distillery_oldest_queued_task_age_seconds",
                "Seconds the longest-waiting due task has waited since it became due",
                value=age,
            ),
            examples,
            GaugeMetricFamily(
                "distillery_workers_alive", "Workers with a recent heartbeat", value=alive or 0
            ),
        ]
    )


@dataclass
class GaugeCache:
    """The database gauges of one app, recomputed at most every `max_age` seconds (one reader
    at a time: concurrent scrapes share a computation)."""

    max_age: float
    _value: DatabaseGauges | None = None
    _at: float = -1e18
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def get(self, db: Database, heartbeat_seconds: float) -> DatabaseGauges:
        async with self._lock:
            if self._value is None or time.monotonic() - self._at >= self.max_age:
                async with db.reading() as session:
                    self._value = await read_gauges(
                        session=session, heartbeat_seconds=heartbeat_seconds
                    )
                self._at = time.monotonic()
            return self._value


class _Exposition:
    """This process's registry followed by the database gauges (what generate_latest reads)."""

    def __init__(self, registry: Collector, gauges: DatabaseGauges) -> None:
        self._registry = registry
        self._gauges = gauges

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self._registry.collect()  # type: ignore[misc]
        yield from self._gauges.families


def render(gauges: DatabaseGauges, registry: Collector = REGISTRY) -> bytes:
    """The text exposition of `registry` and `gauges`."""
    return generate_latest(_Exposition(registry, gauges))
