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

White-box knowledge (soft targets) needs token ids, which only vLLM gives over HTTP:

* generation with ``top_logprobs = k`` asks for ``return_tokens_as_token_ids`` (tokens come as
  ``token_id:N``); an answer whose tokens do not carry ids is a final
  :class:`~workers.teachers.base.TeacherRejected` (never stored with null ids). A server that
  rejects the unknown field can be used with ``return_token_ids=False`` when it gives ids by
  itself (``vllm serve --return-tokens-as-token-ids``);
* :meth:`OpenAITeacher.tokenizer_info`: a local tokenizer named in the settings (its files'
  identity; checked against the server's ``POST /tokenize``), else the server's
  ``GET /tokenizer_info`` (``vllm serve --enable-tokenizer-info-endpoint``), else refused; and
  a one-token probe that the server gives ids at all. Cached;
* :meth:`OpenAITeacher.score`: ``POST /tokenize`` (the chat with and without the answer) for
  the ids, then ``POST /v1/completions`` with the ids as the prompt, ``echo``,
  ``max_tokens: 0`` and ``prompt_logprobs: k``; the completion's positions are read from
  ``choices[0].prompt_logprobs``. ``/tokenize`` and ``/tokenizer_info`` live at the server's
  root (``base_url`` without ``/v1``). Retries and errors as for generation.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
import orjson
from yarl import URL

from workers.teachers.base import (
    Generation,
    SamplingParams,
    ScoreRequest,
    ScoreResult,
    TeacherBadResponse,
    TeacherError,
    TeacherMissingExtra,
    TeacherRateLimited,
    TeacherRejected,
    TeacherRequest,
    TeacherResult,
    TeacherTimeout,
    TeacherUnavailable,
    TokenizerInfo,
    TokenLogprob,
    Usage,
    error_cause,
)
from workers.teachers.tokenization import (
    assistant_turn,
    local_tokenizer_info,
    render_ids,
    served_tokenizer_info,
    split_completion,
    token_logprob,
)

if TYPE_CHECKING:
    from app.config import TeacherSettings

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 10.0
TOKEN_ID_PREFIX = "token_id:"  # vLLM's token form with return_tokens_as_token_ids
_SCHEMA_NAME = re.compile(r"[^a-zA-Z0-9_-]")
T = TypeVar("T")

# the one-token request that checks a server gives token ids (tokenizer_info)
IDS_PROBE = TeacherRequest(
    messages=[{"role": "user", "content": "Say hello."}],
    sampling=SamplingParams(n=1, temperature=0.0, top_p=1.0, max_tokens=1, seed=0),
    top_logprobs=1,
    request_id="token-ids-probe",
)
# the chat a local tokenizer must tokenize as the server does
TOKENIZER_PROBE = [
    {"role": "system", "content": "You write data. Täglich 東京 🙂"},
    {"role": "user", "content": "Explain  tabs\tand\nnew lines, 1234567."},
]


# --- the wire format (pure functions) ----------------------------------------------------------


def build_body(
    request: TeacherRequest, model: str, *, return_token_ids: bool = True
) -> dict[str, Any]:
    """The chat-completions JSON body for one request; every sampling value is explicit.

    With ``top_logprobs`` it asks for vLLM's ``return_tokens_as_token_ids`` unless
    ``return_token_ids`` is False (a server that gives ids by itself and rejects the field)."""
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
    top.sort(key=lambda alt: -alt[2])  # best first (stable for ties)
    return TokenLogprob(token=token, token_id=token_id, logprob=float(entry["logprob"]), top=top)


def require_token_ids(generations: Sequence[Generation], url: str) -> None:
    """Raise a final :class:`TeacherRejected` unless every generated token and alternative
    has its id (soft targets are never stored with null ids)."""
    for generation in generations:
        if generation.logprobs is None:
            raise TeacherRejected(
                f"the teacher server at {url} returned no logprobs: it cannot give soft "
                "targets (top_logprobs needs a vLLM server)"
            )
        for lp in generation.logprobs:
            if lp.token_id is None or any(alt[1] is None for alt in lp.top):
                raise TeacherRejected(
                    f"the teacher server at {url} cannot give token ids: its logprobs name "
                    "tokens by text, not as vLLM's 'token_id:N' (return_tokens_as_token_ids); "
                    "soft targets need a vLLM server"
                )


def build_score_body(token_ids: Sequence[int], model: str, top_logprobs: int) -> dict[str, Any]:
    """The completions JSON body that teacher-forces ``token_ids``: the prompt's top-k
    logprobs (``prompt_logprobs``), echoed, nothing generated (``max_tokens: 0``)."""
    return {
        "model": model,
        "prompt": list(token_ids),
        "max_tokens": 0,
        "echo": True,
        "prompt_logprobs": top_logprobs,
        "temperature": 0.0,
        "return_token_ids": True,  # prompt_token_ids back, and no detokenized echo
    }


def parse_prompt_logprobs(
    data: Any, token_ids: Sequence[int], start: int, k: int, url: str
) -> list[TokenLogprob]:
    """The positions ``start..`` of a completions body's ``choices[0].prompt_logprobs``
    (vLLM: per position ``{"<id>": {"logprob", "rank", "decoded_token"}}``, the top-k and the
    prompt's own token; position 0 is null).

    A body without ``prompt_logprobs`` is a final :class:`TeacherRejected` (a server that
    ignores the field cannot score); a malformed one is :class:`TeacherBadResponse`."""
    try:
        choice = data["choices"][0]
        positions = choice.get("prompt_logprobs")
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise TeacherBadResponse(f"unexpected response shape: {exc!r}") from exc
    if positions is None:
        raise TeacherRejected(
            f"the teacher server at {url} returned no prompt_logprobs: it cannot score text "
            "(teacher-forced scoring needs a vLLM server)"
        )
    echoed = choice.get("prompt_token_ids")
    if echoed is not None and list(echoed) != list(token_ids):
        raise TeacherBadResponse("the server's prompt_token_ids differ from the ids sent")
    if not isinstance(positions, list) or len(positions) < len(token_ids):
        raise TeacherBadResponse("prompt_logprobs do not cover the prompt")
    tokens = []
    try:
        for t in range(start, len(token_ids)):
            position = positions[t]
            if not isinstance(position, dict):
                raise TeacherBadResponse(f"no prompt_logprobs at position {t}")
            entries = [
                (int(key), value.get("logprob"), value.get("decoded_token") or "")
                for key, value in position.items()
            ]
            tokens.append(token_logprob(int(token_ids[t]), entries, k))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise TeacherBadResponse(f"unexpected prompt_logprobs: {exc!r}") from exc
    return tokens


def server_root(base_url: str) -> str:
    """The server's root URL: ``base_url`` without a trailing ``/v1`` (vLLM serves
    ``/tokenize`` and ``/tokenizer_info`` there)."""
    base = base_url.rstrip("/")
    return base[: -len("/v1")] if base.endswith("/v1") else base


def load_local_tokenizer(name: str) -> Any:
    """``AutoTokenizer.from_pretrained(name)``; typed errors when it cannot be had."""
    try:
        from transformers import AutoTokenizer
    except ImportError as exc:
        raise TeacherMissingExtra(
            f"a local teacher tokenizer ({name!r}) needs transformers: pip install 'distillery[hf]'"
        ) from exc
    try:
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as exc:
        raise TeacherRejected(f"cannot load the teacher tokenizer {name!r}: {exc}") from exc


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
        return float(min(retry_after, max_retry_after_s) * (1.0 + 0.1 * rand()))
    backoff = min(max_s, base_s * 2**attempt)
    return float(backoff / 2 + rand() * backoff / 2)


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
        return_token_ids: bool = True,
        tokenizer: str | None = None,
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
        self.tokenizer = tokenizer
        self._chat_url = f"{self.base_url}/chat/completions"
        self._completions_url = f"{self.base_url}/completions"
        self._tokenize_url = f"{server_root(self.base_url)}/tokenize"
        self._tokenizer_info_url = f"{server_root(self.base_url)}/tokenizer_info"
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._session: aiohttp.ClientSession | None = None
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._model_lock = asyncio.Lock()
        self._info_lock = asyncio.Lock()
        self._tokenizer_info: TokenizerInfo | None = None

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
            tokenizer=settings.tokenizer,
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

    async def tokenizer_info(self) -> TokenizerInfo:
        """The teacher's tokenizer identity, found once (see the module docstring); raises
        :class:`TeacherRejected` when the server cannot tell its tokenizer or give token ids,
        a retryable :class:`TeacherError` when it cannot be reached."""
        async with self._info_lock:
            if self._tokenizer_info is None:
                if not self.model:
                    await self._discover_model()
                info, error, _, _ = await self._retrying("tokenizer-info", self._find_tokenizer)
                if error is not None:
                    raise error
                self._tokenizer_info = info
            assert self._tokenizer_info is not None
            return dict(self._tokenizer_info)

    async def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        """Teacher-force every request's completion, ``max_concurrency`` at a time; results
        in request order."""
        if not requests:
            return []
        if not self.model:
            try:
                await self._discover_model()
            except TeacherError as exc:
                return [ScoreResult(tokens=[], error=exc) for _ in requests]
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self._score_run(request)) for request in requests]
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
        wants_ids = request.top_logprobs is not None
        value, error, elapsed, causes = await self._retrying(
            request.request_id, lambda: self._post(body, wants_ids)
        )
        if error is not None:
            return TeacherResult.failed(error, elapsed, causes)
        assert value is not None
        generations, usage = value
        return TeacherResult(generations, usage, elapsed, attempt_errors=causes)

    async def _score_run(self, request: ScoreRequest) -> ScoreResult:
        value, error, elapsed, causes = await self._retrying(
            request.request_id, lambda: self._score_once(request)
        )
        if error is not None:
            return ScoreResult(tokens=[], latency_s=elapsed, error=error, attempt_errors=causes)
        assert value is not None
        prompt_tokens, tokens = value
        return ScoreResult(tokens, prompt_tokens, elapsed, attempt_errors=causes)

    async def _retrying(
        self, request_id: str | None, attempt_once: Callable[[], Awaitable[T]]
    ) -> tuple[T | None, TeacherError | None, float, dict[str, int]]:
        """``attempt_once()`` under the semaphore until it succeeds, fails for good, or the
        retries are spent: (value, error, seconds from the first send, failed attempts by
        cause). The semaphore is not held while waiting to retry."""
        started: float | None = None
        attempt = 0
        causes: Counter[str] = Counter()
        while True:
            async with self._semaphore:
                if started is None:
                    started = time.perf_counter()
                try:
                    value = await attempt_once()
                except TeacherError as exc:
                    error = exc
                    causes[error_cause(exc)] += 1
                else:
                    return value, None, time.perf_counter() - started, dict(causes)
            if not error.retryable or attempt >= self.max_retries:
                self._log_failure(request_id, error, attempt)
                return None, error, time.perf_counter() - started, dict(causes)
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

    async def _post(self, body: bytes, wants_ids: bool = False) -> tuple[list[Generation], Usage]:
        generations, usage = parse_completion(await self._post_json(self._chat_url, body))
        if wants_ids:
            require_token_ids(generations, self.base_url)
        return generations, usage

    async def _post_json(self, url: str, body: bytes) -> Any:
        """POST ``body``; the decoded JSON answer, or the typed error."""
        raw, status, headers = await self._send("POST", url, body)
        if status != 200:
            raise error_for_status(status, raw, headers, url)
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise TeacherBadResponse(f"invalid JSON from {url}: {exc}") from exc

    async def _tokenize(self, payload: dict[str, Any]) -> list[int]:
        """``POST /tokenize`` (vLLM): a chat (``messages``, ``add_generation_prompt``) or a
        text (``prompt``, ``add_special_tokens``) -> token ids."""
        body = orjson.dumps({"model": self.model, **payload})
        try:
            data = await self._post_json(self._tokenize_url, body)
        except TeacherRejected as exc:
            if exc.status in (404, 405):
                raise TeacherRejected(
                    f"the teacher server at {self.base_url} has no /tokenize: it cannot score "
                    "text (teacher-forced scoring needs a vLLM server)",
                    status=exc.status,
                ) from exc
            raise
        try:
            return [int(i) for i in data["tokens"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise TeacherBadResponse(f"unexpected /tokenize answer: {exc!r}") from exc

    async def _score_once(self, request: ScoreRequest) -> tuple[int, list[TokenLogprob]]:
        """One try at scoring a request: (prompt tokens, one TokenLogprob per completion
        token). The completion's ids are the chat with the answer minus the chat with the
        generation prompt; when the first does not start with the second, the prompt's ids
        followed by the completion tokenized alone (no end-of-turn tokens)."""
        prompt = await self._tokenize({"messages": request.messages, "add_generation_prompt": True})
        full = await self._tokenize(
            {
                "messages": assistant_turn(request.messages, request.completion),
                "add_generation_prompt": False,
            }
        )
        completion = split_completion(prompt, full)
        if completion is None:
            completion = await self._tokenize(
                {"prompt": request.completion, "add_special_tokens": False}
            )
        if not prompt:
            raise TeacherRejected("the chat template rendered an empty prompt")
        if not completion:
            return len(prompt), []
        ids = prompt + completion
        body = orjson.dumps(build_score_body(ids, self.model, request.top_logprobs))
        data = await self._post_json(self._completions_url, body)
        tokens = parse_prompt_logprobs(data, ids, len(prompt), request.top_logprobs, self.base_url)
        return len(prompt), tokens

    async def _find_tokenizer(self) -> TokenizerInfo:
        """One try at the tokenizer identity, then the token-ids probe."""
        if self.tokenizer:
            tokenizer = await asyncio.to_thread(load_local_tokenizer, self.tokenizer)
            info = await asyncio.to_thread(local_tokenizer_info, tokenizer, self.tokenizer)
            await self._check_local_tokenizer(tokenizer)
        else:
            url = self._tokenizer_info_url
            raw, status, headers = await self._send("GET", url, timeout_s=PROBE_TIMEOUT_S)
            if status in (404, 405):
                raise TeacherRejected(
                    f"the teacher server at {self.base_url} cannot tell its tokenizer (no "
                    "GET /tokenizer_info): start vLLM with --enable-tokenizer-info-endpoint, "
                    "or name the teacher's tokenizer in DISTILLERY_TEACHER__TOKENIZER",
                    status=status,
                )
            if status != 200:
                raise error_for_status(status, raw, headers, url)
            try:  # the stdlib parser: tokenizer settings hold ints beyond 64 bits
                served = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise TeacherBadResponse(f"invalid JSON from {url}: {exc}") from exc
            if not isinstance(served, dict):
                raise TeacherBadResponse(f"unexpected answer from {url}: not an object")
            info = served_tokenizer_info(served, self.model)
        body = orjson.dumps(
            build_body(IDS_PROBE, self.model, return_token_ids=self.return_token_ids)
        )
        await self._post(body, wants_ids=True)
        return info

    async def _check_local_tokenizer(self, tokenizer: Any) -> None:
        """The local tokenizer must render and tokenize a chat as the server does (checked
        when the server has ``/tokenize``)."""
        try:
            served = await self._tokenize(
                {"messages": TOKENIZER_PROBE, "add_generation_prompt": True}
            )
        except TeacherRejected as exc:
            if exc.status in (404, 405):
                return  # the server cannot say: the setting is trusted
            raise
        local = await asyncio.to_thread(
            render_ids, tokenizer, TOKENIZER_PROBE, add_generation_prompt=True
        )
        if local != served:
            raise TeacherRejected(
                f"the teacher tokenizer {self.tokenizer!r} (DISTILLERY_TEACHER__TOKENIZER) does "
                f"not tokenize a chat as the server at {self.base_url} does "
                f"({len(local)} vs {len(served)} tokens): it is not the teacher's tokenizer"
            )

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

    def _log_failure(self, request_id: str | None, error: TeacherError, retries: int) -> None:
        logger.warning(
            "teacher request failed after %d retries: %s",
            retries,
            error,
            extra={
                "action": "teacher_request_failed",
                "backend": self.backend,
                "request_id": request_id,
                "error": type(error).__name__,
                "retries": retries,
            },
        )
