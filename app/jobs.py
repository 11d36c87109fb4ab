"""Jobs: create (validated params, first tasks planned, one transaction), read, list, cancel."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import and_, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app import benchmarks, datasets, kinds, paging, queue
from app.config import Settings
from app.errors import Conflict, NotFound, RateLimited, ValidationFailed
from app.examples import answers_itself, is_current_child
from app.models import Dataset, Example, Job
from app.schemas import AnyJobCreate, JobHealth, JobRead, Progress

NOTHING_TO_LABEL = "nothing to label: every prompt has an answer (relabel=true answers again)"
NO_PROMPTS = "nothing to label: the dataset has no examples (upload seeds first)"
NO_SEEDS = "expansion needs seed examples in the dataset: upload seeds first"
NOTHING_TO_SCORE = "nothing to score: every example with a response has soft targets (rescore=true scores again)"
_IN_CHUNK = 500


async def create_job(
    *,
    session: AsyncSession,
    tenant_id: uuid.UUID,
    request: AnyJobCreate,
    settings: Settings,
) -> Job:
    """Validate the request, plan the first tasks and enqueue them with the job."""
    params = request.params
    queued = await session.scalar(
        select(func.count())
        .select_from(Job)
        .where(Job.tenant_id == tenant_id, Job.status == "queued")
    )
    if (queued or 0) >= settings.max_queued_jobs_per_tenant:
        raise RateLimited(
            f"{queued} jobs are already queued (at most {settings.max_queued_jobs_per_tenant}); "
            "wait for some to start or cancel them",
            headers={"Retry-After": "30"},
        )
    dataset = await datasets.get_dataset(
        session=session, tenant_id=tenant_id, dataset_id=request.dataset_id
    )
    if request.skill_id is not None:
        await datasets.get_skill(session=session, tenant_id=tenant_id, skill_id=request.skill_id)
    teacher = request.teacher or kinds.TeacherSpec()
    # the benchmarks the job checks against: those named, then the tenant's defaults
    decontaminate = await benchmarks.resolve(
        session=session,
        tenant_id=tenant_id,
        named=params.decontaminate,
        loc=["body", "params", "decontaminate"],
    )
    job = Job(
        tenant_id=tenant_id,
        dataset_id=dataset.id,
        skill_id=request.skill_id,
        kind=request.kind,
        params={
            **params.model_dump(mode="json"),
            "decontaminate": [str(b) for b in decontaminate],
        },
        teacher=teacher.model_dump(mode="json"),
        teacher_model=teacher.model,
        priority=request.priority,
        status="queued",
    )
    if isinstance(params, kinds.LabelingParams):
        ids = await _examples_to_label(session, dataset.id, params)
        chunk = params.chunk_size or settings.labeling_chunk_size
        payloads = [
            {"example_ids": [str(i) for i in ids[start : start + chunk]]}
            for start in range(0, len(ids), chunk)
        ]
        job.total = len(ids)
        if not ids:  # the job succeeds at once (queue.enqueue_job)
            job.stop_reason = NOTHING_TO_LABEL
    elif isinstance(params, kinds.ExpansionParams):
        if request.skill_id is None:
            job.params = {**job.params, "skill_from_dataset": _skill_from_dataset(dataset)}
        await _require_examples(session, dataset.id, NO_SEEDS)
        # one chain of rounds per lane: lane l runs rounds l, l + P, l + 2P ...
        lanes = min(params.parallel_rounds, params.max_rounds)
        payloads = [{"round": lane} for lane in range(lanes)]
        job.total = params.target
    elif isinstance(params, kinds.ScoringParams):
        payloads, job.total = await _plan_scoring(session, dataset.id, params, settings)
        if not payloads:
            job.stop_reason = NOTHING_TO_SCORE
    elif isinstance(params, kinds.FeedbackParams):
        payloads, job.total = await _plan_feedback(session, dataset.id, params, settings)
    else:  # pragma: no cover - kinds.KINDS and this function must name the same kinds
        raise AssertionError(f"no planner for kind {request.kind}")
    await queue.enqueue_job(
        session=session, job=job, payloads=payloads, max_attempts=settings.task_max_attempts
    )
    return job


async def _examples_to_label(
    session: AsyncSession, dataset_id: uuid.UUID, params: kinds.LabelingParams
) -> list[uuid.UUID]:
    """The prompts the job answers, in id order.

    A prompt is a root example (not itself an answer) that is not rejected. Without `relabel`:
    those with no current answer (neither an accepted output of their own nor an accepted
    labeled answer). With `relabel`: every prompt; the new answers replace the current ones at
    commit. An answer's id in `example_ids` stands for its prompt.
    """
    prompt = and_(
        Example.dataset_id == dataset_id,
        Example.source_id.is_(None),
        Example.status != "rejected",
    )
    answer = aliased(Example)
    unanswered = and_(
        ~answers_itself(),
        ~exists().where(answer.source_id == Example.id, is_current_child(answer)),
    )
    if params.example_ids is None:
        stmt = select(Example.id).where(prompt)
        if not params.relabel:
            stmt = stmt.where(unanswered)
        ids = list((await session.scalars(stmt.order_by(Example.id))).all())
        if not ids:
            await _require_examples(session, dataset_id, NO_PROMPTS)
        return ids
    wanted = list(dict.fromkeys(params.example_ids))
    # an answer stands for its prompt
    named: dict[uuid.UUID, uuid.UUID] = {}
    for start in range(0, len(wanted), _IN_CHUNK):
        rows = await session.execute(
            select(Example.id, Example.source_id).where(
                Example.dataset_id == dataset_id, Example.id.in_(wanted[start : start + _IN_CHUNK])
            )
        )
        named.update({row.id: row.source_id or row.id for row in rows})
    prompts = list(dict.fromkeys(named[i] for i in wanted if i in named))
    eligible: set[uuid.UUID] = set()
    for start in range(0, len(prompts), _IN_CHUNK):
        stmt = select(Example.id).where(prompt, Example.id.in_(prompts[start : start + _IN_CHUNK]))
        if not params.relabel:
            stmt = stmt.where(unanswered)
        eligible.update((await session.scalars(stmt)).all())
    refused = [i for i in wanted if named.get(i) not in eligible]
    if refused:
        raise ValidationFailed(
            f"{len(refused)} example_ids are not in the dataset, rejected, or answered already "
            "(pass relabel=true to answer again)",
            details=[
                {"loc": ["body", "params", "example_ids"], "msg": f"not eligible: {m}"}
                for m in refused[:20]
            ],
        )
    return sorted(eligible)


def _skill_from_dataset(dataset: Dataset) -> dict[str, str]:
    """The skill an expansion job without `skill_id` asks for: the dataset's description.

    Stored in the job's params (`skill_from_dataset`), where the worker reads it as the skill
    spec, so the prompt is fixed when the job is created.
    """
    if not dataset.description.strip():
        raise ValidationFailed(
            "expansion needs a skill: pass skill_id, or give the dataset a description",
            details=[
                {"loc": ["body", "skill_id"], "msg": "required: the dataset has no description"}
            ],
        )
    return {"name": dataset.name, "description": dataset.description}


async def _require_examples(session: AsyncSession, dataset_id: uuid.UUID, message: str) -> None:
    """A 409 with `message` unless the dataset holds an example that is not rejected."""
    found = await session.scalar(
        select(Example.id)
        .where(Example.dataset_id == dataset_id, Example.status != "rejected")
        .limit(1)
    )
    if found is None:
        raise Conflict(message)


async def get_job(*, session: AsyncSession, tenant_id: uuid.UUID, job_id: uuid.UUID) -> Job:
    job = await session.get(Job, job_id, populate_existing=True)
    if job is None or job.tenant_id != tenant_id:
        raise NotFound(f"job {job_id} not found")
    return job


async def list_jobs(
    *,
    session: AsyncSession,
    tenant_id: uuid.UUID,
    dataset_id: uuid.UUID | None,
    status: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Job], str | None]:
    stmt = select(Job).where(Job.tenant_id == tenant_id)
    if dataset_id is not None:
        stmt = stmt.where(Job.dataset_id == dataset_id)
    if status is not None:
        stmt = stmt.where(Job.status == status)
    return await paging.page(session, stmt, Job, limit, cursor)


async def cancel_job(*, session: AsyncSession, tenant_id: uuid.UUID, job_id: uuid.UUID) -> Job:
    await get_job(session=session, tenant_id=tenant_id, job_id=job_id)
    return await queue.cancel_job(session=session, job_id=job_id)


def job_read(job: Job, health: JobHealth) -> JobRead:
    fields: dict[str, Any] = {
        name: getattr(job, name)
        for name in (
            "id", "dataset_id", "skill_id", "kind", "status", "params", "teacher", "error",
            "stop_reason", "cancel_requested", "created_at", "started_at", "finished_at",
            "priority", "tokenizer",
        )
    }  # fmt: skip
    progress = Progress(
        total=job.total,
        completed=job.completed,
        accepted=job.accepted,
        rejected=job.rejected,
        failed=job.failed,
    )
    return JobRead(**fields, progress=progress, health=health)
