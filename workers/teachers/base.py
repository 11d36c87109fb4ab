"""The teacher protocol and the plain data passed to and from every teacher backend.

A teacher takes a batch of :class:`TeacherRequest` and returns one :class:`TeacherResult` per
request, in the same order. A batch never loses a request silently: a request that still fails
after the backend's own retries comes back as a result with ``error`` set and no generations;
the other results are returned normally. Only programming errors raise out of ``generate``.

Errors (catch at the level you care about; ``retryable`` says whether trying again may help)::

    TeacherError                 base; the class docstring is the default message
    ├── TeacherUnavailable       retryable: connection refused or reset, HTTP 5xx, engine down
    ├── TeacherTimeout           retryable: no answer within the request timeout
    ├── TeacherRateLimited       retryable: HTTP 429; ``retry_after`` seconds if the server said
    ├── TeacherBadResponse       retryable: a malformed body (invalid JSON, missing fields)
    ├── TeacherRejected          final: HTTP 4xx other than 429 (unknown model, bad request)
    └── TeacherMissingExtra      final: the backend's library is not installed
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

# --- errors -----------------------------------------------------------------------------------


class TeacherError(Exception):
    """The teacher failed."""

    retryable: ClassVar[bool] = False

    def __init__(self, message: str | None = None, *, status: int | None = None) -> None:
        self.message = message or (self.__doc__ or "").strip()
        self.status = status
        super().__init__(self.message)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form: type, message, retryable, status."""
        return {
            "type": type(self).__name__,
            "message": self.message,
            "retryable": self.retryable,
            "status": self.status,
        }


class TeacherUnavailable(TeacherError):
    """The teacher cannot be reached or failed on its side."""

    retryable = True


class TeacherTimeout(TeacherError):
    """The teacher did not answer in time."""

    retryable = True


class TeacherRateLimited(TeacherError):
    """The teacher asked us to slow down (HTTP 429)."""

    retryable = True

    def __init__(
        self,
        message: str | None = None,
        *,
        status: int | None = 429,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form, with ``retry_after``."""
        return {**super().as_dict(), "retry_after": self.retry_after}


class TeacherBadResponse(TeacherError):
    """The teacher answered with a malformed body."""

    retryable = True


class TeacherRejected(TeacherError):
    """The teacher rejected the request (unknown model, bad request)."""

    retryable = False


class TeacherMissingExtra(TeacherError):
    """The library this teacher backend needs is not installed."""

    retryable = False


ERRORS: dict[str, type[TeacherError]] = {
    cls.__name__: cls
    for cls in (
        TeacherError,
        TeacherUnavailable,
        TeacherTimeout,
        TeacherRateLimited,
        TeacherBadResponse,
        TeacherRejected,
        TeacherMissingExtra,
    )
}


def error_cause(error: TeacherError) -> str:
    """The cause a failed attempt is counted under: ``http_<status>``, ``timeout``,
    ``connection``, ``malformed``, or the error's type for the rest."""
    if isinstance(error, TeacherTimeout):
        return "timeout"
    if isinstance(error, TeacherBadResponse):
        return "malformed"
    if error.status is not None:
        return f"http_{error.status}"
    if isinstance(error, TeacherUnavailable):
        return "connection"
    return type(error).__name__


def error_from_dict(data: Mapping[str, Any]) -> TeacherError:
    """Rebuild an error stored with :meth:`TeacherError.as_dict` (unknown types -> base)."""
    cls = ERRORS.get(str(data.get("type")), TeacherError)
    if cls is TeacherRateLimited:
        return TeacherRateLimited(
            data.get("message"), status=data.get("status"), retry_after=data.get("retry_after")
        )
    return cls(data.get("message"), status=data.get("status"))


# --- requests ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """How to sample. Every backend sends every value explicitly (servers' defaults differ)."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 512
    seed: int | None = None
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.stop, tuple):  # a list from JSON: keep the params hashable
            object.__setattr__(self, "stop", tuple(self.stop))

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form, to store with each generated example."""
        return {
            "n": self.n,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
            "stop": list(self.stop),
        }


@dataclass(frozen=True, slots=True)
class TeacherRequest:
    """One chat prompt for the teacher.

    ``messages`` are ``{"role": ..., "content": ...}`` dicts; ``json_schema`` asks for structured
    output (enforced by vllm and OpenAI-compatible servers, not by the transformers backend);
    ``top_logprobs`` asks for the k most likely tokens at every generated position.
    """

    messages: list[dict[str, str]]
    sampling: SamplingParams
    json_schema: dict[str, Any] | None = None
    top_logprobs: int | None = None
    request_id: str | None = None


# --- results ----------------------------------------------------------------------------------


TopLogprob = tuple[str, int | None, float]
"""One alternative at a position: (token text, token id when known, logprob)."""


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """The chosen token at one position, its logprob, and the top-k alternatives."""

    token: str
    token_id: int | None
    logprob: float
    top: list[TopLogprob] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form; ``top`` as ``[token, token_id, logprob]`` lists."""
        return {
            "token": self.token,
            "token_id": self.token_id,
            "logprob": self.logprob,
            "top": [list(t) for t in self.top],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TokenLogprob:
        """Inverse of :meth:`as_dict`."""
        return cls(
            token=data["token"],
            token_id=data["token_id"],
            logprob=data["logprob"],
            top=[(t[0], t[1], t[2]) for t in data.get("top", ())],
        )


@dataclass(frozen=True, slots=True)
class Generation:
    """One generated completion (a request with ``n > 1`` has several)."""

    text: str
    finish_reason: str | None
    logprobs: list[TokenLogprob] | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "text": self.text,
            "finish_reason": self.finish_reason,
            "logprobs": None if self.logprobs is None else [lp.as_dict() for lp in self.logprobs],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Generation:
        """Inverse of :meth:`as_dict`."""
        logprobs = data.get("logprobs")
        return cls(
            text=data["text"],
            finish_reason=data.get("finish_reason"),
            logprobs=None if logprobs is None else [TokenLogprob.from_dict(x) for x in logprobs],
        )


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens spent on one request (prompt counted once, completions summed over ``n``)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        """JSON-able form."""
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}


