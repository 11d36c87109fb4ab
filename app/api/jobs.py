"""/v1/jobs: create, read, list, cancel, report, live events."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from app import events, health, job_view, jobs, reports
from app.api.deps import DbDep, SettingsDep, TenantDep
from app.api.responses import ERRORS
from app.models import JobStatus
from app.schemas import Cursor, JobCreate, JobRead, JobReport, Page
from app.state import AppState

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


@router.get("/{job_id}", response_model=JobRead, response_class=JSONResponse)
async def get_job(job_id: uuid.UUID, request: Request, tenant: TenantDep) -> Response:
    """One job with its status, progress and health (can it make progress now, and why not)."""
    # the busiest route (status polls): one dependency, and the JSON built once, not validated
    # again by FastAPI (app.job_view.read_job_json gives the bytes response_model would)
    state: AppState = request.app.state.distillery
    body = await job_view.read_job_json(
        state.db,
        tenant_id=tenant,
        job_id=job_id,
        heartbeat_seconds=state.settings.heartbeat_seconds,
    )
    return Response(body, media_type="application/json")


@router.get("/{job_id}/report")
async def get_job_report(job_id: uuid.UUID, db: DbDep, tenant: TenantDep) -> JobReport:
    """Curation report: candidates, kept, rejected by reason, tokens, throughput, diversity."""
    async with db.reading() as session:
        job = await jobs.get_job(session=session, tenant_id=tenant, job_id=job_id)
        report = await reports.job_report(session=session, job=job)
    return JobReport.model_validate(report)


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "server-sent events"}},
)
async def get_job_events(
    job_id: uuid.UUID,
    db: DbDep,
    tenant: TenantDep,
    settings: SettingsDep,
    last_event_id: Annotated[
        str,
        Query(
            pattern=events.EVENT_ID,
            description="where to resume, for clients that cannot send Last-Event-ID",
        ),
    ] = "",
    last_event_id_header: Annotated[
        str,
        Header(
            alias="Last-Event-ID", pattern=events.EVENT_ID, description="where to resume (wins)"
        ),
    ] = "",
) -> StreamingResponse:
    """Live events of a job as server-sent events, until it is terminal.

    `progress` (`{job, report, eta_seconds}`, first and on every change), `status`
    (`{from, to}`), `task` (a task_events row, in id order), `finished` (`{job, report}`: the
    full report; the stream ends). Event ids: a `task` event's id is its task-event id (`42`);
    the others carry the last task-event id sent before them, a dash and a counter (`42-7`).
    Resume with `Last-Event-ID` (or `?last_event_id=`): the task events after that number, none
    repeated or lost, then a fresh progress snapshot. A `: keep-alive` comment every 15 s.
    """
    start = last_event_id_header or last_event_id  # both checked by their pattern already
    async with db.reading() as session:  # a 404 before streaming
        await jobs.get_job(session=session, tenant_id=tenant, job_id=job_id)
    stream = events.job_events(
        db=db, settings=settings, tenant_id=tenant, job_id=job_id, last_event_id=start
    )
    return StreamingResponse(
        events.sse_stream(stream),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


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
