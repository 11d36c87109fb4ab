"""ORM tables: tenants, API keys, datasets, examples, skills, jobs, tasks, task events, workers,
benchmarks, soft targets and preference pairs.

Statuses and kinds are lowercase strings, frozen once stored. Ids are time-ordered UUIDs.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal, get_args

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, JSONType, UTCDateTime, utcnow
from app.ids import uuid7
from app.outcomes import ExampleStatus

DEFAULT_TENANT = "default"
# the embedded default's tenant, created by the first migration
DEFAULT_TENANT_ID = uuid.UUID("00000000-0000-7000-8000-000000000001")

Origin = Literal["seed", "generated"]
# ExampleStatus (app.outcomes): "candidate" is a response gathered to be judged (feedback jobs)
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]  # tasks' too

ORIGINS: tuple[str, ...] = get_args(Origin)
EXAMPLE_STATUSES: tuple[str, ...] = get_args(ExampleStatus)
TERMINAL_STATUSES: tuple[str, ...] = ("succeeded", "failed", "cancelled")


def _id() -> Mapped[uuid.UUID]:
    return mapped_column(Uuid, primary_key=True, default=uuid7)


def _created() -> Mapped[dt.datetime]:
    return mapped_column(UTCDateTime, nullable=False, default=utcnow)


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[uuid.UUID] = _id()
    name: Mapped[str] = mapped_column(String(200), nullable=False, unique=True)
    created_at: Mapped[dt.datetime] = _created()


class ApiKey(Base):
    """A bearer key; only its sha256 is stored."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = _id()
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False, index=True
    )
    name: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    prefix: Mapped[str] = mapped_column(String(16), nullable=False)
    key_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    created_at: Mapped[dt.datetime] = _created()
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class Dataset(Base):
    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[uuid.UUID] = _id()
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False, index=True
    )
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    license: Mapped[str | None] = mapped_column(String(64))  # a Hugging Face license id
    created_at: Mapped[dt.datetime] = _created()


class Skill(Base):
    """A skill spec: what the student should learn; the system part of every teacher prompt."""

    __tablename__ = "skills"

    id: Mapped[uuid.UUID] = _id()
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False, index=True
    )
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    domain: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    guidelines: Mapped[str] = mapped_column(Text, nullable=False, default="")
    rubric: Mapped[str] = mapped_column(Text, nullable=False, default="")
    output_format: Mapped[str] = mapped_column(Text, nullable=False, default="")
    # topics -> subtopics with quotas per leaf (curation jobs): {"topics": [{"name", "quota",
    # "subtopics": [...]}]}; given by the user or proposed by the teacher, editable
    taxonomy: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[dt.datetime] = _created()


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index(None, "tenant_id", "status"),)

    id: Mapped[uuid.UUID] = _id()
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False
    )
    dataset_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), nullable=False, index=True
    )
    skill_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("skills.id", ondelete="SET NULL"), index=True
    )
    kind: Mapped[str] = mapped_column(String(40), nullable=False)
    params: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    teacher: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    # the model the job asked for; workers claim only jobs whose model they serve (NULL: any)
    teacher_model: Mapped[str | None] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="queued")
    total: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    completed: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    accepted: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    rejected: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    failed: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    teacher_seconds: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    error: Mapped[str | None] = mapped_column(Text)
    stop_reason: Mapped[str | None] = mapped_column(String(200))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # teacher availability (issue 10): retries by cause ("http_500", "timeout", "connection",
    # "malformed" ...), the last teacher error, when the current outage began for this job, and
    # the seconds of teacher unavailability spent from the job's budget
    teacher_errors: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    last_teacher_error: Mapped[str | None] = mapped_column(Text)
    teacher_down_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    teacher_wait_seconds: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    # the system prompt the job's teacher calls carried (the skill's, or the default), recorded by
    # the first task that completes; exports add it with `system=true`
    system_prompt: Mapped[str | None] = mapped_column(Text)
    # the teacher's tokenizer identity (name, vocab_size, sha256, chat_template, source),
    # recorded by the first task that completes with soft targets; exports with format=kd carry it
    tokenizer: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # higher first: a training loop's small scoring job overtakes a bulk generation job
    priority: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created_at: Mapped[dt.datetime] = _created()
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(
        UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow
    )


