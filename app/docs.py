"""/docs (Swagger UI) and /redoc served without any CDN: the JavaScript, CSS and icon come from
the `fastapi-offline` wheel's static folder and are served by the app itself."""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(fastapi_offline.__file__).parent / "static"
PREFIX = "/docs-static"


def add_docs(api: FastAPI) -> None:
    """Serve the interactive API docs and their assets (the app is built with docs_url=None)."""
    api.mount(PREFIX, StaticFiles(directory=STATIC), name="docs-static")

    def root(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    @api.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        base = root(request)
        return get_swagger_ui_html(
            openapi_url=f"{base}{api.openapi_url}",
            title=f"{api.title} - API",
            swagger_js_url=f"{base}{PREFIX}/swagger-ui-bundle.js",
            swagger_css_url=f"{base}{PREFIX}/swagger-ui.css",
            swagger_favicon_url=f"{base}{PREFIX}/favicon.png",
        )

    @api.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        base = root(request)
        return get_redoc_html(
            openapi_url=f"{base}{api.openapi_url}",
            title=f"{api.title} - API",
            redoc_js_url=f"{base}{PREFIX}/redoc.standalone.js",
            redoc_favicon_url=f"{base}{PREFIX}/favicon.png",
            with_google_fonts=False,
        )
