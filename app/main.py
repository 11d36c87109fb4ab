"""create_app(): the FastAPI factory, its error envelope and its lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

import app
from app.api import api_router
from app.config import Settings
from app.errors import AppError
from app.limits import BodySizeLimit
from app.state import AppState, Database

log = logging.getLogger(__name__)

Background = Callable[[Database], Coroutine[Any, Any, None]]


def create_app(
    settings: Settings, db: Database | None = None, background: Sequence[Background] = ()
) -> FastAPI:
    """The API for `settings`; pass `db` to share an engine (tests, the embedded worker).

    Each of `background` (e.g. the embedded worker, composed by app.cli) runs as a task in the
    server's event loop from startup on, and is cancelled (its cue to stop gracefully) and
    awaited at shutdown.
    """

    @asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[None]:
        state = AppState.build(settings, db or Database.from_url(settings.database_url))
        api.state.distillery = state
        tasks = [asyncio.create_task(job(state.db)) for job in background]
        for task in tasks:
            task.add_done_callback(_report_background_end)
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if db is None:
                await state.db.engine.dispose()

    api = FastAPI(
        title="distillery",
        version=app.__version__,
        description="Synthetic instruction data from a teacher LLM, curated, as JSONL.",
        lifespan=lifespan,
    )
    if db is not None:  # usable before startup (in-process test clients)
        api.state.distillery = AppState.build(settings, db)
    api.include_router(api_router)
    _add_error_handlers(api)
    api.add_middleware(
        BodySizeLimit, max_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_seconds
    )
    return api


def _report_background_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error(
            "background task stopped with an error",
            exc_info=task.exception(),
            extra={"action": "background_failed", "task": task.get_name()},
        )


def _envelope(status: int, code: str, message: str, details: list[Any] | None = None,
              headers: dict[str, str] | None = None) -> JSONResponse:  # fmt: skip
    return JSONResponse(
        {"error": {"code": code, "message": message, "details": details or []}},
        status_code=status,
        headers=headers,
    )


def _add_error_handlers(api: FastAPI) -> None:
    @api.exception_handler(AppError)
    async def app_error(_request: Request, exc: AppError) -> JSONResponse:
        return _envelope(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @api.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        if any(d["type"] == "json_invalid" for d in details):
            return _envelope(400, "bad_request", "body is not valid JSON", details)
        first = details[0] if details else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"])
        return _envelope(422, "validation_error", f"{where}: {first['msg']}", details)

    @api.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}
        return _envelope(exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail))

    @api.exception_handler(SQLAlchemyTimeoutError)
    async def pool_exhausted(_request: Request, _exc: SQLAlchemyTimeoutError) -> JSONResponse:
        return _envelope(
            503,
            "unavailable",
            "the server is busy (no database connection free); retry shortly",
            headers={"Retry-After": "1"},
        )

    @api.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"action": "unhandled", "path": request.url.path})
        return _envelope(500, "internal", "internal error; the server log has the details")
