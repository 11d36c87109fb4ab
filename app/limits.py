"""Request body size limit as pure ASGI middleware (works for Content-Length and chunked bodies)."""

from __future__ import annotations

from typing import Any

import orjson

from app.errors import PayloadTooLarge

ASGIApp = Any


class BodySizeLimit:
    """Refuse bodies over `max_bytes` with 413 before the route reads them (or while it does)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers", ())).get(b"content-length")
        if length is not None:
            if not length.isdigit():
                await _reply(send, 400, "bad_request", "invalid Content-Length header")
                return
            if int(length) > self.max_bytes:
                await _reply(send, 413, PayloadTooLarge.code, self._message())
                return
        received = 0

        async def limited_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise PayloadTooLarge(self._message())
            return message  # type: ignore[no-any-return]

        await self.app(scope, limited_receive, send)

    def _message(self) -> str:
        return f"request body larger than {self.max_bytes} bytes"


async def _reply(send: Any, status: int, code: str, message: str) -> None:
    body = orjson.dumps({"error": {"code": code, "message": message, "details": []}})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
