"""OpenAI-compatible chat-completions teacher (``vllm serve``, SGLang, llama.cpp, Ollama, OpenAI).

The hot path is aiohttp: one ``ClientSession`` whose ``TCPConnector`` is sized to
``max_concurrency``, and a semaphore. Every request of a batch becomes a task gated by the
semaphore, so the server sees ``max_concurrency`` requests in flight for as long as work is
queued (httpx's pool costs ~25 ms CPU per request at that concurrency; NOTES-STACK section 8).

Retries: 429 (honouring ``Retry-After``), 5xx, timeouts, connection errors and malformed bodies,
with exponential backoff and jitter, up to ``max_retries``. The semaphore is not held while a
request waits to retry. Other 4xx (unknown model, bad request) are final. A request that still
fails comes back as a :class:`~workers.teachers.base.TeacherResult` with ``error`` set.

Structured output is sent as ``response_format: {"type": "json_schema", ...}`` (vLLM converts it
to its own structured outputs; the legacy ``guided_json`` was removed and is silently ignored).
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
from yarl import URL

from workers.teachers.base import (
    Generation,
    TeacherBadResponse,
    TeacherError,
    TeacherRateLimited,
    TeacherRejected,
    TeacherRequest,
    TeacherResult,
    TeacherTimeout,
    TeacherUnavailable,
    TokenLogprob,
    Usage,
    error_cause,
)

if TYPE_CHECKING:
    from app.config import TeacherSettings

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 10.0
TOKEN_ID_PREFIX = "token_id:"  # vLLM's token form with return_tokens_as_token_ids
_SCHEMA_NAME = re.compile(r"[^a-zA-Z0-9_-]")


# --- the wire format (pure functions) ----------------------------------------------------------


def build_body(
    request: TeacherRequest, model: str, *, return_token_ids: bool = False
) -> dict[str, Any]:
    """The chat-completions JSON body for one request; every sampling value is explicit."""
    sampling = request.sampling
    body: dict[str, Any] = {
        "model": model,
        "messages": request.messages,
        "n": sampling.n,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_tokens": sampling.max_tokens,
        "seed": sampling.seed,
        "stop": list(sampling.stop) or None,
    }
    if request.json_schema is not None:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {
                "name": schema_name(request.json_schema),
                "schema": request.json_schema,
                "strict": True,
            },
        }
    if request.top_logprobs is not None:
        body["logprobs"] = True
        body["top_logprobs"] = request.top_logprobs
        if return_token_ids:
            body["return_tokens_as_token_ids"] = True
    return body


def schema_name(schema: Mapping[str, Any]) -> str:
    """A ``json_schema.name`` the OpenAI API accepts (``[a-zA-Z0-9_-]{1,64}``)."""
    title = str(schema.get("title") or "output")
    return _SCHEMA_NAME.sub("_", title)[:64] or "output"


def parse_completion(data: Any) -> tuple[list[Generation], Usage]:
    """Generations and usage from a chat-completions body; extra fields are ignored.

    Raises :class:`TeacherBadResponse` when the body does not have the expected shape: no
    ``choices``, a choice whose ``content`` is not text, or no ``usage`` (a protocol error is
    retried like a 5xx, never turned into a blank answer).
    """
    try:
        choices = data["choices"]
        if not isinstance(choices, list) or not choices:
            raise TeacherBadResponse("response has no choices")
        if len(choices) > 1:
            choices = sorted(choices, key=lambda c: c.get("index", 0))
        generations = [_parse_choice(choice) for choice in choices]
        usage = data.get("usage")
        if not isinstance(usage, dict):
            raise TeacherBadResponse("response has no usage")
        return generations, Usage(
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise TeacherBadResponse(f"unexpected response shape: {exc!r}") from exc


def _parse_choice(choice: Mapping[str, Any]) -> Generation:
    message = choice["message"]
    content = message.get("content")
    if not isinstance(content, str):  # null (e.g. a refusal or tool call) is no answer
        raise TeacherBadResponse(f"response content is {type(content).__name__}, not text")
    logprobs = choice.get("logprobs")
    entries = logprobs.get("content") if logprobs else None
    return Generation(
        text=content,
        finish_reason=choice.get("finish_reason"),
        logprobs=None if entries is None else [_parse_token(e) for e in entries],
    )


def _parse_token(entry: Mapping[str, Any]) -> TokenLogprob:
    token, token_id = split_token(entry)
    top = []
    for alt in entry.get("top_logprobs") or ():
        alt_token, alt_id = split_token(alt)
        top.append((alt_token, alt_id, float(alt["logprob"])))
    return TokenLogprob(token=token, token_id=token_id, logprob=float(entry["logprob"]), top=top)


def split_token(entry: Mapping[str, Any]) -> tuple[str, int | None]:
    """(text, id) of a logprob entry; ids only come as vLLM's ``token_id:N`` form."""
    token = entry["token"]
    if token.startswith(TOKEN_ID_PREFIX) and token[len(TOKEN_ID_PREFIX) :].isdigit():
        raw = entry.get("bytes")
        text = bytes(raw).decode("utf-8", "replace") if raw is not None else token
        return text, int(token[len(TOKEN_ID_PREFIX) :])
    return token, None


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_for_status(
    status: int, body: bytes, headers: Mapping[str, str], url: str
) -> TeacherError:
    """The typed error for a non-200 answer."""
    detail = _error_message(body)
    message = f"HTTP {status} from {url}: {detail}"
    if status == 429:
        retry_after = parse_retry_after(headers.get("Retry-After"))
        return TeacherRateLimited(message, status=status, retry_after=retry_after)
    if status == 408:
        return TeacherTimeout(message, status=status)
    if status >= 500:
        return TeacherUnavailable(message, status=status)
    return TeacherRejected(message, status=status)


