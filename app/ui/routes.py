"""/ui: the pages (datasets, jobs, a job's live progress and report, the example browser),
login and logout, the job's event stream under the cookie's tenant, and the static files.

Pages read through the service's own functions (app.datasets, app.jobs, app.examples,
app.reports, app.events); errors become HTML pages with the error's status, and a missing or
invalid key a redirect to the login page (401 for the event stream and fragments).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import Any, ParamSpec
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

from app import datasets, events, examples, health, jobs, reports
from app.errors import AppError, BadRequest, NotFound, ValidationFailed
from app.models import EXAMPLE_STATUSES, ORIGINS, TERMINAL_STATUSES, Example, Job
from app.schemas import JobRead, JobReport
from app.ui import queries, render, session

router = APIRouter(prefix="/ui", include_in_schema=False)

PAGE_SIZE = 50
JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".svg": "image/svg+xml"}  # fmt: skip
MAX_LOGIN_BODY = 4096

P = ParamSpec("P")


def ui_page(handler: Callable[P, Awaitable[Response]]) -> Callable[P, Awaitable[Response]]:
    """Turn a page's errors into HTML: login needed -> 303 to the login page; any other error
    of the service -> a page with the error's status and message."""

    @functools.wraps(handler)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
        request = kwargs["request"]
        assert isinstance(request, Request)
        try:
            return await handler(*args, **kwargs)
        except session.LoginRequired:
            return RedirectResponse(session.login_url(request), status_code=303)
        except AppError as exc:
            return render.page(
                "error.html",
                status_code=exc.status,
                **_base(request),
                status=exc.status,
                message=exc.message,
            )

    return wrapper


def _base(request: Request, tenant: uuid.UUID | None = None) -> dict[str, Any]:
    """What the layout needs: whether to show the logout button."""
    settings = session.state_of(request).settings
    return {"auth": settings.auth, "signed_in": tenant is not None and settings.auth}


def _id(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"{what} {value!r} not found") from None


def _choice(value: str | None, allowed: tuple[str, ...], field: str) -> str | None:
    if not value:
        return None
    if value not in allowed:
        raise ValidationFailed(
            f"{field}: must be one of {', '.join(allowed)}",
            details=[{"loc": ["query", field], "msg": "not an allowed value"}],
        )
    return value


def _job_read(job: Job, states: dict[uuid.UUID, Any]) -> JobRead:
    return jobs.job_read(job, states[job.id])


# --- login -------------------------------------------------------------------------------------


@router.get("/login")
async def login_page(request: Request, next: str | None = None) -> Response:
    """The form that asks for the API key (once: it is kept in a cookie)."""
    if not session.state_of(request).settings.auth:
        return RedirectResponse(session.safe_next(next), status_code=303)
    return render.page(
        "login.html", **_base(request), next=session.safe_next(next), error=None, status=200
    )


@router.post("/login")
@ui_page
async def login(request: Request) -> Response:
    """Check the key; on success keep it in an HttpOnly, SameSite=Strict cookie."""
    state = session.state_of(request)
    if not session.same_origin(request):
        raise session.CrossSite()
    body = await request.body()
    if len(body) > MAX_LOGIN_BODY:
        raise BadRequest("key: too long")
    form = parse_qs(body.decode("utf-8", "replace"))
    target = session.safe_next((form.get("next") or [""])[0])
    if not state.settings.auth:
        return RedirectResponse(target, status_code=303)
    key = (form.get("key") or [""])[0].strip()
    error = "Enter an API key." if not key else None
    if key:
        try:
            await session.check_key(state, key)
        except session.LoginRequired as exc:
            error = exc.message
    if error:
        return render.page(
            "login.html", status_code=401, **_base(request), next=target, error=error, status=401
        )
    response = RedirectResponse(target, status_code=303)
    session.set_key(response, request, key)
    return response


