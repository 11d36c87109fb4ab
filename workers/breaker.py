"""A circuit breaker on the teacher, one per worker: stop claiming work while the teacher is down.

Closed (normal): every batch of teacher results is recorded. ``threshold`` requests that failed
for good with an outage error (connection refused or reset, timeout, HTTP 5xx: the backend's own
retries already spent), with no clean batch in between, open it. Open: the runner claims
nothing for this teacher and calls :func:`probe` every ``probe_seconds``; the first success (a
probe, or a clean batch of a task still in flight) closes it. Rate limits, malformed bodies
and refused requests do not count: the teacher is up.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from workers.teachers.base import (
    SamplingParams,
    TeacherError,
    TeacherRequest,
    TeacherResult,
    TeacherTimeout,
    TeacherUnavailable,
)

PROBE_REQUEST = TeacherRequest(
    messages=[{"role": "user", "content": "ping"}],
    sampling=SamplingParams(max_tokens=1, temperature=0.0),
    request_id="probe",
)


def is_outage(error: TeacherError) -> bool:
    """True for errors that say the teacher is unreachable (not for 429, 4xx, bad bodies)."""
    return isinstance(error, TeacherUnavailable | TeacherTimeout)


@dataclass
class Breaker:
    """The breaker's state; plain data, changed only through its methods."""

    threshold: int = 5
    probe_seconds: float = 5.0
    failures: int = 0  # outage failures in a row
    down_since: dt.datetime | None = None  # set while open
    last_error: str | None = None
    last_error_at: dt.datetime | None = None
    changes: int = field(default=0)  # bumped on open and close (the runner reports at once)

    @property
    def open(self) -> bool:
        """True while the teacher is considered down."""
        return self.down_since is not None

    def record(self, results: Sequence[TeacherResult]) -> None:
        """Count a batch's results. A batch comes back at once, in no order of time: answers
        in a batch that also has outage failures were most likely given before the teacher went
        away, so only a batch without outage failures counts as a success."""
        outage = False
        for result in results:
            if result.error is not None:
                self.failure(result.error)
                outage = outage or is_outage(result.error)
        if not outage and any(result.error is None for result in results):
            self.success()

    def success(self) -> None:
        self.failures = 0
        if self.down_since is not None:
            self.down_since = None
            self.changes += 1

    def failure(self, error: TeacherError) -> None:
        self.last_error = f"{type(error).__name__}: {error.message}"
        self.last_error_at = dt.datetime.now(dt.UTC)
        if not is_outage(error):
            return
        self.failures += 1
        if self.failures >= self.threshold and self.down_since is None:
            self.down_since = self.last_error_at
            self.changes += 1


async def probe(teacher: Any) -> None:
    """One cheap request to the teacher: its ``probe()`` when it has one (the openai backend's
    ``GET /models``), else a 1-token generation. Raises :class:`TeacherError` on failure."""
    check = getattr(teacher, "probe", None)
    if check is not None:
        await check()
        return
    [result] = await teacher.generate([PROBE_REQUEST])
    if result.error is not None:
        raise result.error
