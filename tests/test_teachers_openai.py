"""The OpenAI-compatible teacher against the loopback emulator (a real HTTP server, subprocess).

Covers order and concurrency on a big batch, structured output and logprobs round trips, and
every injected fault: retried until it succeeds, or a typed error in the result when it
persists, never a missing result.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import orjson
import pytest
from aiohttp import web

from bench.emulator import Emulator, EmulatorConfig
from tests.emulator_proc import EmulatorProcess, running_emulator
from workers.teachers.base import (
    SamplingParams,
    TeacherBadResponse,
    TeacherError,
    TeacherRateLimited,
    TeacherRejected,
    TeacherRequest,
    TeacherResult,
    TeacherTimeout,
    TeacherUnavailable,
)
from workers.teachers.openai import (
    OpenAITeacher,
    build_body,
    parse_completion,
    parse_retry_after,
    retry_delay,
)

MODEL = "emulator-model"
API_KEY = "sekrit-key"
FAULTS_ALL = ["rate_limit", "server_error", "drop", "malformed", "hang"]
CAUSE = {
    "rate_limit": "http_429",
    "server_error": "http_500",
    "drop": "connection",
    "malformed": "malformed",
    "hang": "timeout",
}

MakeTeacher = Callable[..., OpenAITeacher]


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorProcess]:
    """A fast emulator for correctness and faults (no latency)."""
    with running_emulator(model=MODEL, base_latency=0.0) as emu:
        yield emu


@pytest.fixture
def emu(emulator: EmulatorProcess) -> Iterator[EmulatorProcess]:
    """The fast emulator with no faults and fresh stats."""
    emulator.set_faults({})
    emulator.reset_stats()
    yield emulator
    emulator.set_faults({})


@pytest.fixture
async def make_teacher() -> AsyncIterator[MakeTeacher]:
    """Build OpenAI teachers with test-sized timeouts and backoff; closes them all."""
    made: list[OpenAITeacher] = []

    def make(base_url: str, **overrides: Any) -> OpenAITeacher:
        options: dict[str, Any] = {
            "model": MODEL,
            "max_concurrency": 16,
            "request_timeout_s": 10.0,
            "max_retries": 3,
            "backoff_base_s": 0.01,
            "backoff_max_s": 0.05,
        }
        teacher = OpenAITeacher(base_url=base_url, **(options | overrides))
        made.append(teacher)
        return teacher

    yield make
    for teacher in made:
        await teacher.aclose()


def requests(count: int, **overrides: Any) -> list[TeacherRequest]:
    sampling = overrides.pop("sampling", SamplingParams(max_tokens=16))
    return [
        TeacherRequest(
            messages=[
                {"role": "system", "content": "You write data."},
                {"role": "user", "content": f"request number {i}"},
            ],
            sampling=sampling,
            request_id=f"r{i}",
            **overrides,
        )
        for i in range(count)
    ]


def assert_answers_own_request(results: list[TeacherResult], count: int) -> None:
    """The emulator starts each text with ``[<last message>]``: result i answers request i."""
    assert len(results) == count
    for i, result in enumerate(results):
        assert result.ok, result.error
        assert result.generations[0].text.startswith(f"[request number {i}]")


# --- big batch: order and concurrency ---------------------------------------------------------


async def test_batch_of_500_in_order_with_bounded_full_concurrency(
    make_teacher: MakeTeacher,
) -> None:
    # latency large against the per-request CPU cost of both sides (~0.5 ms), so that the
    # time-weighted mean in flight measures the client's scheduling, not this machine's load
    limit = 50
    with running_emulator(
        model=MODEL, base_latency=0.3, max_in_flight=256, extra_args=("--api-key", API_KEY)
    ) as slow:
        teacher = make_teacher(slow.base_url, max_concurrency=limit, api_key=API_KEY)
        slow.reset_stats()
        results = await teacher.generate(requests(500))
        stats = slow.stats()
    assert_answers_own_request(results, 500)
    assert len({r.generations[0].text for r in results}) == 500  # unique outputs
    assert stats["requests"] == 500
    assert stats["max_in_flight"] <= limit
    # while work is queued the server must be kept full, not trickled
    assert stats["mean_in_flight"] >= 0.8 * limit, stats


async def test_emulator_measures_requests_in_flight(make_teacher: MakeTeacher) -> None:
    """The instrument behind the concurrency assertion: 12 requests, 4 at a time, 0.2 s each."""
    emulator = Emulator(EmulatorConfig(model=MODEL, base_latency_s=0.2, max_in_flight=2))
    await emulator.start()
    try:
        teacher = make_teacher(emulator.base_url, max_concurrency=4)
        results = await teacher.generate(requests(12))
        stats = emulator.stats.as_dict()
        emulator.stats.reset()
        after_reset = emulator.stats.as_dict()
    finally:
        await emulator.close()
    assert all(r.ok for r in results)
    assert (stats["requests"], stats["max_in_flight"], stats["max_running"]) == (12, 4, 2)
    # the server serves 2 at a time (max_num_seqs), the other 2 queue: 6 rounds of 0.2 s
    assert 3.0 <= stats["mean_in_flight"] <= 4.0
    assert 1.5 <= stats["mean_running"] <= 2.0
    assert 1.2 <= stats["window_s"] < 2.0
    assert after_reset["requests"] == 0 and after_reset["mean_in_flight"] == 0


async def test_wrong_api_key_is_rejected_for_good(make_teacher: MakeTeacher) -> None:
    with running_emulator(model=MODEL, extra_args=("--api-key", API_KEY)) as locked:
        teacher = make_teacher(locked.base_url, api_key="wrong")
        [result] = await teacher.generate(requests(1))
        assert locked.stats()["requests"] == 1  # final: no retry
    assert isinstance(result.error, TeacherRejected)
    assert result.error.status == 401


# --- what goes over the wire ------------------------------------------------------------------


def test_body_sends_every_sampling_value_and_json_schema_as_response_format() -> None:
    schema = {"title": "My Answer!", "type": "object", "properties": {"a": {"type": "string"}}}
    request = TeacherRequest(
        messages=[{"role": "user", "content": "hi"}],
        sampling=SamplingParams(
            n=2, temperature=0.7, top_p=0.9, max_tokens=64, seed=5, stop=("\n\n",)
        ),
        json_schema=schema,
        top_logprobs=4,
    )
    body = build_body(request, "m", return_token_ids=True)
    assert body["model"] == "m"
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    assert (body["n"], body["temperature"], body["top_p"]) == (2, 0.7, 0.9)
    assert (body["max_tokens"], body["seed"], body["stop"]) == (64, 5, ["\n\n"])
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "My_Answer_", "schema": schema, "strict": True},
    }
    assert (body["logprobs"], body["top_logprobs"]) == (True, 4)
    assert body["return_tokens_as_token_ids"] is True
    assert not any(key.startswith("guided_") for key in body)  # removed from vLLM: ignored

    plain = build_body(TeacherRequest(messages=[], sampling=SamplingParams()), "m")
    for key in ("n", "temperature", "top_p", "max_tokens", "seed", "stop"):
        assert key in plain  # explicit even when default
    assert "response_format" not in plain
    assert "logprobs" not in plain


def test_parse_completion_is_a_tolerant_reader() -> None:
    body = {
        "choices": [
            {"index": 1, "message": {"content": "second", "extra": 1}, "finish_reason": "stop"},
            {"index": 0, "message": {"content": ""}, "finish_reason": "length", "x": []},
        ],
        "usage": {"prompt_tokens": 3},
        "unknown": {"field": True},
    }
    generations, usage = parse_completion(body)
    assert [g.text for g in generations] == ["", "second"]
    assert [g.finish_reason for g in generations] == ["length", "stop"]
    assert (usage.prompt_tokens, usage.completion_tokens) == (3, 0)
    for bad in ({}, {"choices": []}, {"choices": [{"no": "message"}]}, [1, 2], "text"):
        with pytest.raises(TeacherBadResponse):
            parse_completion(bad)


@pytest.mark.parametrize(
    "body",
    [
        {"choices": [{"message": {"content": None}}], "usage": {}},  # null content
        {"choices": [{"message": {"content": ["a", "list"]}}], "usage": {}},  # not text
        {"choices": [{"message": {}}], "usage": {}},  # no content at all
        {"choices": [{"message": {"content": "fine"}}]},  # no usage
        {"usage": {"prompt_tokens": 1}},  # no choices
    ],
)
def test_protocol_errors_are_malformed_not_blank_answers(body: dict[str, Any]) -> None:
    with pytest.raises(TeacherBadResponse):
        parse_completion(body)


async def test_null_content_is_retried_and_counted_as_malformed(
    make_teacher: MakeTeacher,
) -> None:
    """A server answering `content: null` twice, then text: the request is retried (never a
    blank answer) and the result says which failed attempts it took."""
    calls = 0

    async def chat(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        content = None if calls <= 2 else "a real answer"
        message = {"role": "assistant", "content": content}
        return web.json_response(
            {
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 3},
            }
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        teacher = make_teacher(f"http://127.0.0.1:{port}/v1")
        [result] = await teacher.generate(requests(1))
    finally:
        await runner.cleanup()
    assert result.ok and result.generations[0].text == "a real answer"
    assert result.attempt_errors == {"malformed": 2} and calls == 3


@pytest.mark.parametrize("kind", FAULTS_ALL)
async def test_failed_attempts_are_counted_by_cause(
    emu: EmulatorProcess, make_teacher: MakeTeacher, kind: str
) -> None:
    spec: dict[str, Any] = {"count": 2}
    if kind == "rate_limit":
        spec["retry_after_s"] = 0.01
    emu.set_faults({kind: spec})
    teacher = make_teacher(emu.base_url, **({"request_timeout_s": 0.4} if kind == "hang" else {}))
    results = await teacher.generate(requests(1))
    assert results[0].ok
    assert results[0].attempt_errors == {CAUSE[kind]: 2}


def test_retry_delay_honours_retry_after_and_backs_off_exponentially() -> None:
    limited = TeacherRateLimited(retry_after=2.0)
    assert 2.0 <= retry_delay(0, limited, base_s=0.1, max_s=1, max_retry_after_s=60) <= 2.2
    capped = retry_delay(0, limited, base_s=0.1, max_s=1, max_retry_after_s=0.5, rand=lambda: 0)
    assert capped == 0.5
    error = TeacherUnavailable()
    delays = [
        retry_delay(a, error, base_s=0.1, max_s=1.0, max_retry_after_s=60, rand=lambda: 1.0)
        for a in range(6)
    ]
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    low = retry_delay(3, error, base_s=0.1, max_s=1.0, max_retry_after_s=60, rand=lambda: 0.0)
    assert low == pytest.approx(0.4)  # jitter keeps at least half the backoff


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.25") == 0.25
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past


# --- round trips through the emulator ---------------------------------------------------------


async def test_structured_output_round_trip(
    emu: EmulatorProcess, make_teacher: MakeTeacher
) -> None:
    schema = {
        "title": "Example",
        "type": "object",
        "properties": {
            "instruction": {"type": "string", "minLength": 5},
            "difficulty": {"enum": ["easy", "medium", "hard"]},
            "score": {"type": "integer", "minimum": 1, "maximum": 5},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
            "meta": {"$ref": "#/$defs/Meta"},
        },
        "required": ["instruction", "difficulty", "score", "tags", "meta"],
        "$defs": {
            "Meta": {
                "type": "object",
                "properties": {"ok": {"type": "boolean"}, "weight": {"type": "number"}},
                "required": ["ok", "weight"],
            }
        },
    }
    teacher = make_teacher(emu.base_url)
    results = await teacher.generate(requests(5, json_schema=schema))
    for result in results:
        data = json.loads(result.generations[0].text)
        assert set(data) == set(schema["required"])
        assert isinstance(data["instruction"], str) and len(data["instruction"]) >= 5
        assert data["difficulty"] in {"easy", "medium", "hard"}
        assert isinstance(data["score"], int) and 1 <= data["score"] <= 5
        assert len(data["tags"]) >= 2 and all(isinstance(t, str) for t in data["tags"])
        assert isinstance(data["meta"]["ok"], bool)
        assert isinstance(data["meta"]["weight"], float)


async def test_logprobs_round_trip(emu: EmulatorProcess, make_teacher: MakeTeacher) -> None:
    teacher = make_teacher(emu.base_url)  # asks for token ids by default
    sampling = SamplingParams(n=2, max_tokens=8, seed=3)
    results = await teacher.generate(requests(3, sampling=sampling, top_logprobs=3))
    for result in results:
        assert len(result.generations) == 2
        total = 0
        for generation in result.generations:
            logprobs = generation.logprobs
            assert logprobs is not None and len(logprobs) == 8
            assert "".join(lp.token for lp in logprobs) == generation.text
            for lp in logprobs:
                assert len(lp.top) == 3
                assert lp.top[0][0] == lp.token and lp.top[0][2] == lp.logprob
                assert lp.logprob <= 0
                assert lp.token_id is not None
                assert all(alt[1] is not None for alt in lp.top)
            total += len(logprobs)
        assert result.usage.completion_tokens == total
    assert results[0].generations[0].text != results[0].generations[1].text


async def test_logprobs_without_token_ids_are_refused(
    emu: EmulatorProcess, make_teacher: MakeTeacher
) -> None:
    # return_token_ids=False: the field is not sent, and this server gives no ids by itself
    teacher = make_teacher(emu.base_url, return_token_ids=False)
    [result] = await teacher.generate(requests(1, top_logprobs=3))
    assert isinstance(result.error, TeacherRejected)
    assert "cannot give token ids" in result.error.message
    assert not result.generations


async def test_seed_makes_answers_repeatable(
    emu: EmulatorProcess, make_teacher: MakeTeacher
) -> None:
    teacher = make_teacher(emu.base_url)
    seeded = SamplingParams(seed=11, max_tokens=8)
    first = await teacher.generate(requests(3, sampling=seeded))
    again = await teacher.generate(requests(3, sampling=seeded))
    unseeded = await teacher.generate(requests(3))
    texts = [r.generations[0].text for r in first]
    assert texts == [r.generations[0].text for r in again]
    assert texts != [r.generations[0].text for r in unseeded]


async def test_model_is_discovered_when_not_set(
    emu: EmulatorProcess, make_teacher: MakeTeacher
) -> None:
    teacher = make_teacher(emu.base_url, model=None)
    [result] = await teacher.generate(requests(1))
    assert result.ok, result.error
    assert teacher.model == MODEL


def test_results_are_json_able(emu: EmulatorProcess) -> None:
    result = TeacherResult.failed(TeacherRateLimited("slow down", retry_after=1.5), 0.25)
    stored = orjson.loads(orjson.dumps(result.as_dict()))
    assert stored["error"] == {
        "type": "TeacherRateLimited",
        "message": "slow down",
        "retryable": True,
        "status": 429,
        "retry_after": 1.5,
    }
    again = TeacherResult.from_dict(stored)
    assert isinstance(again.error, TeacherRateLimited) and again.error.retry_after == 1.5
    assert again.as_dict() == result.as_dict()


async def test_successful_results_round_trip_as_json(
    emu: EmulatorProcess, make_teacher: MakeTeacher
) -> None:
    teacher = make_teacher(emu.base_url, return_token_ids=True)
    [result] = await teacher.generate(requests(1, top_logprobs=2))
    stored = orjson.loads(orjson.dumps(result.as_dict()))
    again = TeacherResult.from_dict(stored)
    assert again == result


# --- faults -----------------------------------------------------------------------------------

FAULTS = ["rate_limit", "server_error", "drop", "malformed", "hang"]
FINAL_ERROR: dict[str, type[TeacherError]] = {
    "rate_limit": TeacherRateLimited,
    "server_error": TeacherUnavailable,
    "drop": TeacherUnavailable,
    "malformed": TeacherBadResponse,
    "hang": TeacherTimeout,
}


def fault_options(kind: str) -> dict[str, Any]:
    """Client options: a short timeout only where the fault is a hang."""
    return {"request_timeout_s": 0.4} if kind == "hang" else {}


@pytest.mark.parametrize("kind", FAULTS)
async def test_transient_faults_are_retried_until_success(
    emu: EmulatorProcess, make_teacher: MakeTeacher, kind: str
) -> None:
    spec: dict[str, Any] = {"count": 4}
    if kind == "rate_limit":
        spec["retry_after_s"] = 0.05
    emu.set_faults({kind: spec})
    teacher = make_teacher(emu.base_url, **fault_options(kind))
    results = await teacher.generate(requests(12))
    assert_answers_own_request(results, 12)
    stats = emu.stats()
    assert stats["faults"] == {kind: 4}
    assert stats["requests"] == 12 + 4  # each fault cost one retry


@pytest.mark.parametrize("kind", FAULTS)
async def test_persistent_faults_come_back_as_typed_errors(
    emu: EmulatorProcess, make_teacher: MakeTeacher, kind: str
) -> None:
    spec: dict[str, Any] = {"fraction": 1.0}
    if kind == "rate_limit":
        spec["retry_after_s"] = 0.01
    emu.set_faults({kind: spec})
    teacher = make_teacher(emu.base_url, max_retries=2, **fault_options(kind))
    results = await teacher.generate(requests(3))
    assert len(results) == 3
    for result in results:
        assert type(result.error) is FINAL_ERROR[kind], result.error
        assert result.error.retryable
        assert result.generations == []
    assert emu.stats()["requests"] == 3 * (1 + 2)  # first try + max_retries each
    if kind == "rate_limit":
        assert results[0].error.retry_after == pytest.approx(0.01)
    if kind == "server_error":
        assert results[0].error.status == 500


async def test_failed_requests_do_not_hide_the_others(
    emu: EmulatorProcess, make_teacher: MakeTeacher
) -> None:
    emu.set_faults({"server_error": {"count": 3}})
    teacher = make_teacher(emu.base_url, max_retries=0)
    results = await teacher.generate(requests(10))
    assert len(results) == 10
    failed = [r for r in results if not r.ok]
    assert len(failed) == 3
    assert all(isinstance(r.error, TeacherUnavailable) for r in failed)
    for i, result in enumerate(results):
        if result.ok:
            assert result.generations[0].text.startswith(f"[request number {i}]")


async def test_rate_limit_waits_for_retry_after(
    emu: EmulatorProcess, make_teacher: MakeTeacher
) -> None:
    emu.set_faults({"rate_limit": {"count": 1, "retry_after_s": 0.5}})
    teacher = make_teacher(emu.base_url)
    [result] = await teacher.generate(requests(1))
    assert result.ok
    assert result.latency_s >= 0.5  # backoff alone would have retried after ~0.01 s


async def test_unknown_model_is_final_without_retries(
    emu: EmulatorProcess, make_teacher: MakeTeacher
) -> None:
    teacher = make_teacher(emu.base_url, model="no-such-model")
    results = await teacher.generate(requests(4))
    for result in results:
        assert isinstance(result.error, TeacherRejected)
        assert result.error.status == 404
        assert not result.error.retryable
        assert "no-such-model" in str(result.error)
    assert emu.stats()["requests"] == 4


async def test_no_server_is_unavailable(make_teacher: MakeTeacher) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    teacher = make_teacher(f"http://127.0.0.1:{port}/v1", max_retries=1)
    [result] = await teacher.generate(requests(1))
    assert isinstance(result.error, TeacherUnavailable)
    assert "no teacher server" in str(result.error)


def test_base_url_must_be_http() -> None:
    with pytest.raises(ValueError, match="http"):
        OpenAITeacher(base_url="localhost:8000", model="m")
