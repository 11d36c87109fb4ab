"""The only code that moves a task's or a job's state.

Task states and the calls that move them (see docs/queue.md)::

    queued ──claim_tasks──> running ──complete_task──> succeeded
       ^                    │  │ └────cancel_task────> cancelled
       │  fail_task (retry, │  └──fail_task (final)──> failed
       │  backoff), release_task,
       └─ claim of a lapsed lease (another worker takes it over)
    queued ──cancel_job──> cancelled

A lease is a worker's name plus the task's attempt number: every call after the claim names both
(``worker``, ``attempt``) and raises :class:`TaskLeaseLost` when the task has moved on, so a
worker that lost its lease writes nothing. The job follows its tasks: ``running`` at the first
claim, ``failed`` as soon as one task fails for good (its queued tasks are cancelled),
``cancelled`` on request, ``succeeded`` when nothing is queued or running and nothing failed.
Counters move in the same transaction as the task that earned them, in shard rows
(app.job_counters): a completion locks the job row only when it changes it or may be the job's
last (:func:`_others_active`), so completions of one job do not queue on it.

Locks are taken in one order, task -> dataset (a near-duplicate recheck) or prompts (answers) ->
job (-> skill, for a proposed taxonomy) -> counter shard; later task locks use SKIP LOCKED, so
two transactions never wait on each other in a cycle. On
SQLite every write transaction is ``BEGIN IMMEDIATE`` (app.db), which serialises them; FOR
UPDATE clauses are dropped there.

Every transition appends a row to ``task_events`` and logs structured data (``action``,
``job_id``, ``task_id``, ``worker``).
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Table,
    and_,
    bindparam,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app import job_counters
from app.db import utcnow
from app.errors import JobNotCancellable
from app.examples import answers_itself, insert_ignoring_conflicts, is_current_child
from app.hashing import content_hash
from app.ids import uuid7
from app.models import (
    TERMINAL_STATUSES,
    Dataset,
    Example,
    Job,
    PreferencePair,
    Skill,
    SoftTarget,
    Task,
    TaskEvent,
)
from app.outcomes import ExampleOut, PairOut, TaskOutcome
from app.soft_targets import ENCODING, SoftTargets, pack

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "distillery_tasks"
ACTIVE_STATUSES: tuple[str, ...] = ("queued", "running")
MAX_ERROR_CHARS = 2000
REAP_BATCH = 100
_IN_CHUNK = 500


class QueueError(Exception):
    """A queue operation could not be done."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class TaskLeaseLost(QueueError):
    """The worker no longer holds the task's lease (it lapsed and moved on); nothing was written."""


@dataclass(frozen=True, slots=True)
class ClaimedTask:
    """A task a worker now holds, with what it needs of its job."""

    id: uuid.UUID
    job_id: uuid.UUID
    dataset_id: uuid.UUID
    skill_id: uuid.UUID | None
    seq: int
    attempt: int  # the lease: (worker, attempt)
    max_attempts: int
    kind: str
    params: dict[str, Any]
    teacher: dict[str, Any]
    payload: dict[str, Any]
    lease_expires_at: dt.datetime
    reclaimed_from: str | None  # the worker whose lease lapsed, when this is a takeover


_REASON_KEY = "reason:"  # counts of _write_examples: rejected rows by reason


@dataclass(frozen=True, slots=True)
class Completion:
    """What :func:`complete_task` stored."""

    accepted: int
    rejected: int
    duplicates: int
    pending: int
    followups: int
    job_status: str
    already_done: bool = False
    # the rejected examples stored now by reason (as the job's report counts them)
    rejected_by_reason: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TeacherStats:
    """What a task saw of its teacher: failed attempts by cause (the backend's own retries
    included), the last error, and how many requests came back answered or failed."""

    errors: Mapping[str, int]
    last_error: str | None = None
    answered: int = 0
    failed: int = 0


# what a task hands back (filled by workers.methods), stored by complete_task
ExampleData = ExampleOut
Outcome = TaskOutcome


