"""Jobs: create (validated params, first tasks planned, one transaction), read, list, cancel."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app import datasets, kinds, paging, queue
from app.config import Settings
from app.errors import Conflict, NotFound, RateLimited, ValidationFailed
from app.models import Example, Job
from app.schemas import ExpansionJobCreate, JobRead, LabelingJobCreate, Progress


async def create_job(
    *,
    session: AsyncSession,
    tenant_id: uuid.UUID,
    request: LabelingJobCreate | ExpansionJobCreate,
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
    job = Job(
        tenant_id=tenant_id,
        dataset_id=dataset.id,
        skill_id=request.skill_id,
        kind=request.kind,
        params=params.model_dump(mode="json"),
        teacher=teacher.model_dump(mode="json"),
        teacher_model=teacher.model,
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
    elif isinstance(params, kinds.ExpansionParams):
        await _require_seeds(session, dataset.id)
        # one chain of rounds per lane: lane l runs rounds l, l + P, l + 2P ...
        lanes = min(params.parallel_rounds, params.max_rounds)
        payloads = [{"round": lane} for lane in range(lanes)]
        job.total = params.target
    else:  # pragma: no cover - kinds.KINDS and this function must name the same kinds
        raise AssertionError(f"no planner for kind {request.kind}")
    await queue.enqueue_job(
        session=session, job=job, payloads=payloads, max_attempts=settings.task_max_attempts
    )
    return job


async def _examples_to_label(
    session: AsyncSession, dataset_id: uuid.UUID, params: kinds.LabelingParams
) -> list[uuid.UUID]:
    stmt = select(Example.id).where(Example.dataset_id == dataset_id, Example.status != "rejected")
    if params.example_ids is not None:
        stmt = stmt.where(Example.id.in_(params.example_ids))
    if not params.relabel:
        stmt = stmt.where(or_(Example.output.is_(None), Example.output == ""))
    ids = list((await session.scalars(stmt.order_by(Example.id))).all())
    if params.example_ids is not None and len(ids) != len(set(params.example_ids)):
        missing = set(params.example_ids) - set(ids)
        raise ValidationFailed(
            f"{len(missing)} example_ids are not in the dataset or need relabel=true",
            details=[
                {"loc": ["body", "params", "example_ids"], "msg": f"not eligible: {m}"}
                for m in sorted(missing, key=str)[:20]
            ],
        )
    if not ids:
        raise Conflict("nothing to label: every example has an output (pass relabel=true)")
    return ids


async def _require_seeds(session: AsyncSession, dataset_id: uuid.UUID) -> None:
    found = await session.scalar(
        select(Example.id)
        .where(Example.dataset_id == dataset_id, Example.status != "rejected")
        .limit(1)
    )
    if found is None:
        raise Conflict("expansion needs seed examples in the dataset: upload seeds first")


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


def job_read(job: Job) -> JobRead:
    fields: dict[str, Any] = {
        name: getattr(job, name)
        for name in (
            "id", "dataset_id", "skill_id", "kind", "status", "params", "teacher", "error",
            "stop_reason", "cancel_requested", "created_at", "started_at", "finished_at",
        )
    }  # fmt: skip
    progress = Progress(
        total=job.total,
        completed=job.completed,
        accepted=job.accepted,
        rejected=job.rejected,
        failed=job.failed,
    )
    return JobRead(**fields, progress=progress)