@router.post("/logout")
@ui_page
async def logout(request: Request) -> Response:
    """Forget the key (clear the cookie) and go back to the login page."""
    if not session.same_origin(request):
        raise session.CrossSite()
    response = RedirectResponse("/ui/login", status_code=303)
    session.clear_key(response, request)
    return response


# --- datasets ----------------------------------------------------------------------------------


@router.get("")
@ui_page
async def datasets_page(request: Request, cursor: str | None = None) -> Response:
    """The tenant's datasets with their examples counted by origin and status."""
    tenant = await session.tenant_of(request)
    db = session.state_of(request).db
    async with db.reading() as s:
        rows, next_cursor = await datasets.list_datasets(
            session=s, tenant_id=tenant, limit=PAGE_SIZE, cursor=cursor
        )
        counts = await datasets.count_examples_of(session=s, dataset_ids=[d.id for d in rows])
    items = [{"dataset": d, "counts": counts[d.id], "total": _total(counts[d.id])} for d in rows]
    return render.page(
        "datasets.html",
        **_base(request, tenant),
        items=items,
        next_url=f"/ui?{urlencode({'cursor': next_cursor})}" if next_cursor else None,
    )


def _total(counts: dict[str, dict[str, int]]) -> int:
    return sum(sum(by_status.values()) for by_status in counts.values())


@router.get("/datasets/{dataset_id}")
@ui_page
async def dataset_page(request: Request, dataset_id: str) -> Response:
    """One dataset: counts by origin and status, rejection reasons, its latest jobs."""
    tenant = await session.tenant_of(request)
    state = session.state_of(request)
    async with state.db.reading() as s:
        dataset = await datasets.get_dataset(
            session=s, tenant_id=tenant, dataset_id=_id(dataset_id, "dataset")
        )
        counts = await datasets.count_examples(session=s, dataset_id=dataset.id)
        reasons = await queries.reject_reasons(session=s, dataset_id=dataset.id)
        latest = await queries.jobs_of(session=s, dataset_id=dataset.id, limit=PAGE_SIZE)
        states = await health.health_of(
            session=s, jobs=latest, heartbeat_seconds=state.settings.heartbeat_seconds
        )
    return render.page(
        "dataset.html",
        **_base(request, tenant),
        dataset=dataset,
        counts=counts,
        total=_total(counts),
        statuses=EXAMPLE_STATUSES,
        reasons=reasons,
        chart=render.bar_chart(reasons.items(), "rejected examples by reason") if reasons else None,
        jobs=[_job_read(j, states) for j in latest],
    )


# --- jobs --------------------------------------------------------------------------------------


@router.get("/jobs")
@ui_page
async def jobs_page(
    request: Request, status: str | None = None, cursor: str | None = None
) -> Response:
    """The tenant's jobs (newest page last, as the API pages them), by status."""
    tenant = await session.tenant_of(request)
    state = session.state_of(request)
    chosen = _choice(status, JOB_STATUSES, "status")
    async with state.db.reading() as s:
        rows, next_cursor = await jobs.list_jobs(
            session=s, tenant_id=tenant, dataset_id=None, status=chosen, limit=PAGE_SIZE,
            cursor=cursor,
        )  # fmt: skip
        states = await health.health_of(
            session=s, jobs=rows, heartbeat_seconds=state.settings.heartbeat_seconds
        )
        names = await queries.dataset_names(
            session=s, tenant_id=tenant, dataset_ids=[j.dataset_id for j in rows]
        )
    query = {"status": chosen or "", "cursor": next_cursor or ""}
    return render.page(
        "jobs.html",
        **_base(request, tenant),
        jobs=[_job_read(j, states) for j in rows],
        names=names,
        status=chosen,
        statuses=JOB_STATUSES,
        next_url=f"/ui/jobs?{urlencode(query)}" if next_cursor else None,
    )


