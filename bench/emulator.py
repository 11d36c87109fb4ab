"""A loopback OpenAI-compatible teacher that behaves like a GPU server, for tests and benchmarks.

Routes::

    POST /v1/chat/completions   chat completions (n, max_tokens, seed, logprobs, response_format)
    POST /v1/completions        teacher-forced scoring as vLLM does it: token-id prompt, echo,
                                max_tokens 0, prompt_logprobs k
    POST /tokenize              vLLM's: a chat (messages, add_generation_prompt) or a text
    GET  /tokenizer_info        vLLM's (--enable-tokenizer-info-endpoint)
    GET  /v1/models             the one model served
    GET  /stats                 requests in flight over time (time-weighted mean, max), totals
    POST /stats/reset           start a new measurement window
    GET  /faults, POST /faults  read or replace the injected faults

Behaviour:

* latency = ``base_latency_s + output_tokens * per_token_s``; at most ``max_in_flight`` requests
  are served at once (like vLLM's ``max_num_seqs``), the rest queue;
* outputs are deterministic and unique: derived from a hash of the messages and the request's
  seed (or a counter when there is none); a plain-text output starts with ``[<last message>]``
  so a client can check it got the answer to its own request;
* ``response_format: {"type": "json_schema"}`` returns JSON that satisfies the schema (objects,
  arrays, strings, integers, numbers, booleans, enums, required fields, minItems, $defs refs);
* a model name other than the served one is a 404, like vLLM;
* white-box routes like vLLM's: logprob tokens as ``token_id:N`` with
  ``return_tokens_as_token_ids``, top alternatives distinct and sorted by logprob; a made-up
  tokenizer (:data:`VOCAB` words, then bytes, then the chat markers) for ``/tokenize`` and the
  completions' ``prompt_logprobs`` (synthetic, deterministic per prefix: the prompt's own
  token first, then k - 1 others); ``--no-token-ids`` behaves like a server that is not vLLM
  (text tokens only, no ``/tokenize``, ``/tokenizer_info`` or ``prompt_logprobs``);
* opt-in ``--realistic``: a JSON schema asking for a ``tasks`` array (a Self-Instruct proposal)
  (or for one task: an ``instruction`` property, an evolution) gets the number of tasks the
  prompt asks for ("exactly N tasks", else 10), each an
  instruction-like sentence of 8-16 words drawn from a large made-up vocabulary (a few hundred
  thousand words), a third of them with an input, so that proposals pass the quality filters and
  are almost never near duplicates of each other; ``--realistic-dup-fraction F`` makes that
  share of tasks a one-word variation of a task this emulator proposed before (a near
  duplicate curation must reject). Off by default: the schema filler below answers then.

Faults (at start with ``--faults JSON`` or at runtime with ``POST /faults``), each kind with a
``fraction`` of requests and/or an exact ``count`` of the next requests::

    {"rate_limit": {"count": 3, "retry_after_s": 0.2},   # 429 with Retry-After
     "server_error": {"fraction": 0.1},                  # 500
     "hang": {"count": 1},                               # no answer (client times out)
     "drop": {"count": 1},                               # connection closed, no response
     "malformed": {"count": 1}}                          # 200 with invalid JSON

CLI: ``python -m bench.emulator --port 0 --model NAME --base-latency 0.4 --per-token 0
--max-in-flight 256 [--realistic [--realistic-dup-fraction 0.1]]`` prints ``READY <port>`` on
stdout once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import itertools
import random
import re
import signal
import sys
import time
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

FAULT_KINDS = ("rate_limit", "server_error", "hang", "drop", "malformed")
MALFORMED_BODY = b'{"id": "chatcmpl-broken", "choices": [{"index": 0, "message": '
_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
# 256 one-syllable "words", each a token with a leading space (token id = index)
VOCAB: tuple[str, ...] = tuple(
    f" {a}{v}{b}" for a, v, b in itertools.product(_CONSONANTS, _VOWELS, _CONSONANTS)
)[:256]
TOKEN_ID = {token: i for i, token in enumerate(VOCAB)}
# the made-up tokenizer of /tokenize and /v1/completions: VOCAB words (0-255), then the 256
# bytes (256-511), then the chat markers
BYTE_BASE = 256
MARKERS = ("<|bos|>", "<|eos|>", "<|system|>", "<|user|>", "<|assistant|>")
MARKER_ID = {marker: 2 * BYTE_BASE + i for i, marker in enumerate(MARKERS)}
VOCAB_SIZE = 2 * BYTE_BASE + len(MARKERS)
CHAT_TEMPLATE = (
    "<|bos|>{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|eos|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
_TOKEN_PATTERN = re.compile(
    "|".join(re.escape(m) for m in MARKERS) + "|" + "|".join(re.escape(w) for w in VOCAB)
)


@dataclass
class EmulatorConfig:
    """How the emulated server behaves."""

    model: str = "emulator"
    base_latency_s: float = 0.4
    per_token_s: float = 0.0
    max_in_flight: int = 256  # sequences served at once; more requests queue
    output_tokens: int = 16  # tokens per completion when max_tokens allows
    seed: int = 0
    api_key: str | None = None
    hang_s: float = 3600.0  # how long a "hang" fault waits (the client gives up first)
    realistic: bool = False  # task-list schemas get instruction-like, diverse tasks
    realistic_dup_fraction: float = 0.0  # share of realistic tasks that near-copy an earlier one
    token_ids: bool = True  # False: like a server that is not vLLM (no ids, no /tokenize)


# --- faults -----------------------------------------------------------------------------------


@dataclass
class FaultSpec:
    """One kind of fault: a fraction of all requests and/or an exact count of the next ones."""

    fraction: float = 0.0
    count: int = 0


@dataclass
class Faults:
    """The faults injected now; ``pick`` decides per request."""

    specs: dict[str, FaultSpec] = field(default_factory=dict)
    retry_after_s: float = 1.0
    rng: random.Random = field(default_factory=lambda: random.Random(0))

    @classmethod
    def parse(cls, data: Mapping[str, Any] | None, seed: int = 0) -> Faults:
        """From the JSON shape in the module docstring; unknown kinds are a ValueError."""
        data = dict(data or {})
        unknown = set(data) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {FAULT_KINDS}")
        specs = {}
        retry_after_s = 1.0
        for kind, spec in data.items():
            spec = dict(spec or {})
            if kind == "rate_limit":
                retry_after_s = float(spec.pop("retry_after_s", retry_after_s))
            fraction, count = float(spec.pop("fraction", 0.0)), int(spec.pop("count", 0))
            if spec or not 0.0 <= fraction <= 1.0 or count < 0:
                raise ValueError(f"bad fault spec for {kind}: {data[kind]!r}")
            specs[kind] = FaultSpec(fraction=fraction, count=count)
        return cls(specs=specs, retry_after_s=retry_after_s, rng=random.Random(seed))

    def pick(self) -> str | None:
        """The fault for the next request, if any (counted faults first, in the order given)."""
        for kind, spec in self.specs.items():
            if spec.count > 0:
                spec.count -= 1
                return kind
        for kind, spec in self.specs.items():
            if spec.fraction > 0 and self.rng.random() < spec.fraction:
                return kind
        return None

    def as_dict(self) -> dict[str, Any]:
        """The current faults (counts are what is left)."""
        out: dict[str, Any] = {
            kind: {"fraction": s.fraction, "count": s.count} for kind, s in self.specs.items()
        }
        if "rate_limit" in out:
            out["rate_limit"]["retry_after_s"] = self.retry_after_s
        return out


# --- stats ------------------------------------------------------------------------------------


class Stats:
    """Requests in flight (received, not yet answered) and running (holding a slot) over time.

    Means are time-weighted over the busy window: from the first request after a reset to the
    last answer (or now, while requests are still open).
    """

    def __init__(self) -> None:
        self.in_flight = 0
        self.running = 0
        self.reset()

    def reset(self) -> None:
        """Start a new window; requests still open stay counted."""
        self.requests = 0
        self.completed = 0
        self.status: Counter[int] = Counter()
        self.faults: Counter[str] = Counter()
        self.max_in_flight = self.in_flight
        self.max_running = self.running
        self._area_in_flight = 0.0
        self._area_running = 0.0
        self._start: float | None = time.perf_counter() if self.in_flight else None
        self._last = self._end = time.perf_counter()

    def _advance(self) -> float:
        now = time.perf_counter()
        elapsed = now - self._last
        self._area_in_flight += self.in_flight * elapsed
        self._area_running += self.running * elapsed
        self._last = now
        return now

    def arrive(self) -> None:
        """A request came in."""
        now = self._advance()
        if self._start is None:
            self._start = now
        self.requests += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def depart(self, status: int) -> None:
        """A request was answered (or abandoned: status 0)."""
        self._end = self._advance()
        self.in_flight -= 1
        self.completed += 1
        self.status[status] += 1

    def run(self, delta: int) -> None:
        """A request took (+1) or gave back (-1) a serving slot."""
        self._advance()
        self.running += delta
        self.max_running = max(self.max_running, self.running)

    def as_dict(self) -> dict[str, Any]:
        """The numbers of the current window."""
        end = self._advance() if self.in_flight else self._end
        window = end - self._start if self._start is not None else 0.0
        return {
            "requests": self.requests,
            "completed": self.completed,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "mean_in_flight": self._area_in_flight / window if window > 0 else 0.0,
            "running": self.running,
            "max_running": self.max_running,
            "mean_running": self._area_running / window if window > 0 else 0.0,
            "window_s": window,
            "status": {str(k): v for k, v in sorted(self.status.items())},
            "faults": dict(self.faults),
        }


# --- outputs ----------------------------------------------------------------------------------


def instance_for(
    schema: Mapping[str, Any],
    rng: random.Random,
    root: Mapping[str, Any] | None = None,
    depth: int = 0,
) -> Any:
    """A value that satisfies a (practical subset of) JSON Schema."""
    root = schema if root is None else root
    if depth > 12:
        return None
    if "$ref" in schema:
        return instance_for(_resolve_ref(schema["$ref"], root), rng, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return rng.choice(list(schema["enum"]))
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return instance_for(options[0], rng, root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    return _INSTANCE[kind](schema, rng, root, depth)


def _resolve_ref(ref: str, root: Mapping[str, Any]) -> Mapping[str, Any]:
    if not ref.startswith("#/"):
        raise ValueError(f"only local $ref are supported, got {ref!r}")
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def _object(schema: Mapping[str, Any], rng: random.Random, root: Any, depth: int) -> Any:
    properties = schema.get("properties") or {}
    return {name: instance_for(sub, rng, root, depth + 1) for name, sub in properties.items()}


def _array(schema: Mapping[str, Any], rng: random.Random, root: Any, depth: int) -> Any:
    low = int(schema.get("minItems", 0))
    high = int(schema.get("maxItems", max(low, 3)))
    size = min(high, max(low, rng.randint(1, 3)))
    items = schema.get("items") or {"type": "string"}
    return [instance_for(items, rng, root, depth + 1) for _ in range(size)]


def _string(schema: Mapping[str, Any], rng: random.Random, root: Any, depth: int) -> Any:
    fmt = schema.get("format")
    if fmt == "date-time":
        return "2024-01-02T03:04:05Z"
    if fmt == "date":
        return "2024-01-02"
    if fmt == "email":
        return "teacher@example.com"
    low = int(schema.get("minLength", 0))
    high = int(schema.get("maxLength", max(low, 40)))
    text = "".join(rng.choices(VOCAB, k=rng.randint(2, 6))).strip()
    while len(text) < low:
        text += VOCAB[rng.randrange(len(VOCAB))]
    return text[:high]


def _bounds(schema: Mapping[str, Any], default: tuple[float, float]) -> tuple[float, float]:
    low = schema.get("minimum", schema.get("exclusiveMinimum", default[0]))
    high = schema.get("maximum", schema.get("exclusiveMaximum", default[1]))
    return float(low), float(high)


def _integer(schema: Mapping[str, Any], rng: random.Random, root: Any, depth: int) -> Any:
    low, high = _bounds(schema, (0, 100))
    low_i = int(low) + (1 if "exclusiveMinimum" in schema else 0)
    high_i = int(high) - (1 if "exclusiveMaximum" in schema else 0)
    return rng.randint(low_i, max(low_i, high_i))


def _number(schema: Mapping[str, Any], rng: random.Random, root: Any, depth: int) -> Any:
    low, high = _bounds(schema, (0.0, 1.0))
    return round(low + (high - low) * (0.05 + 0.9 * rng.random()), 6)


_INSTANCE = {
    "object": _object,
    "array": _array,
    "string": _string,
    "integer": _integer,
    "number": _number,
    "boolean": lambda schema, rng, root, depth: rng.random() < 0.5,
    "null": lambda schema, rng, root, depth: None,
}


def _tokens_for(
    body: Mapping[str, Any], rng: random.Random, count: int, realistic: Any = None
) -> list[str]:
    """The output of one choice as tokens (their concatenation is the text)."""
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema") or {}
        if realistic is not None and realistic.wants(schema):
            value = realistic.fill(schema, body, rng)
        else:
            value = instance_for(schema, rng)
        text = orjson.dumps(value).decode()
        return [text[i : i + 4] for i in range(0, len(text), 4)]
    if response_format.get("type") == "json_object":
        return ['{"text": "', *rng.choices(VOCAB, k=max(count - 2, 0)), '"}']
    messages = body["messages"]
    last = str(messages[-1].get("content", "")) if messages else ""
    return [f"[{last[:48]}]", *rng.choices(VOCAB, k=max(count - 1, 0))]


def _logprobs(tokens: list[str], rng: random.Random, k: int, as_ids: bool) -> dict[str, Any]:
    """OpenAI-style ``logprobs`` with ``k`` distinct alternatives per token (the chosen one
    first), sorted by logprob."""
    content = []
    for token in tokens:
        logprob = -0.5 * rng.random()
        others = [w for w in rng.sample(VOCAB, min(k, len(VOCAB))) if w != token][: k - 1]
        top = [(token, logprob)] + [(w, logprob - 1.0 - i) for i, w in enumerate(others)]
        content.append(
            {
                **_token_entry(token, logprob, as_ids),
                "top_logprobs": [_token_entry(t, lp, as_ids) for t, lp in top[:k]],
            }
        )
    return {"content": content}


def _token_entry(token: str, logprob: float, as_ids: bool) -> dict[str, Any]:
    data = token.encode()
    if as_ids:  # a chunk that is not a VOCAB word is named by its first byte's id
        token_id = TOKEN_ID.get(token, BYTE_BASE + (data[0] if data else 0))
        token = f"token_id:{token_id}"
    return {"token": token, "logprob": logprob, "bytes": list(data)}


# --- the made-up tokenizer and scoring ---------------------------------------------------------


def emulator_tokenize(text: str) -> list[int]:
    """Ids of ``text``: chat markers and :data:`VOCAB` words where they match, else bytes."""
    ids: list[int] = []
    at = 0
    while at < len(text):
        match = _TOKEN_PATTERN.match(text, at)
        if match is not None:
            token = match.group()
            ids.append(MARKER_ID[token] if token in MARKER_ID else TOKEN_ID[token])
            at = match.end()
        else:
            ids.extend(BYTE_BASE + b for b in text[at].encode())
            at += 1
    return ids


def emulator_token_text(token_id: int) -> str:
    """The text of one id of the made-up tokenizer."""
    if token_id < BYTE_BASE:
        return VOCAB[token_id]
    if token_id < 2 * BYTE_BASE:
        return bytes([token_id - BYTE_BASE]).decode("utf-8", "replace")
    return MARKERS[token_id - 2 * BYTE_BASE]


def render_chat(messages: Sequence[Mapping[str, Any]], *, add_generation_prompt: bool) -> str:
    """:data:`CHAT_TEMPLATE` rendered (the same text, without jinja)."""
    turns = "".join(f"<|{m['role']}|>{m['content']}<|eos|>" for m in messages)
    return f"<|bos|>{turns}{'<|assistant|>' if add_generation_prompt else ''}"


def prompt_logprobs(ids: list[int], k: int, seed: int = 0) -> list[Any]:
    """vLLM's ``prompt_logprobs`` for ``ids``: None at position 0, then per position
    ``{"<id>": {"logprob", "rank", "decoded_token"}}``, the position's own token first (rank
    1) and k - 1 others below it. Deterministic in the ids before the position."""
    positions: list[Any] = [None]
    state = seed
    for t in range(1, len(ids)):
        state = (state * 1_000_003 + ids[t - 1] + 1) % (1 << 61)
        rng = random.Random(state)
        token = ids[t]
        logprob = -0.05 - 2.0 * rng.random()
        others = [i for i in rng.sample(range(VOCAB_SIZE), min(k, VOCAB_SIZE)) if i != token]
        ranked = [(token, logprob)] + [
            (i, logprob - 0.5 * (n + 1) - 0.1 * rng.random()) for n, i in enumerate(others[: k - 1])
        ]
        positions.append(
            {
                str(i): {"logprob": lp, "rank": rank, "decoded_token": emulator_token_text(i)}
                for rank, (i, lp) in enumerate(ranked, start=1)
            }
        )
    return positions


# --- realistic task lists (opt-in) ------------------------------------------------------------

_VERBS = (
    "Explain", "Describe", "Summarize", "Compare", "List", "Write", "Outline", "Classify",
    "Rewrite", "Suggest", "Evaluate", "Identify", "Propose", "Estimate", "Design", "Draft",
    "Define", "Predict", "Analyze", "Recommend", "Translate", "Critique", "Plan", "Justify",
)  # fmt: skip
_FUNCTION_WORDS = ("the", "a", "of", "for", "with", "and", "in", "to", "about", "how", "why",
                   "between", "from", "each", "two", "three", "short", "simple")  # fmt: skip
_SYLLABLES = tuple(c + v for c in _CONSONANTS for v in _VOWELS)  # 70
# made-up words that happen to be real words a curation filter looks for
_AVOID = frozenset({"file", "go", "to", "map", "image", "video", "audio", "music", "draw", "plot"})
_TASKS_PROMPT = re.compile(r"exactly (\d+) tasks")


def _word(rng: random.Random) -> str:
    """A made-up word of 2-3 syllables (70**2 + 70**3 = 347,900 of them)."""
    while True:
        word = "".join(rng.choices(_SYLLABLES, k=rng.randint(2, 3)))
        if word not in _AVOID:
            return word


def _words(rng: random.Random, count: int) -> list[str]:
    """Made-up content words with a function word now and then."""
    return [
        rng.choice(_FUNCTION_WORDS) if rng.random() < 0.25 else _word(rng) for _ in range(count)
    ]


def realistic_instruction(rng: random.Random) -> str:
    """An instruction-like sentence of 8-16 words: a verb, then mostly made-up words."""
    words = [rng.choice(_VERBS), *_words(rng, rng.randint(7, 15))]
    return " ".join(words) + rng.choice(".?")


class RealisticTasks:
    """Fills a ``tasks`` schema with diverse instruction-like tasks (``--realistic``)."""

    def __init__(self, dup_fraction: float = 0.0) -> None:
        self.dup_fraction = dup_fraction
        self.recent: deque[str] = deque(maxlen=2000)

    @staticmethod
    def wants(schema: Mapping[str, Any]) -> bool:
        """True for a schema whose ``tasks`` property is an array of objects, or for one task
        (an ``instruction`` property: an evolution)."""
        properties = schema.get("properties") or {}
        if "instruction" in properties:
            return True
        tasks = properties.get("tasks") or {}
        return tasks.get("type") == "array" and isinstance(tasks.get("items"), Mapping)

    def fill(self, schema: Mapping[str, Any], body: Mapping[str, Any], rng: random.Random) -> Any:
        """``{"tasks": [...]}`` with as many tasks as the prompt asks for (one task for a
        one-task schema)."""
        if "tasks" not in schema["properties"]:
            return self._task(schema["properties"].keys(), rng)
        array = schema["properties"]["tasks"]
        messages = body.get("messages") or []
        found = _TASKS_PROMPT.search(str(messages[-1].get("content", ""))) if messages else None
        count = int(found.group(1)) if found else 10
        count = max(int(array.get("minItems", 1)), min(count, int(array.get("maxItems", count))))
        fields = (array["items"].get("properties") or {}).keys()
        return {"tasks": [self._task(fields, rng) for _ in range(count)]}

    def _task(self, fields: Any, rng: random.Random) -> dict[str, str]:
        if self.recent and rng.random() < self.dup_fraction:
            words = rng.choice(self.recent).split()
            words[rng.randrange(1, len(words))] = _word(rng)  # one word changed: ROUGE-L >= 0.87
            instruction = " ".join(words)
        else:
            instruction = realistic_instruction(rng)
            self.recent.append(instruction)
        task = {"instruction": instruction}
        if "input" in fields:
            task["input"] = " ".join(_words(rng, rng.randint(10, 30))) if rng.random() < 0.3 else ""
        if "output" in fields:
            task["output"] = " ".join(_words(rng, rng.randint(20, 60))).capitalize() + "."
        return task


# --- the server -------------------------------------------------------------------------------


def _error(status: int, message: str, kind: str, headers: Mapping[str, str] | None = None):
    body = {"error": {"message": message, "type": kind, "param": None, "code": status}}
    return web.json_response(body, status=status, headers=headers, dumps=_dumps)


def _dumps(data: Any) -> str:
    return orjson.dumps(data).decode()


class Emulator:
    """The emulated server's state and handlers."""

    def __init__(self, config: EmulatorConfig, faults: Faults | None = None) -> None:
        self.config = config
        self.faults = faults or Faults(rng=random.Random(config.seed))
        self.stats = Stats()
        self.slots = asyncio.Semaphore(config.max_in_flight)
        self.counter = itertools.count()
        self.realistic = RealisticTasks(config.realistic_dup_fraction) if config.realistic else None
        self.runner: web.AppRunner | None = None
        self.port = 0

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self.chat_completions)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/tokenize", self.tokenize)
        app.router.add_get("/tokenizer_info", self.tokenizer_info)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/stats", self.get_stats)
        app.router.add_post("/stats/reset", self.reset_stats)
        app.router.add_get("/faults", self.get_faults)
        app.router.add_post("/faults", self.set_faults)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen; returns the port (a free one when ``port`` is 0)."""
        # handler_cancellation: a request whose client gave up stops counting as in flight
        self.runner = web.AppRunner(
            self.app(), access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await self.runner.setup()
        site = web.TCPSite(self.runner, host, port, backlog=4096)
        await site.start()
        self.port = int(self.runner.addresses[0][1])
        return self.port

    async def close(self) -> None:
        """Stop listening and drop open requests."""
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    @property
    def base_url(self) -> str:
        """The OpenAI base URL (``.../v1``)."""
        return f"http://127.0.0.1:{self.port}/v1"

    # -- routes --

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/chat/completions."""
        self.stats.arrive()
        status = 0
        try:
            response = await self._chat(request)
            status = response.status
            return response
        finally:
            self.stats.depart(status)

    async def _admit(
        self, request: web.Request, field: str, kind: type | tuple[type, ...]
    ) -> tuple[Any, str | None]:
        """Key, JSON body with ``field`` of type ``kind``, model, injected fault: (body, the
        fault to serve with), or (the response to answer at once, None)."""
        config = self.config
        if config.api_key and request.headers.get("Authorization") != f"Bearer {config.api_key}":
            return _error(401, "invalid API key", "AuthenticationError"), None
        try:
            body = orjson.loads(await request.read())
            assert isinstance(body[field], kind)
        except (orjson.JSONDecodeError, KeyError, TypeError, AssertionError):
            return _error(400, f"body must be JSON with a valid `{field}`", "BadRequestError"), None
        if body.get("model") != config.model:
            message = f"The model `{body.get('model')}` does not exist."
            return _error(404, message, "NotFoundError"), None
        fault = self.faults.pick()
        if fault is not None:
            self.stats.faults[fault] += 1
        if fault == "rate_limit":
            retry_after = f"{self.faults.retry_after_s:g}"
            headers = {"Retry-After": retry_after}
            return _error(429, "rate limited", "RateLimitError", headers), None
        if fault == "server_error":
            return _error(500, "injected server error", "InternalServerError"), None
        if fault == "drop":
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError  # nothing to answer: the connection is gone
        if fault == "hang":
            await asyncio.sleep(config.hang_s)
        return body, fault

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        config = self.config
        body, fault = await self._admit(request, "messages", list)
        if isinstance(body, web.StreamResponse):
            return body
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens") or 16
        count = max(1, min(config.output_tokens, int(max_tokens)))
        async with self.slots:
            self.stats.run(+1)
            try:
                await asyncio.sleep(config.base_latency_s + count * config.per_token_s)
            finally:
                self.stats.run(-1)
        if fault == "malformed":
            return web.Response(body=MALFORMED_BODY, content_type="application/json")
        return web.Response(body=self._completion(body, count), content_type="application/json")

    def _completion(self, body: Mapping[str, Any], count: int) -> bytes:
        number = next(self.counter)
        seed = body.get("seed")
        key = orjson.dumps([body["messages"], seed if seed is not None else f"#{number}"])
        base = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")
        top_k = int(body.get("top_logprobs") or 0) if body.get("logprobs") else None
        as_ids = bool(body.get("return_tokens_as_token_ids")) and self.config.token_ids
        finish = "length" if count < self.config.output_tokens else "stop"
        choices = []
        completion_tokens = 0
        for index in range(int(body.get("n") or 1)):
            rng = random.Random(base ^ (self.config.seed << 8) ^ index)
            tokens = _tokens_for(body, rng, count, self.realistic)
            completion_tokens += len(tokens)
            choices.append(
                {
                    "index": index,
                    "message": {"role": "assistant", "content": "".join(tokens)},
                    "logprobs": None if top_k is None else _logprobs(tokens, rng, top_k, as_ids),
                    "finish_reason": finish,
                }
            )
        prompt_tokens = sum(len(str(m.get("content", ""))) // 4 + 4 for m in body["messages"])
        return orjson.dumps(
            {
                "id": f"chatcmpl-{number}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": self.config.model,
                "choices": choices,
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
                "system_fingerprint": "distillery-emulator",
            }
        )

    async def completions(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/completions: only what teacher-forced scoring uses (a token-id prompt,
        ``echo``, ``max_tokens: 0``, ``prompt_logprobs``); the text answer is empty."""
        self.stats.arrive()
        status = 0
        try:
            response = await self._score(request)
            status = response.status
            return response
        finally:
            self.stats.depart(status)

    async def _score(self, request: web.Request) -> web.StreamResponse:
        body, fault = await self._admit(request, "prompt", (list, str))
        if isinstance(body, web.StreamResponse):
            return body
        prompt = body["prompt"]
        ids = emulator_tokenize(prompt) if isinstance(prompt, str) else [int(i) for i in prompt]
        if not ids or not all(0 <= i < VOCAB_SIZE for i in ids):
            return _error(400, "prompt token ids out of vocabulary", "BadRequestError")
        async with self.slots:
            self.stats.run(+1)
            try:
                await asyncio.sleep(self.config.base_latency_s)
            finally:
                self.stats.run(-1)
        if fault == "malformed":
            return web.Response(body=MALFORMED_BODY, content_type="application/json")
        k = body.get("prompt_logprobs")
        choice: dict[str, Any] = {
            "index": 0,
            "text": "",
            "logprobs": None,
            "finish_reason": "length",
            "prompt_logprobs": None,
        }
        if k is not None and self.config.token_ids:
            choice["prompt_logprobs"] = prompt_logprobs(ids, int(k), self.config.seed)
        if body.get("return_token_ids") and self.config.token_ids:
            choice["prompt_token_ids"] = ids
        data = {
            "id": f"cmpl-{next(self.counter)}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": self.config.model,
            "choices": [choice],
            "usage": {"prompt_tokens": len(ids), "completion_tokens": 0, "total_tokens": len(ids)},
        }
        return web.Response(body=orjson.dumps(data), content_type="application/json")

    async def tokenize(self, request: web.Request) -> web.Response:
        """POST /tokenize (vLLM's shape); a 404 with ``--no-token-ids``."""
        if not self.config.token_ids:
            return _error(404, "Not Found", "NotFoundError")
        try:
            body = orjson.loads(await request.read())
            if "messages" in body:
                generation = bool(body.get("add_generation_prompt", True))
                text = render_chat(body["messages"], add_generation_prompt=generation)
            else:
                text = str(body["prompt"])
                if body.get("add_special_tokens", True):
                    text = MARKERS[0] + text
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            return _error(400, "body must be JSON with messages or a prompt", "BadRequestError")
        ids = emulator_tokenize(text)
        data = {"count": len(ids), "max_model_len": 8192, "tokens": ids, "token_strs": None}
        return web.json_response(data, dumps=_dumps)

    async def tokenizer_info(self, request: web.Request) -> web.Response:
        """GET /tokenizer_info (vLLM's shape: the tokenizer's settings); a 404 with
        ``--no-token-ids``."""
        if not self.config.token_ids:
            return _error(404, "Not Found", "NotFoundError")
        data = {
            "tokenizer_class": "EmulatorTokenizer",
            "name_or_path": f"distillery-emulator/{self.config.model}",
            "bos_token": MARKERS[0],
            "eos_token": MARKERS[1],
            "added_tokens_decoder": {
                str(i): {"content": marker, "special": True} for marker, i in MARKER_ID.items()
            },
            "model_max_length": 8192,
            "chat_template": CHAT_TEMPLATE,
        }
        return web.json_response(data, dumps=_dumps)

    async def models(self, request: web.Request) -> web.Response:
        """GET /v1/models."""
        model = {"id": self.config.model, "object": "model", "owned_by": "distillery-emulator"}
        return web.json_response({"object": "list", "data": [model]}, dumps=_dumps)

    async def get_stats(self, request: web.Request) -> web.Response:
        """GET /stats."""
        return web.json_response(self.stats.as_dict(), dumps=_dumps)

    async def reset_stats(self, request: web.Request) -> web.Response:
        """POST /stats/reset."""
        self.stats.reset()
        return web.json_response(self.stats.as_dict(), dumps=_dumps)

    async def get_faults(self, request: web.Request) -> web.Response:
        """GET /faults."""
        return web.json_response(self.faults.as_dict(), dumps=_dumps)

    async def set_faults(self, request: web.Request) -> web.Response:
        """POST /faults: replace all faults (an empty object clears them)."""
        try:
            self.faults = Faults.parse(await request.json(loads=orjson.loads), self.config.seed)
        except (ValueError, TypeError, AttributeError) as exc:
            return _error(400, str(exc), "BadRequestError")
        return web.json_response(self.faults.as_dict(), dumps=_dumps)


# --- CLI --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.emulator",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = a free port")
    parser.add_argument("--model", default="emulator")
    parser.add_argument("--base-latency", type=float, default=0.4, help="seconds per request")
    parser.add_argument("--per-token", type=float, default=0.0, help="seconds per output token")
    parser.add_argument("--max-in-flight", type=int, default=256, help="requests served at once")
    parser.add_argument("--output-tokens", type=int, default=16, help="tokens per completion")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--api-key", default=None, help="require this bearer key")
    parser.add_argument("--hang-s", type=float, default=3600.0, help="length of a hang fault")
    parser.add_argument("--faults", default=None, help="faults as JSON (see module docstring)")
    parser.add_argument(
        "--realistic", action="store_true", help="diverse instruction-like tasks for task lists"
    )
    parser.add_argument(
        "--no-token-ids", dest="token_ids", action="store_false",
        help="behave like a server that is not vLLM: no token ids, /tokenize, /tokenizer_info",
    )  # fmt: skip
    parser.add_argument(
        "--realistic-dup-fraction", type=float, default=0.0,
        help="with --realistic: share of tasks that near-copy an earlier one",
    )  # fmt: skip
    args = parser.parse_args(argv)
    try:
        args.faults = Faults.parse(orjson.loads(args.faults), args.seed) if args.faults else None
    except (ValueError, TypeError, AttributeError) as exc:
        parser.error(f"--faults: {exc}")
    return args


async def serve(args: argparse.Namespace) -> None:
    """Run until SIGTERM or SIGINT; prints ``READY <port>`` once listening."""
    config = EmulatorConfig(
        model=args.model,
        base_latency_s=args.base_latency,
        per_token_s=args.per_token,
        max_in_flight=args.max_in_flight,
        output_tokens=args.output_tokens,
        seed=args.seed,
        api_key=args.api_key,
        hang_s=args.hang_s,
        realistic=args.realistic,
        realistic_dup_fraction=args.realistic_dup_fraction,
        token_ids=args.token_ids,
    )
    emulator = Emulator(config, args.faults)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    port = await emulator.start(args.host, args.port)
    sys.stdout.write(f"READY {port}\n")
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        await emulator.close()


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m bench.emulator``."""
    args = parse_args(argv)
    runner = asyncio.run
    with contextlib.suppress(ImportError):  # uvloop is optional
        import uvloop

        runner = uvloop.run
    runner(serve(args))


if __name__ == "__main__":
    main()
