"""The worker loop: claim -> run the job's method -> complete, with leases kept alive.

One :class:`Runner` serves one teacher. It keeps at most ``concurrency`` tasks in flight; each
has its own heartbeat coroutine, so a slow teacher call never loses its lease. A heartbeat that
finds the lease gone cancels its task, which then writes nothing. Idle runners wake on Postgres
``LISTEN`` (a dedicated asyncpg connection, reconnected when lost) and poll every
``poll_interval_seconds`` in any case (the only way on SQLite).

Errors never stop the loop: a database that is down (a Postgres restart) is logged, backed off
and retried; results wait for it (the transition is retried) while the lease lasts.

What happens to a task (all state changes through ``app.queue``)::

    method returns           complete_task (results, counters, follow-ups: one transaction)
    JobCancelled             cancel_task (nothing of the task is written)
    TaskFailed / final error fail_task(retryable=False): the task and the job fail
    other exception          fail_task: retried with backoff, then final
    database unavailable     release_task after a short delay (attempt not counted)
    lease lost               nothing (another worker has the task)
    shutdown (SIGTERM)       in-flight tasks get ``shutdown_grace_seconds``, the rest released

Every teacher result a method gets is tallied per task (failed attempts by cause, answered,
failed) and stored with the task's completion or failure (the job's ``teacher_errors`` and its
outage clock, app.queue). A circuit breaker (workers.breaker) watches the same results: while
the teacher is down the runner claims nothing, probes it every ``teacher_probe_seconds`` and
fails the jobs whose teacher unavailability budget is spent. The worker registers in the
``workers`` table at start and heartbeats there (in flight, teacher state, last teacher error).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import os
import signal
import socket
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app import benchmarks, contamination, job_counters, queue
from app import workers as registry
from app.config import Settings
from app.db import is_db_unavailable
from app.models import TERMINAL_STATUSES, Example, Job, Skill, Task
from app.state import Database
from workers import breaker as breakers
from workers import metrics
from workers.curation import language
from workers.methods import METHODS
from workers.methods.base import JobCancelled, TaskInput, TaskOutcome
from workers.teachers.base import (
    ScoreRequest,
    ScoreResult,
    TeacherError,
    TeacherRejected,
    TeacherRequest,
    TeacherResult,
    TokenizerInfo,
    WhiteBoxTeacher,
    error_cause,
)

if TYPE_CHECKING:
    from workers.teachers.base import Teacher

log = logging.getLogger(__name__)

T = TypeVar("T")
REAP_EVERY_S = 1.0
BENCHMARK_INDEXES = 8  # contamination indexes a worker keeps (one per set of benchmarks)

_SKILL_FIELDS = ("id", "name", "description", "domain", "guidelines", "rubric", "output_format")
_EXAMPLE_COLUMNS = (
    Example.id,
    Example.origin,
    Example.status,
    Example.instruction,
    Example.input,
    Example.output,
    Example.messages,
    Example.meta,
)
_PROGRESS_FIELDS = ("total", "completed", "accepted", "rejected", "failed", "prompt_tokens",
                    "completion_tokens", "teacher_seconds", "status", "stop_reason")  # fmt: skip


class DatabaseUnavailable(Exception):
    """The database could not be reached while the method read from it."""


@dataclasses.dataclass
class _Tally:
    """What one task saw of the teacher (see :class:`app.queue.TeacherStats`)."""

    errors: Counter[str] = dataclasses.field(default_factory=Counter)
    last_error: str | None = None
    answered: int = 0
    failed: int = 0

    def add(self, results: Sequence[TeacherResult]) -> None:
        for result in results:
            if result.attempt_errors:
                self.errors.update(result.attempt_errors)
            elif result.error is not None:  # a backend that does not count its attempts
                self.errors[error_cause(result.error)] += 1
            if result.error is None:
                self.answered += 1
            else:
                self.failed += 1
                self.last_error = f"{type(result.error).__name__}: {result.error.message}"

    def stats(self) -> queue.TeacherStats:
        return queue.TeacherStats(dict(self.errors), self.last_error, self.answered, self.failed)


@dataclasses.dataclass(eq=False)
class _Running:
    claimed: queue.ClaimedTask
    tally: _Tally = dataclasses.field(default_factory=_Tally)
    clock: metrics.Stopwatch = dataclasses.field(default_factory=metrics.Stopwatch)
    task: asyncio.Task[None] | None = None
    work: asyncio.Task[TaskOutcome] | None = None
    phase: str = "method"  # method -> finishing
    lease_lost: bool = False
    release: bool = False


class Runner:
    """Claims tasks of the kinds in `methods` whose teacher model it serves, and runs them."""

    def __init__(
        self,
        *,
        db: Database,
        settings: Settings,
        teacher: Teacher,
        methods: Mapping[str, Any] | None = None,
        concurrency: int | None = None,
        worker_id: str | None = None,
        listen: bool | None = None,
        breaker: breakers.Breaker | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.teacher = teacher
        self.methods: Mapping[str, Any] = METHODS if methods is None else methods
        self.concurrency = concurrency or settings.worker_concurrency
        self.worker = worker_id or settings.worker_id
        self.listen = db.dialect == "postgresql" if listen is None else listen
        self.stats: Counter[str] = Counter()
        self.max_in_flight = 0
        self.teacher_in_flight = 0  # requests at the teacher now: heartbeats report it
        self.listening = asyncio.Event()  # set while the LISTEN connection is up
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()
        self._hard_stop = False
        self._running: dict[uuid.UUID, _Running] = {}
        self._skills: dict[uuid.UUID, dict[str, Any] | None] = {}
        # contamination indexes by benchmark ids, built once (benchmarks never change)
        self._benchmark_indexes: dict[tuple[str, ...], asyncio.Future[contamination.Index]] = {}
        self._reaped_at = -REAP_EVERY_S
        self.breaker = breaker or breakers.Breaker(
            threshold=settings.teacher_breaker_failures,
            probe_seconds=settings.teacher_probe_seconds,
        )
        self._breaker_changes = 0
        self._report = asyncio.Event()  # heartbeat the registry now (the breaker moved)
        # tasks in flight when the teacher came back: their retries, queued after the wake-up
        # of the others, are made due when they finish
        self._in_flight_at_recovery: set[uuid.UUID] = set()
        if settings.heartbeat_seconds * 2 > settings.lease_seconds:
            log.warning(
                "heartbeat_seconds (%s) should be at most half of lease_seconds (%s), or a busy "
                "worker may lose its leases",
                settings.heartbeat_seconds,
                settings.lease_seconds,
                extra={"action": "lease_settings", "worker": self.worker},
            )

    # --- control -------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Tasks held right now."""
        return len(self._running)

    @contextlib.contextmanager
    def teacher_calls(self, n: int) -> Iterator[None]:
        """Count `n` requests at the teacher for the duration of the block."""
        self.teacher_in_flight += n
        try:
            yield
        finally:
            self.teacher_in_flight -= n

    def stop(self) -> None:
        """Stop claiming and shut down gracefully; a second call releases at once."""
        if self._stopping.is_set():
            self._hard_stop = True
        self._stopping.set()
        self._wakeup.set()

    def wake(self) -> None:
        """Look for tasks now (what a NOTIFY does)."""
        self._wakeup.set()

    async def run(self) -> None:
        """Run until :meth:`stop` (or cancellation); then finish or release what is held."""
        # curation's models, loaded once before the first task rather than by each task at once
        await asyncio.to_thread(language.warm_up)
        listener = asyncio.create_task(self._listen()) if self.listen else None
        presence = asyncio.create_task(self._presence())
        kinds = sorted(self.methods)
        if not kinds:
            self._log(logging.WARNING, "no methods registered: this worker claims nothing",
                      "worker_no_methods")  # fmt: skip
        self._log(logging.INFO, f"worker {self.worker} started: kinds {kinds}, model "
                  f"{self.teacher.model!r}, {self.concurrency} tasks at once", "worker_started",
                  concurrency=self.concurrency, kinds=kinds, model=self.teacher.model)  # fmt: skip
        try:
            await self._loop()
        finally:
            self._stopping.set()
            await self._shutdown()
            presence.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await presence
            await self._unregister()
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener
            self._log(logging.INFO, f"worker {self.worker} stopped: {dict(self.stats)}",
                      "worker_stopped", **self.stats)  # fmt: skip

    # --- the loop ------------------------------------------------------------------------

    async def _loop(self) -> None:
        delay = 0.0
        while not self._stopping.is_set():
            self._wakeup.clear()  # before claiming: a wake-up during the claim is not lost
            if self.breaker.open:
                await self._probe()
                continue
            free = self.concurrency - len(self._running)
            if free > 0:
                try:
                    claimed = await self._claim(free)
                except Exception as exc:
                    delay = min(10.0, delay * 2 or 0.25)
                    self._log(logging.WARNING, f"claim failed, retrying in {delay:.2f}s: {exc!r}",
                              "claim_failed", db_unavailable=is_db_unavailable(exc))  # fmt: skip
                    await self._sleep(delay)
                    continue
                delay = 0.0
                for task in claimed:
                    self._start(task)
                if claimed and len(claimed) == free:
                    continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._wakeup.wait(), timeout=self.settings.poll_interval_seconds
                )

    async def _claim(self, limit: int) -> list[queue.ClaimedTask]:
        # reaping (dead workers' tasks that must not run again) needs no hurry: once a second
        reap = time.monotonic() - self._reaped_at >= REAP_EVERY_S
        async with self.db.transaction() as session:
            claimed = await queue.claim_tasks(
                session=session,
                worker=self.worker,
                lease_seconds=self.settings.lease_seconds,
                limit=limit,
                kinds=list(self.methods),
                teacher_model=self.teacher.model,
                reap=reap,
            )
        if reap:
            self._reaped_at = time.monotonic()
        return claimed

    def _start(self, claimed: queue.ClaimedTask) -> None:
        state = _Running(claimed)
        state.task = asyncio.create_task(self._execute(state), name=f"task-{claimed.id}")
        self._running[claimed.id] = state
        self.stats["claimed"] += 1
        metrics.task_claimed(claimed.kind)
        self.max_in_flight = max(self.max_in_flight, len(self._running))

        def done(_: asyncio.Task[None]) -> None:
            self._running.pop(claimed.id, None)
            self._wakeup.set()

        state.task.add_done_callback(done)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    async def _shutdown(self) -> None:
        states = list(self._running.values())
        if not states:
            return
        grace = 0.0 if self._hard_stop else self.settings.shutdown_grace_seconds
        self._log(logging.INFO, f"shutting down: {len(states)} tasks in flight, {grace}s grace",
                  "worker_draining", tasks=len(states))  # fmt: skip
        tasks = [s.task for s in states if s.task is not None]
        deadline = time.monotonic() + grace
        while tasks and time.monotonic() < deadline and not self._hard_stop:
            _, pending = await asyncio.wait(tasks, timeout=min(0.5, grace))
            tasks = list(pending)
        for state in list(self._running.values()):
            if state.phase == "method" and state.work is not None and not state.work.done():
                state.release = True
                state.work.cancel()
        remaining = [s.task for s in self._running.values() if s.task is not None]
        if remaining:
            # releases and completions in progress; bounded by their own retry deadline
            await asyncio.wait(remaining, timeout=self._transition_deadline() + 5)

    # --- one task ------------------------------------------------------------------------

    async def _execute(self, state: _Running) -> None:
        claimed = state.claimed
        state.work = asyncio.create_task(self._work(state))
        beat = asyncio.create_task(self._heartbeat(state))
        try:
            await asyncio.wait({state.work})
            if state.work.cancelled():
                if state.release:
                    await self._finish(state, "release", reason="worker shutting down")
                elif state.lease_lost:
                    self.stats["lease_lost"] += 1
                return
            error = state.work.exception()
            if error is None:
                state.phase = "finishing"
                await self._complete(state, state.work.result())
            elif isinstance(error, JobCancelled):
                await self._finish(state, "cancel")
            elif isinstance(error, DatabaseUnavailable):
                await self._finish(state, "release", reason=str(error), delay=1.0)
            else:
                retryable = bool(getattr(error, "retryable", True))
                await self._finish(state, "fail", error=_describe(error), retryable=retryable)
        except queue.TaskLeaseLost as exc:
            self.stats["lease_lost"] += 1
            self._task_log(logging.WARNING, claimed, f"lease lost: {exc}", "lease_lost")
        except Exception:
            self.stats["errors"] += 1
            log.exception(
                "task handling failed; its lease will lapse and it will be retried",
                extra=self._extra(claimed, "task_error"),
            )
        finally:
            beat.cancel()
            if not state.work.done():
                state.work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await state.work
            if claimed.id in self._in_flight_at_recovery:
                self._in_flight_at_recovery.discard(claimed.id)
                await self._expedite_retries()

    async def _work(self, state: _Running) -> TaskOutcome:
        claimed = state.claimed
        # the claim skipped cancelled jobs; the method checks again
        teacher = _TaskTeacher(self, state.tally)
        ctx = _Context(self, claimed, teacher)
        method = self.methods[claimed.kind]
        task = TaskInput(
            job_id=str(claimed.job_id),
            task_id=str(claimed.id),
            dataset_id=str(claimed.dataset_id),
            seq=claimed.seq,
            attempt=claimed.attempt,
            kind=claimed.kind,
            params=claimed.params,
            teacher=claimed.teacher,
            skill=await ctx.skill(),
            payload=claimed.payload,
        )
        # soft targets are only meaningful with the tokenizer's identity: a teacher that cannot
        # give token ids fails the job at its first task (TeacherRejected is final), before any
        # generation; backends cache what they report
        tokenizer = None
        if claimed.teacher.get("top_logprobs") is not None:
            tokenizer = await teacher.tokenizer_info()
        outcome: TaskOutcome = await method.run(task, ctx)
        if outcome.tokenizer is None:
            outcome.tokenizer = tokenizer
        return outcome

    async def _heartbeat(self, state: _Running) -> None:
        claimed = state.claimed
        every = self.settings.heartbeat_seconds
        wait = every
        while True:
            await asyncio.sleep(wait)
            try:
                async with self.db.transaction() as session:
                    await queue.heartbeat(
                        session=session,
                        task_id=claimed.id,
                        worker=self.worker,
                        attempt=claimed.attempt,
                        lease_seconds=self.settings.lease_seconds,
                    )
                wait = every
            except queue.TaskLeaseLost:
                state.lease_lost = True
                self._task_log(logging.WARNING, claimed, "lease lost; stopping the task",
                               "lease_lost")  # fmt: skip
                if state.phase == "method" and state.work is not None:
                    state.work.cancel()
                return
            except Exception as exc:
                # the lease may still hold: try again soon (it is checked again at completion)
                wait = min(1.0, every)
                self._task_log(logging.WARNING, claimed, f"heartbeat failed: {exc!r}",
                               "heartbeat_failed")  # fmt: skip

    async def _complete(self, state: _Running, outcome: TaskOutcome) -> None:
        claimed = state.claimed

        async def call(session: AsyncSession) -> queue.Completion:
            return await queue.complete_task(
                session=session,
                task_id=claimed.id,
                worker=self.worker,
                attempt=claimed.attempt,
                outcome=outcome,
                teacher_backend=self.teacher.backend,
                teacher_model=self.teacher.model,
                teacher=state.tally.stats(),
                teacher_budget_seconds=self.settings.teacher_unavailable_budget_seconds,
                retry_base_seconds=self.settings.retry_base_seconds,
                retry_max_seconds=self.settings.retry_max_seconds,
            )

        try:
            completion = await self._transition(call)
        except queue.TaskLeaseLost:
            raise
        except Exception as exc:
            # e.g. a value the database refuses: retried like any failure, then final
            log.exception("storing results failed", extra=self._extra(claimed, "complete_failed"))
            await self._finish(state, "fail", error=f"storing results failed: {_describe(exc)}")
            return
        self.stats["succeeded"] += 1
        if not completion.already_done:  # a repeat of a committed completion counted already
            metrics.task_succeeded(claimed.kind, state.clock.seconds, completion.accepted,
                                   completion.rejected_by_reason)  # fmt: skip

    async def _finish(
        self,
        state: _Running,
        how: str,
        *,
        error: str = "",
        retryable: bool = True,
        reason: str = "",
        delay: float = 0.0,
    ) -> None:
        claimed = state.claimed
        common: dict[str, Any] = {
            "task_id": claimed.id,
            "worker": self.worker,
            "attempt": claimed.attempt,
        }

        async def call(session: AsyncSession) -> Any:
            if how == "cancel":
                return await queue.cancel_task(session=session, **common)
            if how == "release":
                return await queue.release_task(
                    session=session, reason=reason, delay_seconds=delay, **common
                )
            return await queue.fail_task(
                session=session,
                error=error,
                retryable=retryable,
                retry_base_seconds=self.settings.retry_base_seconds,
                retry_max_seconds=self.settings.retry_max_seconds,
                teacher=state.tally.stats(),
                **common,
            )

        result = await self._transition(call)
        if how == "fail":
            self.stats["retried" if result == "queued" else "failed"] += 1
            metrics.task_failed(claimed.kind, state.clock.seconds, retried=result == "queued")
        else:
            self.stats["cancelled" if how == "cancel" else "released"] += 1

    async def _transition(self, call: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run a queue transition in its own transaction, retrying while the database is down."""
        deadline = time.monotonic() + self._transition_deadline()
        delay = 0.2
        while True:
            try:
                async with self.db.transaction() as session:
                    return await call(session)
            except queue.TaskLeaseLost:
                raise
            except Exception as exc:
                if not is_db_unavailable(exc) or time.monotonic() + delay > deadline:
                    raise
                log.warning(
                    "database unavailable, retrying in %.1fs: %r",
                    delay,
                    exc,
                    extra={"action": "db_retry", "worker": self.worker},
                )
                await asyncio.sleep(delay)
                delay = min(5.0, delay * 2)

    def _transition_deadline(self) -> float:
        return max(60.0, 2 * self.settings.lease_seconds)

    # --- the teacher's breaker and the worker registry ------------------------------------

    def _teacher_results(self, tally: _Tally, results: Sequence[TeacherResult]) -> None:
        """Tally a method's teacher results and feed the breaker; report a change at once."""
        tally.add(results)
        self.breaker.record(results)
        if self.breaker.changes != self._breaker_changes:
            self._breaker_changes = self.breaker.changes
            self._report.set()
            if self.breaker.open:
                self._log(logging.WARNING, f"teacher down ({self.breaker.failures} requests in a "
                          f"row failed; last: {self.breaker.last_error}): claiming nothing, "
                          f"probing every {self.breaker.probe_seconds:g}s", "teacher_down",
                          last_error=self.breaker.last_error)  # fmt: skip
            else:
                self._log(logging.INFO, "teacher answers again: claiming", "teacher_up")
                # each of these wakes the retries queued during the outage when it finishes
                # (this one included: its own follow-ups are written after this)
                self._in_flight_at_recovery = set(self._running)

    async def _probe(self) -> None:
        """While the breaker is open: wait, probe the teacher, and settle spent budgets."""
        await self._sleep(self.breaker.probe_seconds)
        if self._stopping.is_set() or not self.breaker.open:
            return
        try:
            await asyncio.wait_for(breakers.probe(self.teacher), timeout=30)
        except TeacherError as exc:
            if not breakers.is_outage(exc):  # it answers, if not as we would like
                self.breaker.success()
            else:
                self.breaker.failure(exc)
        except Exception as exc:  # a probe must not stop the loop
            self.breaker.failure(TeacherError(f"probe failed: {exc!r}"))
        else:
            self.breaker.success()
        self._teacher_results(_Tally(), [])  # logs and reports a change
        if self.breaker.open:
            await self._expire_budgets()
        else:
            await self._expedite_retries()

    async def _expedite_retries(self) -> None:
        """The teacher is back: what waits out a backoff from the outage is due now."""
        try:
            async with self.db.transaction() as session:
                woken = await queue.expedite_retries(
                    session=session, teacher_model=self.teacher.model
                )
        except Exception as exc:
            self._log(logging.WARNING, f"waking retries failed: {exc!r}", "retries_woken")
            return
        if woken:
            self._log(logging.INFO, f"teacher back: {woken} queued retries are due now",
                      "retries_woken", tasks=woken)  # fmt: skip

    async def _expire_budgets(self) -> None:
        try:
            async with self.db.transaction() as session:
                failed = await queue.expire_teacher_budgets(
                    session=session,
                    budget_seconds=self.settings.teacher_unavailable_budget_seconds,
                    worker=self.worker,
                )
        except Exception as exc:
            self._log(logging.WARNING, f"teacher budget check failed: {exc!r}", "budget_check")
            return
        if failed:
            self._log(logging.ERROR, f"{failed} jobs failed: teacher unavailability budget spent",
                      "teacher_budget_spent", jobs=failed)  # fmt: skip

    async def _presence(self) -> None:
        """Register in the ``workers`` table, then heartbeat there until cancelled."""
        registered = False
        while True:
            self._report.clear()
            try:
                async with self.db.transaction() as session:
                    if registered:
                        registered = await registry.heartbeat(
                            session=session,
                            name=self.worker,
                            in_flight=len(self._running),
                            teacher_in_flight=self.teacher_in_flight,
                            teacher_state="down" if self.breaker.open else "ok",
                            teacher_down_since=self.breaker.down_since,
                            last_teacher_error=self.breaker.last_error,
                            last_teacher_error_at=self.breaker.last_error_at,
                            model=self.teacher.model,
                        )
                    else:
                        await registry.register(
                            session=session,
                            name=self.worker,
                            host=socket.gethostname(),
                            pid=os.getpid(),
                            model=self.teacher.model,
                            backend=self.teacher.backend,
                            kinds=list(self.methods),
                            concurrency=self.concurrency,
                        )
                        registered = True
                        continue
            except Exception as exc:
                self._log(logging.WARNING, f"worker heartbeat failed: {exc!r}", "worker_beat")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._report.wait(), timeout=self.settings.heartbeat_seconds)

    async def _unregister(self) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                async with self.db.transaction() as session:
                    await registry.stopped(session=session, name=self.worker)

    # --- wake-ups ------------------------------------------------------------------------

    async def _listen(self) -> None:
        """LISTEN on the queue channel on a dedicated connection; reconnect when it drops."""
        url = self.db.engine.url.set(drivername="postgresql")
        dsn = url.render_as_string(hide_password=False)
        delay = 0.25
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(dsn, timeout=10)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, ev=lost: ev.set())
                await conn.add_listener(queue.NOTIFY_CHANNEL, self._on_notify)
                self.listening.set()
                self._wakeup.set()  # what was enqueued while we were away
                delay = 0.25
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), timeout=10)
                        break
                    await conn.execute("SELECT 1", timeout=5)  # finds a half-open connection
                raise ConnectionError("LISTEN connection closed")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._log(logging.WARNING, f"LISTEN connection down, retrying in {delay:.2f}s: "
                          f"{exc!r}", "listen_lost")  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(10.0, delay * 2)
            finally:
                self.listening.clear()
                if conn is not None:
                    conn.terminate()

    def _on_notify(self, *_args: object) -> None:
        self._wakeup.set()

    # --- logging -------------------------------------------------------------------------

    def _extra(self, claimed: queue.ClaimedTask, action: str, **fields: Any) -> dict[str, Any]:
        return {
            "action": action,
            "job_id": str(claimed.job_id),
            "task_id": str(claimed.id),
            "worker": self.worker,
            **fields,
        }

    def _task_log(
        self, level: int, claimed: queue.ClaimedTask, message: str, action: str, **fields: Any
    ) -> None:
        log.log(level, message, extra=self._extra(claimed, action, **fields))

    def _log(self, level: int, message: str, action: str, **fields: Any) -> None:
        log.log(level, message, extra={"action": action, "worker": self.worker, **fields})


