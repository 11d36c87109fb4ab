"""Benchmark: streamed JSONL export from Postgres vs COPY of the same rows, and server memory.

    .venv/bin/python -m bench.export --rows 200000 [--query 'format=prompt_completion&system=true']
                                     [--upload-rows 100000]

Builds a fresh Postgres database with N generated examples (INSERT ... SELECT generate_series),
starts `distillery serve` as a subprocess, downloads the export over loopback while sampling the
server's RSS, then runs `COPY (SELECT json_build_object(...)) TO STDOUT` for the same rows.
Prints MB/s of both, their ratio, and the server's RSS before and at peak. Then uploads
``--upload-rows`` seeds of the same shape (one JSONL POST) and prints its MB/s and peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import time

import asyncpg
import httpx
import orjson
import psutil

from app import migrate

PG = os.environ.get("DISTILLERY_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
DB = os.environ.get("DISTILLERY_BENCH_EXPORT_DB", "distillery_bench_export")
DATASET = "00000000-0000-7000-8000-00000000beef"
UPLOAD_BATCH = 25_000  # ~11 MB of JSONL a request

FILL = f"""
INSERT INTO datasets (id, tenant_id, name, description, created_at)
VALUES ('{DATASET}', '00000000-0000-7000-8000-000000000001', 'bench', '', now());
INSERT INTO examples (id, dataset_id, origin, status, instruction, input, output, metadata,
                      content_hash, dedup_key, method, created_at)
SELECT ('01900000-0000-7000-8000-' || lpad(to_hex(i), 12, '0'))::uuid, '{DATASET}', 'generated',
       'accepted', 'Explain topic ' || i || ' to a curious student in three short paragraphs.',
       CASE WHEN i % 3 = 0 THEN 'context for ' || i ELSE '' END,
       repeat('The answer to question ' || i || ' is explained here. ', 6), '{{}}',
       md5(i::text) || md5((i + 1)::text), md5(i::text) || md5((i + 1)::text), 'expansion', now()
FROM generate_series(1, $1::int) AS i;
"""

COPY_QUERY = f"""
SELECT json_build_object('instruction', instruction, 'input', input, 'output', output)::text
FROM examples WHERE dataset_id = '{DATASET}' AND status = 'accepted' ORDER BY id
"""


async def prepare(rows: int) -> None:
    admin = await asyncpg.connect(f"{PG}/postgres")
    await admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    await admin.execute(f"CREATE DATABASE {DB}")
    await admin.close()
    await asyncio.to_thread(migrate.upgrade, url())
    conn = await asyncpg.connect(f"{PG}/{DB}")
    for statement in FILL.split(";\n")[:-1]:
        await (conn.execute(statement, rows) if "$1" in statement else conn.execute(statement))
    await conn.execute("VACUUM ANALYZE examples")
    await conn.close()


def url() -> str:
    return PG.replace("postgresql://", "postgresql+asyncpg://") + f"/{DB}"


async def copy_mb_s() -> tuple[float, float]:
    conn = await asyncpg.connect(f"{PG}/{DB}")
    size = 0

    async def sink(chunk: bytes) -> None:
        nonlocal size
        size += len(chunk)

    start = time.perf_counter()
    await conn.copy_from_query(
        COPY_QUERY, output=sink, format="csv", quote="\x01", delimiter="\x02"
    )
    elapsed = time.perf_counter() - start
    await conn.close()
    return size / 1e6, elapsed


def rss(proc: psutil.Process) -> int:
    """Resident memory of the server: its process and its children (`--api-processes`)."""
    total = proc.memory_info().rss
    for child in proc.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += child.memory_info().rss
    return int(total)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def export_once(port: int, proc: psutil.Process, query: str = "") -> tuple[int, float, float, int]:
    peak = rss(proc)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss(proc))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    size = lines = 0
    start = time.perf_counter()
    with (
        httpx.Client(timeout=600) as client,
        client.stream(
            "GET", f"http://127.0.0.1:{port}/v1/datasets/{DATASET}/export?{query}"
        ) as response,
    ):
        response.raise_for_status()
        for chunk in response.iter_raw():
            size += len(chunk)
            lines += chunk.count(b"\n")
    elapsed = time.perf_counter() - start
    done.set()
    sampler.join()
    return lines, size / 1e6, elapsed, peak


def upload_once(port: int, proc: psutil.Process, rows: int) -> tuple[float, float, int]:
    """POST `rows` seeds (JSONL, shaped like the exported rows, ``UPLOAD_BATCH`` rows a request)
    to a new dataset while sampling the server's RSS: (MB sent, seconds, peak RSS)."""
    lines = [
        orjson.dumps({
            "instruction": f"Explain topic {i} to a curious student in three short paragraphs.",
            "input": f"context for {i}" if i % 3 == 0 else "",
            "output": f"The answer to question {i} is explained here. " * 6,
        }) + b"\n"
        for i in range(rows)
    ]  # fmt: skip
    bodies = [b"".join(lines[i : i + UPLOAD_BATCH]) for i in range(0, rows, UPLOAD_BATCH)]
    peak = rss(proc)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss(proc))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=900) as client:
        dataset = client.post("/v1/datasets", json={"name": "bench-upload"}).json()["id"]
        inserted = 0
        start = time.perf_counter()
        for part in bodies:  # under the server's body limit (DISTILLERY_MAX_BODY_BYTES, 32 MiB)
            response = client.post(f"/v1/datasets/{dataset}/seeds", content=part,
                                   headers={"content-type": "application/x-ndjson"})  # fmt: skip
            response.raise_for_status()
            inserted += response.json()["inserted"]
        elapsed = time.perf_counter() - start
    done.set()
    sampler.join()
    assert inserted == rows, f"stored {inserted} of {rows}"
    return sum(len(b) for b in bodies) / 1e6, elapsed, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--query", default="", help="export query string, e.g. system=true")
    parser.add_argument("--upload-rows", type=int, default=100_000,
                        help="then upload this many seeds (0: skip)")  # fmt: skip
    args = parser.parse_args()
    asyncio.run(prepare(args.rows))
    port = free_port()
    env = {**os.environ, "DISTILLERY_EMBEDDED_WORKER": "false"}
    server = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--no-migrate", "--port", str(port),
         "--database-url", url()],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(200):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        proc = psutil.Process(server.pid)
        idle_rss = rss(proc)
        lines, mb, seconds, peak = export_once(port, proc, args.query)
        copy_mb, copy_s = asyncio.run(copy_mb_s())
        upload = upload_once(port, proc, args.upload_rows) if args.upload_rows else None
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert lines == args.rows, f"exported {lines} of {args.rows} rows"
    print(f"{'what':<34}{'value':>14}")
    print(f"{'rows exported':<34}{lines:>14,}")
    print(f"{'export MB / s':<34}{mb:>9.1f} / {seconds:.2f}")
    print(f"{'export MB/s':<34}{mb / seconds:>14.1f}")
    print(f"{'COPY MB/s (same rows)':<34}{copy_mb / copy_s:>14.1f}")
    print(f"{'export / COPY throughput':<34}{(mb / seconds) / (copy_mb / copy_s):>14.2f}")
    print(f"{'server RSS idle MB':<34}{idle_rss / 1e6:>14.1f}")
    print(f"{'server RSS peak MB':<34}{peak / 1e6:>14.1f}")
    if upload is not None:
        up_mb, up_s, up_peak = upload
        print(f"{'seed upload rows':<34}{args.upload_rows:>14,}")
        print(f"{'seed upload MB / s':<34}{up_mb:>9.1f} / {up_s:.2f}")
        print(
            f"{'seed upload MB/s (rows/s)':<34}{up_mb / up_s:>7.1f} "
            f"({args.upload_rows / up_s:,.0f})"
        )
        print(f"{'server RSS peak MB (upload)':<34}{up_peak / 1e6:>14.1f}")


if __name__ == "__main__":
    main()
