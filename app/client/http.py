"""A small typed wrapper over httpx for the client commands.

Every failure the user can act on becomes `ClientError` (one line); the commands print it in red
on stderr and exit 1. The API's error envelope `{"error": {"code", "message", "details"}}` is
read into that line: the message, and the field of the first detail when the message lacks it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NoReturn

import httpx
import typer
from rich.console import Console

DEFAULT_URL = "http://127.0.0.1:8000"
errors = Console(stderr=True, soft_wrap=True)  # soft_wrap: one error stays one line


class ClientError(Exception):
    """A request that did not give what the command needs, in one line of words."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def fail(message: str, code: int = 1) -> NoReturn:
    """One red line on stderr and exit `code`."""
    errors.print(f"[red]error[/red]: {message}", markup=True, highlight=False)
    raise typer.Exit(code)


def error_line(response: httpx.Response) -> str:
    """The one line a failed response says: the envelope's message, or the status and body."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        message = " ".join(str(error.get("message") or error.get("code") or "").split())
        details = error.get("details") or []
        first = details[0] if details and isinstance(details[0], dict) else {}
        loc = first.get("loc")
        if isinstance(loc, list) and loc:
            field = ".".join(str(p) for p in loc[1:] if p != "body") or str(loc[-1])
            if field and field not in message:
                message = f"{message} ({field}: {first.get('msg', '')})"
        return f"{response.status_code}: {message}"
    text = " ".join(response.text.split())[:300]
    return f"{response.status_code} {response.reason_phrase}: {text or 'no body'}"


class Api:
    """The service at `url`, with the bearer key when one is given."""

    def __init__(self, url: str, api_key: str | None, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        headers = {"user-agent": "distillery-client"}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        self.http = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=10.0),
        )

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> httpx.Response:
        """Send one request; a transport error or a non-2xx answer raises `ClientError`."""
        try:
            response = self.http.request(
                method, path, json=json, content=content, headers=headers, params=params
            )
        except httpx.HTTPError as exc:
            raise ClientError(self.transport_error(exc)) from None
        if response.is_error:
            raise ClientError(error_line(response), status=response.status_code)
        return response

    def get(self, path: str, **params: Any) -> Any:
        """GET a JSON document."""
        clean = {k: v for k, v in params.items() if v is not None}
        return self.request("GET", path, params=clean).json()

    def post(self, path: str, body: Any = None) -> Any:
        """POST JSON, return the JSON answer (None for an empty one)."""
        response = self.request("POST", path, json=body if body is not None else {})
        return response.json() if response.content else None

    def delete(self, path: str) -> None:
        self.request("DELETE", path)

    def pages(self, path: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Every item of a cursor-paginated list."""
        cursor: str | None = None
        while True:
            page = self.get(path, **params, cursor=cursor, limit=1000)
            yield from page["data"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    @contextmanager
    def stream(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> Iterator[httpx.Response]:
        """A streamed response whose status was checked (the body is read lazily)."""
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        try:
            with self.http.stream(
                method, path, params=params, headers=headers, **extra
            ) as response:
                if response.is_error:
                    response.read()
                    raise ClientError(error_line(response), status=response.status_code)
                yield response
        except httpx.HTTPError as exc:
            raise ClientError(self.transport_error(exc)) from None

    def transport_error(self, exc: httpx.HTTPError) -> str:
        if isinstance(exc, httpx.ConnectError):
            return f"cannot reach {self.url} (is `distillery serve` running?): {exc}"
        if isinstance(exc, httpx.TimeoutException):
            return f"{self.url} did not answer in time ({type(exc).__name__})"
        return f"{self.url}: {type(exc).__name__}: {exc}"
