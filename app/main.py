"""create_app(): the FastAPI factory, its error envelope and its lifespan."""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

import app
from app import docs, validation
from app.api import api_router
from app.config import Settings
from app.content_types import ContentTypeCheck
from app.db import DATABASE_ERRORS, is_db_unavailable
from app.errors import AppError, ServiceUnavailable
from app.limits import BodySizeLimit
from app.state import AppState, Database
from app.ui import routes as ui_routes

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
        state = AppState.build(settings, db or Database.for_api(settings.database_url))
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
        docs_url=None,  # app.docs serves them without a CDN
        redoc_url=None,
    )
    if db is not None:  # usable before startup (in-process test clients)
        api.state.distillery = AppState.build(settings, db)
    api.include_router(api_router)
    docs.add_docs(api)
    api.include_router(ui_routes.router)  # the web page at /ui
    _hoist_local_defs(api)
    _add_error_handlers(api)
    api.add_middleware(
        BodySizeLimit, max_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_seconds
    )
    api.add_middleware(ContentTypeCheck)  # outermost: a body of the wrong type is never read
    return api


def app_from_env() -> FastAPI:
    """The API from the environment's settings, without background tasks: what each process of
    `distillery serve --api-processes N` runs (N > 1: uvicorn imports it by name in each)."""
    from app.config import get_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return create_app(get_settings())


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


def _hoist_local_defs(api: FastAPI) -> None:
    """Move the `$defs` of hand-written schemas (`openapi_extra`) into components.schemas.

    A pydantic schema embedded as is keeps `#/$defs/...` refs that resolve against nothing in
    the OpenAPI document; client generators and fuzzers need every `$ref` to resolve.
    """
    generate = api.openapi

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            doc = copy.deepcopy(generate())  # it shares dicts with the routes' openapi_extra
            components = doc.setdefault("components", {}).setdefault("schemas", {})
            for name, schema in _pop_defs(doc).items():
                if components.setdefault(name, schema) != schema:
                    raise AssertionError(f"two different OpenAPI schemas named {name}")
            _rewrite_refs(doc)
            api.openapi_schema = doc
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]


def _pop_defs(node: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if isinstance(node, dict):
        found.update(node.pop("$defs", None) or {})
        for value in [*node.values(), *found.values()]:
            found.update(_pop_defs(value))
    elif isinstance(node, list):
        for value in node:
            found.update(_pop_defs(value))
    return found


def _rewrite_refs(node: Any) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            node["$ref"] = "#/components/schemas/" + ref.removeprefix("#/$defs/")
        for value in node.values():
            _rewrite_refs(value)
    elif isinstance(node, list):
        for value in node:
            _rewrite_refs(value)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at the request's path (Starlette names only the first
    route's): each method is tried against the routes, as the router itself would match it."""
    routes = request.app.router.routes
    return [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]


def _add_error_handlers(api: FastAPI) -> None:
    @api.exception_handler(AppError)
    async def app_error(_request: Request, exc: AppError) -> JSONResponse:
        return _envelope(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @api.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # `loc` stays pydantic's (for machines); `field` and `msg` are in the client's words
        details = [
            {
                "loc": list(e.get("loc", ())),
                "field": validation.field_name(validation.error_loc(e), exc.body),
                "msg": validation.plain_message(e),
                "type": e.get("type", ""),
            }
            for e in exc.errors()
        ]
        if any(d["type"] == "json_invalid" for d in details):
            return _envelope(400, "bad_request", "body is not valid JSON", details)
        if not details:
            return _envelope(422, "validation_error", "invalid request")
        first = details[0]
        return _envelope(422, "validation_error", f"{first['field']}: {first['msg']}", details)

    @api.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(_allowed_methods(request))
        code = codes.get(exc.status_code, "http_error")
        return _envelope(exc.status_code, code, str(exc.detail), headers=headers)

    @api.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"action": "unhandled", "path": request.url.path})
        return _envelope(500, "internal", "internal error; the server log has the details")

    async def database_error(request: Request, exc: Exception) -> JSONResponse:
        if not is_db_unavailable(exc):
            return await unexpected(request, exc)
        log.warning(
            "database unavailable: %r",
            exc,
            extra={"action": "db_unavailable", "path": request.url.path},
        )
        busy = isinstance(exc, sa_exc.TimeoutError)  # the pool had no connection free in time
        error = ServiceUnavailable(
            "the server is busy (no database connection free); retry shortly"
            if busy
            else "the database is unavailable; retry shortly",
            headers={"Retry-After": "1" if busy else "5"},
        )
        return await app_error(request, error)

    # handled here rather than by the catch-all `unexpected`, which re-raises into the server log
    for exc_type in DATABASE_ERRORS:
        api.add_exception_handler(exc_type, database_error)
