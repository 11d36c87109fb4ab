"""The transformers teacher on a tiny random Llama built offline (CPU).

Random-model text is garbage: these tests assert shapes, finiteness, ids and determinism.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from tests.tiny_model import build_tiny_model
from workers.teachers.base import SamplingParams, TeacherRequest
from workers.teachers.transformers import TransformersTeacher, group_requests

BATCH_SIZE = 4


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def teacher(tiny_model_dir: Path) -> Iterator[TransformersTeacher]:
    teacher = TransformersTeacher(model=str(tiny_model_dir), device="cpu", batch_size=BATCH_SIZE)
    yield teacher
    asyncio.run(teacher.aclose())


def chat(i: int) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "You write data."},
        {"role": "user", "content": f"Write a short poem about the sea, number {i}." * (i % 3 + 1)},
    ]


def make_requests(count: int, sampling: SamplingParams, **extra: object) -> list[TeacherRequest]:
    return [TeacherRequest(messages=chat(i), sampling=sampling, **extra) for i in range(count)]


async def test_batched_generation_with_top_k_logprobs(teacher: TransformersTeacher) -> None:
    tokenizer = teacher._tokenizer
    vocab = len(tokenizer)
    sampling = SamplingParams(n=2, temperature=0.8, top_p=0.95, max_tokens=12, seed=1)
    requests = make_requests(2 * BATCH_SIZE + 2, sampling, top_logprobs=3)  # 3 batches
    results = await teacher.generate(requests)
    assert len(results) == len(requests)
    for request, result in zip(requests, results, strict=True):
        assert result.ok, result.error
        assert len(result.generations) == 2
        prompt = tokenizer.apply_chat_template(request.messages, add_generation_prompt=True)
        assert result.usage.prompt_tokens == len(prompt["input_ids"])
        completion = 0
        for generation in result.generations:
            logprobs = generation.logprobs
            assert logprobs is not None and 1 <= len(logprobs) <= 12
            assert generation.finish_reason in {"stop", "length"}
            if generation.finish_reason == "length":
                assert len(logprobs) == 12
            ids = [lp.token_id for lp in logprobs]
            assert tokenizer.decode(ids, skip_special_tokens=True) == generation.text
            for lp in logprobs:
                assert 0 <= lp.token_id < vocab
                assert math.isfinite(lp.logprob) and lp.logprob <= 0
                assert len(lp.top) == 3
                top_ids = [alt[1] for alt in lp.top]
                top_lps = [alt[2] for alt in lp.top]
                assert all(0 <= i < vocab for i in top_ids) and len(set(top_ids)) == 3
                assert all(math.isfinite(v) and v <= 0 for v in top_lps)
                assert top_lps == sorted(top_lps, reverse=True)
                assert lp.logprob <= top_lps[0] + 1e-6
                if lp.token_id in top_ids:
                    assert lp.logprob == pytest.approx(top_lps[top_ids.index(lp.token_id)])
            completion += len(logprobs)
        assert result.usage.completion_tokens == completion


async def test_same_seed_same_texts(teacher: TransformersTeacher) -> None:
    def texts(results):  # type: ignore[no-untyped-def]
        return [[g.text for g in r.generations] for r in results]

    seeded = SamplingParams(n=2, temperature=1.0, max_tokens=16, seed=7)
    first = await teacher.generate(make_requests(6, seeded))
    again = await teacher.generate(make_requests(6, seeded))
    other = await teacher.generate(make_requests(6, dataclasses.replace(seeded, seed=8)))
    assert [len(r.generations) for r in first] == [2] * 6
    assert texts(first) == texts(again)
    assert texts(first) != texts(other)


async def test_greedy_is_deterministic_and_repeats_for_n(teacher: TransformersTeacher) -> None:
    greedy = SamplingParams(n=3, temperature=0.0, max_tokens=10)
    [first] = await teacher.generate(make_requests(1, greedy))
    [again] = await teacher.generate(make_requests(1, greedy))
    assert len(first.generations) == 3
    assert len({g.text for g in first.generations}) == 1
    assert first.generations[0].text == again.generations[0].text
    assert first.generations[0].logprobs is None  # not asked


async def test_mixed_sampling_keeps_request_order(teacher: TransformersTeacher) -> None:
    requests = [
        TeacherRequest(
            messages=chat(i), sampling=SamplingParams(n=i % 3 + 1, max_tokens=4 + i, seed=i)
        )
        for i in range(7)
    ]
    results = await teacher.generate(requests)
    assert [len(r.generations) for r in results] == [i % 3 + 1 for i in range(7)]
    for i, result in enumerate(results):
        assert result.usage.completion_tokens <= (i % 3 + 1) * (4 + i)


async def test_generate_does_not_block_the_event_loop(teacher: TransformersTeacher) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.002)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        await teacher.generate(make_requests(8, SamplingParams(max_tokens=48, seed=0)))
    finally:
        task.cancel()
    assert ticks >= 5


def test_group_requests_by_sampling_and_batch_size() -> None:
    a, b = SamplingParams(seed=1), SamplingParams(seed=2)
    requests = [TeacherRequest(messages=[], sampling=s) for s in (a, b, a, a, b, a, a)]
    assert group_requests(requests, 2) == [[0, 2], [3, 5], [6], [1, 4]]