class _TaskTeacher:
    """The worker's teacher as one task sees it: every result is tallied for the task and
    recorded by the breaker."""

    def __init__(self, runner: Runner, tally: _Tally) -> None:
        self._runner = runner
        self._tally = tally
        self.backend = runner.teacher.backend
        self.model = runner.teacher.model

    async def generate(self, requests: Sequence[TeacherRequest]) -> list[TeacherResult]:
        with metrics.teacher_in_flight(len(requests)), self._runner.teacher_calls(len(requests)):
            results = await self._runner.teacher.generate(requests)
        metrics.teacher_results(results)
        self._runner._teacher_results(self._tally, results)
        return results

    async def tokenizer_info(self) -> TokenizerInfo:
        """The teacher's tokenizer identity; :class:`TeacherRejected` when it has none to give."""
        return await self._white_box().tokenizer_info()

    async def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        """Teacher-forced scoring, tallied like generation (failures, breaker)."""
        with metrics.teacher_in_flight(len(requests)), self._runner.teacher_calls(len(requests)):
            results = await self._white_box().score(requests)
        metrics.teacher_results(results)
        self._runner._teacher_results(self._tally, results)  # type: ignore[arg-type]
        return results

    def _white_box(self) -> WhiteBoxTeacher:
        teacher = self._runner.teacher
        if not isinstance(teacher, WhiteBoxTeacher):
            raise TeacherRejected(
                f"the {teacher.backend} teacher ({teacher.model}) cannot give token ids and "
                "logprobs (soft targets): use the vllm, transformers or openai backend"
            )
        return teacher

    async def aclose(self) -> None:
        """The worker closes its teacher, not a task."""


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