async def _job_and_report(request: Request, job_id: str) -> dict[str, Any]:
    """What the job page and the report page both show: the job with its health, its report,
    its dataset's name (and the page's base context)."""
    tenant = await session.tenant_of(request)
    state = session.state_of(request)
    async with state.db.reading() as s:
        job = await jobs.get_job(session=s, tenant_id=tenant, job_id=_id(job_id, "job"))
        states = await health.health_of(
            session=s, jobs=[job], heartbeat_seconds=state.settings.heartbeat_seconds
        )
        report = JobReport.model_validate(await reports.job_report(session=s, job=job))
        names = await queries.dataset_names(
            session=s, tenant_id=tenant, dataset_ids=[job.dataset_id]
        )
    return {
        **_base(request, tenant),
        "job": _job_read(job, states),
        "report": report,
        "dataset_name": names.get(job.dataset_id, ""),
        "chart": _rejections_chart(report.rejected_by_reason),
        "tokens_per_second": _tokens_per_second(report),
    }


@router.get("/jobs/{job_id}")
@ui_page
async def job_page(request: Request, job_id: str) -> Response:
    """One job: live progress (the event stream), health, rejections so far, task history."""
    context = await _job_and_report(request, job_id)
    return render.page("job.html", **context, finished=context["job"].status in TERMINAL_STATUSES)


def _rejections_chart(by_reason: dict[str, int]) -> render.BarChart | None:
    return render.bar_chart(by_reason.items(), "rejections by reason") if by_reason else None


def _tokens_per_second(report: JobReport) -> float | None:
    if not report.wall_seconds:
        return None
    return round(report.tokens.total / report.wall_seconds, 2)


@router.get("/jobs/{job_id}/rejections")
async def rejections_fragment(request: Request, job_id: str) -> Response:
    """The job's rejections-by-reason chart alone (the job page swaps it in as it changes)."""
    try:
        tenant = await session.tenant_of(request)
        async with session.state_of(request).db.reading() as s:
            job = await jobs.get_job(session=s, tenant_id=tenant, job_id=_id(job_id, "job"))
            report = JobReport.model_validate(await reports.job_report(session=s, job=job))
    except AppError as exc:
        return JSONResponse(exc.to_dict(), status_code=exc.status)
    return render.page(
        "_rejections.html", chart=_rejections_chart(report.rejected_by_reason), report=report
    )


@router.get("/jobs/{job_id}/report")
@ui_page
async def report_page(request: Request, job_id: str) -> Response:
    """The job's curation report: kept and rejected by reason, tokens, throughput, health, and
    the sections of its kind (feedback, soft targets, dialogue, evol, curation)."""
    context = await _job_and_report(request, job_id)
    report: JobReport = context["report"]
    return render.page(
        "report.html",
        **context,
        errors_chart=(
            render.bar_chart(report.teacher_errors.items(), "failed teacher attempts by cause")
            if report.teacher_errors
            else None
        ),
        kind_charts=render.kind_charts(report),
    )


