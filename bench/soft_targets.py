"""Benchmark: soft targets stored on Postgres (bytes per token at k = 5, 20, 100) and the speed
and server memory of the ``format=kd`` export over HTTP.

    .venv/bin/python -m bench.soft_targets [--tokens 100000] [--examples 1000] [--k 20]

Distributions are synthetic (no pretrained model can be loaded on these machines), shaped like
an LLM's: a vocabulary of 151,936 ids (Qwen2's); at each position the teacher's top-k logprobs
follow a Zipf law over ranks, ``logprob(r) = -s * ln(r) - ln(sum_{r<=50000} r^-s)`` plus
N(0, 0.15) noise, with a per-position sharpness ``s ~ lognormal(ln 1.6, 0.6)`` (a top-1
probability from about 0.1 to above 0.95; median about 0.6); the top-k ids are distinct
Zipf(1.1) draws over the vocabulary (frequent tokens have small ids, as BPE merges give them) in
random order; the chosen token is sampled from the top-k.

1. Storage, per k: examples of 64..448 tokens (mean 256) up to ``--tokens`` positions, packed
   by ``app.soft_targets.pack`` and copied into ``soft_targets``; prints the packed bytes per
   token (``sum(pg_column_size(data))``, what Postgres stores for the value), the table's whole
   size per token (``pg_total_relation_size``: heap, TOAST and index), bytes per alternative,
   and the same data as ``z1`` (the encoding before z2) and as JSON lists (how soft targets
   were kept before), for comparison.
2. Export, k = ``--k``: ``--examples`` and 4x as many examples with soft targets (and a job
   with a tokenizer and system prompt); ``distillery serve`` as a subprocess; downloads
   ``format=kd`` as JSONL and as Parquet over loopback while sampling the server's RSS; prints
   MB/s, tokens/s, and the server's RSS idle and at peak for both sizes (flat memory: the peak
   does not grow with the dataset).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import numpy as np
import orjson
import psutil
import zstandard

from app import migrate
from app.models import DEFAULT_TENANT_ID, Dataset, Job
from app.soft_targets import ENCODING, Q_MAX, Q_SCALE, SoftTargets, pack
from app.state import Database
from bench.export import export_once, free_port

PG = os.environ.get("DISTILLERY_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
DB = "distillery_bench_soft_targets"
VOCAB = 151_936
RANKS = 50_000
DATASET = uuid.UUID("00000000-0000-7000-8000-00000000beef")  # the id bench.export downloads
_S_GRID = np.linspace(0.3, 8.0, 400)
_LOG_Z = np.log(np.array([np.sum(np.arange(1, RANKS + 1) ** -s) for s in _S_GRID]))


def synthetic(rng: np.random.Generator, n: int, k: int) -> SoftTargets:
    """One completion of `n` tokens with the teacher's top-k (see the module docstring)."""
    s = np.clip(rng.lognormal(np.log(1.6), 0.6, n), 0.3, 8.0)
    ranks = np.log(np.arange(1, k + 1))
    lps = -s[:, None] * ranks[None, :] + rng.normal(0, 0.15, (n, k))
    lps = -np.sort(-lps, axis=1) - np.interp(s, _S_GRID, _LOG_Z)[:, None]
    # the first k distinct ids of Zipf draws over the vocabulary, in draw order
    draws = np.minimum(rng.zipf(1.1, (n, 4 * k + 8)) - 1, VOCAB - 1)
    order = np.argsort(draws, axis=1, kind="stable")
    ranked = np.take_along_axis(draws, order, axis=1)
    repeat = np.zeros(draws.shape, dtype=bool)
    np.put_along_axis(repeat, order[:, 1:], ranked[:, 1:] == ranked[:, :-1], axis=1)
    first = np.argsort(repeat, axis=1, kind="stable")[:, :k]
    ids = np.take_along_axis(draws, first, axis=1)
    short = np.take_along_axis(repeat, first, axis=1)  # (rare) too few distinct draws
    ids[short] = rng.integers(0, VOCAB, int(short.sum()))
    chosen = np.argmax(lps + rng.gumbel(size=(n, k)), axis=1)
    rows = np.arange(n)
    return SoftTargets(
        token_ids=ids[rows, chosen].tolist(),
        token_logprobs=lps[rows, chosen].tolist(),
        top_ids=ids.tolist(),
        top_logprobs=lps.tolist(),
    )


