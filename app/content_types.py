"""The content types a request body may have, checked before anything reads it (pure ASGI).

A POST, PUT or PATCH under /v1/ that carries a body must say what it is: JSON everywhere, and
JSONL too where a route takes uploads line by line. A missing or other type is a 415 whose
message names the types accepted (instead of a confusing parse or validation error).
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from app.errors import UnsupportedMediaType

JSON = "application/json"
NDJSON_TYPES = ("application/x-ndjson", "application/jsonl", "application/json-lines")
# routes that take JSONL bodies as well as JSON (app.examples.parse_seeds, app.benchmarks)
JSONL_ROUTES = (re.compile(r"^/v1/datasets/[^/]+/seeds/?$"), re.compile(r"^/v1/benchmarks/?$"))
METHODS = ("POST", "PUT", "PATCH")


def accepted_types(path: str) -> tuple[str, ...]:
    """The media types a body sent to `path` may have."""
    if any(route.match(path) for route in JSONL_ROUTES):
        return (JSON, *NDJSON_TYPES)
    return (JSON,)


def _has_body(headers: dict[bytes, bytes]) -> bool:
    length = headers.get(b"content-length")
    if length is not None:
        return length.strip() not in (b"0", b"")
    return b"transfer-encoding" in headers


class ContentTypeCheck:
    """Refuse (415) a body under /v1/ whose Content-Type is missing or not one the route takes."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] in METHODS
            and scope["path"].startswith("/v1/")
        ):
            headers = dict(scope.get("headers", ()))
            if _has_body(headers):
                raw = headers.get(b"content-type", b"").decode("latin-1")
                media = raw.split(";", 1)[0].strip().lower()
                accepted = accepted_types(scope["path"])
                if media not in accepted:
                    await _refuse(send, media, accepted)
                    return
        await self.app(scope, receive, send)


async def _refuse(send: Any, media: str, accepted: tuple[str, ...]) -> None:
    names = " or ".join(accepted[:2]) if len(accepted) > 1 else accepted[0]
    said = f"Content-Type {media!r} is not accepted" if media else "the request has no Content-Type"
    body = orjson.dumps(
        {
            "error": {
                "code": UnsupportedMediaType.code,
                "message": f"{said}: send the body as {names} (with that Content-Type header)",
                "details": [{"loc": ["header", "content-type"], "accepted": list(accepted)}],
            }
        }
    )
    await send(
        {
            "type": "http.response.start",
            "status": UnsupportedMediaType.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),  # the body was not read
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
