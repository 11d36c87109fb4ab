"""One Settings object for the service and the workers.

Everything is read from ``DISTILLERY_*`` environment variables (nested groups with ``__``, e.g.
``DISTILLERY_TEACHER__BASE_URL``). Settings are built by :func:`get_settings` and passed in;
nothing reads the environment at import time.
"""

from __future__ import annotations

import os
import socket
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SQLITE_PATH = Path("distillery.db")


# the async driver each supported database is used with; the scheme's alias -> the backend
_ASYNC_DRIVERS = {"postgresql": "asyncpg", "sqlite": "aiosqlite"}
_ALIASES = {"postgres": "postgresql"}


def normalize_database_url(url: str) -> str:
    """`url` with the async driver named: ``postgresql://`` and ``postgres://`` become
    ``postgresql+asyncpg://``, ``sqlite:///`` becomes ``sqlite+aiosqlite:///``.

    Raises ValueError for what is not a Postgres or SQLite URL (the URL is not echoed: it may
    hold a password).
    """
    from sqlalchemy.engine import make_url  # here: the client's commands start without SQLAlchemy
    from sqlalchemy.exc import ArgumentError

    hint = "use postgresql://user@host:5432/dbname or sqlite:///path/to/file.db"
    try:
        name = make_url(url).drivername
    except ArgumentError:
        raise ValueError(f"not a database URL; {hint}") from None
    backend, _, driver = name.partition("+")
    backend = _ALIASES.get(backend, backend)
    wanted = _ASYNC_DRIVERS.get(backend)
    if wanted is None or driver not in ("", wanted):
        raise ValueError(f"unsupported database {name!r}; {hint}")
    if name == f"{backend}+{wanted}":
        return url
    return f"{backend}+{wanted}://{url.split('://', 1)[1]}"


def default_worker_id() -> str:
    """``<hostname>-<pid>``: unique per worker process on one database."""
    return f"{socket.gethostname()}-{os.getpid()}"


class TeacherSettings(BaseModel):
    """The teacher a worker serves. Per-job sampling choices live on the job, not here."""

    backend: Literal["auto", "openai", "vllm", "transformers"] = Field(
        "auto",
        description="auto: vllm if installed and a GPU is present, else transformers if a model "
        "is set, else openai if base_url is set",
    )
    model: str | None = Field(
        None, description="model name (openai, vllm) or local path / hub id (transformers)"
    )
    # openai-compatible HTTP backend
    base_url: str | None = Field(
        None, description="OpenAI-compatible base URL, e.g. http://host:8000/v1"
    )
    api_key: SecretStr | None = Field(
        None, description="bearer key for the OpenAI-compatible server"
    )
    max_concurrency: int = Field(256, ge=1, le=4096, description="requests in flight at most")
    request_timeout_s: float = Field(300.0, gt=0, description="per-request timeout, seconds")
    max_retries: int = Field(5, ge=0, le=50, description="retries of 429/5xx/timeouts per request")
    tokenizer: str | None = Field(
        None,
        description="openai: the teacher's tokenizer (local path or hub id; needs transformers), "
        "recorded as its identity with soft targets and checked against the server's /tokenize; "
        "unset: the server's GET /tokenizer_info (vllm serve --enable-tokenizer-info-endpoint)",
    )
    # in-process vLLM
    tensor_parallel_size: int = Field(1, ge=1, description="vllm: GPUs one model is split over")
    gpu_memory_utilization: float = Field(
        0.90, gt=0, le=1, description="vllm: share of GPU memory the engine may take"
    )
    max_model_len: int | None = Field(None, ge=1, description="vllm: context length cap")
    max_num_seqs: int | None = Field(
        None, ge=1, description="vllm: sequences batched at once (engine default if unset)"
    )
    dtype: str = Field("auto", description="weights dtype (vllm, transformers)")
    # local transformers
    device: str = Field("auto", description="transformers device: auto, cpu, cuda, cuda:0 ...")
    batch_size: int = Field(8, ge=1, le=1024, description="transformers generate() batch size")