def z1_size(t: SoftTargets) -> int:
    """The bytes of the same targets in ``z1`` (the four planes as they are, zstd level 3)."""
    q = np.clip(np.rint(-np.asarray(t.top_logprobs) * Q_SCALE), 0, Q_MAX).astype("<u2")
    body = b"".join(
        (
            np.asarray(t.token_ids, "<u4").tobytes(),
            np.asarray(t.token_logprobs, "<f4").tobytes(),
            np.asarray(t.top_ids, "<u4").tobytes(),
            q.tobytes(),
        )
    )
    return len(zstandard.ZstdCompressor(level=3).compress(body))


def json_size(t: SoftTargets) -> int:
    """The same targets as JSON lists of ids and logprobs (float64, as a JSON blob keeps them)."""
    return len(orjson.dumps([t.token_ids, t.token_logprobs, t.top_ids, t.top_logprobs]))


def url() -> str:
    return PG.replace("postgresql://", "postgresql+asyncpg://") + f"/{DB}"


async def fresh_database() -> None:
    admin = await asyncpg.connect(f"{PG}/postgres")
    await admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    await admin.execute(f"CREATE DATABASE {DB}")
    await admin.close()
    await asyncio.to_thread(migrate.upgrade, url())


async def drop_database() -> None:
    admin = await asyncpg.connect(f"{PG}/postgres")
    await admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    await admin.close()


async def add_dataset_and_job(dataset_id: uuid.UUID) -> uuid.UUID:
    db = Database.from_url(url())
    try:
        async with db.transaction() as session:
            session.add(
                Dataset(id=dataset_id, tenant_id=DEFAULT_TENANT_ID, name=f"kd-{dataset_id}")
            )
            job = Job(
                tenant_id=DEFAULT_TENANT_ID,
                dataset_id=dataset_id,
                kind="labeling",
                status="succeeded",
                system_prompt="You are a careful teacher. Answer clearly and concisely.",
                tokenizer={
                    "name": "Qwen/Qwen2.5-7B-Instruct",
                    "vocab_size": VOCAB,
                    "sha256": "0" * 64,
                    "chat_template": "{% for m in messages %}...{% endfor %}" * 40,
                    "chat_template_sha256": "1" * 64,
                    "source": "local",
                },
            )
            session.add(job)
            await session.flush()
            return job.id
    finally:
        await db.engine.dispose()


EXAMPLES = """
INSERT INTO examples (id, dataset_id, origin, status, instruction, input, output, metadata,
                      content_hash, dedup_key, method, job_id, created_at)
SELECT ('01900000-0000-7000-8000-' || lpad(to_hex(i + $4::int), 12, '0'))::uuid, $1::uuid,
       'generated', 'accepted', 'Explain topic ' || i || ' to a curious student in three short paragraphs.',
       '', repeat('The answer to question ' || i || ' is explained here. ', 20), '{}',
       md5($1::text || (i + $4::int)), md5($1::text || (i + $4::int)), 'labeling', $3::uuid,
       now()
FROM generate_series(1, $2::int) AS i
"""  # noqa: E501


def example_id(i: int, offset: int) -> uuid.UUID:
    return uuid.UUID(f"01900000-0000-7000-8000-{i + offset:012x}")


@dataclass
class Filled:
    tokens: int
    alternatives: int
    z1_bytes: int
    json_bytes: int


async def fill(
    dataset_id: uuid.UUID, job_id: uuid.UUID, examples: int, k: int, *, offset: int, seed: int
) -> Filled:
    """`examples` examples with soft targets at k, written by COPY (packed here, as
    complete_task packs them)."""
    rng = np.random.default_rng(seed)
    conn = await asyncpg.connect(f"{PG}/{DB}")
    filled = Filled(0, 0, 0, 0)
    try:
        await conn.execute(EXAMPLES, str(dataset_id), examples, str(job_id), offset)
        now = dt.datetime.now(dt.UTC)
        for start in range(0, examples, 200):
            records = []
            for i in range(start + 1, min(examples, start + 200) + 1):
                t = synthetic(rng, int(rng.integers(64, 449)), k)
                filled.tokens += t.positions
                filled.alternatives += t.positions * k
                if offset == 0:  # the comparisons cost time: only for the storage table
                    filled.z1_bytes += z1_size(t)
                    filled.json_bytes += json_size(t)
                records.append(
                    (example_id(i, offset), dataset_id, job_id, "generation", k, t.positions,
                     ENCODING, pack(t), now)
                )  # fmt: skip
            await conn.copy_records_to_table(
                "soft_targets",
                records=records,
                columns=["example_id", "dataset_id", "job_id", "source", "k", "positions",
                         "encoding", "data", "created_at"],
            )  # fmt: skip
        await conn.execute("VACUUM ANALYZE soft_targets")
    finally:
        await conn.close()
    return filled


