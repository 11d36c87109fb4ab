"""Benchmarks of the whole service: is the teacher kept full, and what does the service add?

    .venv/bin/python -m bench.service [--scenario labeling|expansion|api|export|dialogue|evol|
                                       feedback|scoring|all] [--n 10000]

Every scenario builds a fresh Postgres database (``distillery_bench_service_<scenario>``), starts
the loopback GPU-server emulator (``bench/emulator.py``: 400 ms a request, 256 requests served at
once, the rest queue), ``distillery serve --no-worker`` and a separate ``distillery worker``
(backend ``openai``, pointed at the emulator) as subprocesses, drives them over HTTP like a user,
then stops every subprocess by its pid and drops the database.

Scenarios (see BENCHMARKS.md for what each number means):

1. ``labeling``: upload N seeds without outputs (JSONL), one labeling job, poll until done.
   Wall time / ideal, where ideal = ceil(N / 256) x 0.4 s (the emulator kept full throughout);
   the emulator's mean requests in flight over the job's run / 256; the worker's CPU seconds
   (user + system, from job creation to the end) per example, also net of what the bare HTTP
   client costs for the same requests (``--bare``, measured in the same run against the same
   emulator: that is the "teacher call"); peak RSS of worker and API.
2. ``expansion``: Self-Instruct to N accepted examples. The emulator runs with ``--realistic``
   (diverse instruction-like task lists; without it, schema-filled proposals are 1-3 random
   2-6-word strings and 40 % fail the length filter). Ideal for the calls the job made:
   max(2, ceil(calls / 256)) x 0.4 s (two stages: an answer call can only start once its
   proposal is back, so at least two latencies); and calls made / the method's minimum
   (ceil(N / candidates_per_call) proposals + N answers).
3. ``export``: runs ``python -m bench.export --rows R`` (streamed export vs COPY) and drops its
   database afterwards.
5. ``api``: p50/p99 of ``GET /v1/jobs/{id}`` at a fixed rate (500/s, open loop: a request is due
   every 2 ms whether or not earlier ones answered; latency counts from the due time) for 20 s
   while a labeling job runs, from a load generator in its own process (aiohttp); also for a
   few seconds on the idle service first.
6. ``dialogue``: C conversations (one per seed, ``--conversations`` 1,000) of T assistant turns
   (``--turns`` 4): 2T - 1 sequential calls each (the seed is the first user turn). Ideal for
   the calls the job made: max(2T - 1, ceil(calls / 256)) x 0.4 s (a conversation's calls wait
   for each other; all conversations share the 256 slots); calls / the minimum C x (2T - 1)
   (cut conversations make fewer).
7. ``evol``: Evol-Instruct over L seed instructions (``--lineages`` 1,000) for G generations
   (``--generations`` 3), the emulator ``--realistic`` (evolutions are instruction-like, so they
   pass curation). A step is an evolution call, then the equality check and the answer in one
   batch: 2G latencies one after the other per lineage. Ideal for the calls the job made:
   max(2G, ceil(calls / 256)) x 0.4 s; calls / the minimum L x G x 3 (eliminated or rejected
   evolutions are not answered: fewer).
8. ``feedback``: the teacher as judge (``bench/feedback.py``, also runnable alone): ``--prompts``
   prompts with ``--existing`` uploaded answers and ``--samples`` teacher samples each, every
   candidate judged. Ideal: max(2, ceil(calls / 256)) x 0.4 s; CPU per candidate.
9. ``scoring``: teacher-forced scoring of ``--scoring-samples`` student samples (``top_logprobs``
   20): one completion a sample, ideal = ceil(N / 256) x 0.4 s. (Whether a small scoring job
   overtakes a bulk job: ``python -m bench.scoring_latency``.)

Settings reach the subprocesses through the environment (``DISTILLERY_WORKER_CONCURRENCY``,
``DISTILLERY_LABELING_CHUNK_SIZE``, ``DISTILLERY_TEACHER__MAX_CONCURRENCY`` ...): see ``--help``.
Numbers depend on the machine; compare ratios within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import random
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import psutil

from app import migrate

PG = os.environ.get("DISTILLERY_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
ROOT = Path(__file__).resolve().parents[1]
MODEL = "bench-teacher"
LIMIT = 256  # the emulator's sequences in flight (vLLM's max_num_seqs)
LATENCY_S = 0.4  # the emulator's time per request
TERMINAL = ("succeeded", "failed", "cancelled")
PY = sys.executable


# --- processes --------------------------------------------------------------------------------


class Proc:
    """A subprocess we started: its log file, CPU seconds, and a stop by pid."""

    def __init__(
        self, name: str, argv: list[str], env: Mapping[str, str], log_dir: Path, *, pipe: bool
    ) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.log = self.log_path.open("wb")
        self.popen = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=dict(env),
            stdout=subprocess.PIPE if pipe else self.log,
            stderr=self.log,
            text=pipe,
        )
        self.ps = psutil.Process(self.popen.pid)

    def cpu_s(self) -> float:
        """User + system seconds of the process and its children (`worker --processes N`): the
        live ones, and those it reaped (restarted ones)."""
        times = self.ps.cpu_times()
        total = times.user + times.system + times.children_user + times.children_system
        for child in self.ps.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child_times = child.cpu_times()
                total += child_times.user + child_times.system
        return total

    def rss(self) -> int:
        """Resident memory of the process and its live children, summed."""
        total = int(self.ps.memory_info().rss)
        for child in self.ps.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += int(child.memory_info().rss)
        return total

    def log_text(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def ready_line(self, timeout_s: float = 30.0) -> str:
        """The first stdout line (the emulator's ``READY <port>``)."""
        assert self.popen.stdout is not None
        readable, _, _ = select.select([self.popen.stdout], [], [], timeout_s)
        if not readable:
            raise RuntimeError(f"{self.name} did not start:\n{self.log_text()[-2000:]}")
        return str(self.popen.stdout.readline())

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM, then SIGKILL after `timeout_s`; only this pid."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        self.log.close()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy (all cores, every process, the kernel)."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def postgres_cpu_s() -> float:
    """CPU seconds of Postgres: its running processes, plus the backends that ended (counted in
    the postmaster's children times once reaped)."""
    total = 0.0
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] in ("postgres", "postmaster"):
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system + times.children_user + times.children_system
    return total