@dataclass(frozen=True, slots=True)
class TeacherResult:
    """What came back for one request: generations, or ``error`` (then no generations).

    ``attempt_errors``: the failed attempts behind this result by cause (:func:`error_cause`),
    the backend's own retries included, so they can be counted and shown per job.
    """

    generations: list[Generation]
    usage: Usage = field(default_factory=Usage)
    latency_s: float = 0.0
    error: TeacherError | None = None
    attempt_errors: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the request succeeded."""
        return self.error is None

    @classmethod
    def failed(
        cls,
        error: TeacherError,
        latency_s: float = 0.0,
        attempt_errors: dict[str, int] | None = None,
    ) -> TeacherResult:
        """A result for a request that failed for good."""
        return cls(
            generations=[],
            usage=Usage(),
            latency_s=latency_s,
            error=error,
            attempt_errors=attempt_errors or {},
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form, to store with the example (or the failure) it produced."""
        return {
            "generations": [g.as_dict() for g in self.generations],
            "usage": self.usage.as_dict(),
            "latency_s": self.latency_s,
            "error": None if self.error is None else self.error.as_dict(),
            "attempt_errors": dict(self.attempt_errors),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TeacherResult:
        """Inverse of :meth:`as_dict`."""
        error = data.get("error")
        usage = data.get("usage") or {}
        return cls(
            generations=[Generation.from_dict(g) for g in data.get("generations", ())],
            usage=Usage(usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)),
            latency_s=data.get("latency_s", 0.0),
            error=None if error is None else error_from_dict(error),
            attempt_errors=dict(data.get("attempt_errors") or {}),
        )


# --- scoring (teacher-forced) -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScoreRequest:
    """Text the teacher did not write, to score token by token.

    ``messages`` is the prompt (system first, as the teacher sees it); ``completion`` the
    response. The backend renders both with the teacher's chat template (the completion as the
    assistant turn, its end-of-turn tokens included) and returns, at every completion token, the
    teacher's logprob of it and its ``top_logprobs`` most likely alternatives.
    """

    messages: list[dict[str, str]]
    completion: str
    top_logprobs: int
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class ScoreResult:
    """The teacher's view of one completion: one :class:`TokenLogprob` per completion token
    (``token_id`` always set), or ``error`` (then no tokens)."""

    tokens: list[TokenLogprob]
    prompt_tokens: int = 0
    latency_s: float = 0.0
    error: TeacherError | None = None
    attempt_errors: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


TokenizerInfo = dict[str, Any]
"""A teacher's tokenizer identity: ``name``, ``vocab_size``, ``sha256`` (of the tokenizer
definition), ``chat_template`` (the template prompts are rendered with, or None),
``chat_template_sha256`` and ``source`` ("server": the serving engine said so; "local": the
tokenizer files the backend loaded)."""


# --- the protocol -----------------------------------------------------------------------------


@runtime_checkable
class Teacher(Protocol):
    """A teacher backend: one async batch call, and a close."""

    backend: str
    model: str

    async def generate(self, requests: Sequence[TeacherRequest]) -> list[TeacherResult]:
        """One result per request, in the same order; failures come back as results."""
        ...

    async def aclose(self) -> None:
        """Release connections, engines and memory."""
        ...


@runtime_checkable
class WhiteBoxTeacher(Protocol):
    """A teacher that can give its token distributions with token ids (soft targets): its
    tokenizer identity, and teacher-forced scoring of given text. Backends that cannot (an
    OpenAI-compatible server without token ids) raise :class:`TeacherRejected` from
    :meth:`tokenizer_info` with the reason."""

    async def tokenizer_info(self) -> TokenizerInfo:
        """The tokenizer identity (see :data:`TokenizerInfo`); raises when ids are unavailable."""
        ...

    async def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        """One result per request, in the same order; failures come back as results."""
        ...