def backoff_seconds(
    attempt: int, *, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Delay before retry number `attempt` (1-based): ``base * 2**(attempt-1)`` capped at `cap`,
    times a random factor in [0.5, 1] so retries of many tasks do not arrive together."""
    delay = min(cap, base * 2 ** max(0, attempt - 1))
    return float(delay * (rng or random).uniform(0.5, 1.0))


# --- enqueue ----------------------------------------------------------------------------------


def served_by(teacher_model: str | None) -> ColumnElement[bool]:
    """SQL: the task is one a worker serving `teacher_model` may run (a task that names no
    model: any worker; one that names a model: only workers serving it)."""
    if teacher_model:
        return or_(Task.teacher_model.is_(None), Task.teacher_model == teacher_model)
    return Task.teacher_model.is_(None)


async def enqueue_job(
    *, session: AsyncSession, job: Job, payloads: Sequence[dict[str, Any]], max_attempts: int
) -> list[Task]:
    """Add `job` and one queued task per payload in the caller's transaction; wake the workers.

    A job with no payload has nothing to do: it is stored as succeeded at once.
    """
    session.add(job)
    await session.flush()
    if not payloads:
        now = utcnow()
        job.started_at = now
        await _settle_job(session, job, now, None)
        return []
    tasks = [
        Task(
            job_id=job.id,
            seq=seq,
            payload=payload,
            teacher_model=job.teacher_model,
            priority=job.priority or 0,
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
    if _dialect(session) == "postgresql":
        await session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": NOTIFY_CHANNEL})


# --- claim ------------------------------------------------------------------------------------


async def claim_tasks(
    *,
    session: AsyncSession,
    worker: str,
    lease_seconds: float,
    limit: int = 1,
    kinds: Sequence[str] | None = None,
    teacher_model: str | None = None,
    reap: bool = True,
) -> list[ClaimedTask]:
    """Claim up to `limit` runnable tasks for `worker` and lease them for `lease_seconds`.

    Runnable: queued with ``run_after`` passed, or running under a lease that lapsed (its worker
    died) and attempts left. Only tasks of jobs of `kinds` (None: any) whose ``teacher_model``
    is NULL or `teacher_model`. Postgres: ``SELECT … FOR UPDATE SKIP LOCKED`` then ``UPDATE``,
    so concurrent workers skip each other's rows; SQLite: the same two statements inside the
    ``BEGIN IMMEDIATE`` transaction, which no other writer can interleave with. Each claim
    counts an attempt. With `reap`, tasks that must not run again (lapsed too often, job
    cancelled or ended) are settled first (:func:`reap_tasks`).
    """
    now = utcnow()
    if reap:
        await reap_tasks(session=session, now=now)
    ready = and_(Task.status == "queued", Task.run_after <= now)
    lapsed = and_(
        Task.status == "running",
        Task.lease_expires_at < now,
        Task.attempts < Task.max_attempts,
    )
    model_ok = served_by(teacher_model)
    stmt = (
        select(
            Task.id,
            Task.status,
            Task.lease_owner,
            Task.job_id,
            Job.status.label("job_status"),
            Job.dataset_id,
            Job.skill_id,
            Job.kind,
            Job.params,
            Job.teacher,
        )
        .join(Job, Job.id == Task.job_id)
        .where(
            or_(ready, lapsed),
            model_ok,
            Job.status.in_(ACTIVE_STATUSES),
            Job.cancel_requested.is_(False),
        )
        # a higher priority first (a training loop's scoring job overtakes a bulk job), then FIFO
        .order_by(Task.priority.desc(), Task.run_after, Task.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=Task)
    )
    if kinds is not None:
        if not kinds:
            return []
        stmt = stmt.where(Job.kind.in_(list(kinds)))
    picked = (await session.execute(stmt)).all()
    if not picked:
        return []
    previous = {row.id: row.lease_owner if row.status == "running" else None for row in picked}
    expires = now + dt.timedelta(seconds=lease_seconds)
    rows = (
        await session.execute(
            update(Task)
            .where(Task.id.in_(list(previous)))
            .values(
                status="running",
                attempts=Task.attempts + 1,
                lease_owner=worker,
                lease_expires_at=expires,
                started_at=now,
                finished_at=None,
            )
            .returning(
                Task.id, Task.job_id, Task.seq, Task.attempts, Task.max_attempts, Task.payload
            )
            .execution_options(synchronize_session=False)
        )
    ).all()
    jobs = {row.job_id: row for row in picked}
    events = []
    claimed = []
    for row in rows:
        job = jobs[row.job_id]
        was = previous[row.id]
        event = "reclaimed" if was else "claimed"
        detail: dict[str, Any] = {"attempt": row.attempts}
        if was:
            detail["previous_worker"] = was
        events.append(_event(row.job_id, row.id, event, worker, detail, now))
        claimed.append(
            ClaimedTask(
                id=row.id,
                job_id=row.job_id,
                dataset_id=job.dataset_id,
                skill_id=job.skill_id,
                seq=row.seq,
                attempt=row.attempts,
                max_attempts=row.max_attempts,
                kind=job.kind,
                params=dict(job.params or {}),
                teacher=dict(job.teacher or {}),
                payload=dict(row.payload or {}),
                lease_expires_at=expires,
                reclaimed_from=was,
            )
        )
        _log(
            logging.WARNING if was else logging.INFO,
            f"task {event}",
            event=f"task_{event}",
            job_id=row.job_id,
            task_id=row.id,
            worker=worker,
            attempt=row.attempts,
            previous_worker=was,
        )
    # the first claim of a job starts it; read first so later claims never wait on the job row
    starting = [job_id for job_id, j in jobs.items() if j.job_status == "queued"]
    if starting:
        started = (
            await session.scalars(
                update(Job)
                .where(Job.id.in_(starting), Job.status == "queued")
                .values(status="running", started_at=now, updated_at=now)
                .returning(Job.id)
                .execution_options(synchronize_session=False)
            )
        ).all()
        for job_id in started:
            events.append(_event(job_id, None, "job_started", worker, {}, now))
            _log(logging.INFO, "job started", event="job_started", job_id=job_id, worker=worker)
    await session.execute(insert(TaskEvent), events)
    return claimed


async def reap_tasks(*, session: AsyncSession, now: dt.datetime | None = None) -> int:
    """Settle tasks that must not run again; returns how many.

    A running task whose lease lapsed after its last allowed attempt fails for good (the job
    with it); a queued task, or a running one whose lease lapsed, of a job that was cancelled or
    has ended is cancelled (and the job settles).
    """
    now = now or utcnow()
    job_closed = or_(Job.cancel_requested.is_(True), Job.status.in_(TERMINAL_STATUSES))
    lapsed = and_(Task.status == "running", Task.lease_expires_at < now)
    stmt = (
        select(
            Task.id,
            Task.job_id,
            Task.seq,
            Task.status,
            Task.attempts,
            Task.max_attempts,
            Task.lease_owner,
            job_closed.label("job_closed"),
        )
        .join(Job, Job.id == Task.job_id)
        .where(
            or_(
                and_(lapsed, or_(Task.attempts >= Task.max_attempts, job_closed)),
                and_(Task.status == "queued", job_closed),
            )
        )
        .limit(REAP_BATCH)
        .with_for_update(skip_locked=True, of=Task)
    )
    rows = (await session.execute(stmt)).all()
    for row in rows:
        if row.job_closed:
            await _set_task(session, row.id, "cancelled", now)
            session.add(_event_obj(row.job_id, row.id, "cancelled", None, {"reason": "job ended"}))
            _log(
                logging.INFO,
                "task cancelled",
                event="task_cancelled",
                job_id=row.job_id,
                task_id=row.id,
                reason="job ended",
            )
            job = await _lock_job(session, row.job_id)
            await _settle_job(session, job, now, None)
        else:
            reason = (
                f"lease lapsed on the last attempt ({row.attempts} of {row.max_attempts}): "
                f"worker {row.lease_owner} stopped heartbeating"
            )
            await _fail_for_good(
                session, row.id, row.job_id, row.seq, row.attempts, reason, now, None
            )
    return len(rows)


# --- lease ------------------------------------------------------------------------------------


async def heartbeat(
    *, session: AsyncSession, task_id: uuid.UUID, worker: str, attempt: int, lease_seconds: float
) -> dt.datetime:
    """Extend the lease; returns its new end. Raises :class:`TaskLeaseLost` if it is gone."""
    expires = utcnow() + dt.timedelta(seconds=lease_seconds)
    got = await session.scalar(
        update(Task)
        .where(
            Task.id == task_id,
            Task.status == "running",
            Task.lease_owner == worker,
            Task.attempts == attempt,
        )
        .values(lease_expires_at=expires)
        .returning(Task.id)
        .execution_options(synchronize_session=False)
    )
    if got is None:
        raise TaskLeaseLost(f"task {task_id}: lease of {worker} (attempt {attempt}) is gone")
    log.debug(
        "task heartbeat",
        extra={"action": "task_heartbeat", "task_id": str(task_id), "worker": worker},
    )
    return expires


# --- finish -----------------------------------------------------------------------------------


async def complete_task(
    *,
    session: AsyncSession,
    task_id: uuid.UUID,
    worker: str,
    attempt: int,
    outcome: Outcome,
    teacher_backend: str | None = None,
    teacher_model: str | None = None,
    teacher: TeacherStats | None = None,
    teacher_budget_seconds: float | None = None,
    retry_base_seconds: float = 2.0,
    retry_max_seconds: float = 300.0,
) -> Completion:
    """Store the task's results and mark it succeeded, in the caller's transaction.

    Examples go in with ``ON CONFLICT DO NOTHING`` (unique per task and item index; per dataset
    and content hash): an accepted or pending example whose content is already in the dataset is
    kept as ``rejected``/``duplicate``. Counters, follow-up tasks and the job's status move in
    the same transaction. A follow-up whose payload has ``retry`` (items the teacher failed to
    answer, asked again) waits :func:`backoff_seconds` of it. `teacher` feeds the job's teacher
    error counts and its outage clock (:func:`_record_teacher`); the job fails once an outage
    outlasts `teacher_budget_seconds`. Raises :class:`TaskLeaseLost` (writing nothing) unless
    `worker` still holds the task at `attempt`; a repeat of a completion that committed is a
    no-op.
    """
    now = utcnow()
    task = await _lock_task(session, task_id)
    if (
        task is not None
        and task.status == "succeeded"
        and task.lease_owner == worker
        and task.attempts == attempt
    ):
        job_status = await session.scalar(select(Job.status).where(Job.id == task.job_id))
        return Completion(0, 0, 0, 0, 0, job_status or "", already_done=True)
    _check_lease(task, task_id, worker, attempt)
    assert task is not None
    if outcome.examples and _dialect(session) == "postgresql":
        if outcome.recheck is not None:
            # one writer of the dataset's examples at a time: the commit-time near-duplicate
            # recheck of parallel rounds sees every row stored before it
            await session.execute(
                select(Dataset.id).where(Dataset.id == task.dataset_id).with_for_update()
            )
        else:
            # no dataset lock (completions of one job would queue on it): exact duplicates are
            # caught by the unique (dataset_id, dedup_key) index (a conflicting insert waits for
            # the other transaction, then stores its row as a duplicate); answers to one prompt
            # are stored one transaction at a time (already_answered)
            await _lock_prompts(session, outcome.examples)
    # taken after the dataset lock: rows' created_at is then close to their commit, which the
    # commit-time near-duplicate recheck of parallel rounds relies on
    now = utcnow()
    if outcome.examples and outcome.recheck is not None and outcome.recheck_since is not None:
        await _recheck(session, task.dataset_id, task_id, outcome)
    cap = outcome.max_accepted
    job = None
    if cap is not None:  # the cap needs the job's counters now, under its lock
        job = await _lock_job(session, task.job_id)
        if job.total > 0:
            cap = min(cap, job.total - job.accepted)  # exact targets, rounds in parallel or not
    if outcome.max_accepted_topic is not None:  # a quota per taxonomy leaf, leaves in parallel
        job = job or await _lock_job(session, task.job_id)
        topic, quota = outcome.max_accepted_topic
        have = await session.scalar(
            select(func.count())
            .select_from(Example)
            .where(Example.job_id == job.id, Example.status == "accepted", Example.topic == topic)
        )
        room = quota - (have or 0)
        cap = room if cap is None else min(cap, room)
    # the job row is locked only when this completion changes it (follow-ups, teacher errors,
    # a stop reason ...) or when no other task of the job is left to settle it: completions of
    # one job would queue on it; their counts go to a shard row of job_counters instead.
    # Decided before the examples go in: a job lock is never awaited while holding index entries
    # another completion may be waiting for
    peek = await _peek_job(session, task.job_id)
    if job is None and _touches_job(peek, outcome, teacher):
        job = await _lock_job(session, task.job_id)
    if job is None and not await _others_active(session, task.job_id, task_id):
        job = await _lock_job(session, task.job_id)
    counts: Counter[str] = Counter()
    stored: dict[int, tuple[uuid.UUID, str]] = {}
    if outcome.examples:
        counts, stored = await _write_examples(
            session,
            outcome.examples,
            dataset_id=task.dataset_id,
            job_id=task.job_id,
            task_id=task_id,
            method=task.kind,
            now=now,
            provenance={"teacher_backend": teacher_backend, "teacher_model": teacher_model},
            accept_cap=None if cap is None else max(0, cap),
        )
    if outcome.score_updates:
        await _write_scores(session, task.dataset_id, outcome.score_updates)
    soft_targets = 0
    if outcome.soft_targets:
        soft_targets = await _write_soft_targets_of_existing(
            session,
            task.dataset_id,
            task.job_id,
            outcome.soft_targets,
            replace=outcome.replace_soft_targets,
            now=now,
        )
    pairs = 0
    if outcome.pairs:
        pairs = await _write_pairs(
            session, outcome.pairs, stored, dataset_id=task.dataset_id, job_id=task.job_id, now=now
        )
    await _set_task(session, task_id, "succeeded", now, result=dict(outcome.summary))
    if outcome.max_accepted is not None or outcome.max_accepted_topic is not None:
        # a capped outcome's progress is its accepted examples: those the commit rejected
        # (over the cap, a parallel round's near duplicate, a duplicate) count for nothing
        completed = counts["accepted"]
    else:
        completed = max(0, outcome.completed - counts["over_target"])
    amounts = {
        "completed": completed,
        "failed": outcome.failed,
        "accepted": counts["accepted"],
        "rejected": counts["rejected"],
        "prompt_tokens": outcome.prompt_tokens,
        "completion_tokens": outcome.completion_tokens,
        "teacher_seconds": outcome.teacher_seconds,
    }
    await job_counters.add(session, task.job_id, task_id, amounts)  # after the job: lock order
    budget_spent: str | None = None
    followups = 0
    if job is not None:
        budget_spent, followups = await _update_job(
            session,
            job,
            task,
            worker,
            outcome,
            teacher,
            now,
            teacher_budget_seconds=teacher_budget_seconds,
            retry_base_seconds=retry_base_seconds,
            retry_max_seconds=retry_max_seconds,
        )
    detail = {
        "attempt": attempt,
        "examples": len(outcome.examples),
        "accepted": counts["accepted"],
        "rejected": counts["rejected"],
        "duplicates": counts["duplicates"],
        "over_target": counts["over_target"],
        "pairs": pairs,
        "scored": len(outcome.score_updates),
        "soft_targets": soft_targets,
        "completed": outcome.completed,
        "failed": outcome.failed,
        "followups": followups,
    }
    # a Core insert: an ORM object would cost a unit-of-work flush at commit per task
    event = _event(task.job_id, task_id, "succeeded", worker, detail, now)
    await session.execute(insert(cast(Table, TaskEvent.__table__)), [event])
    _log(
        logging.INFO,
        "task succeeded",
        event="task_succeeded",
        job_id=task.job_id,
        task_id=task_id,
        worker=worker,
        **detail,
    )
    job_status = peek.status
    if job is not None:
        if budget_spent:
            await _fail_job(session, job, budget_spent, now, worker, reason="teacher budget spent")
        await _settle_job(session, job, now, worker)
        job_status = job.status
    # else another task of the job is active, held FOR KEY SHARE until this commits: whoever
    # ends it waits for this commit, sees this task done, and settles the job
    return Completion(
        accepted=counts["accepted"],
        rejected=counts["rejected"],
        duplicates=counts["duplicates"],
        pending=counts["pending"],
        followups=followups,
        job_status=job_status,
        rejected_by_reason={
            k.removeprefix(_REASON_KEY): n for k, n in counts.items() if k.startswith(_REASON_KEY)
        },
    )


async def _peek_job(session: AsyncSession, job_id: uuid.UUID) -> Any:
    """What a completion needs to know of its job to tell whether it must lock it (no lock)."""
    return (
        await session.execute(
            select(
                Job.status,
                Job.system_prompt.is_(None).label("no_system_prompt"),
                Job.tokenizer.is_(None).label("no_tokenizer"),
                Job.teacher_down_since,
            ).where(Job.id == job_id)
        )
    ).one()


def _touches_job(peek: Any, outcome: Outcome, teacher: TeacherStats | None) -> bool:
    """Whether storing `outcome` (and `teacher`'s stats) changes the job row beyond counters."""
    if (
        outcome.stop_reason
        or outcome.total is not None
        or outcome.followups
        or outcome.taxonomy is not None
        or (outcome.system_prompt and peek.no_system_prompt)
        or (outcome.tokenizer and peek.no_tokenizer)
    ):
        return True
    if teacher is None:
        return False
    if teacher.errors or teacher.last_error:
        return True
    if teacher.answered > 0:  # closes an open outage
        return peek.teacher_down_since is not None
    return teacher.failed > 0  # opens one


async def _others_active(session: AsyncSession, job_id: uuid.UUID, task_id: uuid.UUID) -> bool:
    """Whether another task of the job is queued or running and free: one is then held FOR KEY
    SHARE until commit, so whoever ends it (a FOR UPDATE of its row) waits for this transaction
    and sees it done. Tasks other transactions hold are skipped: False then means the caller may
    hold the last active task and must settle under the job lock (the second of two last
    completions to take it sees the first's commit)."""
    found = await session.scalar(
        select(Task.id)
        .where(Task.job_id == job_id, Task.status.in_(ACTIVE_STATUSES), Task.id != task_id)
        .limit(1)
        .with_for_update(read=True, key_share=True, skip_locked=True)
    )
    return found is not None


async def _update_job(
    session: AsyncSession,
    job: Job,
    task: Any,
    worker: str,
    outcome: Outcome,
    teacher: TeacherStats | None,
    now: dt.datetime,
    *,
    teacher_budget_seconds: float | None,
    retry_base_seconds: float,
    retry_max_seconds: float,
) -> tuple[str | None, int]:
    """A completion's changes to the (locked) job row; returns (budget error, follow-ups)."""
    if outcome.stop_reason:
        job.stop_reason = outcome.stop_reason[:200]
    budget_spent = (
        _record_teacher(job, task.id, worker, teacher, now, teacher_budget_seconds)
        if teacher is not None
        else None
    )
    if outcome.system_prompt and job.system_prompt is None:
        job.system_prompt = storable(outcome.system_prompt)
    if outcome.tokenizer and job.tokenizer is None:
        job.tokenizer = storable(dict(outcome.tokenizer))
    if outcome.taxonomy is not None and job.skill_id is not None:
        await _store_taxonomy(session, job.skill_id, outcome.taxonomy)
    if outcome.total is not None:
        job.total = outcome.total
    followups = 0
    if outcome.followups:
        if job.cancel_requested or job.status in TERMINAL_STATUSES:
            log.info(
                "follow-up tasks dropped: job ended",
                extra={
                    "action": "followups_dropped",
                    "job_id": str(job.id),
                    "task_id": str(task.id),
                    "worker": worker,
                },
            )
        else:
            followups = await _add_followups(
                session,
                job,
                task,
                outcome.followups,
                now,
                retry_base=retry_base_seconds,
                retry_max=retry_max_seconds,
                error=(teacher.last_error if teacher else None) or "teacher error",
            )
    return budget_spent, followups


async def fail_task(
    *,
    session: AsyncSession,
    task_id: uuid.UUID,
    worker: str,
    attempt: int,
    error: str,
    retryable: bool = True,
    retry_base_seconds: float = 2.0,
    retry_max_seconds: float = 300.0,
    teacher: TeacherStats | None = None,
) -> str:
    """Record a failed attempt; returns the task's new status.

    Retryable with attempts left: back to ``queued`` with ``run_after`` pushed out by
    :func:`backoff_seconds`. Otherwise ``failed`` for good, and the job fails with an error
    naming the task and the reason; its queued tasks are cancelled, accepted examples stay.
    """
    now = utcnow()
    task = await _lock_task(session, task_id)
    _check_lease(task, task_id, worker, attempt)
    assert task is not None
    error = error[:MAX_ERROR_CHARS]
    if teacher is not None and (teacher.errors or teacher.last_error):
        job = await _lock_job(session, task.job_id)
        _record_teacher(job, task_id, worker, teacher, now, None)
    if retryable and task.attempts < task.max_attempts:
        delay = backoff_seconds(task.attempts, base=retry_base_seconds, cap=retry_max_seconds)
        await session.execute(
            update(Task)
            .where(Task.id == task_id)
            .values(
                status="queued",
                run_after=now + dt.timedelta(seconds=delay),
                lease_owner=None,
                lease_expires_at=None,
                last_error=error,
            )
            .execution_options(synchronize_session=False)
        )
        detail = {"attempt": attempt, "error": error, "delay_s": round(delay, 3)}
        session.add(_event_obj(task.job_id, task_id, "retry_scheduled", worker, detail))
        _log(
            logging.WARNING,
            "task failed, retry scheduled",
            event="task_retry",
            job_id=task.job_id,
            task_id=task_id,
            worker=worker,
            **detail,
        )
        return "queued"
    await _fail_for_good(session, task_id, task.job_id, task.seq, task.attempts, error, now, worker)
    return "failed"


async def release_task(
    *,
    session: AsyncSession,
    task_id: uuid.UUID,
    worker: str,
    attempt: int,
    reason: str = "worker shutting down",
    delay_seconds: float = 0.0,
) -> None:
    """Give the task back (graceful shutdown): queued at once, this attempt not counted."""
    now = utcnow()
    task = await _lock_task(session, task_id)
    _check_lease(task, task_id, worker, attempt)
    assert task is not None
    await session.execute(
        update(Task)
        .where(Task.id == task_id)
        .values(
            status="queued",
            attempts=Task.attempts - 1,
            run_after=now + dt.timedelta(seconds=delay_seconds),
            lease_owner=None,
            lease_expires_at=None,
        )
        .execution_options(synchronize_session=False)
    )
    detail = {"attempt": attempt, "reason": reason}
    session.add(_event_obj(task.job_id, task_id, "released", worker, detail))
    await notify(session)
    _log(
        logging.INFO,
        "task released",
        event="task_released",
        job_id=task.job_id,
        task_id=task_id,
        worker=worker,
        **detail,
    )


async def cancel_task(
    *, session: AsyncSession, task_id: uuid.UUID, worker: str, attempt: int
) -> str:
    """Stop a running task of a cancelled (or ended) job, writing none of its results; the job
    becomes ``cancelled`` once none of its tasks runs. Returns the job's status."""
    now = utcnow()
    task = await _lock_task(session, task_id)
    _check_lease(task, task_id, worker, attempt)
    assert task is not None
    await _set_task(session, task_id, "cancelled", now)
    session.add(_event_obj(task.job_id, task_id, "cancelled", worker, {"attempt": attempt}))
    _log(
        logging.INFO,
        "task cancelled",
        event="task_cancelled",
        job_id=task.job_id,
        task_id=task_id,
        worker=worker,
    )
    job = await _lock_job(session, task.job_id)
    await _settle_job(session, job, now, worker)
    return job.status


async def cancel_job(*, session: AsyncSession, job_id: uuid.UUID) -> Job:
    """Cancel a job: queued tasks are cancelled now; running ones stop at their next check.

    A job with no task running is cancelled at once; otherwise it is marked `cancel_requested`
    and its workers finish it as `cancelled` between teacher calls. Accepted results stay.
    """
    job = await _lock_job(session, job_id)
    if job.status in TERMINAL_STATUSES:
        raise JobNotCancellable(f"job {job.id} is already {job.status}")
    now = utcnow()
    job.cancel_requested = True
    cancelled = await _cancel_queued(session, job.id, now, reason="cancel requested")
    session.add(_event_obj(job.id, None, "cancel_requested", None, {"queued_cancelled": cancelled}))
    await _settle_job(session, job, now, None)
    _log(logging.INFO, "job cancel requested", event="job_cancel", job_id=job.id, status=job.status)
    return job


# --- internals --------------------------------------------------------------------------------


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def _log(level: int, message: str, *, event: str, **fields: Any) -> None:
    extra = {"action": event}
    extra.update({k: str(v) if isinstance(v, uuid.UUID) else v for k, v in fields.items()})
    log.log(level, message, extra=extra)


def _event(
    job_id: uuid.UUID,
    task_id: uuid.UUID | None,
    event: str,
    worker: str | None,
    detail: Mapping[str, Any],
    now: dt.datetime,
) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "task_id": task_id,
        "event": event,
        "worker": worker,
        "detail": dict(detail),
        "created_at": now,
    }


def _event_obj(
    job_id: uuid.UUID,
    task_id: uuid.UUID | None,
    event: str,
    worker: str | None,
    detail: Mapping[str, Any],
) -> TaskEvent:
    return TaskEvent(
        job_id=job_id, task_id=task_id, event=event, worker=worker, detail=dict(detail)
    )


async def _lock_task(session: AsyncSession, task_id: uuid.UUID) -> Any:
    return (
        await session.execute(
            select(
                Task.id,
                Task.job_id,
                Task.seq,
                Task.status,
                Task.lease_owner,
                Task.attempts,
                Task.max_attempts,
                Task.teacher_model,
                Task.priority,
                Job.dataset_id,
                Job.kind,
            )
            .join(Job, Job.id == Task.job_id)
            .where(Task.id == task_id)
            .with_for_update(of=Task)
        )
    ).one_or_none()


def _check_lease(task: Any, task_id: uuid.UUID, worker: str, attempt: int) -> None:
    if (
        task is None
        or task.status != "running"
        or task.lease_owner != worker
        or task.attempts != attempt
    ):
        state = "gone" if task is None else f"{task.status}, {task.lease_owner}, {task.attempts}"
        raise TaskLeaseLost(
            f"task {task_id}: {worker} no longer holds attempt {attempt} (now {state})"
        )


async def _lock_job(session: AsyncSession, job_id: uuid.UUID) -> Job:
    """The job row, locked, with its counters' totals (the shards read after the lock: every
    completion that held it has committed)."""
    # FOR NO KEY UPDATE: does not block the key-share locks of foreign keys (events, tasks)
    job = (
        await session.scalars(
            select(Job)
            .where(Job.id == job_id)
            .with_for_update(key_share=True)
            .execution_options(populate_existing=True)
        )
    ).one()
    await job_counters.load(session, [job])
    return job


async def _set_task(
    session: AsyncSession,
    task_id: uuid.UUID,
    status: str,
    now: dt.datetime,
    *,
    result: dict[str, Any] | None = None,
    error: str | None = None,
) -> None:
    values: dict[str, Any] = {"status": status, "finished_at": now, "lease_expires_at": None}
    if result is not None:
        values["result"] = result
    if error is not None:
        values["last_error"] = error
    await session.execute(
        update(Task)
        .where(Task.id == task_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


async def _cancel_queued(
    session: AsyncSession, job_id: uuid.UUID, now: dt.datetime, *, reason: str
) -> int:
    """Cancel the job's queued tasks; rows another transaction holds are left to reap_tasks."""
    ids = (
        await session.scalars(
            select(Task.id)
            .where(Task.job_id == job_id, Task.status == "queued")
            .with_for_update(skip_locked=True)
        )
    ).all()
    for start in range(0, len(ids), _IN_CHUNK):
        chunk = ids[start : start + _IN_CHUNK]
        await session.execute(
            update(Task)
            .where(Task.id.in_(chunk))
            .values(status="cancelled", finished_at=now)
            .execution_options(synchronize_session=False)
        )
    if ids:
        await session.execute(
            insert(TaskEvent),
            [_event(job_id, i, "cancelled", None, {"reason": reason}, now) for i in ids],
        )
    return len(ids)


async def _fail_for_good(
    session: AsyncSession,
    task_id: uuid.UUID,
    job_id: uuid.UUID,
    seq: int,
    attempts: int,
    error: str,
    now: dt.datetime,
    worker: str | None,
) -> None:
    await _set_task(session, task_id, "failed", now, error=error)
    detail = {"attempt": attempts, "error": error}
    session.add(_event_obj(job_id, task_id, "failed", worker, detail))
    _log(
        logging.ERROR,
        "task failed for good",
        event="task_failed",
        job_id=job_id,
        task_id=task_id,
        worker=worker,
        **detail,
    )
    job = await _lock_job(session, job_id)
    tries = "attempt" if attempts == 1 else "attempts"
    message = f"task {seq} failed after {attempts} {tries}: {error}"
    await _fail_job(session, job, message, now, worker, reason=f"task {seq} failed")


async def _fail_job(
    session: AsyncSession, job: Job, error: str, now: dt.datetime, worker: str | None, reason: str
) -> None:
    """The job fails with `error`; its queued tasks are cancelled, accepted examples stay."""
    if job.status in TERMINAL_STATUSES:
        return
    job.error = error[:MAX_ERROR_CHARS]
    job.status = "failed"
    job.finished_at = now
    cancelled = await _cancel_queued(session, job.id, now, reason=reason)
    session.add(
        _event_obj(job.id, None, "job_failed", worker, {"error": job.error, "cancelled": cancelled})
    )
    _log(
        logging.ERROR,
        "job failed",
        event="job_failed",
        job_id=job.id,
        worker=worker,
        error=job.error,
    )


def _record_teacher(
    job: Job,
    task_id: uuid.UUID,
    worker: str | None,
    teacher: TeacherStats,
    now: dt.datetime,
    budget_seconds: float | None,
) -> str | None:
    """Add a task's teacher errors to the job and move its outage clock (the job row is locked).

    A task that got no answer at all (every request failed) opens an outage for the job, if none
    is open; one answer closes it, adding its length to ``teacher_wait_seconds``. Returns the
    job's error when the open outage has used up `budget_seconds`, else None.
    """
    if teacher.errors:
        merged = Counter(job.teacher_errors or {})
        merged.update(dict(teacher.errors))
        job.teacher_errors = dict(merged)  # a new object: the JSON column sees the change
        _log(
            logging.WARNING,
            "teacher errors in task",
            event="teacher_errors",
            job_id=job.id,
            task_id=task_id,
            worker=worker,
            errors=dict(teacher.errors),
            last_error=teacher.last_error,
        )
    if teacher.last_error:
        job.last_teacher_error = teacher.last_error[:MAX_ERROR_CHARS]
    if teacher.answered > 0:
        if job.teacher_down_since is not None:
            job.teacher_wait_seconds += max(0.0, (now - job.teacher_down_since).total_seconds())
            job.teacher_down_since = None
        return None
    if teacher.failed == 0:
        return None
    if job.teacher_down_since is None:
        job.teacher_down_since = now
    return _budget_error(job, now, budget_seconds)


def _budget_error(job: Job, now: dt.datetime, budget_seconds: float | None) -> str | None:
    if budget_seconds is None or job.teacher_down_since is None:
        return None
    waited = job.teacher_wait_seconds + (now - job.teacher_down_since).total_seconds()
    if waited < budget_seconds:
        return None
    unanswered = max(0, job.total - job.completed - job.failed)
    return (
        f"teacher unavailable for {waited:.0f}s (budget {budget_seconds:g}s): {unanswered} of "
        f"{job.total} items unanswered; last teacher error: {job.last_teacher_error or 'none'}"
    )


async def expedite_retries(*, session: AsyncSession, teacher_model: str | None) -> int:
    """Make the queued retries of this teacher's tasks due now; returns how many.

    Called by a worker whose teacher answers again after an outage: the retries queued during it
    carry backoffs of up to minutes, which would leave the recovered teacher idle and the jobs
    waiting (their health would keep saying ``waiting_for_teacher`` until one completes).
    """
    now = utcnow()
    result = await session.execute(
        update(Task)
        .where(
            Task.status == "queued",
            Task.last_error.is_not(None),
            Task.run_after > now,
            served_by(teacher_model),
        )
        .values(run_after=now)
        .execution_options(synchronize_session=False)
    )
    count = int(getattr(result, "rowcount", 0) or 0)
    if count:
        await notify(session)
    return count


async def expire_teacher_budgets(
    *, session: AsyncSession, budget_seconds: float, worker: str | None = None
) -> int:
    """Fail the active jobs whose teacher outage has used up `budget_seconds` (checked by
    workers while their teacher is down, when no task of the job completes); returns how many."""
    now = utcnow()
    ids = (
        await session.scalars(
            select(Job.id).where(
                Job.status.in_(ACTIVE_STATUSES),
                Job.teacher_down_since.is_not(None),
                Job.teacher_down_since <= now - dt.timedelta(seconds=budget_seconds),
            )
        )
    ).all()
    failed = 0
    for job_id in ids:
        job = await _lock_job(session, job_id)
        error = _budget_error(job, now, budget_seconds) if job.status in ACTIVE_STATUSES else None
        if error:
            await _fail_job(session, job, error, now, worker, reason="teacher budget spent")
            failed += 1
    return failed


async def _settle_job(
    session: AsyncSession, job: Job, now: dt.datetime, worker: str | None
) -> None:
    """Finish the job once none of its tasks is queued or running (the job row is locked)."""
    if job.status in TERMINAL_STATUSES:
        return
    active = await session.scalar(
        select(Task.id).where(Task.job_id == job.id, Task.status.in_(ACTIVE_STATUSES)).limit(1)
    )
    if active is not None:
        return
    counts = dict(
        (
            await session.execute(
                select(Task.status, func.count()).where(Task.job_id == job.id).group_by(Task.status)
            )
        )
        .tuples()
        .all()
    )
    if counts.get("failed"):
        status = "failed"
    elif job.cancel_requested or counts.get("cancelled"):
        status = "cancelled"
    else:
        status = "succeeded"
    job.status = status
    job.finished_at = now
    await job_counters.load(session, [job])  # this transaction's own counts included
    detail = {
        "completed": job.completed,
        "accepted": job.accepted,
        "rejected": job.rejected,
        "failed": job.failed,
    }
    session.add(_event_obj(job.id, None, f"job_{status}", worker, detail))
    _log(
        logging.INFO, f"job {status}", event=f"job_{status}", job_id=job.id, worker=worker, **detail
    )


async def _add_followups(
    session: AsyncSession,
    job: Job,
    task: Any,
    payloads: Sequence[dict[str, Any]],
    now: dt.datetime,
    *,
    retry_base: float = 2.0,
    retry_max: float = 300.0,
    error: str = "teacher error",
) -> int:
    """Queue the follow-up tasks; one with ``retry`` in its payload (a teacher retry) runs after
    :func:`backoff_seconds` of it and carries `error` as its ``last_error``."""
    top = await session.scalar(select(func.max(Task.seq)).where(Task.job_id == job.id))
    rows = []
    for i, payload in enumerate(payloads):
        retry = int(payload.get("retry") or 0)
        delay = backoff_seconds(retry, base=retry_base, cap=retry_max) if retry else 0.0
        rows.append(
            {
                "id": uuid7(),
                "job_id": job.id,
                "seq": (top or 0) + 1 + i,
                "payload": dict(payload),
                "teacher_model": task.teacher_model,
                "priority": task.priority,
                "status": "queued",
                "attempts": 0,
                "max_attempts": task.max_attempts,
                "run_after": now + dt.timedelta(seconds=delay),
                "last_error": error[:MAX_ERROR_CHARS] if retry else None,
                "created_at": now,
            }
        )
    await session.execute(insert(Task), rows)
    await session.execute(
        insert(TaskEvent),
        [_event(job.id, r["id"], "enqueued", None, {"parent_seq": task.seq}, now) for r in rows],
    )
    await notify(session)
    return len(rows)


async def _store_taxonomy(
    session: AsyncSession, skill_id: uuid.UUID, taxonomy: dict[str, Any]
) -> None:
    """A proposed taxonomy goes on the skill unless it has one by then (locked after the job)."""
    skill = (
        await session.scalars(
            select(Skill)
            .where(Skill.id == skill_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).one_or_none()
    if skill is not None and not skill.taxonomy:
        skill.taxonomy = storable(taxonomy)


def _duplicate(row: dict[str, Any]) -> None:
    row["status"] = "rejected"
    row["reject_reason"] = "duplicate"
    row["reject_detail"] = "same content as an example already in the dataset"
    row["dedup_key"] = None


async def _recheck(
    session: AsyncSession, dataset_id: uuid.UUID, task_id: uuid.UUID, outcome: Outcome
) -> None:
    """Reject the accepted examples that the outcome's check finds duplicated (`duplicate`) or
    nearly duplicated (`near_duplicate`) among the dataset's examples stored since its snapshot
    (by other tasks running at the same time), with the check's detail (the match, the score)."""
    assert outcome.recheck is not None and outcome.recheck_since is not None
    rows = (
        await session.execute(
            select(Example.id, Example.instruction).where(
                Example.dataset_id == dataset_id,
                Example.status != "rejected",
                Example.created_at >= outcome.recheck_since,
                or_(Example.task_id.is_(None), Example.task_id != task_id),
            )
        )
    ).all()
    skip = outcome.recheck_skip
    texts = [r.instruction for r in rows if not skip or str(r.id) not in skip]
    if not texts:
        return
    clashes = outcome.recheck(texts)
    for ex in outcome.examples:
        if ex.item_index in clashes and ex.status == "accepted":
            ex.status = "rejected"
            ex.reject_reason, ex.reject_detail = clashes[ex.item_index]


def storable(value: Any) -> Any:
    """`value` with NUL characters replaced by U+FFFD, in strings, keys and nested JSON.

    Teachers (random or broken models especially) can emit NUL, which Postgres text and jsonb
    cannot hold; the rest of what the teacher said is kept as it was.
    """
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    return value


def _indexed(rows: Sequence[tuple[int | None, str]]) -> dict[int, str]:
    """(item_index, status) rows a task's insert returned (its rows all have an index)."""
    return {index: status for index, status in rows if index is not None}


async def _write_examples(
    session: AsyncSession,
    examples: Sequence[ExampleData],
    *,
    dataset_id: uuid.UUID,
    job_id: uuid.UUID,
    task_id: uuid.UUID,
    method: str,
    now: dt.datetime,
    provenance: Mapping[str, Any],
    accept_cap: int | None = None,
) -> tuple[Counter[str], dict[int, tuple[uuid.UUID, str]]]:
    """Insert the task's examples (and their soft targets); returns the counts by outcome and,
    per item index written now, the row's (id, status)."""
    done = set(
        (await session.scalars(select(Example.item_index).where(Example.task_id == task_id))).all()
    )
    rows: list[dict[str, Any]] = []
    seen: set[int] = set()
    for ex in examples:
        if ex.item_index in done or ex.item_index in seen:
            continue
        seen.add(ex.item_index)
        digest = content_hash(ex.instruction, ex.input, ex.output, ex.messages)
        rows.append(
            storable(
                {
                    "id": uuid.UUID(ex.id) if ex.id else uuid7(),
                    "dataset_id": dataset_id,
                    "origin": "generated",
                    "status": ex.status,
                    "instruction": ex.instruction,
                    "input": ex.input or "",
                    "output": ex.output,
                    "messages": ex.messages,
                    "metadata": dict(ex.meta or {}),  # the column (a Core insert)
                    "content_hash": digest,
                    "dedup_key": None if ex.status == "rejected" else digest,
                    "reject_reason": ex.reject_reason,
                    "reject_detail": ex.reject_detail,
                    "job_id": job_id,
                    "task_id": task_id,
                    "item_index": ex.item_index,
                    "method": method,
                    "prompt_id": ex.prompt_id,
                    "prompt_version": ex.prompt_version,
                    "sampling": ex.sampling,
                    "usage": ex.usage,
                    "raw_output": ex.raw_output,
                    "scores": ex.scores,
                    "source_id": uuid.UUID(str(ex.source_id)) if ex.source_id else None,
                    "rationale": ex.rationale,
                    "topic": ex.topic,
                    "created_at": now,
                    **provenance,
                }
            )
        )
    # exact duplicates of the dataset (or of this batch) are kept, as rejected with a reason
    keys = [r["dedup_key"] for r in rows if r["dedup_key"] is not None]
    taken: set[str | None] = set()
    for start in range(0, len(keys), _IN_CHUNK):
        taken.update(
            (
                await session.scalars(
                    select(Example.dedup_key).where(
                        Example.dataset_id == dataset_id,
                        Example.dedup_key.in_(keys[start : start + _IN_CHUNK]),
                    )
                )
            ).all()
        )
    counts: Counter[str] = Counter()
    for row in rows:
        key = row["dedup_key"]
        if key is None:
            continue
        if key in taken:
            _duplicate(row)
            counts["duplicates"] += 1
        else:
            taken.add(key)
    if accept_cap is not None:
        accepted = [r for r in rows if r["status"] == "accepted"]
        for row in accepted[accept_cap:]:
            row["status"] = "rejected"
            row["reject_reason"] = "over_target"
            row["reject_detail"] = "the job's target was reached"
            row["dedup_key"] = None
            counts["over_target"] += 1
    answers = [r for r in rows if r["source_id"] is not None and r["status"] == "accepted"]
    relabel = False
    if answers:
        params = await session.scalar(select(Job.params).where(Job.id == job_id))
        relabel = (params or {}).get("relabel") is True
        if not relabel:
            counts["already_answered"] += await _keep_first_answers(session, answers)
    stmt = insert_ignoring_conflicts(_dialect(session)).returning(
        Example.item_index, Example.status
    )
    written: dict[int, str] = {}
    # in key order: concurrent writers that share hashes wait on each other in one order
    rows.sort(key=lambda r: r["dedup_key"] or "")
    if rows:
        written.update(_indexed((await session.execute(stmt, rows)).tuples().all()))
        # a writer that skips the dataset lock (a seed upload) may have taken a hash meanwhile
        late = [r for r in rows if r["item_index"] not in written and r["dedup_key"] is not None]
        if late:
            for row in late:  # same id: the skipped insert did not use it (rows may name it)
                _duplicate(row)
            counts["duplicates"] += len(late)
            written.update(_indexed((await session.execute(stmt, late)).tuples().all()))
    if relabel:
        stored = [r for r in answers if written.get(r["item_index"]) == "accepted"]
        await _supersede(session, dataset_id, stored)
    counts.update(written.values())
    counts.update(  # the rejected rows stored now, by reason (Completion.rejected_by_reason)
        f"{_REASON_KEY}{r['reject_reason'] or 'unknown'}"
        for r in rows
        if written.get(r["item_index"]) == "rejected"
    )
    ids = {
        r["item_index"]: (r["id"], written[r["item_index"]])
        for r in rows
        if r["item_index"] in written
    }
    await _write_soft_targets(session, examples, ids, dataset_id=dataset_id, job_id=job_id, now=now)
    return counts, ids


async def _write_soft_targets(
    session: AsyncSession,
    examples: Sequence[ExampleOut],
    ids: Mapping[int, tuple[uuid.UUID, str]],
    *,
    dataset_id: uuid.UUID,
    job_id: uuid.UUID,
    now: dt.datetime,
) -> None:
    """The packed soft targets of the examples stored now as anything but rejected (a
    rejected candidate's distribution is training signal for nobody)."""
    rows = []
    for ex in examples:
        targets = ex.soft_targets
        written = ids.get(ex.item_index)
        if targets is None or written is None or written[1] == "rejected":
            continue
        rows.append(
            {
                "example_id": written[0],
                "dataset_id": dataset_id,
                "job_id": job_id,
                "source": targets.source,
                "k": targets.k,
                "positions": targets.positions,
                "encoding": ENCODING,
                "data": pack(targets),
                "created_at": now,
            }
        )
    if rows:
        await session.execute(insert(SoftTarget), rows)


async def _write_scores(
    session: AsyncSession, dataset_id: uuid.UUID, updates: Mapping[str, dict[str, Any]]
) -> None:
    """Store judgments of examples already in the dataset (the latest judgment wins)."""
    table = cast(Table, Example.__table__)
    stmt = (
        update(table)
        .where(table.c.id == bindparam("b_id"), table.c.dataset_id == dataset_id)
        .values(scores=bindparam("b_scores"))
    )
    await session.execute(
        stmt,
        [{"b_id": uuid.UUID(str(i)), "b_scores": storable(s)} for i, s in updates.items()],
    )


async def _write_soft_targets_of_existing(
    session: AsyncSession,
    dataset_id: uuid.UUID,
    job_id: uuid.UUID,
    targets: Mapping[str, SoftTargets],
    *,
    replace: bool,
    now: dt.datetime,
) -> int:
    """Store soft targets of examples already in the dataset (scoring), keyed by the example: an
    example that has some keeps them unless `replace` (a rescore: the new ones win). Ids not in
    the dataset are skipped. Returns how many rows were written."""
    wanted = sorted(uuid.UUID(str(i)) for i in targets)  # one key order: no lock cycles
    existing: set[uuid.UUID] = set()
    for start in range(0, len(wanted), _IN_CHUNK):
        existing.update(
            (
                await session.scalars(
                    select(Example.id).where(
                        Example.dataset_id == dataset_id,
                        Example.id.in_(wanted[start : start + _IN_CHUNK]),
                    )
                )
            ).all()
        )
    rows = []
    for example_id in wanted:
        if example_id not in existing:
            continue
        scored = targets[str(example_id)]
        rows.append(
            {
                "example_id": example_id,
                "dataset_id": dataset_id,
                "job_id": job_id,
                "source": scored.source,
                "k": scored.k,
                "positions": scored.positions,
                "encoding": ENCODING,
                "data": pack(scored),
                "created_at": now,
            }
        )
    if not rows:
        return 0
    stmt = (postgresql if _dialect(session) == "postgresql" else sqlite).insert(SoftTarget)
    if replace:
        stmt = stmt.on_conflict_do_update(
            index_elements=[SoftTarget.example_id],
            set_={
                name: stmt.excluded[name]
                for name in ("job_id", "source", "k", "positions", "encoding", "data", "created_at")
            },
        )
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=[SoftTarget.example_id])
    written = await session.scalars(stmt.returning(SoftTarget.example_id), rows)
    return len(written.all())


async def _write_pairs(
    session: AsyncSession,
    pairs: Sequence[PairOut],
    stored: Mapping[int, tuple[uuid.UUID, str]],
    *,
    dataset_id: uuid.UUID,
    job_id: uuid.UUID,
    now: dt.datetime,
) -> int:
    """Insert the preference pairs whose two sides are stored (this task's examples by item
    index, accepted or candidate; existing examples by id); returns how many were written."""

    def side(ref: int | str) -> uuid.UUID | None:
        if isinstance(ref, int):
            row = stored.get(ref)
            return row[0] if row is not None and row[1] in ("accepted", "candidate") else None
        return uuid.UUID(str(ref))

    rows = []
    for pair in pairs:
        chosen, rejected = side(pair.chosen), side(pair.rejected)
        if chosen is None or rejected is None or chosen == rejected:
            continue
        rows.append(
            {
                "id": uuid7(),
                "dataset_id": dataset_id,
                "job_id": job_id,
                "prompt_id": uuid.UUID(str(pair.prompt_id)),
                "chosen_id": chosen,
                "rejected_id": rejected,
                "chosen_score": pair.chosen_score,
                "rejected_score": pair.rejected_score,
                "margin": float(pair.margin),
                "mode": pair.mode,
                "created_at": now,
            }
        )
    if not rows:
        return 0
    existing = set(
        (
            await session.scalars(
                select(Example.id).where(
                    Example.dataset_id == dataset_id,
                    Example.id.in_(
                        {r["chosen_id"] for r in rows} | {r["rejected_id"] for r in rows}
                    ),
                )
            )
        ).all()
    )
    rows = [r for r in rows if r["chosen_id"] in existing and r["rejected_id"] in existing]
    if rows:
        await session.execute(insert(PreferencePair), rows)
    return len(rows)


async def _lock_prompts(session: AsyncSession, examples: Sequence[ExampleOut]) -> None:
    """Postgres: a transaction-scoped advisory lock per prompt the examples answer
    (``source_id``), taken in one order (no cycles), so that two answers to one prompt are
    stored one after the other and the second sees the first (:func:`_keep_first_answers`)."""
    keys = sorted(
        {int.from_bytes(uuid.UUID(str(ex.source_id)).bytes[8:], "big", signed=True)
         for ex in examples if ex.source_id}
    )  # fmt: skip
    if keys:
        await session.execute(
            text(
                "SELECT count(pg_advisory_xact_lock(k)) "
                "FROM (SELECT unnest(CAST(:keys AS bigint[])) AS k ORDER BY 1) AS ordered"
            ),
            {"keys": keys},
        )


async def _keep_first_answers(session: AsyncSession, answers: list[dict[str, Any]]) -> int:
    """Reject (``already_answered``) the answers whose prompt has a current answer already: one
    that a concurrent job stored since this job was planned, or an earlier row of this batch.
    Runs under the prompts' locks (:func:`_lock_prompts`, Postgres) or the single writer
    (SQLite). Returns how many."""
    sources = list({r["source_id"] for r in answers})
    answered: set[uuid.UUID | None] = set()
    for start in range(0, len(sources), _IN_CHUNK):
        chunk = sources[start : start + _IN_CHUNK]
        answered.update(
            (
                await session.scalars(
                    select(Example.source_id).where(
                        Example.source_id.in_(chunk), is_current_child()
                    )
                )
            ).all()
        )
        answered.update(
            (
                await session.scalars(
                    select(Example.id).where(Example.id.in_(chunk), answers_itself())
                )
            ).all()
        )
    rejected = 0
    for row in answers:
        if row["source_id"] in answered:
            row["status"] = "rejected"
            row["reject_reason"] = "already_answered"
            row["reject_detail"] = f"prompt {row['source_id']} has an answer already"
            row["dedup_key"] = None
            rejected += 1
        else:
            answered.add(row["source_id"])
    return rejected


async def _supersede(
    session: AsyncSession, dataset_id: uuid.UUID, stored: list[dict[str, Any]]
) -> None:
    """Relabel: each new answer replaces its prompt's current answer (an earlier labeled answer
    or the prompt's own output), which keeps its row and status and points at its successor."""
    table = cast(Table, Example.__table__)
    stmt = (
        update(table)
        .where(
            table.c.dataset_id == dataset_id,
            or_(table.c.source_id == bindparam("b_src"), table.c.id == bindparam("b_src")),
            table.c.status == "accepted",
            table.c.superseded_by.is_(None),
            table.c.id != bindparam("b_new"),
        )
        .values(superseded_by=bindparam("b_new"))
    )
    # executed in order: two answers to one prompt in a batch leave the last one current
    if stored:
        await session.execute(stmt, [{"b_src": r["source_id"], "b_new": r["id"]} for r in stored])
