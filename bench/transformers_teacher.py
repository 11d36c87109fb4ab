"""The transformers backend on the device there is: does batching pay, what do soft targets cost?

    .venv/bin/python -m bench.transformers_teacher [--hidden 1024] [--heads 16] [--requests 64]
                                                   [--max-tokens 128] [--batch-sizes 1,8,32]

Builds a random Llama (``tests/tiny_model.py``, 2 layers, offline) in a temporary folder, loads it
with :class:`workers.teachers.transformers.TransformersTeacher` (device ``auto``: CUDA when one is
visible) and, for each batch size, generates ``--requests`` answers of exactly ``--max-tokens``
tokens (the random model rarely stops early; counted from the results), then the same with
``top_logprobs`` 20, then scores the answers (teacher forcing, top 20 at every token).

Printed per batch size: generated tokens/s, the same with top-20 soft targets and its ratio,
scored tokens/s. The ratio batch B / batch 1 says whether batching pays on this device; the
soft-target ratio what capturing them costs. Numbers depend on the device; compare within a run.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from tests.tiny_model import build_tiny_model
from workers.teachers.base import SamplingParams, ScoreRequest, TeacherRequest
from workers.teachers.transformers import TransformersTeacher

PROMPTS = [
    "Write a short poem about the sea.",
    "Explain how a hash table works, step by step.",
    "List three prime numbers and explain why they are prime.",
    "Translate into French: good morning, how are you today?",
]


def _requests(n: int, max_tokens: int, top_logprobs: int | None) -> list[TeacherRequest]:
    sampling = SamplingParams(temperature=0.8, max_tokens=max_tokens, seed=1)
    return [
        TeacherRequest(
            messages=[{"role": "user", "content": f"{PROMPTS[i % len(PROMPTS)]} ({i})"}],
            sampling=sampling,
            top_logprobs=top_logprobs,
        )
        for i in range(n)
    ]


async def _generate(
    teacher: TransformersTeacher, requests: list[TeacherRequest]
) -> tuple[float, int, list[str]]:
    start = time.perf_counter()
    results = await teacher.generate(requests)
    seconds = time.perf_counter() - start
    texts: list[str] = []
    tokens = 0
    for result in results:
        if result.error is not None:
            raise result.error
        texts.append(result.generations[0].text)
        tokens += result.usage.completion_tokens
    return seconds, tokens, texts


async def main(args: argparse.Namespace) -> None:
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        folder = build_tiny_model(
            Path(tmp) / "model", vocab_size=args.vocab, hidden_size=args.hidden,
            num_attention_heads=args.heads,
        )  # fmt: skip
        print(f"device: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'}")
        print(f"model: 2 layers, hidden {args.hidden}, heads {args.heads}, vocab {args.vocab}")
        print("| batch | gen tok/s | gen+top20 tok/s | top20 cost | score tok/s | vs batch 1 |")
        print("| --- | --- | --- | --- | --- | --- |")
        first: float | None = None
        for batch in [int(b) for b in args.batch_sizes.split(",")]:
            teacher = TransformersTeacher(model=str(folder), device="auto", batch_size=batch)
            await _generate(teacher, _requests(batch, args.max_tokens, 20))  # warm-up
            s, tokens, texts = await _generate(
                teacher, _requests(args.requests, args.max_tokens, None)
            )
            s20, tokens20, _ = await _generate(
                teacher, _requests(args.requests, args.max_tokens, 20)
            )
            scores = [
                ScoreRequest(messages=[{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
                             completion=text, top_logprobs=20)
                for i, text in enumerate(texts)
            ]  # fmt: skip
            start = time.perf_counter()
            scored = await teacher.score(scores)
            s_score = time.perf_counter() - start
            scored_tokens = sum(len(r.tokens) for r in scored if r.ok)
            rate = tokens / s
            first = first or rate
            print(
                f"| {batch} | {rate:,.0f} | {tokens20 / s20:,.0f} "
                f"| {s20 / s * tokens / tokens20:.2f}x "
                f"| {scored_tokens / s_score:,.0f} | {rate / first:.2f} |"
            )
            await teacher.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--vocab", type=int, default=2048)
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--batch-sizes", default="1,8,32")
    asyncio.run(main(parser.parse_args()))
