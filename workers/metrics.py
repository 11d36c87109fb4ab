"""A worker's Prometheus metrics: process-local counters, histograms and a gauge.

The runner and the teacher call path record into them with one-line calls; ``distillery worker
--metrics-port`` serves them (:func:`serve_metrics`). The embedded worker of ``serve`` records
into the API process's default registry, so the API's ``/metrics`` shows them too. Names,
labels and meaning: docs/operations.md.

With ``PROMETHEUS_MULTIPROC_DIR`` set before this module is imported (a parent process that
spawns worker processes), values live in files in that directory and :func:`serve_metrics`
serves their sum over the processes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)
from prometheus_client import multiprocess as prom_multiprocess

from workers.teachers.base import TeacherError, error_cause

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
TASK_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
# the outcomes of teacher requests, a bounded label set (statuses are bucketed)
OUTCOMES = ("ok", "http_429", "http_4xx", "http_5xx", "timeout", "connection", "malformed",
            "other")  # fmt: skip

TASKS_CLAIMED = Counter("distillery_worker_tasks_claimed", "Tasks this worker claimed", ["kind"])
TASKS_SUCCEEDED = Counter(
    "distillery_worker_tasks_succeeded", "Tasks this worker completed (results stored)", ["kind"]
)
TASKS_FAILED = Counter(
    "distillery_worker_tasks_failed", "Tasks that failed for good on this worker", ["kind"]
)
TASKS_RETRIED = Counter(
    "distillery_worker_tasks_retried", "Failed task attempts queued again for a retry", ["kind"]
)
TASK_SECONDS = Histogram(
    "distillery_worker_task_seconds",
    "Time from claim to the task's stored completion or failure",
    ["kind"],
    buckets=TASK_BUCKETS,
)
EXAMPLES_ACCEPTED = Counter(
    "distillery_worker_examples_accepted", "Examples stored as accepted", ["kind"]
)
EXAMPLES_REJECTED = Counter(
    "distillery_worker_examples_rejected", "Examples stored as rejected, by reason",
    ["kind", "reason"],
)  # fmt: skip
TEACHER_REQUESTS = Counter(
    "distillery_teacher_requests",
    "Teacher request attempts by outcome (a backend's own retries each count once)",
    ["outcome"],
)
TEACHER_SECONDS = Histogram(
    "distillery_teacher_request_seconds",
    "Teacher request latency, first send to last answer (retries included)",
    buckets=LATENCY_BUCKETS,
)
TEACHER_IN_FLIGHT = Gauge(
    "distillery_teacher_requests_in_flight",
    "Requests handed to the teacher backend and not answered yet",
    multiprocess_mode="livesum",
)
TEACHER_TOKENS = Counter(
    "distillery_teacher_tokens", "Tokens the teacher processed (rate() gives tokens/s)", ["type"]
)


class _Result(Protocol):
    """A TeacherResult or ScoreResult, as far as metrics read it."""

    latency_s: float
    error: TeacherError | None
    attempt_errors: dict[str, int]


def outcome_label(cause: str) -> str:
    """A teacher error cause (``http_503``, ``timeout`` ...) as one of :data:`OUTCOMES`."""
    if cause == "http_429":
        return cause
    if cause.startswith("http_5"):
        return "http_5xx"
    if cause.startswith("http_"):
        return "http_4xx"
    return cause if cause in OUTCOMES else "other"


def task_claimed(kind: str) -> None:
    TASKS_CLAIMED.labels(kind).inc()


def task_succeeded(
    kind: str, seconds: float, accepted: int, rejected_by_reason: Mapping[str, int]
) -> None:
    """A completion that stored something now (not the repeat of a committed one)."""
    TASKS_SUCCEEDED.labels(kind).inc()
    TASK_SECONDS.labels(kind).observe(seconds)
    if accepted:
        EXAMPLES_ACCEPTED.labels(kind).inc(accepted)
    for reason, n in rejected_by_reason.items():
        EXAMPLES_REJECTED.labels(kind, reason).inc(n)


def task_failed(kind: str, seconds: float, *, retried: bool) -> None:
    """A failed attempt: queued again (`retried`) or failed for good."""
    (TASKS_RETRIED if retried else TASKS_FAILED).labels(kind).inc()
    TASK_SECONDS.labels(kind).observe(seconds)


@contextmanager
def teacher_in_flight(n: int) -> Iterator[None]:
    """Count `n` requests in flight for the duration of the block."""
    TEACHER_IN_FLIGHT.inc(n)
    try:
        yield
    finally:
        TEACHER_IN_FLIGHT.dec(n)


def teacher_results(results: Sequence[Any]) -> None:
    """Record a batch of TeacherResult / ScoreResult: outcomes of every attempt, latency of
    every request, tokens."""
    for result in results:
        record(result)


def record(result: _Result) -> None:
    for cause, n in (result.attempt_errors or {}).items():
        TEACHER_REQUESTS.labels(outcome_label(cause)).inc(n)
    if result.error is None:
        TEACHER_REQUESTS.labels("ok").inc()
    elif not result.attempt_errors:  # a backend that does not count its attempts
        TEACHER_REQUESTS.labels(outcome_label(error_cause(result.error))).inc()
    TEACHER_SECONDS.observe(result.latency_s)
    usage = getattr(result, "usage", None)
    prompt = usage.prompt_tokens if usage is not None else getattr(result, "prompt_tokens", 0)
    completion = usage.completion_tokens if usage is not None else 0
    if prompt:
        TEACHER_TOKENS.labels("prompt").inc(prompt)
    if completion:
        TEACHER_TOKENS.labels("completion").inc(completion)


class Stopwatch:
    """Seconds since creation (a task's time from claim on)."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started


def serve_metrics(port: int, host: str = "127.0.0.1") -> int:
    """Serve /metrics over HTTP on (host, port) from a daemon thread; returns the bound port.

    With ``PROMETHEUS_MULTIPROC_DIR`` set, serves the sum over every process writing there
    (prometheus_client's multiprocess collector), else this process's registry.
    """
    registry: CollectorRegistry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        prom_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return int(server.server_port)
