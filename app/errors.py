"""Errors a client can act on, each with a code, an HTTP status and a sentence.

    AppError                    500 internal (never raised for bad input)
    ├── BadRequest              400 bad_request (unparsable body, wrong encoding)
    ├── NotFound                404 not_found (also: another tenant's resource)
    ├── RequestTimeout          408 request_timeout (a body that arrives too slowly)
    ├── Conflict                409 conflict
    │   └── JobNotCancellable   409 job_not_cancellable
    ├── PayloadTooLarge         413 payload_too_large
    ├── UnsupportedMediaType    415 unsupported_media_type
    ├── ValidationFailed        422 validation_error (details name the field or line)
    ├── Unauthorized            401 unauthorized
    ├── RateLimited             429 rate_limited
    └── ServiceUnavailable      503 unavailable (the database cannot be reached; Retry-After)

The class docstring is the default message; rendered as ``{"error": {code, message, details}}``.
"""

from __future__ import annotations

from typing import Any, ClassVar


class AppError(Exception):
    """Internal error."""

    code: ClassVar[str] = "internal"
    status: ClassVar[int] = 500

    def __init__(
        self,
        message: str | None = None,
        *,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or (self.__doc__ or self.code).strip()
        self.details = details or []
        self.headers = headers or {}
        super().__init__(self.message)

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class BadRequest(AppError):
    """The request body could not be read."""

    code = "bad_request"
    status = 400


class Unauthorized(AppError):
    """A valid API key is required (Authorization: Bearer <key>)."""

    code = "unauthorized"
    status = 401


class NotFound(AppError):
    """Not found."""

    code = "not_found"
    status = 404


class RequestTimeout(AppError):
    """The request body did not arrive in time."""

    code = "request_timeout"
    status = 408


class Conflict(AppError):
    """The request conflicts with the current state."""

    code = "conflict"
    status = 409


class JobNotCancellable(Conflict):
    """The job has already finished and cannot be cancelled."""

    code = "job_not_cancellable"


class PayloadTooLarge(AppError):
    """The request body is larger than the server accepts."""

    code = "payload_too_large"
    status = 413


class UnsupportedMediaType(AppError):
    """Send application/json or application/x-ndjson."""

    code = "unsupported_media_type"
    status = 415


class ValidationFailed(AppError):
    """The request is not valid."""

    code = "validation_error"
    status = 422


class RateLimited(AppError):
    """Too many requests."""

    code = "rate_limited"
    status = 429


class ServiceUnavailable(AppError):
    """The database is unavailable; retry shortly."""

    code = "unavailable"
    status = 503
