"""The vLLM teacher: translation functions and the batch flow with stand-in objects (no vllm
needed), and the real engine on a GPU when vllm is installed (``gpu`` marker)."""

from __future__ import annotations

import asyncio
import importlib.util
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from workers.teachers import vllm as vllm_teacher
from workers.teachers.base import (
    SamplingParams,
    TeacherRejected,
    TeacherRequest,
    TeacherUnavailable,
)
from workers.teachers.vllm import (
    VLLMTeacher,
    engine_args_kwargs,
    from_vllm_output,
    map_engine_error,
    render_chat_prompt,
    to_vllm_sampling_kwargs,
)

# --- stand-ins with vLLM's attribute names (vllm/outputs.py, vllm/logprobs.py) ---------------


@dataclass
class Logprob:
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None = None
    logprobs: list[dict[int, Logprob]] | None = None
    finish_reason: str | None = "stop"
    stop_reason: int | str | None = None


@dataclass
class RequestOutput:
    request_id: str
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput]
    finished: bool = True
    prompt: str | None = None


class EngineDeadError(Exception):
    """Named like vllm.v1.engine.exceptions.EngineDeadError."""


class VLLMValidationError(ValueError):
    """Named like vllm.exceptions.VLLMValidationError."""


# --- translation ------------------------------------------------------------------------------


def test_sampling_kwargs_every_value_explicit() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    request = TeacherRequest(
        messages=[{"role": "user", "content": "hi"}],
        sampling=SamplingParams(
            n=3, temperature=0.6, top_p=0.9, max_tokens=300, seed=4, stop=("x",)
        ),
        json_schema=schema,
        top_logprobs=5,
    )
    assert to_vllm_sampling_kwargs(request) == {
        "n": 3,
        "temperature": 0.6,
        "top_p": 0.9,
        "max_tokens": 300,  # vLLM's default would be 16
        "seed": 4,
        "stop": ["x"],
        "logprobs": 5,
        "output_kind": "FINAL_ONLY",
        "structured_outputs": {"json": schema},
    }
    plain = to_vllm_sampling_kwargs(TeacherRequest(messages=[], sampling=SamplingParams()))
    assert plain["max_tokens"] == 512 and plain["logprobs"] is None
    assert "structured_outputs" not in plain
    assert not any("guided" in key for key in plain)


def test_engine_args() -> None:
    kwargs = engine_args_kwargs(model="m", tensor_parallel_size=2, max_num_seqs=128)
    assert kwargs == {
        "model": "m",
        "tensor_parallel_size": 2,
        "gpu_memory_utilization": 0.9,
        "dtype": "auto",
        "enable_prefix_caching": True,
        "generation_config": "vllm",
        "max_logprobs": 100,
        "max_num_seqs": 128,
    }
    assert engine_args_kwargs(model="m", max_model_len=4096)["max_model_len"] == 4096


def test_from_vllm_output_with_logprobs() -> None:
    # position 0: sampled 7 is the most likely; position 1: sampled 9 ranks 4th, outside top-2
    positions = [
        {7: Logprob(-0.1, 1, "Hel"), 3: Logprob(-2.5, 2, "Bye")},
        {9: Logprob(-3.0, 4, "lo"), 4: Logprob(-0.5, 1, "p"), 5: Logprob(-1.5, 2, "x")},
    ]
    output = RequestOutput(
        request_id="r",
        prompt_token_ids=[1, 2, 3, 4],
        outputs=[
            CompletionOutput(index=1, text="other", token_ids=[5], finish_reason="length"),
            CompletionOutput(index=0, text="Hello", token_ids=[7, 9], logprobs=positions),
        ],
    )
    result = from_vllm_output(output, top_logprobs=2, latency_s=0.5)
    assert result.ok and result.latency_s == 0.5
    assert [g.text for g in result.generations] == ["Hello", "other"]
    assert [g.finish_reason for g in result.generations] == ["stop", "length"]
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (4, 3)
    first, second = result.generations[0].logprobs
    assert (first.token, first.token_id, first.logprob) == ("Hel", 7, -0.1)
    assert first.top == [("Hel", 7, -0.1), ("Bye", 3, -2.5)]
    assert (second.token, second.token_id, second.logprob) == ("lo", 9, -3.0)
    assert second.top == [("p", 4, -0.5), ("x", 5, -1.5)]  # k alternatives, best first
    assert result.generations[1].logprobs is None


def test_map_engine_error() -> None:
    dead = map_engine_error(EngineDeadError("boom"))
    assert isinstance(dead, TeacherUnavailable) and dead.retryable
    rejected = map_engine_error(VLLMValidationError("prompt too long"))
    assert isinstance(rejected, TeacherRejected) and not rejected.retryable
    assert map_engine_error(RuntimeError("a bug")) is None


class RecordingTokenizer:
    """Stand-in tokenizer: the template is ``<bos>role:content...<assistant>``."""

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):  # type: ignore[no-untyped-def]
        assert tokenize is False and add_generation_prompt is True
        if any(m["role"] == "tool" for m in messages):
            raise ValueError("this template has no tool role")
        return "<bos>" + "".join(f"{m['role']}:{m['content']}" for m in messages) + "<assistant>"

    def encode(self, text: str, add_special_tokens: bool) -> list[int]:
        assert add_special_tokens is False  # the template already has <bos>
        return [ord(c) for c in text]


