"""Does a training loop's small scoring job overtake a bulk job? Job priority, measured.

    .venv/bin/python -m bench.scoring_latency [--bulk 10000] [--samples 64] [--trials 5]

The stack of ``bench.service`` (fresh Postgres database, the loopback emulator with its white-box
routes, ``distillery serve --no-worker`` and one ``distillery worker`` with the ``openai``
backend, all subprocesses stopped by pid at the end). Then:

1. idle: a scoring job over ``--samples`` short student samples (``top_logprobs`` 20) on the
   idle service: the floor;
2. a labeling job of ``--bulk`` prompts starts (``chunk_size`` 64: its tasks fill the queue);
3. while it runs, ``--trials`` times: the same scoring job again (``rescore: true``, so the same
   work) with ``priority: 10``;
4. once more with ``priority: 0`` (the default): it queues behind every bulk task created
   before it, so it finishes with the bulk job.

Latency is ``POST /v1/jobs`` until a poll (every 10 ms) sees ``succeeded``; "server" is the
job's own ``created_at -> finished_at``. The emulator serves each request in 400 ms, 256 at once;
a scoring request costs two ``/tokenize`` calls (no wait) and one ``/v1/completions`` (400 ms).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from bench.emulator import VOCAB
from bench.service import LATENCY_S, TERMINAL, Stack, _log_dir, seed_instruction


def student_sample(i: int) -> dict[str, str]:
    """A short sample a student wrote: an 8-word instruction and a 16-31 word answer, in the
    emulator's vocabulary (one token a word; other text costs a token a byte)."""
    words = [VOCAB[(i * 37 + j * 11) % len(VOCAB)] for j in range(8 + 16 + i % 16)]
    return {"instruction": "".join(words[:8]).strip(), "output": "".join(words[8:]).strip()}


def timed_job(stack: Stack, request: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """POST the job, poll every 10 ms until it ends; its latencies and final state."""
    start = time.perf_counter()
    job = stack.post("/v1/jobs", json=request)
    deadline = start + timeout_s
    while job["status"] not in TERMINAL:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"job still {job['status']} after {timeout_s}s: {job}")
        time.sleep(0.01)
        job = stack.get(f"/v1/jobs/{job['id']}")
    latency = time.perf_counter() - start
    created = dt.datetime.fromisoformat(job["created_at"])
    started = dt.datetime.fromisoformat(job["started_at"])
    finished = dt.datetime.fromisoformat(job["finished_at"])
    return {
        "status": job["status"],
        "error": job["error"],
        "priority": job["priority"],
        "latency_s": latency,
        "server_s": (finished - created).total_seconds(),
        "queued_s": (started - created).total_seconds(),  # until a worker claimed its task
        "run_s": (finished - started).total_seconds(),
        "completed": job["progress"]["completed"],
    }


def bulk_state(stack: Stack, job_id: str) -> tuple[str, int, int]:
    job = stack.get(f"/v1/jobs/{job_id}")
    return job["status"], job["progress"]["completed"], job["progress"]["total"]


