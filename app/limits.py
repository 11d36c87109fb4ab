"""Request body limits as pure ASGI middleware: size (Content-Length or counted while reading,
413) and time (a body dripping in slower than the deadline allows, 408)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from app.errors import PayloadTooLarge, RequestTimeout

ASGIApp = Any


class BodySizeLimit:
    """Refuse bodies over `max_bytes` or still arriving `timeout_s` after the request began."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float = 60.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

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
                await _reply(send, 413, PayloadTooLarge.code, self._too_large())
                return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        received = 0
        body_done = False

        async def limited_receive() -> dict[str, Any]:
            nonlocal received, body_done
            if body_done:  # afterwards only disconnects arrive: no deadline for those
                return await receive()  # type: ignore[no-any-return]
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise RequestTimeout(
                    f"request body not received within {self.timeout_s:g} seconds"
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise PayloadTooLarge(self._too_large())
                body_done = not message.get("more_body", False)
            return message  # type: ignore[no-any-return]

        await self.app(scope, limited_receive, send)

    def _too_large(self) -> str:
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