class RssSampler:
    """Peak RSS of some processes, sampled every 50 ms in a thread; `mark()` starts a window."""

    def __init__(self, procs: dict[str, Proc]) -> None:
        self.procs = procs
        self.peak: dict[str, int] = dict.fromkeys(procs, 0)
        self.window: dict[str, int] = dict.fromkeys(procs, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def mark(self) -> None:
        self.window = dict.fromkeys(self.procs, 0)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, proc in self.procs.items():
                with contextlib.suppress(psutil.Error):
                    rss = proc.rss()
                    self.peak[name] = max(self.peak[name], rss)
                    self.window[name] = max(self.window[name], rss)
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


# --- the service under test -------------------------------------------------------------------


@dataclass
class Stack:
    """Database, emulator, API and worker of one scenario; `with Stack(...)` cleans up."""

    name: str
    log_dir: Path
    worker_env: dict[str, str] = field(default_factory=dict)
    emulator_args: tuple[str, ...] = ()
    api_env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, Proc] = field(default_factory=dict)

    @property
    def db(self) -> str:
        return f"distillery_bench_service_{self.name}"

    @property
    def url(self) -> str:
        return PG.replace("postgresql://", "postgresql+asyncpg://") + f"/{self.db}"

    def __enter__(self) -> Stack:
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self) -> None:
        asyncio.run(_admin(f"DROP DATABASE IF EXISTS {self.db} WITH (FORCE)",
                           f"CREATE DATABASE {self.db}"))  # fmt: skip
        migrate.upgrade(self.url)
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLERY_")}
        emulator = self._spawn(
            "emulator",
            [PY, "-m", "bench.emulator", "--port", "0", "--model", MODEL,
             "--base-latency", str(LATENCY_S), "--per-token", "0",
             "--max-in-flight", str(LIMIT), *self.emulator_args],
            base_env,
            pipe=True,
        )  # fmt: skip
        line = emulator.ready_line()
        if not line.startswith("READY "):
            raise RuntimeError(f"emulator: {line!r}\n{emulator.log_text()}")
        self.emulator_url = f"http://127.0.0.1:{int(line.split()[1])}"
        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        self._spawn(
            "api",
            [PY, "-m", "app.cli", "serve", "--no-worker", "--no-migrate", "--port", str(port),
             "--database-url", self.url],
            {**base_env, **self.worker_env, **self.api_env, "DISTILLERY_EMBEDDED_WORKER": "false"},
        )  # fmt: skip
        self.client = httpx.Client(base_url=self.api_url, timeout=120)
        _wait(lambda: self.client.get("/readyz").status_code == 200, 60, "api", self.procs["api"])
        worker_env = {
            **base_env,
            "DISTILLERY_TEACHER__BACKEND": "openai",
            "DISTILLERY_TEACHER__BASE_URL": f"{self.emulator_url}/v1",
            "DISTILLERY_TEACHER__MODEL": MODEL,
            "DISTILLERY_TEACHER__MAX_CONCURRENCY": str(LIMIT),
            **self.worker_env,
        }
        worker = self._spawn("worker", [PY, "-m", "app.cli", "worker", "--database-url", self.url],
                             worker_env)  # fmt: skip
        _wait(lambda: " started: kinds " in worker.log_text(), 60, "worker", worker)
        self.sampler = RssSampler(self.procs)

    def _spawn(
        self, name: str, argv: list[str], env: Mapping[str, str], pipe: bool = False
    ) -> Proc:
        proc = Proc(name, argv, env, self.log_dir, pipe=pipe)
        self.procs[name] = proc
        return proc

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(AttributeError):
            self.sampler.stop()
        with contextlib.suppress(AttributeError):
            self.client.close()
        for name in ("worker", "api", "emulator"):  # the worker first: it holds leases
            if name in self.procs:
                try:
                    self.procs[name].stop()
                except Exception as error:  # keep stopping the others
                    print(f"stopping {name} failed: {error!r}", file=sys.stderr)
        asyncio.run(_admin(f"DROP DATABASE IF EXISTS {self.db} WITH (FORCE)"))

    # -- driving it --

    def post(self, path: str, **kw: Any) -> Any:
        response = self.client.post(path, **kw)
        if response.status_code >= 300:
            raise RuntimeError(f"POST {path}: {response.status_code} {response.text[:500]}")
        return response.json()

    def get(self, path: str) -> Any:
        response = self.client.get(path)
        response.raise_for_status()
        return response.json()

    def emulator_stats(self, reset: bool = False) -> dict[str, Any]:
        if reset:
            return httpx.post(f"{self.emulator_url}/stats/reset").raise_for_status().json()
        return httpx.get(f"{self.emulator_url}/stats").raise_for_status().json()

    def upload(self, dataset_id: str, rows: list[dict[str, Any]]) -> float:
        body = b"".join(orjson.dumps(row) + b"\n" for row in rows)
        start = time.perf_counter()
        result = self.post(f"/v1/datasets/{dataset_id}/seeds", content=body,
                           headers={"content-type": "application/x-ndjson"})  # fmt: skip
        if result["inserted"] != len(rows):
            raise RuntimeError(f"upload stored {result} of {len(rows)}")
        return time.perf_counter() - start

    def run_job(self, request: dict[str, Any], timeout_s: float = 900.0) -> JobRun:
        """Create the job, poll it every 50 ms until it ends; CPU and emulator in that window."""
        self.emulator_stats(reset=True)
        self.sampler.mark()
        cpu0 = {name: proc.cpu_s() for name, proc in self.procs.items()}
        pg0, busy0, own0 = postgres_cpu_s(), machine_busy_s(), time.process_time()
        start = time.perf_counter()
        job = self.post("/v1/jobs", json=request)
        deadline = start + timeout_s
        while job["status"] not in TERMINAL:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"job still {job['status']} after {timeout_s}s: {job}")
            time.sleep(0.05)
            job = self.get(f"/v1/jobs/{job['id']}")
        wall = time.perf_counter() - start
        cpu = {name: proc.cpu_s() - cpu0[name] for name, proc in self.procs.items()}
        pg = postgres_cpu_s() - pg0
        others = machine_busy_s() - busy0 - pg - sum(cpu.values()) - (time.process_time() - own0)
        stats = self.emulator_stats()
        report = self.get(f"/v1/jobs/{job['id']}/report")
        return JobRun(
            job, report, wall, cpu, pg, max(0.0, others), stats, dict(self.sampler.window)
        )


