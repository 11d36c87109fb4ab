"""Benchmark: a feedback job (the teacher as judge) through the HTTP API on the loopback emulator.

    .venv/bin/python -m bench.feedback [--prompts 1000] [--existing 2] [--samples 2]
                                       [--mode pointwise|pairwise] [--chunk-size 16]

Builds the stack of ``bench/service.py`` (a fresh Postgres database, the GPU-server emulator:
400 ms a request, 256 served at once, the rest queue; ``distillery serve --no-worker`` and a
``distillery worker`` on the ``openai`` backend, as subprocesses), uploads ``--prompts`` prompts
with ``--existing`` answers each (seeds sharing one instruction: one prompt group per
instruction, as a student's samples would be uploaded), then runs one feedback job that adds
``--samples`` teacher samples per prompt and judges every candidate (4 per prompt by default),
polling it over HTTP until it ends. The emulator answers the judge's JSON-schema requests with
valid JSON (random scores and verdicts), so every judgment parses.

Printed: wall time / ideal, where ideal = max(2, ceil(calls / 256)) x 0.4 s: the teacher calls
the job made, at the emulator's capacity (at least two latencies: a sample must exist before it
is judged); the emulator's mean requests in flight over the job's run / 256; calls per prompt;
the report's feedback section (prompts judged, pairs, judge failures, disagreement rate).
Numbers depend on the machine; compare ratios within one run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from bench.service import (
    LATENCY_S,
    LIMIT,
    Stack,
    _log_dir,
    compact,
    job_numbers,
    print_table,
    worker_settings,
)


def prompt(i: int) -> str:
    return f"Explain idea {i} of the lecture to a curious student, in two short paragraphs."


def feedback(args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    n = args.prompts
    env = {**worker_settings(args), "DISTILLERY_FEEDBACK_CHUNK_SIZE": str(args.feedback_chunk_size)}
    rows = [
        {"instruction": prompt(i), "output": f"Student answer {k} to idea {i}: it is about {i}."}
        for i in range(n)
        for k in range(args.existing)
    ]
    params: dict[str, Any] = {
        "samples": args.samples,
        "existing": args.existing > 0,
        "mode": args.mode,
        "min_margin": args.min_margin,
    }
    with Stack("feedback", log_dir, worker_env=env) as stack:
        dataset = stack.post("/v1/datasets", json={"name": "bench-feedback"})["id"]
        if rows:
            stack.upload(dataset, rows)
        else:
            stack.upload(dataset, [{"instruction": prompt(i)} for i in range(n)])
        run = stack.run_job({"dataset_id": dataset, "kind": "feedback", "params": params,
                             "teacher": {"max_tokens": 256}})  # fmt: skip
    if run.job["status"] != "succeeded" or run.job["progress"]["completed"] != n:
        print(f"!! feedback job ended {run.job['status']} with {run.job['progress']}",
              file=sys.stderr)  # fmt: skip
    ideal_s = max(2, math.ceil(run.calls / LIMIT)) * LATENCY_S
    candidates = n * (args.existing + args.samples)
    result = job_numbers(run, ideal_s, candidates, None)
    result.update(
        scenario="feedback",
        n=n,
        candidates=candidates,
        params=params,
        settings=env,
        calls_per_prompt=run.calls / n,
        progress=run.job["progress"],
        status=run.job["status"],
        feedback=run.report.get("feedback"),
    )
    return result


def print_result(r: dict[str, Any]) -> None:
    fb = r["feedback"] or {}
    margin = fb.get("margin") or {}
    rows = [
        ("ideal s (max(2, ceil(calls/256)) x 0.4)", f"{r['ideal_s']:.1f}", ""),
        ("wall s (POST -> seen done)", f"{r['wall_s']:.2f}", ""),
        ("wall / ideal", f"{r['ratio_wall']:.3f}", "<= 1.10"),
        ("started_at->finished_at / ideal", f"{r['ratio_run']:.3f}", ""),
        ("mean in flight / 256 (job run)", f"{r['in_flight_run']:.3f}", ">= 0.90"),
        ("mean in flight / 256 (busy)", f"{r['in_flight_busy']:.3f}", ""),
        ("teacher calls (per prompt)", f"{r['calls']:,} ({r['calls_per_prompt']:.2f})", ""),
        ("worker CPU ms / candidate", f"{r['worker_cpu_ms_per_example']:.3f}", ""),
        ("API / emulator / postgres CPU s",
         f"{r['api_cpu_s']:.1f} / {r['emulator_cpu_s']:.1f} / {r['postgres_cpu_s']:.1f}", ""),
        ("other processes' CPU s (noise; cores x wall)",
         f"{r['other_cpu_s']:.1f} ({r['cores']} x {r['wall_s']:.1f})", ""),
        ("worker / API peak RSS MB",
         f"{r['worker_peak_rss_mb']:.0f} / {r['api_peak_rss_mb']:.0f}", ""),
        ("job status, progress", f"{r['status']} {r['progress']['completed']}/{r['n']}", ""),
        ("prompts judged / with a pair / pairs",
         f"{fb.get('prompts_judged')} / {fb.get('prompts_with_pair')} / {fb.get('pairs')}", ""),
        ("margin min / median / max",
         f"{margin.get('min')} / {margin.get('median')} / {margin.get('max')}", ""),
        ("judge_failed; disagreement rate",
         f"{fb.get('judge_failed')}; {fb.get('disagreement_rate')}", ""),
    ]  # fmt: skip
    print_table(
        f"feedback: {r['n']:,} prompts x {r['candidates'] // r['n']} candidates, params "
        f"{json.dumps(r['params'])}, settings {compact(r['settings'])}",
        rows,
    )
    print(
        f"\n| feedback {r['n']:,} prompts x {r['candidates'] // r['n']} candidates "
        f"({r['params']['mode']}) | wall / ideal {r['ratio_wall']:.2f} (run {r['ratio_run']:.2f})"
        f" | mean in flight / 256 {r['in_flight_run']:.2f} | {r['calls']:,} calls |"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.feedback",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--prompts", type=int, default=1000)
    parser.add_argument("--existing", type=int, default=2, help="uploaded answers per prompt")
    parser.add_argument("--samples", type=int, default=2, help="teacher samples per prompt")
    parser.add_argument("--mode", choices=["pointwise", "pairwise"], default="pointwise")
    parser.add_argument("--min-margin", type=float, default=1.0)
    parser.add_argument("--chunk-size", dest="feedback_chunk_size", type=int, default=16,
                        help="DISTILLERY_FEEDBACK_CHUNK_SIZE (prompts per task)")  # fmt: skip
    parser.add_argument("--worker-concurrency", type=int, default=8,
                        help="DISTILLERY_WORKER_CONCURRENCY")  # fmt: skip
    parser.add_argument("--teacher-concurrency", type=int, default=LIMIT,
                        help="DISTILLERY_TEACHER__MAX_CONCURRENCY")  # fmt: skip
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="more settings for worker and API")  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    parser.add_argument("--log-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    args.chunk_size = 64  # bench.service.worker_settings: labeling's chunk (unused here)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with _log_dir(args.log_dir) as log_dir:
        print(f"bench.feedback {dt.datetime.now().isoformat(timespec='seconds')}, "
              f"{psutil.cpu_count()} CPUs; logs in {log_dir}")  # fmt: skip
        start = time.perf_counter()
        result = feedback(args, log_dir)
        result["scenario_s"] = time.perf_counter() - start
    print_result(result)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
