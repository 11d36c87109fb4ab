"""Pieces both methods use: sampling from the job's teacher spec, chat prompts, answer curation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from workers.curation import filters
from workers.curation.types import Candidate, Rejection
from workers.methods.base import ExampleOut
from workers.prompts import render
from workers.teachers.base import SamplingParams, TeacherError, TeacherResult

TEACHER_ERROR = "teacher_error"  # reject reason of an item whose teacher call failed for good


def sampling_from(spec: dict[str, Any], *, n: int = 1, seed_offset: int = 0) -> SamplingParams:
    """The job's sampling values, all explicit (servers and engines have other defaults)."""
    seed = spec.get("seed")
    return SamplingParams(
        n=n,
        temperature=float(spec.get("temperature", 0.7)),
        top_p=float(spec.get("top_p", 1.0)),
        max_tokens=int(spec.get("max_tokens", 1024)),
        seed=None if seed is None else int(seed) + seed_offset,
    )


def open_turns(messages: Sequence[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """A conversation without its final answer (the turn the teacher writes), or None."""
    if not messages:
        return None
    turns = [{"role": m["role"], "content": m["content"]} for m in messages]
    return turns[:-1] if turns[-1]["role"] == "assistant" else turns


def answer_messages(
    system: str, instruction: str, input: str, history: Sequence[dict[str, Any]] | None = None
) -> list[dict[str, str]]:
    """System (the skill) first, so every prompt of a job shares a cacheable prefix."""
    turns = open_turns(history)
    if turns:
        if turns[0]["role"] != "system":
            turns.insert(0, {"role": "system", "content": system})
        return turns
    user = render("labeling", "v1", instruction=instruction, input=input)
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def raise_if_all_failed(results: Sequence[TeacherResult]) -> None:
    """A batch where every call failed with a retryable error is retried as a whole task."""
    errors = [r.error for r in results if r.error is not None]
    if results and len(errors) == len(results) and all(e.retryable for e in errors):
        raise errors[0]


def curate_answer(candidate: Candidate, names: Sequence[str] | None) -> Rejection | None:
    steps = list(names) if names is not None else list(filters.ANSWER_FILTERS)
    return filters.apply_filters(candidate, steps, filters.FilterConfig())


def answer_example(
    *,
    item_index: int,
    instruction: str,
    input: str,
    result: TeacherResult,
    filter_names: Sequence[str] | None,
    prompt_id: str,
    prompt_version: str,
    sampling: SamplingParams,
    meta: dict[str, Any],
    messages: list[dict[str, Any]] | None = None,
) -> ExampleOut:
    """The example one teacher answer makes: accepted, or rejected with the reason."""
    common: dict[str, Any] = {
        "item_index": item_index,
        "instruction": instruction,
        "input": input,
        "prompt_id": prompt_id,
        "prompt_version": prompt_version,
        "sampling": sampling.as_dict(),
    }
    if result.error is not None or not result.generations:
        error = result.error or TeacherError("no generation returned")
        return ExampleOut(
            **common,
            status="rejected",
            reject_reason=TEACHER_ERROR,
            reject_detail=_describe(error),
            meta={**meta, "error": error.as_dict()},
        )
    generation = result.generations[0]
    text = generation.text
    usage = usage_of(result)
    candidate = Candidate(
        instruction, input, text, raw=text, finish_reason=generation.finish_reason
    )
    rejection = curate_answer(candidate, filter_names)
    extra = dict(meta)
    if generation.logprobs is not None:  # soft targets for white-box distillation
        extra["logprobs"] = [t.as_dict() for t in generation.logprobs]
    if messages is not None:
        messages = [*messages, {"role": "assistant", "content": text}]
    return ExampleOut(
        **common,
        output=text,
        status="rejected" if rejection else "accepted",
        reject_reason=rejection.reason if rejection else None,
        reject_detail=rejection.detail if rejection else None,
        messages=messages,
        meta=extra,
        raw_output=text,
        usage=usage,
    )


def _describe(error: TeacherError) -> str:
    return f"{type(error).__name__}: {error.message}"


def usage_of(result: TeacherResult) -> dict[str, int]:
    """The token usage of one result, as stored with its example."""
    return {
        "prompt_tokens": result.usage.prompt_tokens,
        "completion_tokens": result.usage.completion_tokens,
    }


def usage_totals(results: Sequence[TeacherResult]) -> tuple[int, int, float]:
    """Prompt tokens, completion tokens and summed latency of a batch."""
    prompt = sum(r.usage.prompt_tokens for r in results)
    completion = sum(r.usage.completion_tokens for r in results)
    return prompt, completion, sum(r.latency_s for r in results)