def _error_message(body: bytes) -> str:
    """The server's own message from an error body (OpenAI envelope or FastAPI ``detail``)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:200].decode("utf-8", "replace").strip() or "(empty body)"
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        for key in ("message", "detail", "error"):
            if data.get(key):
                return str(data[key])
    return str(data)[:200]


def retry_delay(
    attempt: int,
    error: TeacherError,
    *,
    base_s: float,
    max_s: float,
    max_retry_after_s: float,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before retry ``attempt`` (0-based): the server's ``Retry-After`` if it
    gave one (plus up to 10 % jitter), else exponential backoff with equal jitter."""
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        return min(retry_after, max_retry_after_s) * (1.0 + 0.1 * rand())
    backoff = min(max_s, base_s * 2**attempt)
    return backoff / 2 + rand() * backoff / 2


# --- the backend -------------------------------------------------------------------------------


class OpenAITeacher:
    """Teacher behind any OpenAI-compatible ``/v1/chat/completions`` endpoint.

    One instance per event loop (the aiohttp session is created on first use). When ``model``
    is empty it is discovered from ``GET /models`` on first use (the first model served).
    ``latency_s`` of a result runs from its first send to its last answer, retries included.
    """

    backend = "openai"

    def __init__(
        self,
        *,
        base_url: str,
        model: str | None = None,
        api_key: str | None = None,
        max_concurrency: int = 64,
        request_timeout_s: float = 300.0,
        max_retries: int = 5,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        max_retry_after_s: float = 120.0,
        return_token_ids: bool = False,
    ) -> None:
        url = URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"teacher base_url must be an http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.model = model or ""
        self.max_concurrency = max_concurrency
        self.request_timeout_s = request_timeout_s
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.max_retry_after_s = max_retry_after_s
        self.return_token_ids = return_token_ids
        self._chat_url = f"{self.base_url}/chat/completions"
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._session: aiohttp.ClientSession | None = None
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._model_lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: TeacherSettings) -> OpenAITeacher:
        """Build from the worker's teacher settings."""
        if not settings.base_url:
            raise ValueError("the openai teacher needs DISTILLERY_TEACHER__BASE_URL")
        return cls(
            base_url=settings.base_url,
            model=settings.model,
            api_key=settings.api_key.get_secret_value() if settings.api_key else None,
            max_concurrency=settings.max_concurrency,
            request_timeout_s=settings.request_timeout_s,
            max_retries=settings.max_retries,
        )

    async def generate(self, requests: Sequence[TeacherRequest]) -> list[TeacherResult]:
        """Send the whole batch, ``max_concurrency`` at a time; results in request order."""
        if not requests:
            return []
        if not self.model:
            try:
                await self._discover_model()
            except TeacherError as exc:
                return [TeacherResult.failed(exc) for _ in requests]
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self._run(request)) for request in requests]
        return [task.result() for task in tasks]

    async def aclose(self) -> None:
        """Close the connection pool."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- internals --

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self.max_concurrency, limit_per_host=0)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.request_timeout_s),
            )
        return self._session

    async def _run(self, request: TeacherRequest) -> TeacherResult:
        body = orjson.dumps(build_body(request, self.model, return_token_ids=self.return_token_ids))
        started: float | None = None
        attempt = 0
        causes: Counter[str] = Counter()
        while True:
            async with self._semaphore:
                if started is None:
                    started = time.perf_counter()
                try:
                    generations, usage = await self._post(body)
                except TeacherError as exc:
                    error = exc
                    causes[error_cause(exc)] += 1
                else:
                    elapsed = time.perf_counter() - started
                    return TeacherResult(generations, usage, elapsed, attempt_errors=dict(causes))
            if not error.retryable or attempt >= self.max_retries:
                self._log_failure(request, error, attempt)
                return TeacherResult.failed(error, time.perf_counter() - started, dict(causes))
            await asyncio.sleep(
                retry_delay(
                    attempt,
                    error,
                    base_s=self.backoff_base_s,
                    max_s=self.backoff_max_s,
                    max_retry_after_s=self.max_retry_after_s,
                )
            )
            attempt += 1

    async def _post(self, body: bytes) -> tuple[list[Generation], Usage]:
        raw, status, headers = await self._send("POST", self._chat_url, body)
        if status != 200:
            raise error_for_status(status, raw, headers, self._chat_url)
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise TeacherBadResponse(f"invalid JSON from {self._chat_url}: {exc}") from exc
        return parse_completion(data)

    async def _send(
        self, method: str, url: str, body: bytes | None = None, timeout_s: float | None = None
    ) -> tuple[bytes, int, Mapping[str, str]]:
        """One HTTP exchange; transport failures become typed errors."""
        limit = timeout_s or self.request_timeout_s
        try:
            async with self._client().request(
                method,
                url,
                data=body,
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=limit),
            ) as response:
                return await response.read(), response.status, response.headers
        except TimeoutError as exc:
            raise TeacherTimeout(f"no answer from {url} within {limit:g} s") from exc
        except aiohttp.ClientConnectorError as exc:
            raise TeacherUnavailable(f"no teacher server at {url}: {exc.strerror}") from exc
        except aiohttp.ClientError as exc:
            raise TeacherUnavailable(f"connection to {url} failed: {exc!r}") from exc

    async def probe(self) -> None:
        """A cheap liveness check (``GET /models``); raises a :class:`TeacherError`."""
        await self._models(timeout_s=PROBE_TIMEOUT_S)

    async def _models(self, timeout_s: float | None = None) -> tuple[str, bytes]:
        """``GET /models``: the URL and the body; a non-200 answer raises its typed error."""
        url = f"{self.base_url}/models"
        raw, status, headers = await self._send("GET", url, timeout_s=timeout_s)
        if status != 200:
            raise error_for_status(status, raw, headers, url)
        return url, raw

    async def _discover_model(self) -> None:
        async with self._model_lock:
            if self.model:
                return
            url, raw = await self._models()
            try:
                self.model = str(orjson.loads(raw)["data"][0]["id"])
            except (orjson.JSONDecodeError, KeyError, IndexError, TypeError) as exc:
                raise TeacherBadResponse(f"no model listed at {url}") from exc
            logger.info(
                "teacher model discovered: %s",
                self.model,
                extra={"action": "teacher_model_discovered", "model": self.model, "url": url},
            )

    def _log_failure(self, request: TeacherRequest, error: TeacherError, retries: int) -> None:
        logger.warning(
            "teacher request failed after %d retries: %s",
            retries,
            error,
            extra={
                "action": "teacher_request_failed",
                "backend": self.backend,
                "request_id": request.request_id,
                "error": type(error).__name__,
                "retries": retries,
            },
        )
