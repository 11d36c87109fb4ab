"""OpenAPI declarations of the error envelope, shared by the routers."""

from __future__ import annotations

from typing import Any

from app.schemas import ErrorResponse

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in (
        (400, "unreadable body"),
        (401, "missing or invalid API key"),
        (404, "not found"),
        (408, "request body too slow"),
        (409, "conflict with the current state"),
        (413, "body too large"),
        (415, "unsupported content type"),
        (422, "invalid request"),
        (429, "rate limited"),
    )
}