def run(args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    env = {
        "DISTILLERY_WORKER_CONCURRENCY": str(args.worker_concurrency),
        "DISTILLERY_LABELING_CHUNK_SIZE": "64",
    }
    with Stack("scoring", log_dir, worker_env=env) as stack:
        samples = stack.post("/v1/datasets", json={"name": "student-samples"})["id"]
        stack.upload(samples, [student_sample(i) for i in range(args.samples)])
        bulk_ds = stack.post("/v1/datasets", json={"name": "bulk"})["id"]
        stack.upload(bulk_ds, [{"instruction": seed_instruction(i)} for i in range(args.bulk)])

        def scoring(priority: int, rescore: bool) -> dict[str, Any]:
            request = {
                "dataset_id": samples,
                "kind": "scoring",
                "priority": priority,
                "params": {"top_logprobs": 20, "rescore": rescore, "chunk_size": args.samples},
            }
            result = timed_job(stack, request, timeout_s=900)
            if result["status"] != "succeeded" or result["completed"] != args.samples:
                print(f"!! scoring job ended {result}", file=sys.stderr)
            return result

        idle = scoring(0, rescore=False)
        print(f"idle: {idle['latency_s']:.2f} s")
        bulk = stack.post(
            "/v1/jobs",
            json={"dataset_id": bulk_ds, "kind": "labeling", "teacher": {"max_tokens": 256}},
        )
        while bulk_state(stack, bulk["id"])[1] < 64 * args.worker_concurrency:
            time.sleep(0.05)  # the bulk job is under way: its first tasks are done
        trials = []
        for _ in range(args.trials):
            result = scoring(10, rescore=True)
            result["bulk"] = bulk_state(stack, bulk["id"])
            trials.append(result)
            print(f"priority 10: {result['latency_s']:.2f} s, bulk {result['bulk']}")
            time.sleep(args.gap)
        before = bulk_state(stack, bulk["id"])
        plain = scoring(0, rescore=True)
        plain["bulk_before"] = before
        plain["bulk_after"] = bulk_state(stack, bulk["id"])
        print(f"priority 0: {plain['latency_s']:.2f} s, bulk {before} -> {plain['bulk_after']}")
        while bulk_state(stack, bulk["id"])[0] not in TERMINAL:
            time.sleep(0.2)
        bulk_job = stack.get(f"/v1/jobs/{bulk['id']}")
    bulk_run = (
        dt.datetime.fromisoformat(bulk_job["finished_at"])
        - dt.datetime.fromisoformat(bulk_job["started_at"])
    ).total_seconds()
    valid = all(t["bulk"][0] == "running" for t in trials) and before[0] == "running"
    if not valid:
        print("!! the bulk job was not running throughout: raise --bulk", file=sys.stderr)
    latencies = [t["latency_s"] for t in trials]
    return {
        "samples": args.samples,
        "bulk": args.bulk,
        "worker_concurrency": args.worker_concurrency,
        "cores": psutil.cpu_count(),
        "emulator_latency_s": LATENCY_S,
        "idle": idle,
        "priority": trials,
        "priority_median_s": statistics.median(latencies),
        "priority_max_s": max(latencies),
        "no_priority": plain,
        "bulk_status": bulk_job["status"],
        "bulk_run_s": bulk_run,
        "bulk_started_during_run": valid,
    }


def print_summary(r: dict[str, Any]) -> None:
    """One markdown table (what BENCHMARKS.md records)."""
    plain = r["no_priority"]
    done, total = plain["bulk_before"][1], plain["bulk_before"][2]

    def cells(runs: list[dict[str, Any]]) -> str:
        return " | ".join(
            f"{statistics.median(run[key] for run in runs):.2f} s"
            for key in ("latency_s", "queued_s", "run_s")
        )

    print(
        f"\n| scoring job of {r['samples']} samples, `top_logprobs` 20 | POST -> succeeded | "
        "queued (POST -> claimed) | run (claimed -> succeeded) |"
    )
    print("| --- | --- | --- | --- |")
    print(f"| idle service | {cells([r['idle']])} |")
    print(
        f"| `priority: 10`, labeling of {r['bulk']:,} prompts running (median of "
        f"{len(r['priority'])}; max {r['priority_max_s']:.2f} s) | {cells(r['priority'])} |"
    )
    print(
        f"| `priority: 0`, same bulk job ({done:,} of {total:,} prompts done at POST) | "
        f"{cells([plain])} |"
    )
    print(f"\n(the bulk job's run: {r['bulk_run_s']:.1f} s, {r['bulk_status']})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scoring_latency",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--bulk", type=int, default=10_000, help="prompts of the bulk job")
    parser.add_argument("--samples", type=int, default=64, help="samples of each scoring job")
    parser.add_argument("--trials", type=int, default=5, help="scoring jobs with priority 10")
    parser.add_argument("--gap", type=float, default=0.5, help="seconds between trials")
    parser.add_argument("--worker-concurrency", type=int, default=8)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--log-dir", type=Path, default=None, help="keep the subprocess logs")
    args = parser.parse_args(argv)
    with _log_dir(args.log_dir) as log_dir:
        print(
            f"bench.scoring_latency {dt.datetime.now().isoformat(timespec='seconds')}, "
            f"{psutil.cpu_count()} CPUs; logs in {log_dir}"
        )
        result = run(args, log_dir)
    print_summary(result)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
