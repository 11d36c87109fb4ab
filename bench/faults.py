"""Teacher faults end to end: nothing lost or doubled, and `health` shows the outage.

    .venv/bin/python -m bench.faults [--items 2000] [--target 500] [--outage-s 40]

One stack as ``bench/service.py`` builds it (a fresh Postgres database, the loopback emulator,
``distillery serve --no-worker`` and one ``distillery worker`` with the openai backend, all
subprocesses stopped by pid at the end, the database dropped). The emulator injects faults on
``--fault-fraction`` of all chat requests (20 %), spread evenly over every kind it has: HTTP 500,
HTTP 429 with Retry-After, dropped connections, hangs (``--hang-s``, past the worker's request
timeout) and malformed bodies. Two phases, one after the other:

1. labeling of ``--items`` prompts without answers;
2. Self-Instruct expansion to ``--target`` accepted examples.

In each, once a quarter of the expected items is accepted, the emulator process is stopped (the
teacher is gone: connections refused) for ``--outage-s`` seconds, then started again on the same
port. The jobs' ``health`` is polled every 0.5 s throughout. Printed per job: status, items
answered vs expected, duplicates (answers per prompt beyond one; repeated instructions), health
states seen during and outside the outage, teacher errors by cause (the job's report) and the
faults the emulator injected.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg

from bench.service import MODEL, PG, PY, TERMINAL, Stack, free_port

FAULT_KINDS = ("server_error", "rate_limit", "drop", "hang", "malformed")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.faults",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--items", type=int, default=2000, help="labeling prompts")
    parser.add_argument("--target", type=int, default=500, help="expansion target")
    parser.add_argument("--outage-s", type=float, default=40.0, help="teacher down this long")
    parser.add_argument("--fault-fraction", type=float, default=0.2, help="of all requests")
    parser.add_argument("--hang-s", type=float, default=6.0, help="a hang fault lasts this long")
    parser.add_argument("--request-timeout", type=float, default=3.0, help="worker's, seconds")
    parser.add_argument("--latency", type=float, default=0.5, help="emulator s per request")
    parser.add_argument("--in-flight", type=int, default=32, help="emulator requests at once")
    parser.add_argument("--timeout", type=float, default=420.0, help="per phase, seconds")
    parser.add_argument("--only", choices=("labeling", "expansion"), default=None)
    parser.add_argument("--log-dir", type=Path, default=None)
    return parser.parse_args(argv)


def faults(fraction: float) -> dict[str, Any]:
    share = fraction / len(FAULT_KINDS)
    spec: dict[str, Any] = {kind: {"fraction": share} for kind in FAULT_KINDS}
    spec["rate_limit"]["retry_after_s"] = 0.5
    return spec


class Teacher:
    """The emulator process of the stack: stopped and started again on the same port."""

    def __init__(self, stack: Stack, argv: list[str]) -> None:
        self.stack = stack
        self.argv = argv
        self.injected: Counter[str] = Counter()
        self.requests = 0

    def collect(self) -> None:
        stats = self.stack.emulator_stats()
        self.injected.update(stats["faults"])
        self.requests += int(stats["requests"])

    def stop(self) -> None:
        """Kill it (a crash: connections refused at once, requests in flight cut)."""
        self.collect()
        proc = self.stack.procs["emulator"]
        proc.popen.kill()
        proc.popen.wait(timeout=10)
        proc.stop()  # closes its pipe and log

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLERY_")}
        proc = self.stack._spawn("emulator", self.argv, env, pipe=True)
        line = proc.ready_line()
        if not line.startswith("READY "):
            raise RuntimeError(f"emulator did not come back: {line!r}")


def phase(
    stack: Stack, teacher: Teacher, request: dict[str, Any], expected: int, args: argparse.Namespace
) -> dict[str, Any]:
    """Run one job with an outage from a quarter of the way; poll its health meanwhile."""
    job = stack.post("/v1/jobs", json=request)
    job_id = job["id"]
    seen: dict[str, Counter[str]] = {"before": Counter(), "outage": Counter(), "after": Counter()}
    first_down: float | None = None
    outage: tuple[float, float] | None = None
    start = time.monotonic()
    down_since = 0.0
    workers_down = 0
    while job["status"] not in TERMINAL:
        if time.monotonic() - start > args.timeout:
            raise RuntimeError(f"job {job_id} still {job['status']} after {args.timeout}s: {job}")
        now = time.monotonic()
        if outage is None and not down_since and job["progress"]["accepted"] >= expected / 4:
            teacher.stop()
            down_since = now
            print(f"  t={now - start:5.1f}s teacher stopped at {job['progress']}", flush=True)
        elif down_since and outage is None and now - down_since >= args.outage_s:
            teacher.start()
            outage = (down_since - start, now - start)
            print(f"  t={now - start:5.1f}s teacher back at {job['progress']}", flush=True)
        where = "before" if not down_since else ("outage" if outage is None else "after")
        state = job["health"]["state"]
        seen[where][state] += 1
        if where == "outage" and state == "waiting_for_teacher" and first_down is None:
            first_down = now - down_since
            workers = stack.get("/v1/workers")["data"]
            workers_down = sum(1 for w in workers if w["teacher_state"] == "down")
        time.sleep(0.5)
        job = stack.get(f"/v1/jobs/{job_id}")
    report = stack.get(f"/v1/jobs/{job_id}/report")
    return {
        "job": job,
        "report": report,
        "wall_s": round(time.monotonic() - start, 1),
        "outage_s": outage,
        "health_seen": {k: dict(v) for k, v in seen.items()},
        "waiting_for_teacher_after_s": None if first_down is None else round(first_down, 1),
        "workers_reporting_down": workers_down,
        "last_health": job["health"],
    }


async def labeling_counts(db: str, job_id: str, dataset_id: str) -> dict[str, int]:
    conn = await asyncpg.connect(f"{PG}/{db}")
    try:
        row = await conn.fetchrow(
            """
            SELECT count(*) FILTER (WHERE status = 'accepted') AS accepted,
                   count(DISTINCT metadata->>'source_example_id')
                       FILTER (WHERE status = 'accepted') AS prompts,
                   count(*) FILTER (WHERE status = 'rejected') AS rejected
            FROM examples WHERE job_id = $1
            """,
            uuid.UUID(job_id),
        )
        unanswered = await conn.fetchval(
            """
            SELECT count(*) FROM examples s
            WHERE s.dataset_id = $1 AND s.origin = 'seed' AND NOT EXISTS (
                SELECT 1 FROM examples e WHERE e.job_id = $2 AND e.status = 'accepted'
                AND e.metadata->>'source_example_id' = s.id::text)
            """,
            uuid.UUID(dataset_id),
            uuid.UUID(job_id),
        )
    finally:
        await conn.close()
    return {**dict(row), "unanswered_prompts": unanswered}


async def expansion_counts(db: str, job_id: str) -> dict[str, int]:
    conn = await asyncpg.connect(f"{PG}/{db}")
    try:
        row = await conn.fetchrow(
            """
            SELECT count(*) FILTER (WHERE status = 'accepted') AS accepted,
                   count(DISTINCT (lower(instruction), input))
                       FILTER (WHERE status = 'accepted') AS distinct_tasks,
                   count(*) FILTER (WHERE status = 'accepted' AND coalesce(output, '') = '')
                       AS blank_answers
            FROM examples WHERE job_id = $1
            """,
            uuid.UUID(job_id),
        )
    finally:
        await conn.close()
    return dict(row)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    port = free_port()
    emulator_argv = [
        PY, "-m", "bench.emulator", "--port", str(port), "--model", MODEL,
        "--base-latency", str(args.latency), "--max-in-flight", str(args.in_flight),
        "--hang-s", str(args.hang_s), "--realistic",
        "--faults", json.dumps(faults(args.fault_fraction)),
    ]  # fmt: skip
    env = {
        "DISTILLERY_TEACHER__MAX_CONCURRENCY": str(args.in_flight),
        "DISTILLERY_TEACHER__REQUEST_TIMEOUT_S": str(args.request_timeout),
        "DISTILLERY_WORKER_CONCURRENCY": "8",
        "DISTILLERY_LABELING_CHUNK_SIZE": "64",
        "DISTILLERY_HEARTBEAT_SECONDS": "2",
        "DISTILLERY_LEASE_SECONDS": "30",
        "DISTILLERY_RETRY_BASE_SECONDS": "1",
        "DISTILLERY_RETRY_MAX_SECONDS": "8",
        "DISTILLERY_TEACHER_PROBE_SECONDS": "2",
    }
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="distillery-faults-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    started = time.monotonic()
    stack = Stack("faults", log_dir, worker_env=env, emulator_args=tuple(emulator_argv[3:]))
    with stack:
        teacher = Teacher(stack, emulator_argv)
        print(f"faults: {faults(args.fault_fraction)}; logs in {log_dir}", flush=True)
        if args.only != "expansion":
            results["labeling"] = run_labeling(stack, teacher, args)
        if args.only != "labeling":
            results["expansion"] = run_expansion(stack, teacher, args)
        teacher.collect()
    print_results(results, teacher, time.monotonic() - started)


def run_labeling(stack: Stack, teacher: Teacher, args: argparse.Namespace) -> dict[str, Any]:
    print(f"labeling {args.items} prompts", flush=True)
    dataset = stack.post("/v1/datasets", json={"name": "faults-labeling"})["id"]
    stack.upload(dataset, [{"instruction": f"Explain item {i} of the list in two sentences."}
                           for i in range(args.items)])  # fmt: skip
    request = {"dataset_id": dataset, "kind": "labeling", "teacher": {"max_tokens": 64}}
    labeled = phase(stack, teacher, request, args.items, args)
    labeled["counts"] = asyncio.run(labeling_counts(stack.db, labeled["job"]["id"], dataset))
    return labeled


def run_expansion(stack: Stack, teacher: Teacher, args: argparse.Namespace) -> dict[str, Any]:
    from bench.emulator import realistic_instruction

    print(f"expansion to {args.target}", flush=True)
    rng = random.Random(11)
    dataset = stack.post("/v1/datasets", json={"name": "faults-expansion",
                                               "description": "short tasks"})["id"]  # fmt: skip
    stack.upload(dataset, [{"instruction": realistic_instruction(rng), "output": "An answer."}
                           for _ in range(20)])  # fmt: skip
    params = {"target": args.target, "calls_per_round": 4, "candidates_per_call": 10}
    expanded = phase(stack, teacher, {"dataset_id": dataset, "kind": "expansion",
                                      "params": params}, args.target, args)  # fmt: skip
    expanded["counts"] = asyncio.run(expansion_counts(stack.db, expanded["job"]["id"]))
    return expanded


def print_results(results: dict[str, Any], teacher: Teacher, total_s: float) -> None:
    ok = True
    for name, run in results.items():
        job, report, counts = run["job"], run["report"], run["counts"]
        if name == "labeling":
            expected = job["progress"]["total"]
            answered = counts["prompts"]
            duplicates = counts["accepted"] - counts["prompts"]
        else:
            expected = job["params"]["target"]
            answered = counts["accepted"]
            duplicates = counts["accepted"] - counts["distinct_tasks"]
        good = (
            job["status"] == "succeeded"
            and answered == expected
            and duplicates == 0
            and run["health_seen"]["outage"].get("waiting_for_teacher", 0) > 0
        )
        ok = ok and good
        print(f"\n== {name}: {'OK' if good else 'NOT OK'}")
        print(f"status            {job['status']}  error={job['error']!r}")
        print(f"answered/expected {answered}/{expected}  counts={counts}")
        print(f"duplicates        {duplicates}")
        print(
            f"wall              {run['wall_s']} s; outage window (s from start) {run['outage_s']}"
        )
        print(f"health seen       {run['health_seen']}")
        print(f"waiting_for_teacher shown {run['waiting_for_teacher_after_s']} s into the outage;"
              f" workers reporting down then: {run['workers_reporting_down']}")  # fmt: skip
        print(f"teacher errors    {report['teacher_errors']}")
        print(f"teacher wait      {report['teacher_wait_seconds']} s")
        print(f"rejected by reason {report['rejected_by_reason']}")
    print(f"\nemulator: {teacher.requests} chat requests, faults injected {dict(teacher.injected)}")
    print(f"total {total_s:.0f} s")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