class JobCounter(Base):
    """One shard of a job's counters (app.job_counters): a completion adds to the shard of its
    task id, so completions of one job do not wait on each other; a count is the ``jobs``
    column plus the sum of the shards."""

    __tablename__ = "job_counters"

    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    shard: Mapped[int] = mapped_column(Integer, primary_key=True)
    completed: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    accepted: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    rejected: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    failed: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    teacher_seconds: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)


class Task(Base):
    """A unit of a job that one worker claims and finishes in one transaction."""

    __tablename__ = "tasks"
    __table_args__ = (
        UniqueConstraint("job_id", "seq"),
        Index(None, "status", "run_after"),
        # a job's open tasks: what settling it asks on every completion
        Index(
            "ix_tasks_job_active",
            "job_id",
            postgresql_where=text("status IN ('queued', 'running')"),
            sqlite_where=text("status IN ('queued', 'running')"),
        ),
    )

    id: Mapped[uuid.UUID] = _id()
    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False
    )
    seq: Mapped[int] = mapped_column(Integer, nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    teacher_model: Mapped[str | None] = mapped_column(String(300))
    priority: Mapped[int] = mapped_column(Integer, nullable=False, default=0)  # the job's
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="queued")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=5)
    run_after: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[dt.datetime] = _created()
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class TaskEvent(Base):
    """Append-only history of task transitions (claimed, heartbeat lost, retried, failed...)."""

    __tablename__ = "task_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False, index=True
    )
    task_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), index=True
    )
    event: Mapped[str] = mapped_column(String(40), nullable=False)
    worker: Mapped[str | None] = mapped_column(String(200))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    created_at: Mapped[dt.datetime] = _created()


class Example(Base):
    """One instruction-response pair (or conversation), seed or generated, with provenance.

    ``content_hash`` is the normalised hash of the example; ``dedup_key`` carries it for rows
    that take part in uniqueness (accepted and pending) and is NULL for rejected candidates, so a
    rejected duplicate can be kept with its reason while (dataset, dedup_key) stays unique.
    ``(task_id, item_index)`` is unique so a redone task writes nothing twice.

    One answer per prompt: a labeled example points at the example whose prompt it answers
    (``source_id``); a relabel replaces the current answer, which keeps its row with
    ``superseded_by`` set to its successor and leaves default exports.
    """

    __tablename__ = "examples"
    __table_args__ = (
        UniqueConstraint("dataset_id", "dedup_key"),
        UniqueConstraint("task_id", "item_index"),
        Index(None, "dataset_id", "status", "id"),
        Index(None, "job_id", "status"),
        Index(None, "source_id"),
        Index(None, "dataset_id", "topic"),
    )

    id: Mapped[uuid.UUID] = _id()
    dataset_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), nullable=False
    )
    origin: Mapped[str] = mapped_column(String(20), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    instruction: Mapped[str] = mapped_column(Text, nullable=False, default="")
    input: Mapped[str] = mapped_column(Text, nullable=False, default="")
    output: Mapped[str | None] = mapped_column(Text)
    messages: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, nullable=False, default=dict)
    content_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    dedup_key: Mapped[str | None] = mapped_column(String(64))
    reject_reason: Mapped[str | None] = mapped_column(String(60))
    reject_detail: Mapped[str | None] = mapped_column(Text)
    # provenance
    job_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    task_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("tasks.id", ondelete="SET NULL"))
    item_index: Mapped[int | None] = mapped_column(Integer)
    method: Mapped[str | None] = mapped_column(String(40))
    prompt_id: Mapped[str | None] = mapped_column(String(100))
    prompt_version: Mapped[str | None] = mapped_column(String(40))
    teacher_backend: Mapped[str | None] = mapped_column(String(40))
    teacher_model: Mapped[str | None] = mapped_column(String(300))
    sampling: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    usage: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    raw_output: Mapped[str | None] = mapped_column(Text)
    # the teacher's judgment (feedback jobs, the judge filter): {"overall", "mode", "aspects",
    # "judge": {model, prompt_id, prompt_version, job_id}, ...}; the latest judgment wins
    scores: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # the example whose prompt this one answers (labeling), and the answer that replaced this one
    source_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    superseded_by: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    # the teacher's reasoning before its final answer (`rationale: true` jobs); `output` holds
    # the final answer alone
    rationale: Mapped[str | None] = mapped_column(Text)
    # the taxonomy leaf the example was generated for, as a path "topic/subtopic" (curation,
    # dialogue from a leaf)
    topic: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[dt.datetime] = _created()