@router.get("/jobs/{job_id}/events")
async def job_events(request: Request, job_id: str) -> Response:
    """The job's server-sent events (app.events) for the cookie's tenant: EventSource cannot
    send an Authorization header. Errors are JSON, before the stream starts."""
    state = session.state_of(request)
    try:
        tenant = await session.tenant_of(request)
        found = _id(job_id, "job")
        async with state.db.reading() as s:
            await jobs.get_job(session=s, tenant_id=tenant, job_id=found)
        last = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
        events.parse_last_event_id(last)  # a bad id is a 422 now, not a broken stream
    except AppError as exc:
        return JSONResponse(exc.to_dict(), status_code=exc.status)
    stream: AsyncIterator[events.Event] = events.job_events(
        db=state.db, settings=state.settings, tenant_id=tenant, job_id=found, last_event_id=last
    )
    return StreamingResponse(
        events.sse_stream(stream),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


# --- examples ----------------------------------------------------------------------------------


@router.get("/datasets/{dataset_id}/examples")
@ui_page
async def examples_page(
    request: Request,
    dataset_id: str,
    origin: str | None = None,
    status: str | None = None,
    reason: str | None = None,
    job: str | None = None,
    cursor: str | None = None,
) -> Response:
    """Browse a dataset's examples, paged, by origin, status, rejection reason and job."""
    tenant = await session.tenant_of(request)
    filters = {
        "origin": _choice(origin, ORIGINS, "origin"),
        "status": _choice(status, EXAMPLE_STATUSES, "status"),
        "reason": reason or None,
        "job": job or None,
    }
    job_id = None
    if filters["job"]:
        try:
            job_id = uuid.UUID(filters["job"])
        except ValueError:
            raise ValidationFailed(
                "job: not a job id", details=[{"loc": ["query", "job"], "msg": "not a UUID"}]
            ) from None
    async with session.state_of(request).db.reading() as s:
        dataset = await datasets.get_dataset(
            session=s, tenant_id=tenant, dataset_id=_id(dataset_id, "dataset")
        )
        rows, next_cursor = await examples.list_examples(
            session=s,
            dataset_id=dataset.id,
            origin=filters["origin"],
            status=filters["status"],
            job_id=job_id,
            limit=PAGE_SIZE,
            cursor=cursor,
            reject_reason=filters["reason"],
        )
        reasons = await queries.reject_reasons(session=s, dataset_id=dataset.id)
        recent = await queries.jobs_of(session=s, dataset_id=dataset.id, limit=200)
    chosen = {k: v for k, v in filters.items() if v}
    base = f"/ui/datasets/{dataset.id}/examples"
    return render.page(
        "examples.html",
        **_base(request, tenant),
        dataset=dataset,
        rows=[_summary(r) for r in rows],
        filters=filters,
        origins=ORIGINS,
        statuses=EXAMPLE_STATUSES,
        reasons=reasons,
        jobs=recent,
        first_url=base + (f"?{urlencode(chosen)}" if chosen else ""),
        next_url=f"{base}?{urlencode({**chosen, 'cursor': next_cursor})}" if next_cursor else None,
        paged=cursor is not None,
    )


def _summary(example: Example) -> dict[str, Any]:
    text = example.instruction or next(
        (m.get("content", "") for m in example.messages or [] if m.get("role") == "user"), ""
    )
    return {"example": example, "text": " ".join(text.split())[:240]}


@router.get("/examples/{example_id}")
@ui_page
async def example_page(request: Request, example_id: str) -> Response:
    """One example: the whole conversation, its provenance, scores, and why it was rejected."""
    tenant = await session.tenant_of(request)
    async with session.state_of(request).db.reading() as s:
        example, dataset = await queries.get_example(
            session=s, tenant_id=tenant, example_id=_id(example_id, "example")
        )
    return render.page(
        "example.html",
        **_base(request, tenant),
        example=example,
        dataset=dataset,
        conversation=conversation(example),
    )


def conversation(example: Example) -> list[dict[str, str]]:
    """Every message of the example: its stored conversation, else the instruction (and its
    input) as the user turn and the output, if any, as the assistant's."""
    if example.messages:
        return [
            {"role": str(m.get("role", "")), "content": str(m.get("content", ""))}
            for m in example.messages
        ]
    user = example.instruction
    if example.input:
        user = f"{user}\n\n{example.input}" if user else example.input
    turns = [{"role": "user", "content": user}]
    if example.output is not None:
        turns.append({"role": "assistant", "content": example.output})
    return turns


# --- static files ------------------------------------------------------------------------------


@router.get("/static/{name}")
async def static_file(name: str) -> Response:
    """The UI's own CSS and JS (packaged with the app; no CDN)."""
    suffix = name[name.rfind(".") :] if "." in name else ""
    folder = resources.files("app.ui").joinpath("static")
    entry = folder.joinpath(name)
    if suffix not in STATIC_TYPES or "/" in name or name.startswith(".") or not entry.is_file():
        raise NotFound(f"static file {name!r} not found")
    return Response(
        entry.read_bytes(),
        media_type=STATIC_TYPES[suffix],
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )
