"""The ``kd`` export: examples with the teacher's soft targets, as JSONL or Parquet, streamed.

One row per example that has soft targets (``examples`` joined with ``soft_targets``), with the
export's usual filters (:func:`app.export.examples_query`)::

    id, messages, completion, tokenizer, completion_token_ids, token_logprobs,
    top_ids, top_logprobs, source, k

``messages`` is the prompt as the teacher saw it: the system prompt recorded by the job that
produced the soft targets first (unless the conversation has its own), the final answer left
out; ``completion`` is that answer. ``tokenizer`` is the identity that job recorded (``name``,
``vocab_size``, ``sha256``, ``chat_template_sha256``, ``source``), else the example's job's, else
null. Top-k logprobs are rounded to 4 decimals (within 6e-4 of the teacher's: 2**-11 from the
storage, 5e-5 from the rounding); a non-finite ``token_logprobs`` value is null. docs/kd.md has
the whole contract.

Rows are fetched :data:`BATCH_ROWS` at a time (a row carries n x k alternatives, so far fewer
than other formats), unpacked with numpy and written with orjson, or as one Parquet row group
per batch through a sink that hands each group's bytes to the response as soon as it is written:
memory stays flat whatever the dataset's size.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select

from app.export import (
    PROVENANCE_COLUMNS,
    Row,
    _pg_batches,
    _sa_batches,
    examples_query,
    prompt_messages,
    provenance,
)
from app.models import Example, Job, SoftTarget
from app.soft_targets import NO_ID, unpack_arrays
from app.state import Database

BATCH_ROWS = 100  # rows per fetch and per Parquet row group (at most the export's batch size)
DECIMALS = 4
TOKENIZER_KEYS = ("name", "vocab_size", "sha256", "chat_template_sha256", "source")
KD_COLUMNS = (
    Example.id,
    Example.job_id,
    Example.instruction,
    Example.input,
    Example.output,
    Example.messages,
    SoftTarget.job_id.label("targets_job_id"),
    SoftTarget.source,
    SoftTarget.k,
    SoftTarget.positions,
    SoftTarget.encoding,
    SoftTarget.data,
)
_OPTS = orjson.OPT_SERIALIZE_NUMPY
# zstd level 1 and byte-stream-split floats, no dictionaries for the lists: 1.5x the packed size
# at a quarter of the default's time (dictionary encoding of 10^5 ids per row group dominates it);
# (BYTE_STREAM_SPLIT for floats is part of the Parquet format since 2.8)
PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 1,
    "use_dictionary": ["source"],
    "column_encoding": {
        "token_logprobs.list.element": "BYTE_STREAM_SPLIT",
        "top_logprobs.list.element.list.element": "BYTE_STREAM_SPLIT",
    },
}
_MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("messages", pa.list_(_MESSAGE)),
        ("completion", pa.string()),
        (
            "tokenizer",
            pa.struct(
                [
                    ("name", pa.string()),
                    ("vocab_size", pa.int64()),
                    ("sha256", pa.string()),
                    ("chat_template_sha256", pa.string()),
                    ("source", pa.string()),
                ]
            ),
        ),
        ("completion_token_ids", pa.list_(pa.int64())),
        ("token_logprobs", pa.list_(pa.float32())),
        ("top_ids", pa.list_(pa.list_(pa.int64()))),
        ("top_logprobs", pa.list_(pa.list_(pa.float32()))),
        ("source", pa.string()),
        ("k", pa.int32()),
    ]
)


class _JobInfo:
    """What a kd row takes from a job: its system prompt and its tokenizer identity."""

    def __init__(self, jobs: dict[uuid.UUID, tuple[str | None, dict[str, Any] | None]]) -> None:
        self.jobs = jobs

    def system(self, r: Row) -> str | None:
        """The system prompt of the job whose teacher produced the soft targets."""
        job = self.jobs.get(r["targets_job_id"]) if r["targets_job_id"] else None
        return job[0] if job else None

    def tokenizer(self, r: Row) -> dict[str, Any] | None:
        for job_id in (r["targets_job_id"], r["job_id"]):
            job = self.jobs.get(job_id) if job_id else None
            if job and job[1]:
                return job[1]
        return None


async def _job_info(db: Database, dataset_id: uuid.UUID) -> _JobInfo:
    """System prompts and tokenizer identities of the dataset's jobs (the chat template itself,
    kilobytes per job, stays in the database: its sha256 names it)."""
    fields = [
        Job.tokenizer[key].as_integer() if key == "vocab_size" else Job.tokenizer[key].as_string()
        for key in TOKENIZER_KEYS
    ]
    stmt = select(Job.id, Job.system_prompt, *fields).where(Job.dataset_id == dataset_id)
    jobs: dict[uuid.UUID, tuple[str | None, dict[str, Any] | None]] = {}
    async with db.engine.connect() as conn:
        for job_id, system, *values in (await conn.execute(stmt)).tuples():
            known = any(v is not None for v in values)  # SQL NULL and JSON null alike
            tokenizer = dict(zip(TOKENIZER_KEYS, values, strict=True)) if known else None
            jobs[job_id] = (system, tokenizer)
    return _JobInfo(jobs)


def _completion(r: Row) -> str | None:
    if r["output"] is not None:
        return str(r["output"])
    messages = r["messages"] or []
    if messages and messages[-1]["role"] == "assistant":
        return str(messages[-1]["content"])
    return None


def kd_arrays(r: Row) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(completion_token_ids, token_logprobs, top_ids flat, top_logprobs flat, alternatives per
    position) of a row: pads dropped, top logprobs rounded to :data:`DECIMALS`."""
    token_ids, token_lps, top_ids, top_lps = unpack_arrays(
        r["data"], r["positions"], r["k"], r["encoding"]
    )
    keep = top_ids != NO_ID
    counts = keep.sum(axis=1)
    flat_lps = np.round(top_lps[keep], DECIMALS)
    return token_ids, token_lps, top_ids[keep], flat_lps, counts


def kd_row(r: Row, info: _JobInfo) -> dict[str, Any]:
    """One JSONL row (numpy arrays inside: dump with ``OPT_SERIALIZE_NUMPY``)."""
    token_ids, token_lps, flat_ids, flat_lps, counts = kd_arrays(r)
    n, k = len(token_ids), r["k"]
    if int(counts.min(initial=k)) == k:  # every position full: 2-D arrays, no Python loop
        top_ids: Any = flat_ids.reshape(n, k)
        top_lps: Any = flat_lps.reshape(n, k)
    else:
        ends = np.cumsum(counts)[:-1]
        top_ids, top_lps = np.split(flat_ids, ends), np.split(flat_lps, ends)
    return {
        "id": str(r["id"]),
        "messages": prompt_messages(r, info.system(r)),
        "completion": _completion(r),
        "tokenizer": info.tokenizer(r),
        "completion_token_ids": token_ids,
        "token_logprobs": token_lps,
        "top_ids": top_ids,
        "top_logprobs": top_lps,
        "source": r["source"],
        "k": k,
    }


def kd_statement(
    *,
    dataset_id: uuid.UUID,
    origin: str | None,
    status: str | None,
    job_id: uuid.UUID | None,
    with_metadata: bool,
    min_score: float | None,
    max_score: float | None,
    topic: str | None = None,
) -> Any:
    columns: list[Any] = list(KD_COLUMNS)
    if with_metadata:
        columns += [c for c in PROVENANCE_COLUMNS if not any(c is x for x in KD_COLUMNS)]
    stmt = select(*columns).join(SoftTarget, SoftTarget.example_id == Example.id)
    return examples_query(
        stmt.where(SoftTarget.dataset_id == dataset_id),
        dataset_id=dataset_id,
        origin=origin,
        status=status,
        job_id=job_id,
        min_score=min_score,
        max_score=max_score,
        topic=topic,
    )


def _batches(db: Database, stmt: Any, batch_rows: int) -> AsyncIterator[list[Row]]:
    rows = max(1, min(batch_rows, BATCH_ROWS))
    if db.dialect == "postgresql":
        return _pg_batches(db, stmt, rows)
    return _sa_batches(db, stmt, rows)


async def stream_kd(
    db: Database,
    *,
    dataset_id: uuid.UUID,
    origin: str | None,
    status: str | None,
    job_id: uuid.UUID | None,
    with_metadata: bool,
    batch_rows: int,
    min_score: float | None = None,
    max_score: float | None = None,
    topic: str | None = None,
) -> AsyncIterator[bytes]:
    """JSONL lines of the ``kd`` export (see the module docstring)."""
    stmt = kd_statement(
        dataset_id=dataset_id,
        origin=origin,
        status=status,
        job_id=job_id,
        with_metadata=with_metadata,
        min_score=min_score,
        max_score=max_score,
        topic=topic,
    )
    info = await _job_info(db, dataset_id)
    async for batch in _batches(db, stmt, batch_rows):
        # unpacking and JSON are CPU work (milliseconds a row): off the event loop, which keeps
        # serving other requests and fetching the next batch meanwhile
        yield await asyncio.to_thread(kd_lines, batch, info, with_metadata)


def kd_lines(batch: list[Row], info: _JobInfo, with_metadata: bool) -> bytes:
    if with_metadata:
        lines = [
            orjson.dumps({**kd_row(r, info), "metadata": provenance(r)}, option=_OPTS)
            for r in batch
        ]
    else:
        lines = [orjson.dumps(kd_row(r, info), option=_OPTS) for r in batch]
    return b"\n".join(lines) + b"\n"


class _Sink:
    """A write-only file for pyarrow's writer that hands its bytes over as they come."""

    closed = False

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.position = 0

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.parts.append(chunk)
        self.position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        return None

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


def _list_array(counts: np.ndarray, values: pa.Array) -> pa.Array:
    offsets = np.zeros(len(counts) + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values)


def kd_table(batch: list[Row], info: _JobInfo) -> pa.Table:
    """One Parquet row group: the rows of `batch` as columns of lists (built from numpy)."""
    token_ids, token_lps, top_ids, top_lps, counts = [], [], [], [], []
    for r in batch:
        ids, lps, flat_ids, flat_lps, per_position = kd_arrays(r)
        token_ids.append(ids)
        token_lps.append(lps)
        top_ids.append(flat_ids)
        top_lps.append(flat_lps)
        counts.append(per_position)
    positions = np.array([len(ids) for ids in token_ids], dtype=np.int64)
    flat_token_lps = np.concatenate(token_lps) if batch else np.zeros(0, np.float32)
    per_position = np.concatenate(counts) if batch else np.zeros(0, np.int64)

    def flat(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

    columns = {
        "id": pa.array([str(r["id"]) for r in batch], pa.string()),
        "messages": pa.array(
            [prompt_messages(r, info.system(r)) for r in batch], SCHEMA.field("messages").type
        ),
        "completion": pa.array([_completion(r) for r in batch], pa.string()),
        "tokenizer": pa.array([info.tokenizer(r) for r in batch], SCHEMA.field("tokenizer").type),
        "completion_token_ids": _list_array(positions, pa.array(flat(token_ids, np.int64))),
        "token_logprobs": _list_array(
            positions,
            pa.array(flat_token_lps, pa.float32(), mask=~np.isfinite(flat_token_lps)),
        ),
        "top_ids": _list_array(
            positions, _list_array(per_position, pa.array(flat(top_ids, np.int64)))
        ),
        "top_logprobs": _list_array(
            positions, _list_array(per_position, pa.array(flat(top_lps, np.float32)))
        ),
        "source": pa.array([r["source"] for r in batch], pa.string()),
        "k": pa.array([r["k"] for r in batch], pa.int32()),
    }
    return pa.Table.from_pydict(columns, schema=SCHEMA)


async def stream_kd_parquet(
    db: Database,
    *,
    dataset_id: uuid.UUID,
    origin: str | None,
    status: str | None,
    job_id: uuid.UUID | None,
    batch_rows: int,
    min_score: float | None = None,
    max_score: float | None = None,
    topic: str | None = None,
) -> AsyncIterator[bytes]:
    """The ``kd`` rows as one Parquet file (zstd), a row group per fetched batch; a dataset
    without soft targets gives a valid file with no rows."""
    stmt = kd_statement(
        dataset_id=dataset_id,
        origin=origin,
        status=status,
        job_id=job_id,
        with_metadata=False,
        min_score=min_score,
        max_score=max_score,
        topic=topic,
    )
    info = await _job_info(db, dataset_id)
    sink = _Sink()
    writer = pq.ParquetWriter(sink, SCHEMA, **PARQUET_OPTIONS)
    try:

        def write(batch: list[Row]) -> None:  # CPU work, in a thread (see stream_kd)
            writer.write_table(kd_table(batch, info))

        async for batch in _batches(db, stmt, batch_rows):
            await asyncio.to_thread(write, batch)
            if chunk := sink.take():
                yield chunk
    finally:
        writer.close()
    yield sink.take()