class Settings(BaseSettings):
    """Service configuration (see docs/configuration.md for every field)."""

    model_config = SettingsConfigDict(
        env_prefix="DISTILLERY_", env_nested_delimiter="__", extra="ignore"
    )

    database_url: str = Field(
        f"sqlite+aiosqlite:///{DEFAULT_SQLITE_PATH}",
        description="postgresql://user@host:5432/dbname or sqlite:///file.db (the async "
        "drivers, +asyncpg and +aiosqlite, are filled in)",
    )
    host: str = Field("127.0.0.1", description="address `distillery serve` binds")
    port: int = Field(8000, ge=0, le=65535, description="port `distillery serve` binds")
    auto_migrate: bool = Field(
        True, description="`serve` runs `alembic upgrade head` on start (embedded default)"
    )
    auth: bool = Field(
        False,
        description="require API keys on /v1; without auth the server only binds loopback "
        "and every request belongs to the default tenant",
    )
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024, description="largest request body")
    body_timeout_seconds: float = Field(
        60.0, gt=0, description="a request body must arrive within this long (slow drip: 408)"
    )
    rate_limit_per_minute: int = Field(
        6000, ge=0, description="requests a minute per API key (per tenant without auth); 0: off"
    )
    rate_limit_burst: int = Field(300, ge=1, description="requests a key may send at once")
    max_queued_jobs_per_tenant: int = Field(
        100, ge=1, description="jobs a tenant may have queued at once (more: 429)"
    )
    max_examples_per_upload: int = Field(100_000, ge=1, description="examples in one seed upload")
    max_field_chars: int = Field(100_000, ge=1, description="longest instruction/input/output")
    export_batch_rows: int = Field(1000, ge=1, le=100_000, description="rows per export fetch")
    labeling_chunk_size: int = Field(64, ge=1, le=10_000, description="prompts per labeling task")
    feedback_chunk_size: int = Field(
        16, ge=1, le=1000, description="prompts per feedback task (each with all its responses)"
    )
    task_max_attempts: int = Field(5, ge=1, le=100, description="tries of a task before it fails")
    # worker runtime (see docs/queue.md)
    lease_seconds: float = Field(
        30.0, gt=0, description="a claimed task is a worker's for this long unless it heartbeats"
    )
    heartbeat_seconds: float = Field(
        10.0, gt=0, description="how often a worker extends the lease of each task it holds"
    )
    poll_interval_seconds: float = Field(
        2.0, gt=0, description="idle workers look for tasks this often (LISTEN/NOTIFY wakes sooner)"
    )
    worker_concurrency: int = Field(8, ge=1, le=1024, description="tasks one worker runs at once")
    worker_processes: int = Field(
        0,
        ge=0,
        le=256,
        description="`distillery worker` processes on this machine, each with its share of the "
        "teacher's max_concurrency; 0: the usable cores for the openai backend, 1 for vllm and "
        "transformers (--processes)",
    )
    retry_base_seconds: float = Field(
        2.0, ge=0, description="backoff before the first retry of a failed task (doubles each try)"
    )
    retry_max_seconds: float = Field(300.0, ge=0, description="longest backoff between retries")
    teacher_unavailable_budget_seconds: float = Field(
        900.0,
        gt=0,
        description="how long a job waits out a teacher that answers nothing (its items are "
        "retried meanwhile); then it fails, keeping what was accepted",
    )
    teacher_breaker_failures: int = Field(
        5,
        ge=1,
        description="requests in a row that fail with a teacher outage (after their own "
        "retries) before a worker stops claiming tasks and probes the teacher instead",
    )
    teacher_probe_seconds: float = Field(
        5.0, gt=0, description="how often a worker probes a teacher that is down"
    )
    shutdown_grace_seconds: float = Field(
        20.0, ge=0, description="on SIGTERM, time in-flight tasks get to finish before release"
    )
    worker_id: str = Field(
        default_factory=default_worker_id,
        min_length=1,
        max_length=200,
        description="name of this worker in leases and task events [default: hostname-pid]",
    )
    embedded_worker: bool = Field(
        True, description="`serve` runs a worker in-process next to the API (off: --no-worker)"
    )
    api_processes: int | None = Field(
        None,
        ge=1,
        le=64,
        description="processes `serve` answers the API with (--api-processes); unset: the usable "
        "cores on Postgres without the embedded worker, else 1",
    )
    # live events and metrics (docs/operations.md)
    events_poll_seconds: float = Field(
        0.5, gt=0, le=60, description="how often a job's event stream looks for changes"
    )
    metrics_public: bool = Field(
        True, description="GET /metrics needs no API key (false: a key of any tenant)"
    )
    metrics_cache_seconds: float = Field(
        5.0, ge=0, description="the database gauges of /metrics are recomputed at most this often"
    )
    worker_metrics_port: int | None = Field(
        None, ge=0, le=65535, description="`distillery worker` serves /metrics here (unset: off)"
    )
    worker_metrics_host: str = Field(
        "127.0.0.1", description="address the worker's /metrics binds (--metrics-host)"
    )
    teacher: TeacherSettings = Field(default_factory=TeacherSettings)

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, url: str) -> str:
        return normalize_database_url(url)


@lru_cache
def get_settings() -> Settings:
    """Settings from the environment, built once per process."""
    return Settings()
