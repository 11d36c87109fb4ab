"""workers.breaker: plain state, no I/O."""

from __future__ import annotations

from workers.breaker import Breaker
from workers.teachers.base import (
    Generation,
    TeacherBadResponse,
    TeacherRateLimited,
    TeacherResult,
    TeacherTimeout,
    TeacherUnavailable,
)

OK = TeacherResult(generations=[Generation("answer", "stop")])


def failed(error: Exception) -> TeacherResult:
    return TeacherResult.failed(error)  # type: ignore[arg-type]


def test_outage_failures_open_it_and_a_clean_batch_closes_it() -> None:
    breaker = Breaker(threshold=3)
    breaker.record([failed(TeacherUnavailable("refused")), OK])
    breaker.record([failed(TeacherTimeout())])
    assert not breaker.open and breaker.failures == 2
    # answers in a batch with outage failures came before the outage: they do not reset it
    breaker.record([OK, OK, failed(TeacherUnavailable("HTTP 503", status=503))])
    assert breaker.open and breaker.down_since is not None
    assert breaker.last_error == "TeacherUnavailable: HTTP 503"
    breaker.record([OK])
    assert not breaker.open and breaker.failures == 0 and breaker.changes == 2


def test_rate_limits_and_bad_bodies_do_not_open_it() -> None:
    breaker = Breaker(threshold=1)
    breaker.record([failed(TeacherRateLimited()), failed(TeacherBadResponse("null content"))])
    assert not breaker.open and breaker.failures == 0
    assert breaker.last_error == "TeacherBadResponse: null content"