@dataclass
class JobRun:
    job: dict[str, Any]
    report: dict[str, Any]
    wall_s: float  # job creation (POST) to the poll that saw it end
    cpu_s: dict[str, float]
    postgres_cpu_s: float
    other_cpu_s: float  # everything else the machine ran meanwhile (other users: noise)
    emulator: dict[str, Any]
    peak_rss: dict[str, int]

    @property
    def run_s(self) -> float:
        """The job's own started_at -> finished_at (first claim to last completion)."""
        started = dt.datetime.fromisoformat(self.job["started_at"])
        finished = dt.datetime.fromisoformat(self.job["finished_at"])
        return (finished - started).total_seconds()

    @property
    def in_flight_area(self) -> float:
        """Request-seconds the emulator saw in flight (mean in flight x its busy window)."""
        return float(self.emulator["mean_in_flight"] * self.emulator["window_s"])

    @property
    def calls(self) -> int:
        return int(self.emulator["requests"])


async def _admin(*statements: str) -> None:
    conn = await asyncpg.connect(f"{PG}/postgres")
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def _wait(ok: Any, timeout_s: float, what: str, proc: Proc) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            code = proc.popen.returncode
            raise RuntimeError(f"{what} exited ({code}):\n{proc.log_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if ok():
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready after {timeout_s}s:\n{proc.log_text()[-3000:]}")


# --- the bare client (what "the teacher call" costs) ------------------------------------------


def labeling_messages(instruction: str) -> list[dict[str, str]]:
    """What the labeling method sends for one seed without a skill."""
    from workers.methods.common import answer_messages
    from workers.prompts import skill_system_prompt

    return answer_messages(skill_system_prompt(None), instruction, "")


def bare_main(n: int, base_url: str, concurrency: int) -> None:
    """`--bare N`: N labeling-shaped requests through OpenAITeacher alone; prints JSON."""
    from workers.teachers.base import SamplingParams, TeacherRequest
    from workers.teachers.openai import OpenAITeacher

    sampling = SamplingParams(n=1, temperature=0.7, top_p=1.0, max_tokens=256, seed=None)
    requests = [
        TeacherRequest(messages=labeling_messages(seed_instruction(i)), sampling=sampling,
                       request_id=str(i))
        for i in range(n)
    ]  # fmt: skip

    async def go() -> tuple[float, float, int]:
        teacher = OpenAITeacher(base_url=base_url, model=MODEL, max_concurrency=concurrency)
        try:
            cpu, start = time.process_time(), time.perf_counter()
            results = await teacher.generate(requests)
            return (
                time.perf_counter() - start,
                time.process_time() - cpu,
                sum(1 for r in results if r.error is not None),
            )
        finally:
            await teacher.aclose()

    wall, cpu, errors = asyncio.run(go())
    print(json.dumps({"wall_s": wall, "cpu_s": cpu, "errors": errors}))


def bare_client(stack: Stack, n: int) -> dict[str, Any]:
    """Run `--bare` against the stack's emulator (the worker idles meanwhile)."""
    stack.emulator_stats(reset=True)
    out = subprocess.run(
        [PY, "-m", "bench.service", "--bare", str(n), "--base-url", f"{stack.emulator_url}/v1"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    result = json.loads(out.stdout.strip().splitlines()[-1])
    stats = stack.emulator_stats()
    ideal = math.ceil(n / LIMIT) * LATENCY_S
    result.update(
        n=n,
        ratio=result["wall_s"] / ideal,
        in_flight=stats["mean_in_flight"] * stats["window_s"] / result["wall_s"] / LIMIT,
        cpu_ms_per_call=result["cpu_s"] / n * 1000,
    )
    return result


# --- scenario 1: labeling ---------------------------------------------------------------------


def seed_instruction(i: int) -> str:
    return f"Explain step {i} of the procedure to a curious student, in two short paragraphs."


def labeling(args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    n = args.n
    env = worker_settings(args)
    with Stack("labeling", log_dir, worker_env=env) as stack:
        dataset = stack.post("/v1/datasets", json={"name": "bench-labeling"})["id"]
        upload_s = stack.upload(dataset, [{"instruction": seed_instruction(i)} for i in range(n)])
        upload_rss = stack.sampler.peak["api"]
        teacher: dict[str, Any] = {"max_tokens": 256}
        if args.top_logprobs is not None:  # soft targets: what capturing them costs
            teacher["top_logprobs"] = args.top_logprobs
        run = stack.run_job({"dataset_id": dataset, "kind": "labeling", "teacher": teacher})
        bare = bare_client(stack, n) if args.bare_baseline else None
    progress = run.job["progress"]
    if run.job["status"] != "succeeded" or progress["accepted"] != n:
        print(f"!! labeling job ended {run.job['status']} with {progress}", file=sys.stderr)
    result = job_numbers(run, math.ceil(n / LIMIT) * LATENCY_S, n, bare)
    result.update(
        scenario="labeling",
        n=n,
        top_logprobs=args.top_logprobs,
        settings=env,
        upload_s=upload_s,
        upload_rows_per_s=n / upload_s,
        api_peak_rss_upload_mb=upload_rss / 1e6,
        progress=progress,
        bare=bare,
    )
    return result


def worker_settings(args: argparse.Namespace) -> dict[str, str]:
    return {
        "DISTILLERY_WORKER_CONCURRENCY": str(args.worker_concurrency),
        "DISTILLERY_LABELING_CHUNK_SIZE": str(args.chunk_size),
        "DISTILLERY_TEACHER__MAX_CONCURRENCY": str(args.teacher_concurrency),
        **dict(kv.split("=", 1) for kv in args.env),
    }


def job_numbers(
    run: JobRun, ideal_s: float, examples: int, bare: dict[str, Any] | None
) -> dict[str, Any]:
    """The ratios every job scenario prints."""
    worker_cpu = run.cpu_s["worker"]
    out = {
        "ideal_s": ideal_s,
        "wall_s": run.wall_s,
        "run_s": run.run_s,
        "ratio_wall": run.wall_s / ideal_s,
        "ratio_run": run.run_s / ideal_s,
        "in_flight_run": run.in_flight_area / run.run_s / LIMIT,
        "in_flight_busy": run.emulator["mean_in_flight"] / LIMIT,
        "calls": run.calls,
        "worker_cpu_s": worker_cpu,
        "worker_cpu_ms_per_example": worker_cpu / examples * 1000,
        "api_cpu_s": run.cpu_s["api"],
        "emulator_cpu_s": run.cpu_s["emulator"],
        "postgres_cpu_s": run.postgres_cpu_s,
        "other_cpu_s": run.other_cpu_s,
        "cores": psutil.cpu_count(),
        "worker_peak_rss_mb": run.peak_rss["worker"] / 1e6,
        "api_peak_rss_mb": run.peak_rss["api"] / 1e6,
        "emulator_status": run.emulator["status"],
    }
    if bare is not None:
        net = worker_cpu - bare["cpu_ms_per_call"] / 1000 * run.calls
        out["worker_cpu_ms_per_example_net"] = net / examples * 1000
    return out


# --- scenario 2: expansion --------------------------------------------------------------------


def expansion(
    args: argparse.Namespace, log_dir: Path, bare: dict[str, Any] | None
) -> dict[str, Any]:
    from bench.emulator import realistic_instruction

    target = args.target
    params = {
        "target": target,
        "calls_per_round": args.calls_per_round,
        "parallel_rounds": args.parallel_rounds,
        "candidates_per_call": args.candidates_per_call,
    }
    env = worker_settings(args)
    env["DISTILLERY_WORKER_CONCURRENCY"] = str(max(args.worker_concurrency, args.parallel_rounds))
    emulator_args: tuple[str, ...] = ("--realistic",) if args.realistic else ()
    if args.realistic and args.dup_fraction:
        emulator_args += ("--realistic-dup-fraction", str(args.dup_fraction))
    rng = random.Random(175)
    seeds = [
        {"instruction": realistic_instruction(rng), "output": "A short, correct answer."}
        for _ in range(args.seeds)
    ]
    with Stack("expansion", log_dir, worker_env=env, emulator_args=emulator_args) as stack:
        dataset = stack.post("/v1/datasets", json={"name": "bench-expansion"})["id"]
        stack.upload(dataset, seeds)
        skill = stack.post("/v1/skills", json={
            "name": "bench", "description": "answer questions about made-up words in a sentence",
        })["id"]  # fmt: skip
        run = stack.run_job({"dataset_id": dataset, "kind": "expansion", "skill_id": skill,
                             "params": params, "teacher": {"max_tokens": 512}})  # fmt: skip
        rounds = asyncio.run(_round_summaries(stack, run.job["id"]))
        if bare is None and args.bare_baseline:
            bare = bare_client(stack, min(20 * LIMIT, max(LIMIT, run.calls)))
    accepted = run.job["progress"]["accepted"]
    proposals = sum(args.calls_per_round for r in rounds if "proposed" in r)
    answers = sum(int(r.get("answered", 0)) for r in rounds)
    minimum = math.ceil(target / args.candidates_per_call) + target
    ideal_s = max(2, math.ceil(run.calls / LIMIT)) * LATENCY_S
    if run.job["status"] != "succeeded" or accepted != target:
        print(f"!! expansion job ended {run.job['status']} with {run.job['progress']}",
              file=sys.stderr)  # fmt: skip
    result = job_numbers(run, ideal_s, max(accepted, 1), bare)
    result.update(
        scenario="expansion",
        n=target,
        params=params,
        settings=env,
        realistic=args.realistic,
        accepted=accepted,
        rounds=len(rounds),
        proposal_calls=proposals,
        answer_calls=answers,
        minimum_calls=minimum,
        calls_over_minimum=run.calls / minimum,
        ideal_minimum_s=math.ceil(minimum / LIMIT) * LATENCY_S,
        ratio_vs_minimum=run.wall_s / (math.ceil(minimum / LIMIT) * LATENCY_S),
        rejected_by_reason=run.report["rejected_by_reason"],
        candidates=run.report["candidates"],
        over_target_share=run.report["rejected_by_reason"].get("over_target", 0)
        / max(run.report["candidates"], 1),
        wasted_tokens=run.report.get("wasted_tokens"),
        wasted_token_share=run.report.get("wasted_token_share"),
        bare=bare,
    )
    return result


async def _round_summaries(stack: Stack, job_id: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(f"{PG}/{stack.db}")
    try:
        rows = await conn.fetch(
            "SELECT result FROM tasks WHERE job_id = $1 AND status = 'succeeded'",
            uuid.UUID(job_id),
        )
    finally:
        await conn.close()
    return [json.loads(r["result"]) if isinstance(r["result"], str) else dict(r["result"] or {})
            for r in rows]  # fmt: skip


# --- scenario 6: dialogue ---------------------------------------------------------------------


def dialogue(
    args: argparse.Namespace, log_dir: Path, bare: dict[str, Any] | None
) -> dict[str, Any]:
    n, turns = args.conversations, args.turns
    env = worker_settings(args)
    with Stack("dialogue", log_dir, worker_env=env) as stack:
        dataset = stack.post("/v1/datasets", json={"name": "bench-dialogue"})["id"]
        stack.upload(dataset, [{"instruction": seed_instruction(i)} for i in range(n)])
        request = {"dataset_id": dataset, "kind": "dialogue", "params": {"turns": turns},
                   "teacher": {"max_tokens": 256}}  # fmt: skip
        run = stack.run_job(request)
        if bare is None and args.bare_baseline:
            bare = bare_client(stack, min(20 * LIMIT, max(LIMIT, run.calls)))
    chain = 2 * turns - 1  # calls of one conversation, one after the other
    minimum = n * chain
    ideal_s = max(chain, math.ceil(run.calls / LIMIT)) * LATENCY_S
    progress = run.job["progress"]
    report = run.report.get("dialogue") or {}
    if run.job["status"] != "succeeded" or progress["completed"] != n:
        print(f"!! dialogue job ended {run.job['status']} with {progress}", file=sys.stderr)
    result = job_numbers(run, ideal_s, max(progress["accepted"], 1), bare)
    result.update(
        scenario="dialogue",
        n=n,
        turns=turns,
        settings=env,
        accepted=progress["accepted"],
        mean_turns=report.get("mean_turns"),
        minimum_calls=minimum,
        calls_over_minimum=run.calls / minimum,
        cut_by_reason=report.get("cut_by_reason", {}),
        rejected_by_reason=run.report["rejected_by_reason"],
        progress=progress,
        bare=bare,
    )
    return result


# --- scenario 7: evol -------------------------------------------------------------------------


def evol(args: argparse.Namespace, log_dir: Path, bare: dict[str, Any] | None) -> dict[str, Any]:
    from bench.emulator import realistic_instruction

    n, generations = args.lineages, args.generations
    env = worker_settings(args)
    rng = random.Random(1000)
    seeds = [{"instruction": realistic_instruction(rng)} for _ in range(n)]
    with Stack("evol", log_dir, worker_env=env, emulator_args=("--realistic",)) as stack:
        dataset = stack.post("/v1/datasets", json={"name": "bench-evol"})["id"]
        stack.upload(dataset, seeds)
        params = {"generations": generations}
        request = {"dataset_id": dataset, "kind": "evol", "params": params,
                   "teacher": {"max_tokens": 256}}  # fmt: skip
        run = stack.run_job(request)
        if bare is None and args.bare_baseline:
            bare = bare_client(stack, min(20 * LIMIT, max(LIMIT, run.calls)))
    chain = 2 * generations  # a lineage's batches, one after the other
    minimum = n * generations * 3
    ideal_s = max(chain, math.ceil(run.calls / LIMIT)) * LATENCY_S
    progress = run.job["progress"]
    report = run.report.get("evol") or {}
    if run.job["status"] != "succeeded" or progress["completed"] != n * generations:
        print(f"!! evol job ended {run.job['status']} with {progress}", file=sys.stderr)
    result = job_numbers(run, ideal_s, max(progress["completed"], 1), bare)
    result.update(
        scenario="evol",
        n=n,
        generations=generations,
        settings=env,
        accepted=progress["accepted"],
        minimum_calls=minimum,
        calls_over_minimum=run.calls / minimum,
        per_generation=[
            {k: g[k] for k in ("generation", "evolved", "accepted", "eliminated", "rejected")}
            for g in report.get("generations", [])
        ],
        rejected_by_reason=run.report["rejected_by_reason"],
        progress=progress,
        bare=bare,
    )
    return result


# --- scenario 8: feedback (bench/feedback.py) ---------------------------------------------------


def feedback(args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    """The teacher as judge: see bench/feedback.py (also runnable alone)."""
    from bench import feedback as feedback_bench

    return feedback_bench.feedback(args, log_dir)


# --- scenario 9: scoring ----------------------------------------------------------------------


def scoring(args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    """Teacher-forced scoring of N student samples (``top_logprobs`` 20): one completion call a
    sample (plus two ``/tokenize`` calls that do not wait), so ideal = ceil(N / 256) x 0.4 s.
    How a small scoring job overtakes a bulk job (priority): ``python -m bench.scoring_latency``."""
    from bench.scoring_latency import student_sample

    n = args.scoring_samples
    env = worker_settings(args)
    with Stack("scoring", log_dir, worker_env=env) as stack:
        dataset = stack.post("/v1/datasets", json={"name": "bench-scoring"})["id"]
        samples = [student_sample(i) for i in range(n)]
        for i, sample in enumerate(samples):  # the vocabulary cycles: make every prompt new
            sample["instruction"] += f" ({i})"
        stack.upload(dataset, samples)
        params = {"top_logprobs": 20, "chunk_size": args.scoring_chunk_size}
        run = stack.run_job({"dataset_id": dataset, "kind": "scoring", "params": params})
    progress = run.job["progress"]
    if run.job["status"] != "succeeded" or progress["completed"] != n:
        print(f"!! scoring job ended {run.job['status']} with {progress}", file=sys.stderr)
    result = job_numbers(run, math.ceil(n / LIMIT) * LATENCY_S, max(progress["completed"], 1), None)
    result.update(scenario="scoring", n=n, params=params, settings=env, progress=progress)
    return result


# --- scenario 5: API latency under load -------------------------------------------------------


def loadgen_main(
    url: str, rate: float, duration_s: float, warmup_s: float, timeout_s: float = 10.0
) -> None:
    """`--loadgen URL`: open-loop GETs at `rate`/s for `duration_s` (after a warm-up); JSON out."""
    import aiohttp

    async def go() -> dict[str, Any]:
        total = int((warmup_s + duration_s) * rate)
        skip = int(warmup_s * rate)
        from_due: list[float] = [0.0] * total
        from_send: list[float] = [0.0] * total
        status_of: list[int] = [0] * total
        connector = aiohttp.TCPConnector(limit=512)
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            loop = asyncio.get_running_loop()
            start = loop.time() + 0.05

            async def one(i: int, due: float) -> None:
                sent = loop.time()
                try:
                    async with session.get(url) as response:
                        await response.read()
                        status = response.status
                except (aiohttp.ClientError, TimeoutError):
                    status = 0  # no answer within timeout_s (or the connection failed)
                done = loop.time()
                from_due[i], from_send[i], status_of[i] = done - due, done - sent, status

            tasks = []
            cpu0 = time.process_time()
            late = 0.0
            for i in range(total):
                due = start + i / rate
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    late = max(late, -delay)
                tasks.append(asyncio.create_task(one(i, due)))
            await asyncio.gather(*tasks)
            cpu = time.process_time() - cpu0
        due_ms = sorted(x * 1000 for x in from_due[skip:])
        send_ms = sorted(x * 1000 for x in from_send[skip:])
        statuses: dict[int, int] = {}
        for status in status_of[skip:]:
            statuses[status] = statuses.get(status, 0) + 1
        return {
            "requests": len(due_ms),
            "answered": sum(1 for status in status_of if status),  # with the warm-up
            "rate": rate,
            "statuses": statuses,  # 0: no answer within timeout_s
            "p50_ms": _pct(due_ms, 50),
            "p90_ms": _pct(due_ms, 90),
            "p99_ms": _pct(due_ms, 99),
            "max_ms": due_ms[-1],
            "mean_ms": statistics.fmean(due_ms),
            "p50_send_ms": _pct(send_ms, 50),
            "p99_send_ms": _pct(send_ms, 99),
            "client_cpu_s": cpu,
            "client_max_late_ms": late * 1000,
        }

    print(json.dumps(asyncio.run(go())))


def _pct(sorted_values: list[float], p: float) -> float:
    index = min(len(sorted_values) - 1, max(0, math.ceil(p / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def run_load(stack: Stack, path: str, rate: float, duration_s: float) -> dict[str, Any]:
    cpu0 = {name: proc.cpu_s() for name, proc in stack.procs.items()}
    pg0, busy0 = postgres_cpu_s(), machine_busy_s()
    out = subprocess.run(
        [PY, "-m", "bench.service", "--loadgen", stack.api_url + path, "--rate", str(rate),
         "--duration", str(duration_s)],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    cpu = {name: proc.cpu_s() - cpu0[name] for name, proc in stack.procs.items()}
    ours = sum(cpu.values()) + postgres_cpu_s() - pg0 + result["client_cpu_s"]
    result["api_cpu_s"] = cpu["api"]
    result["api_cpu_ms_per_request"] = cpu["api"] / max(1, result["answered"]) * 1000
    result["other_cpu_s"] = max(0.0, machine_busy_s() - busy0 - ours)
    return result


def api(args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    n = args.api_n
    env = worker_settings(args)
    # the per-tenant rate limit (DISTILLERY_RATE_LIMIT_PER_MINUTE, 6000) would answer most of
    # 500/s from one caller with 429: off here, this measures what serving a request costs
    api_env = {"DISTILLERY_RATE_LIMIT_PER_MINUTE": str(args.api_rate_limit)}
    with Stack("api", log_dir, worker_env=env, api_env=api_env) as stack:
        dataset = stack.post("/v1/datasets", json={"name": "bench-api"})["id"]
        stack.upload(dataset, [{"instruction": seed_instruction(i)} for i in range(n)])
        # a finished job to read while the service is idle
        idle = None
        if args.api_idle_seconds > 0:
            small = stack.post("/v1/datasets", json={"name": "bench-api-idle"})["id"]
            stack.upload(small, [{"instruction": seed_instruction(i)} for i in range(LIMIT)])
            done = stack.run_job({"dataset_id": small, "kind": "labeling"})
            idle = run_load(stack, f"/v1/jobs/{done.job['id']}", args.rate, args.api_idle_seconds)
        stack.emulator_stats(reset=True)
        start = time.perf_counter()
        job = stack.post("/v1/jobs", json={"dataset_id": dataset, "kind": "labeling",
                                           "teacher": {"max_tokens": 256}})  # fmt: skip
        job_path = f"/v1/jobs/{job['id']}"
        while stack.get(job_path)["status"] == "queued":
            time.sleep(0.05)
        worker_cpu0 = stack.procs["worker"].cpu_s()
        busy = run_load(stack, job_path, args.rate, args.api_seconds)
        busy["worker_cpu_s"] = stack.procs["worker"].cpu_s() - worker_cpu0
        status_after = stack.get(job_path)["status"]
        while (final := stack.get(job_path))["status"] not in TERMINAL:
            time.sleep(0.1)
        wall = time.perf_counter() - start
        stats = stack.emulator_stats()
        peak = dict(stack.sampler.peak)
    return {
        "scenario": "api",
        "n": n,
        "settings": env,
        "idle": idle,
        "busy": busy,
        "job_running_through_load": status_after == "running",
        "job_status": final["status"],
        "job_ratio_wall": wall / (math.ceil(n / LIMIT) * LATENCY_S),
        "job_in_flight_busy": stats["mean_in_flight"] / LIMIT,
        "api_peak_rss_mb": peak["api"] / 1e6,
    }


# --- scenario 3: export (bench/export.py) ------------------------------------------------------


def export(args: argparse.Namespace) -> dict[str, Any]:
    try:
        out = subprocess.run([PY, "-m", "bench.export", "--rows", str(args.export_rows)],
                             cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    finally:  # bench/export.py leaves its database behind
        asyncio.run(_admin("DROP DATABASE IF EXISTS distillery_bench_export WITH (FORCE)"))
    if out.returncode != 0:
        raise RuntimeError(f"bench.export failed:\n{out.stderr[-3000:]}")
    return {"scenario": "export", "rows": args.export_rows, "output": out.stdout}


# --- printing ---------------------------------------------------------------------------------


def print_job(result: dict[str, Any]) -> None:
    what = result["scenario"]
    rows: list[tuple[str, str, str]] = [
        ("ideal s (ceil(calls/256) x 0.4)", f"{result['ideal_s']:.1f}", ""),
        ("wall s (POST -> seen done)", f"{result['wall_s']:.2f}", ""),
        ("wall / ideal", f"{result['ratio_wall']:.3f}", "<= 1.10"),
        ("started_at->finished_at / ideal", f"{result['ratio_run']:.3f}", "<= 1.10"),
        ("mean in flight / 256 (job run)", f"{result['in_flight_run']:.3f}", ">= 0.90"),
        ("mean in flight / 256 (busy)", f"{result['in_flight_busy']:.3f}", ""),
        ("teacher calls", f"{result['calls']:,}", ""),
        ("worker CPU s", f"{result['worker_cpu_s']:.2f}", ""),
        ("worker CPU ms / example", f"{result['worker_cpu_ms_per_example']:.3f}", ""),
    ]
    if "worker_cpu_ms_per_example_net" in result:
        net = result["worker_cpu_ms_per_example_net"]
        rows.append(("  ... net of the bare client", f"{net:.3f}", "<= 1.0"))
    rows += [
        ("API / emulator / postgres CPU s",
         f"{result['api_cpu_s']:.1f} / {result['emulator_cpu_s']:.1f} / "
         f"{result['postgres_cpu_s']:.1f}", ""),
        ("other processes' CPU s (noise; cores x wall)",
         f"{result['other_cpu_s']:.1f} ({result['cores']} x {result['wall_s']:.1f})", ""),
        ("worker / API peak RSS MB",
         f"{result['worker_peak_rss_mb']:.0f} / {result['api_peak_rss_mb']:.0f}", ""),
    ]  # fmt: skip
    if what == "labeling":
        rows += [
            ("upload s (rows/s)", f"{result['upload_s']:.2f} ({result['upload_rows_per_s']:,.0f})",
             ""),
            ("API peak RSS MB during upload", f"{result['api_peak_rss_upload_mb']:.0f}", ""),
        ]  # fmt: skip
    elif what == "evol":
        rows += [
            ("steps (lineages x generations); accepted",
             f"{result['n'] * result['generations']:,}; {result['accepted']:,}", ""),
            ("calls / method minimum", f"{result['calls_over_minimum']:.3f}", ""),
            ("per generation", json.dumps(result["per_generation"]), ""),
            ("rejected by reason", json.dumps(result["rejected_by_reason"]), ""),
        ]  # fmt: skip
    elif what in ("scoring", "feedback"):
        rows.append(("job status, progress", f"{result['progress']}", ""))
    elif what == "dialogue":
        rows += [
            ("conversations accepted; mean turns",
             f"{result['accepted']:,}; {result['mean_turns']}", ""),
            ("calls / method minimum", f"{result['calls_over_minimum']:.3f}", ""),
            ("cut by reason", json.dumps(result["cut_by_reason"]), ""),
            ("rejected by reason", json.dumps(result["rejected_by_reason"]), ""),
        ]  # fmt: skip
    else:
        rows += [
            ("rounds; proposal + answer calls",
             f"{result['rounds']}; {result['proposal_calls']} + {result['answer_calls']}", ""),
            ("calls / method minimum", f"{result['calls_over_minimum']:.3f}", ""),
            ("wall / ideal at the minimum", f"{result['ratio_vs_minimum']:.3f}", ""),
            ("over_target / candidates", f"{result['over_target_share']:.3f}", ""),
            ("wasted tokens (share of all)",
             f"{result['wasted_tokens']} ({result['wasted_token_share']})", "<= 0.10"),
            ("rejected by reason", json.dumps(result["rejected_by_reason"]), ""),
        ]  # fmt: skip
    if result.get("bare"):
        bare = result["bare"]
        rows.append(("bare client: ratio, in flight, CPU ms/call",
                     f"{bare['ratio']:.3f}, {bare['in_flight']:.3f}, {bare['cpu_ms_per_call']:.3f}",
                     ""))  # fmt: skip
    title = f"{what}: N={result['n']:,} settings {compact(result['settings'])}"
    if what == "expansion":
        title += f" params {result['params']} realistic={result['realistic']}"
    print_table(title, rows)


def compact(env: Mapping[str, str]) -> str:
    return " ".join(f"{k.removeprefix('DISTILLERY_')}={v}" for k, v in env.items())


def print_api(result: dict[str, Any]) -> None:
    rows = []
    for label, load in (("idle", result["idle"]), ("job running", result["busy"])):
        if load is None:
            continue
        rows += [
            (f"{label}: requests @ rate/s", f"{load['requests']:,} @ {load['rate']:g}", ""),
            (f"{label}: p50 / p99 / max ms",
             f"{load['p50_ms']:.1f} / {load['p99_ms']:.1f} / {load['max_ms']:.0f}",
             "p99 < 25" if label != "idle" else ""),
            (f"{label}: p50 / p99 ms from send", f"{load['p50_send_ms']:.1f} / "
             f"{load['p99_send_ms']:.1f}", ""),
            (f"{label}: statuses", json.dumps(load["statuses"]), ""),
            (f"{label}: API CPU ms / request (s), client s",
             f"{load['api_cpu_ms_per_request']:.2f} ({load['api_cpu_s']:.1f}), "
             f"{load['client_cpu_s']:.1f}", ""),
            (f"{label}: other processes' CPU s (noise)", f"{load['other_cpu_s']:.1f}", ""),
        ]  # fmt: skip
    rows += [
        ("job ran through the load", str(result["job_running_through_load"]), "True"),
        ("job wall / ideal (under load)", f"{result['job_ratio_wall']:.3f}", ""),
        ("API peak RSS MB", f"{result['api_peak_rss_mb']:.0f}", ""),
    ]
    print_table(f"api: GET /v1/jobs/{{id}}, labeling job of {result['n']:,} running", rows)


def print_table(title: str, rows: list[tuple[str, str, str]]) -> None:
    print(f"\n== {title}")
    print(f"{'what':<44}{'measured':>30}  target")
    for what, value, target in rows:
        print(f"{what:<44}{value:>30}  {target}")
    sys.stdout.flush()


# --- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.service",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--scenario", default="all",
                        choices=["labeling", "expansion", "api", "export", "dialogue",
                                 "evol", "feedback", "scoring", "all"])  # fmt: skip
    parser.add_argument("--n", type=int, default=10_000, help="labeling: prompts")
    parser.add_argument(
        "--top-logprobs", type=int, default=None, help="labeling: capture top-k soft targets"
    )
    parser.add_argument("--target", type=int, default=5_000, help="expansion: accepted examples")
    parser.add_argument("--conversations", type=int, default=1_000, help="dialogue: conversations")
    parser.add_argument("--turns", type=int, default=4, help="dialogue: assistant turns each")
    parser.add_argument("--lineages", type=int, default=1_000, help="evol: seed instructions")
    parser.add_argument("--generations", type=int, default=3, help="evol: generations")
    parser.add_argument("--prompts", type=int, default=1000, help="feedback: prompts")
    parser.add_argument("--existing", type=int, default=2,
                        help="feedback: uploaded answers per prompt")  # fmt: skip
    parser.add_argument("--samples", type=int, default=2,
                        help="feedback: teacher samples per prompt")  # fmt: skip
    parser.add_argument("--mode", choices=["pointwise", "pairwise"], default="pointwise",
                        help="feedback: judging mode")  # fmt: skip
    parser.add_argument("--min-margin", type=float, default=1.0, help="feedback: pair margin")
    parser.add_argument("--feedback-chunk-size", type=int, default=16,
                        help="feedback: DISTILLERY_FEEDBACK_CHUNK_SIZE")  # fmt: skip
    parser.add_argument("--scoring-samples", type=int, default=5_000,
                        help="scoring: student samples scored")  # fmt: skip
    parser.add_argument("--scoring-chunk-size", type=int, default=64,
                        help="scoring: samples per task")  # fmt: skip
    parser.add_argument("--api-n", type=int, default=16_000,
                        help="api: prompts of the job that runs under the load")  # fmt: skip
    parser.add_argument("--export-rows", type=int, default=200_000)
    # worker settings (through DISTILLERY_* in the worker's and the API's environment)
    parser.add_argument("--worker-concurrency", type=int, default=8,
                        help="DISTILLERY_WORKER_CONCURRENCY (product default 4)")  # fmt: skip
    parser.add_argument("--chunk-size", type=int, default=64,
                        help="DISTILLERY_LABELING_CHUNK_SIZE (product default 64)")  # fmt: skip
    parser.add_argument("--teacher-concurrency", type=int, default=LIMIT,
                        help="DISTILLERY_TEACHER__MAX_CONCURRENCY (default 64)")  # fmt: skip
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="more settings for worker and API, e.g. DISTILLERY_LEASE_SECONDS=60",
    )
    # expansion
    parser.add_argument("--calls-per-round", type=int, default=16)
    parser.add_argument("--parallel-rounds", type=int, default=4)
    parser.add_argument("--candidates-per-call", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=175, help="expansion: seed tasks")
    parser.add_argument(
        "--no-realistic",
        dest="realistic",
        action="store_false",
        help="expansion: the emulator's plain schema filler for proposals",
    )
    parser.add_argument(
        "--dup-fraction",
        type=float,
        default=0.0,
        help="expansion: share of proposed tasks that near-copy earlier ones",
    )
    parser.add_argument(
        "--no-bare-baseline",
        dest="bare_baseline",
        action="store_false",
        help="skip the bare-client run (CPU of the teacher call alone)",
    )
    # api
    parser.add_argument("--rate", type=float, default=500.0, help="api: requests per second")
    parser.add_argument("--api-seconds", type=float, default=20.0)
    parser.add_argument("--api-idle-seconds", type=float, default=5.0)
    parser.add_argument(
        "--api-rate-limit",
        type=int,
        default=0,
        help="api: DISTILLERY_RATE_LIMIT_PER_MINUTE of the API (0: off)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument(
        "--log-dir",
        type=Path,
        default=None,
        help="keep the subprocess logs here (default: a temporary folder)",
    )
    # internal: the helper processes
    parser.add_argument("--bare", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--base-url", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--loadgen", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--duration", type=float, default=20.0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.bare is not None:
        return bare_main(args.bare, args.base_url, args.teacher_concurrency)
    if args.loadgen is not None:
        return loadgen_main(args.loadgen, args.rate, args.duration, warmup_s=1.0)
    scenarios = (
        ["labeling", "expansion", "api", "export"] if args.scenario == "all" else [args.scenario]
    )
    results: list[dict[str, Any]] = []
    with _log_dir(args.log_dir) as log_dir:
        print(f"bench.service {dt.datetime.now().isoformat(timespec='seconds')}, "
              f"{psutil.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.0f} GiB; "
              f"logs in {log_dir}")  # fmt: skip
        bare = None
        for scenario in scenarios:
            start = time.perf_counter()
            if scenario == "labeling":
                result = labeling(args, log_dir)
                bare = result.get("bare")
                print_job(result)
            elif scenario == "expansion":
                result = expansion(args, log_dir, bare)
                print_job(result)
            elif scenario == "dialogue":
                result = dialogue(args, log_dir, bare)
                print_job(result)
            elif scenario == "evol":
                result = evol(args, log_dir, bare)
                print_job(result)
            elif scenario == "feedback":
                from bench.feedback import print_result

                result = feedback(args, log_dir)
                print_result(result)
            elif scenario == "scoring":
                result = scoring(args, log_dir)
                print_job(result)
            elif scenario == "api":
                result = api(args, log_dir)
                print_api(result)
            else:
                result = export(args)
                print(f"\n== export: python -m bench.export --rows {args.export_rows}")
                print(result["output"], end="")
            result["scenario_s"] = time.perf_counter() - start
            print(f"({scenario}: {result['scenario_s']:.0f} s in all)")
            results.append(result)
    print_summary(results)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2, default=str))


def print_summary(results: list[dict[str, Any]]) -> None:
    """One markdown table of the headline numbers (what BENCHMARKS.md records)."""
    print("\n| scenario | measured | target |\n| --- | --- | --- |")
    for r in results:
        if r["scenario"] in ("labeling", "expansion", "dialogue", "evol", "feedback", "scoring"):
            what = f"{r['scenario']} N={r['n']:,}"
            if r["scenario"] == "evol":
                what += f" x {r['generations']} generations"
            net = r.get("worker_cpu_ms_per_example_net")
            cpu = f"{r['worker_cpu_ms_per_example']:.2f} ms" + (
                f" ({net:.2f} net of the HTTP client)" if net is not None else ""
            )
            print(
                f"| {what}: wall / ideal | {r['ratio_wall']:.2f} (run {r['ratio_run']:.2f}) "
                f"| <= 1.10 |"
            )
            print(f"| {what}: mean in flight / 256 | {r['in_flight_run']:.2f} | >= 0.90 |")
            print(f"| {what}: worker CPU / example | {cpu} | <= 1 ms net |")
            print(
                f"| {what}: peak RSS worker / API | {r['worker_peak_rss_mb']:.0f} / "
                f"{r['api_peak_rss_mb']:.0f} MB | |"
            )
        elif r["scenario"] == "api":
            busy = r["busy"]
            print(
                f"| api: GET job p50 / p99 at {busy['rate']:g}/s, job running | "
                f"{busy['p50_ms']:.1f} / {busy['p99_ms']:.1f} ms | p99 < 25 ms |"
            )
            if r["idle"]:
                idle = r["idle"]
                print(
                    f"| api: same, service idle | {idle['p50_ms']:.1f} / {idle['p99_ms']:.1f} ms "
                    f"| |"
                )
    sys.stdout.flush()


@contextlib.contextmanager
def _log_dir(path: Path | None) -> Iterator[Path]:
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp:
        yield Path(tmp)


if __name__ == "__main__":
    main()
