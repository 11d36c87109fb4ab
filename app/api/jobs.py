"""/v1/jobs: create, read, list, cancel."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from app import health, jobs, reports
from app.api.deps import DbDep, SettingsDep, TenantDep
from app.api.responses import ERRORS
from app.models import JobStatus
from app.schemas import Cursor, JobCreate, JobRead, JobReport, Page

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=ERRORS)


@router.post("", status_code=202)
async def create_job(
    body: JobCreate, db: DbDep, tenant: TenantDep, settings: SettingsDep
) -> JobRead:
    """Start a job on a dataset; it stays `queued` until a worker takes it."""
    async with db.transaction() as session:
        job = await jobs.create_job(
            session=session, tenant_id=tenant, request=body, settings=settings
        )
        states = await health.health_of(
            session=session, jobs=[job], heartbeat_seconds=settings.heartbeat_seconds
        )
    return jobs.job_read(job, states[job.id])


@router.get("")
async def list_jobs(
    db: DbDep,
    tenant: TenantDep,
    settings: SettingsDep,
    dataset_id: uuid.UUID | None = None,
    status: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Cursor = None,
) -> Page[JobRead]:
    """The tenant's jobs, oldest first, by dataset and status."""
    async with db.reading() as session:
        rows, next_cursor = await jobs.list_jobs(
            session=session,
            tenant_id=tenant,
            dataset_id=dataset_id,
            status=status,
            limit=limit,
            cursor=cursor,
        )
        states = await health.health_of(
            session=session, jobs=rows, heartbeat_seconds=settings.heartbeat_seconds
        )
    return Page(data=[jobs.job_read(j, states[j.id]) for j in rows], next_cursor=next_cursor)


@router.get("/{job_id}")
async def get_job(
    job_id: uuid.UUID, db: DbDep, tenant: TenantDep, settings: SettingsDep
) -> JobRead:
    """One job with its status, progress and health (can it make progress now, and why not)."""
    async with db.reading() as session:
        job = await jobs.get_job(session=session, tenant_id=tenant, job_id=job_id)
        states = await health.health_of(
            session=session, jobs=[job], heartbeat_seconds=settings.heartbeat_seconds
        )
    return jobs.job_read(job, states[job.id])


@router.get("/{job_id}/report")
async def get_job_report(job_id: uuid.UUID, db: DbDep, tenant: TenantDep) -> JobReport:
    """Curation report: candidates, kept, rejected by reason, tokens, throughput, diversity."""
    async with db.reading() as session:
        job = await jobs.get_job(session=session, tenant_id=tenant, job_id=job_id)
        report = await reports.job_report(session=session, job=job)
    return JobReport.model_validate(report)


@router.post("/{job_id}/cancel", status_code=202)
async def cancel_job(
    job_id: uuid.UUID, db: DbDep, tenant: TenantDep, settings: SettingsDep
) -> JobRead:
    """Cancel a job; what was accepted stays."""
    async with db.transaction() as session:
        job = await jobs.cancel_job(session=session, tenant_id=tenant, job_id=job_id)
        states = await health.health_of(
            session=session, jobs=[job], heartbeat_seconds=settings.heartbeat_seconds
        )
    return jobs.job_read(job, states[job.id])