class _Context:
    """What a method sees of the world (:class:`workers.methods.base.MethodContext`)."""

    def __init__(
        self, runner: Runner, claimed: queue.ClaimedTask, teacher: _TaskTeacher | None = None
    ) -> None:
        self._runner = runner
        self._claimed = claimed
        self._teacher = teacher
        self._cancel_check: asyncio.Future[None] | None = None

    @property
    def teacher(self) -> Teacher:
        return self._teacher or self._runner.teacher

    async def check_cancel(self) -> None:
        """Raise JobCancelled when the job was cancelled or has ended. Checks the task makes
        at the same time (a pipelined round's answer calls) share one read of the job: a check
        asked for while one is in flight gets that one's verdict."""
        if self._cancel_check is None or self._cancel_check.done():
            self._cancel_check = asyncio.ensure_future(self._read_cancel())
            # retrieved here too: its verdict is not lost (nor logged) when every waiter left
            self._cancel_check.add_done_callback(_retrieve)
        await asyncio.shield(self._cancel_check)

    async def _read_cancel(self) -> None:
        try:
            async with self._runner.db.reading() as session:
                row = (
                    await session.execute(
                        select(Job.cancel_requested, Job.status).where(
                            Job.id == self._claimed.job_id
                        )
                    )
                ).one()
        except Exception as exc:
            if not is_db_unavailable(exc):
                raise
            return  # best effort: the next check (or the lease) catches a cancel
        if row.cancel_requested or row.status in TERMINAL_STATUSES:
            raise JobCancelled(f"job {self._claimed.job_id} is {row.status}")

    async def fetch_examples(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        wanted = [uuid.UUID(str(i)) for i in ids]
        # by primary key only (a dataset filter in SQL lets the planner pick a dataset scan on
        # freshly loaded tables); the dataset is checked here
        stmt = select(*_EXAMPLE_COLUMNS, Example.dataset_id).where(Example.id.in_(wanted))
        by_id = {
            row.id: _example_dict(row)
            for row in await self._read(stmt)
            if row.dataset_id == self._claimed.dataset_id
        }
        return [by_id[i] for i in wanted if i in by_id]

    async def dataset_pool(self) -> list[str]:
        stmt = select(Example.instruction).where(
            Example.dataset_id == self._claimed.dataset_id, Example.status != "rejected"
        )
        return [row.instruction for row in await self._read(stmt)]

    async def dataset_pool_rows(self, since: dt.datetime | None) -> list[tuple[Any, str, Any]]:
        stmt = select(Example.id, Example.instruction, Example.created_at).where(
            Example.dataset_id == self._claimed.dataset_id, Example.status != "rejected"
        )
        if since is not None:
            stmt = stmt.where(Example.created_at >= since)
        return [(row.id, row.instruction, row.created_at) for row in await self._read(stmt)]

    async def lane_accepted(self, lanes: int, lane: int) -> int:
        """Accepted examples of this job stored by tasks whose payload ``round`` is `lane`
        modulo `lanes` (a lane of parallel rounds, as committed now)."""
        stmt = (
            select(func.count())
            .select_from(Example)
            .join(Task, Task.id == Example.task_id)
            .where(
                Example.job_id == self._claimed.job_id,
                Example.status == "accepted",
                Task.job_id == self._claimed.job_id,
                Task.payload["round"].as_integer() % lanes == lane,
            )
        )
        rows = await self._read(stmt)
        return int(rows[0][0]) if rows else 0

    async def job_progress(self) -> dict[str, Any]:
        stmt = select(
            *(
                job_counters.expression(f) if f in job_counters.COUNTERS else getattr(Job, f)
                for f in _PROGRESS_FIELDS
            )
        ).where(Job.id == self._claimed.job_id)
        rows = await self._read(stmt)
        if not rows:
            return {}
        # the counters' sums come back as Decimal on Postgres: methods do arithmetic on them
        return {
            name: float(value)
            if name == "teacher_seconds"
            else int(value)
            if name in job_counters.COUNTERS or name == "total"
            else value
            for name, value in rows[0]._asdict().items()
        }

    async def sample_demos(self, n_seed: int, n_generated: int) -> list[dict[str, Any]]:
        demos: list[dict[str, Any]] = []
        for origin, n in (("seed", n_seed), ("generated", n_generated)):
            if n <= 0:
                continue
            stmt = (
                select(*_EXAMPLE_COLUMNS)
                .where(
                    Example.dataset_id == self._claimed.dataset_id,
                    Example.origin == origin,
                    Example.status == "accepted",
                    Example.superseded_by.is_(None),  # an answer a relabel replaced is history
                )
                .order_by(func.random())
                .limit(n)
            )
            demos.extend(_example_dict(row) for row in await self._read(stmt))
        return demos

    async def topic_demos(self, topic: str, n: int) -> list[dict[str, Any]]:
        stmt = (
            select(*_EXAMPLE_COLUMNS)
            .where(
                Example.dataset_id == self._claimed.dataset_id,
                Example.topic == topic,
                Example.status == "accepted",
                Example.superseded_by.is_(None),
            )
            .order_by(func.random())
            .limit(n)
        )
        return [_example_dict(row) for row in await self._read(stmt)]

    async def topic_accepted(self, topic: str) -> int:
        stmt = (
            select(func.count())
            .select_from(Example)
            .where(
                Example.job_id == self._claimed.job_id,
                Example.status == "accepted",
                Example.topic == topic,
            )
        )
        rows = await self._read(stmt)
        return int(rows[0][0]) if rows else 0

    async def skill(self) -> dict[str, Any] | None:
        params = self._claimed.params
        if "skill_spec" in params:  # the skill as the job froze it at creation (app.jobs)
            return dict(params["skill_spec"])
        skill_id = self._claimed.skill_id
        if skill_id is None:  # expansion jobs carry the dataset's description (app.jobs)
            return params.get("skill_from_dataset")
        # jobs created before skills were frozen into their params: read it once per worker
        if skill_id not in self._runner._skills:
            rows = await self._read(
                select(*(getattr(Skill, f) for f in _SKILL_FIELDS)).where(Skill.id == skill_id)
            )
            self._runner._skills[skill_id] = (
                {**rows[0]._asdict(), "id": str(skill_id)} if rows else None
            )
        return self._runner._skills[skill_id]

    async def benchmark_index(self, ids: Sequence[str]) -> contamination.Index | None:
        """The contamination index of these benchmarks (None for none), built once per worker
        and set of ids, off the event loop; a deleted benchmark has no items."""
        if not ids:
            return None
        key = tuple(sorted(set(ids)))
        cache = self._runner._benchmark_indexes
        future = cache.get(key)
        if future is None:
            future = cache[key] = asyncio.ensure_future(self._build_index(key))
            while len(cache) > BENCHMARK_INDEXES:
                cache.pop(next(iter(cache)))
        try:
            return await asyncio.shield(future)
        except Exception:
            if cache.get(key) is future:  # not cached: the next task tries again
                del cache[key]
            raise

    async def _build_index(self, ids: Sequence[str]) -> contamination.Index:
        items = benchmarks.item_tuples(await self._read(benchmarks.items_query(ids)))
        return await asyncio.to_thread(contamination.build_index, items)

    async def _read(self, stmt: Any) -> list[Any]:
        try:
            async with self._runner.db.reading() as session:
                return list((await session.execute(stmt)).all())
        except Exception as exc:
            if is_db_unavailable(exc):
                raise DatabaseUnavailable(f"database unavailable: {exc!r}") from exc
            raise


def _example_dict(row: Any) -> dict[str, Any]:
    data: dict[str, Any] = row._asdict()
    data["id"] = str(row.id)
    data["metadata"] = data.pop("meta")
    return data


def _describe(exc: BaseException) -> str:
    message = str(exc).strip()
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


async def run_worker(
    settings: Settings,
    teacher: Teacher,
    *,
    methods: Mapping[str, Any] | None = None,
    concurrency: int | None = None,
    handle_signals: bool = True,
) -> Runner:
    """Run a worker process's runner until SIGTERM/SIGINT; closes the teacher at the end."""
    db = Database.from_url(settings.database_url)
    runner = Runner(
        db=db, settings=settings, teacher=teacher, methods=methods, concurrency=concurrency
    )
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT) if handle_signals else ()
    for sig in signals:
        loop.add_signal_handler(sig, runner.stop)
    try:
        await runner.run()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        await teacher.aclose()
        await db.engine.dispose()
    return runner


def embedded_worker(
    settings: Settings,
    teacher: Teacher,
    *,
    methods: Mapping[str, Any] | None = None,
    concurrency: int | None = None,
) -> Callable[[Database], Coroutine[Any, Any, None]]:
    """A background job for ``create_app(background=...)``: a runner on the app's database,
    stopped gracefully when the app shuts down (the lifespan cancels it)."""

    async def run(db: Database) -> None:
        runner = Runner(
            db=db, settings=settings, teacher=teacher, methods=methods, concurrency=concurrency
        )
        try:
            await runner.run()
        finally:
            await teacher.aclose()

    return run