class Worker(Base):
    """A live (or lately live) worker process: registered at start, refreshed by heartbeats."""

    __tablename__ = "workers"

    id: Mapped[uuid.UUID] = _id()
    name: Mapped[str] = mapped_column(String(200), nullable=False, unique=True)
    host: Mapped[str] = mapped_column(String(300), nullable=False, default="")
    pid: Mapped[int | None] = mapped_column(Integer)
    model: Mapped[str | None] = mapped_column(String(300))
    backend: Mapped[str | None] = mapped_column(String(40))
    kinds: Mapped[list[str]] = mapped_column(JSONType, nullable=False, default=list)
    concurrency: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    in_flight: Mapped[int] = mapped_column(Integer, nullable=False, default=0)  # tasks running
    # requests sent to the teacher and not yet answered, at the last heartbeat
    teacher_in_flight: Mapped[int] = mapped_column(
        Integer, nullable=False, default=0, server_default=text("0")
    )
    # "ok" or "down" (the worker's circuit breaker is open: the teacher does not answer)
    teacher_state: Mapped[str] = mapped_column(String(20), nullable=False, default="ok")
    teacher_down_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_teacher_error: Mapped[str | None] = mapped_column(Text)
    last_teacher_error_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[dt.datetime] = _created()
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    stopped_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class Benchmark(Base):
    """A tenant's test set; jobs that name it reject candidates overlapping it (`contaminated`).

    ``is_default``: applied to every job of the tenant without being named.
    """

    __tablename__ = "benchmarks"

    id: Mapped[uuid.UUID] = _id()
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False, index=True
    )
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    items: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    is_default: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[dt.datetime] = _created()


class BenchmarkItem(Base):
    __tablename__ = "benchmark_items"
    __table_args__ = (UniqueConstraint("benchmark_id", "idx"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    benchmark_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("benchmarks.id", ondelete="CASCADE"), nullable=False
    )
    idx: Mapped[int] = mapped_column(Integer, nullable=False)
    text: Mapped[str] = mapped_column(Text, nullable=False)


class SoftTarget(Base):
    """The teacher's token distribution over one example's completion (white-box KD).

    ``data`` is the packed arrays of :mod:`app.soft_targets` (completion token ids, their
    logprobs, and the top-k ids and logprobs per position); ``k`` and ``positions`` say their
    shape. ``source``: "generation" (the teacher wrote the completion) or "scoring" (teacher-forced
    over text it did not write).
    """

    __tablename__ = "soft_targets"

    example_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("examples.id", ondelete="CASCADE"), primary_key=True
    )
    dataset_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), nullable=False, index=True
    )
    job_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    source: Mapped[str] = mapped_column(String(20), nullable=False)
    k: Mapped[int] = mapped_column(Integer, nullable=False)
    positions: Mapped[int] = mapped_column(Integer, nullable=False)
    encoding: Mapped[str] = mapped_column(String(20), nullable=False)
    data: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    created_at: Mapped[dt.datetime] = _created()


class PreferencePair(Base):
    """A judged pair of responses to one prompt: the teacher prefers ``chosen`` to ``rejected``.

    ``prompt_id`` is the example that holds the prompt (the root of the group); ``margin`` is
    the judged difference (pointwise: overall scores; pairwise: win rates).
    """

    __tablename__ = "preference_pairs"
    __table_args__ = (UniqueConstraint("job_id", "chosen_id", "rejected_id"),)

    id: Mapped[uuid.UUID] = _id()
    dataset_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), nullable=False, index=True
    )
    job_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    prompt_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False)
    chosen_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("examples.id", ondelete="CASCADE"), nullable=False
    )
    rejected_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("examples.id", ondelete="CASCADE"), nullable=False
    )
    chosen_score: Mapped[float | None] = mapped_column(Float)
    rejected_score: Mapped[float | None] = mapped_column(Float)
    margin: Mapped[float] = mapped_column(Float, nullable=False)
    mode: Mapped[str] = mapped_column(String(20), nullable=False)
    created_at: Mapped[dt.datetime] = _created()