def test_render_chat_prompt_tokenizes_template_once() -> None:
    prompt = render_chat_prompt(RecordingTokenizer(), [{"role": "user", "content": "hi"}])
    assert prompt == {"prompt_token_ids": [ord(c) for c in "<bos>user:hi<assistant>"]}


def test_render_chat_prompt_accepts_tokenizers_that_return_ids() -> None:
    class IdsTokenizer:
        def apply_chat_template(self, messages, tokenize, add_generation_prompt):  # type: ignore[no-untyped-def]
            return [1, 5, 9]

    assert render_chat_prompt(IdsTokenizer(), []) == {"prompt_token_ids": [1, 5, 9]}


def test_render_chat_prompt_with_a_real_chat_template(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from transformers import AutoTokenizer

    from tests.tiny_model import build_tiny_model

    tokenizer = AutoTokenizer.from_pretrained(build_tiny_model(tmp_path / "m"))
    messages = [{"role": "user", "content": "Write a poem."}]
    ids = render_chat_prompt(tokenizer, messages)["prompt_token_ids"]
    assert ids.count(tokenizer.bos_token_id) == 1 and ids[0] == tokenizer.bos_token_id
    expected = tokenizer.apply_chat_template(messages, add_generation_prompt=True)["input_ids"]
    assert ids == list(expected)


# --- the batch flow, with a stand-in engine ---------------------------------------------------


@dataclass
class FakeEngine:
    """Answers each request after all of the batch was submitted (continuous batching)."""

    batch_size: int
    fail: dict[str, Exception] = field(default_factory=dict)
    submitted: list[tuple[dict[str, Any], Any, str]] = field(default_factory=list)
    all_in: asyncio.Event = field(default_factory=asyncio.Event)
    shut_down: bool = False

    def get_tokenizer(self) -> RecordingTokenizer:
        return RecordingTokenizer()

    async def generate(
        self, prompt: dict[str, Any], params: Any, request_id: str
    ) -> AsyncIterator[Any]:
        self.submitted.append((prompt, params, request_id))
        if len(self.submitted) == self.batch_size:
            self.all_in.set()
        await asyncio.wait_for(self.all_in.wait(), timeout=5)
        content = "".join(chr(i) for i in prompt["prompt_token_ids"])
        for marker, error in self.fail.items():
            if marker in content:
                raise error
        yield RequestOutput(
            request_id,
            prompt["prompt_token_ids"],
            [CompletionOutput(0, f"answer to {content}", [1, 2, 3])],
        )

    def shutdown(self) -> None:
        self.shut_down = True


async def test_generate_submits_whole_batch_and_keeps_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(vllm_teacher, "build_sampling_params", to_vllm_sampling_kwargs)
    requests = [
        TeacherRequest(messages=[{"role": "user", "content": f"q{i}"}], sampling=SamplingParams())
        for i in range(5)
    ]
    requests[3] = TeacherRequest(
        messages=[{"role": "tool", "content": "q3"}], sampling=SamplingParams()
    )
    engine = FakeEngine(batch_size=4, fail={"q1": EngineDeadError("gone")})
    teacher = VLLMTeacher.__new__(VLLMTeacher)
    teacher.model, teacher._engine = "m", engine
    results = await teacher.generate(requests)
    assert len(results) == 5
    assert results[0].generations[0].text == "answer to <bos>user:q0<assistant>"
    assert isinstance(results[1].error, TeacherUnavailable)  # engine error: its request only
    assert results[2].generations[0].text.endswith("q2<assistant>")
    assert isinstance(results[3].error, TeacherRejected)  # chat template refused it
    assert results[4].generations[0].text.endswith("q4<assistant>")
    # all four renderable requests were in the engine at once, each with its own id
    assert len(engine.submitted) == 4
    assert len({request_id for _, _, request_id in engine.submitted}) == 4
    assert all(params["max_tokens"] == 512 for _, params, _ in engine.submitted)
    await teacher.aclose()
    assert engine.shut_down


# --- the real engine (GPU only) ---------------------------------------------------------------


def _gpu_with_vllm() -> bool:
    if importlib.util.find_spec("vllm") is None or importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


@pytest.mark.gpu
@pytest.mark.skipif(not _gpu_with_vllm(), reason="needs vllm and a CUDA GPU")
async def test_real_engine_on_tiny_model(tmp_path: Path) -> None:
    from tests.tiny_model import build_tiny_model

    model_dir = build_tiny_model(tmp_path / "m", hidden_size=256, num_attention_heads=4)
    teacher = VLLMTeacher(model=str(model_dir), gpu_memory_utilization=0.3, max_model_len=512)
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "integer"}},
        "required": ["answer"],
    }
    sampling = SamplingParams(n=2, temperature=0.8, max_tokens=32, seed=1)
    requests = [
        TeacherRequest(
            messages=[{"role": "user", "content": f"question {i}"}],
            sampling=sampling,
            top_logprobs=3,
            json_schema=schema if i % 2 else None,
        )
        for i in range(8)
    ]
    try:
        results = await teacher.generate(requests)
    finally:
        await teacher.aclose()
    assert len(results) == 8
    for result in results:
        assert result.ok, result.error
        assert len(result.generations) == 2
        assert result.usage.prompt_tokens > 0
        for generation in result.generations:
            assert generation.logprobs is not None and len(generation.logprobs) >= 1
            for lp in generation.logprobs:
                assert lp.token_id is not None and math.isfinite(lp.logprob)
                assert len(lp.top) == 3