async def storage(tokens: int) -> list[dict[str, float]]:
    results = []
    for k in (5, 20, 100):
        await fresh_database()
        dataset_id = uuid.uuid4()
        job_id = await add_dataset_and_job(dataset_id)
        filled = await fill(dataset_id, job_id, max(1, tokens // 256), k, offset=0, seed=k)
        conn = await asyncpg.connect(f"{PG}/{DB}")
        packed = await conn.fetchval("SELECT sum(pg_column_size(data)) FROM soft_targets")
        table = await conn.fetchval("SELECT pg_total_relation_size('soft_targets')")
        await conn.close()
        n = filled.tokens
        results.append(
            {
                "k": k,
                "tokens": n,
                "packed": packed / n,
                "table": table / n,
                "per_alternative": packed / filled.alternatives,
                "z1": filled.z1_bytes / n,
                "json": filled.json_bytes / n,
            }
        )
    return results


def serve() -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {**os.environ, "DISTILLERY_EMBEDDED_WORKER": "false"}
    server = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--no-migrate", "--port", str(port),
         "--database-url", url()],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                return server, port
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.terminate()
    raise RuntimeError("the server did not become ready")


async def export(examples: int, k: int) -> list[dict[str, Any]]:
    await fresh_database()
    job_id = await add_dataset_and_job(DATASET)
    results: list[dict[str, Any]] = []
    filled = Filled(0, 0, 0, 0)
    for size in (examples, 4 * examples):
        more = await fill(DATASET, job_id, size - filled_examples(results), k,
                          offset=1 + filled_examples(results), seed=size)  # fmt: skip
        filled.tokens += more.tokens
        server, port = serve()
        try:
            proc = psutil.Process(server.pid)
            # a first Parquet download, not measured: pyarrow imports pandas where it is
            # installed (the dev extra's `datasets` brings it), once per process
            httpx.get(f"http://127.0.0.1:{port}/v1/datasets/{DATASET}/export?format=kd"
                      "&encoding=parquet", timeout=600).raise_for_status()  # fmt: skip
            idle = proc.memory_info().rss
            for encoding in ("jsonl", "parquet"):
                query = f"format=kd&encoding={encoding}"
                lines, mb, seconds, peak = export_once(port, proc, query)
                if encoding == "jsonl":
                    assert lines == size, f"exported {lines} of {size} rows"
                results.append(
                    {"examples": size, "tokens": filled.tokens, "encoding": encoding, "mb": mb,
                     "seconds": seconds, "idle": idle / 1e6, "peak": peak / 1e6}
                )  # fmt: skip
        finally:
            server.terminate()
            server.wait(timeout=30)
    return results


def filled_examples(results: list[dict[str, Any]]) -> int:
    return int(results[-1]["examples"]) if results else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=100_000, help="positions stored per k")
    parser.add_argument("--examples", type=int, default=1000, help="export: examples (and 4x)")
    parser.add_argument("--k", type=int, default=20, help="export: alternatives per position")
    args = parser.parse_args()
    try:
        stored = asyncio.run(storage(args.tokens))
        exported = asyncio.run(export(args.examples, args.k))
    finally:
        asyncio.run(drop_database())
    print("storage (synthetic Zipf-like distributions, 151,936-id vocabulary)")
    print(f"{'k':>4}{'tokens':>9}{'B/token':>9}{'table B/token':>15}{'B/alternative':>15}"
          f"{'z1 B/token':>12}{'JSON B/token':>14}")  # fmt: skip
    for r in stored:
        print(f"{r['k']:>4}{r['tokens']:>9,}{r['packed']:>9.1f}{r['table']:>15.1f}"
              f"{r['per_alternative']:>15.2f}{r['z1']:>12.1f}{r['json']:>14.0f}")  # fmt: skip
    print(f"\nexport format=kd, k={args.k}, over loopback HTTP")
    print(f"{'examples':>9}{'tokens':>10}{'encoding':>9}{'MB':>8}{'s':>7}{'MB/s':>7}"
          f"{'tokens/s':>10}{'RSS idle MB':>12}{'RSS peak MB':>12}")  # fmt: skip
    for r in exported:
        mb_s, tokens_s = r["mb"] / r["seconds"], r["tokens"] / r["seconds"]
        print(f"{r['examples']:>9,}{r['tokens']:>10,}{r['encoding']:>9}{r['mb']:>8.1f}"
              f"{r['seconds']:>7.2f}{mb_s:>7.1f}{tokens_s:>10,.0f}"
              f"{r['idle']:>12.1f}{r['peak']:>12.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
