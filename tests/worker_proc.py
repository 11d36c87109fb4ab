"""A trivial method ("echo"), job helpers, and a worker process for crash tests.

``echo`` asks the teacher about every prompt of its task (``payload["items"]``: numbers, turned
into ``item <n>``; or ``payload["prompts"]``; or ``payload["example_ids"]``, the labeling shape),
``params["batch"]`` prompts per teacher call, checking for cancel between calls. A teacher
error is raised (the runner retries or fails the task); prompts containing ``reject`` come back
rejected. ``payload["followups"]`` is handed back as follow-up tasks.

``python -m tests.worker_proc --database-url URL [--lease S] [--delay S] ...`` runs the real
runner with this method and a :class:`tests.scripted_teacher.ScriptedTeacher` until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import uuid
from collections.abc import Sequence
from typing import Any

from app import queue
from app.config import Settings
from app.models import DEFAULT_TENANT_ID, Dataset, Job
from app.state import Database
from tests.dialogue_teacher import DialogueTeacher
from tests.evol_teacher import EvolTeacher
from tests.scripted_teacher import ScriptedTeacher
from tests.selfinstruct_teacher import SelfInstructTeacher
from workers import runner
from workers.methods import METHODS as REAL_METHODS
from workers.methods.base import ExampleOut, MethodContext, TaskInput, TaskOutcome
from workers.teachers.base import SamplingParams, TeacherRequest

KIND = "echo"


async def run(task: TaskInput, ctx: MethodContext) -> TaskOutcome:
    """The echo method (see the module docstring)."""
    payload = task.payload
    if "example_ids" in payload:
        prompts = [row["instruction"] for row in await ctx.fetch_examples(payload["example_ids"])]
    elif "prompts" in payload:
        prompts = list(payload["prompts"])
    else:
        prompts = [f"item {i}" for i in payload["items"]]
    batch = int(task.params.get("batch", 5))
    sampling = SamplingParams(max_tokens=16, temperature=float(task.teacher.get("temperature", 1)))
    outcome = TaskOutcome(followups=list(payload.get("followups", [])))
    for start in range(0, len(prompts), batch):
        await ctx.check_cancel()
        chunk = prompts[start : start + batch]
        requests = [
            TeacherRequest(messages=[{"role": "user", "content": p}], sampling=sampling)
            for p in chunk
        ]
        results = await ctx.teacher.generate(requests)
        outcome.teacher_seconds += max((r.latency_s for r in results), default=0.0)
        for offset, (prompt, result) in enumerate(zip(chunk, results, strict=True)):
            if result.error is not None:
                raise result.error
            text = result.generations[0].text
            rejected = "reject" in prompt
            outcome.examples.append(
                ExampleOut(
                    item_index=start + offset,
                    instruction=prompt,
                    output=text,
                    status="rejected" if rejected else "accepted",
                    reject_reason="too_short" if rejected else None,
                    raw_output=text,
                    usage=result.usage.as_dict(),
                    sampling=sampling.as_dict(),
                    prompt_id="echo",
                    prompt_version="v1",
                    meta={"seq": task.seq},
                )
            )
            outcome.prompt_tokens += result.usage.prompt_tokens
            outcome.completion_tokens += result.usage.completion_tokens
    outcome.completed = len(prompts)
    outcome.summary = {"prompts": len(prompts), "attempt": task.attempt}
    return outcome


METHODS: dict[str, Any] = {**REAL_METHODS, KIND: sys.modules[__name__]}


async def add_dataset(db: Database, name: str | None = None) -> uuid.UUID:
    """A dataset of the default tenant."""
    async with db.transaction() as session:
        dataset = Dataset(
            tenant_id=DEFAULT_TENANT_ID,
            name=name or f"ds-{uuid.uuid4().hex[:8]}",
            description="short tasks",  # expansion jobs without a skill_id need one
        )
        session.add(dataset)
        await session.flush()
        return dataset.id


async def add_job(
    db: Database,
    payloads: Sequence[dict[str, Any]],
    *,
    dataset_id: uuid.UUID | None = None,
    kind: str = KIND,
    params: dict[str, Any] | None = None,
    teacher_model: str | None = None,
    max_attempts: int = 5,
    total: int | None = None,
) -> uuid.UUID:
    """Enqueue a job with one task per payload (a new dataset unless `dataset_id`)."""
    if dataset_id is None:
        dataset_id = await add_dataset(db)
    async with db.transaction() as session:
        job = Job(
            tenant_id=DEFAULT_TENANT_ID,
            dataset_id=dataset_id,
            kind=kind,
            params=params or {},
            teacher={"model": teacher_model, "temperature": 0.7},
            teacher_model=teacher_model,
            status="queued",
            total=total if total is not None else sum(len(p.get("items", ())) for p in payloads),
        )
        await queue.enqueue_job(
            session=session, job=job, payloads=payloads, max_attempts=max_attempts
        )
        return job.id


def item_payloads(n_items: int, per_task: int) -> list[dict[str, Any]]:
    """Payloads numbering items 0..n_items-1, `per_task` to a task."""
    return [
        {"items": list(range(start, min(n_items, start + per_task)))}
        for start in range(0, n_items, per_task)
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="a worker running the echo method")
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--worker-id", default=None)
    parser.add_argument("--lease", type=float, default=2.0)
    parser.add_argument("--heartbeat", type=float, default=0.5)
    parser.add_argument("--poll", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--delay", type=float, default=0.05, help="teacher seconds per call")
    parser.add_argument("--retry-base", type=float, default=0.1)
    parser.add_argument("--model", default="scripted-model")
    parser.add_argument(
        "--teacher",
        choices=("scripted", "selfinstruct", "dialogue", "evol"),
        default="scripted",
        help="selfinstruct: the teacher double for labeling and expansion; dialogue: both "
        "roles of a dialogue job; evol: evolutions, equality checks and answers",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    overrides: dict[str, Any] = {}
    if args.worker_id:
        overrides["worker_id"] = args.worker_id
    settings = Settings(
        database_url=args.database_url,
        lease_seconds=args.lease,
        heartbeat_seconds=args.heartbeat,
        poll_interval_seconds=args.poll,
        worker_concurrency=args.concurrency,
        retry_base_seconds=args.retry_base,
        retry_max_seconds=2.0,
        shutdown_grace_seconds=1.0,
        **overrides,
    )
    teacher: Any
    if args.teacher == "selfinstruct":
        teacher = SelfInstructTeacher(
            args.model, delay=args.delay, seed=hash(args.worker_id) % 1000
        )
    elif args.teacher == "dialogue":
        teacher = DialogueTeacher(args.model, delay=args.delay)
    elif args.teacher == "evol":
        teacher = EvolTeacher(args.model, delay=args.delay, seed=hash(args.worker_id) % 1000)
    else:
        teacher = ScriptedTeacher(args.model, delay=args.delay)
    asyncio.run(runner.run_worker(settings, teacher, methods=METHODS))


if __name__ == "__main__":
    main()
