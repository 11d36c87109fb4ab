"""Pieces both methods use: sampling from the job's teacher spec, chat prompts, answer curation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from workers.curation import decontamination, filters, language
from workers.curation.types import Candidate, Rejection
from workers.methods.base import ExampleOut, MethodContext, TaskFailed, TaskInput
from workers.prompts import render
from workers.teachers.base import SamplingParams, TeacherBadResponse, TeacherError, TeacherResult

# A teacher failure is never a data rejection: items whose call failed with a retryable error
# (outage, timeout, 429, malformed body) are not stored but go back to the queue as a follow-up
# task (payload ``retry``: its number; the queue backs off by it). The one exception is a request
# the teacher refused for that prompt alone (HTTP 400/413/422, e.g. longer than its context):
# retrying cannot help, so it is stored as rejected "teacher_refused" with the server's message.
# Other final errors (401, 403, 404: wrong key or model) are the job's problem: the task fails.
TEACHER_REFUSED = "teacher_refused"
ITEM_REFUSAL_STATUSES = frozenset({400, 413, 422})
MAX_TEACHER_RETRIES = 10  # follow-up rounds of one item before its task fails


def is_refusal(error: TeacherError) -> bool:
    """True when the teacher refused this one request for good (not the whole job)."""
    return not error.retryable and error.status in ITEM_REFUSAL_STATUSES


def to_retry(results: Sequence[TeacherResult]) -> list[int]:
    """Indexes of the results to ask again later; raises a final error that is not about one
    item (a wrong key, an unknown model: every item would fail the same way)."""
    retry = []
    for i, result in enumerate(results):
        if result.error is None and result.generations:
            continue
        error = result.error or TeacherBadResponse("no generation returned")
        if error.retryable:
            retry.append(i)
        elif not is_refusal(error):
            raise error
    return retry


def retry_followup(payload: dict[str, Any], unanswered: int, error: TeacherError | None) -> int:
    """The ``retry`` number of the follow-up task that asks again; past
    :data:`MAX_TEACHER_RETRIES` the task fails (and with it the job) naming what is left."""
    retry = int(payload.get("retry", 0)) + 1
    if retry > MAX_TEACHER_RETRIES:
        last = "" if error is None else f": {type(error).__name__}: {error.message}"
        raise TaskFailed(
            f"{unanswered} items still unanswered after {MAX_TEACHER_RETRIES} teacher retries{last}"
        )
    return retry


def first_error(results: Sequence[TeacherResult], indexes: Sequence[int]) -> TeacherError | None:
    """The error of the first result in `indexes` that has one."""
    return next((results[i].error for i in indexes if results[i].error is not None), None)


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


LANGUAGE_SAMPLE = 16  # texts whose languages decide the default (detection is ~0.2 ms a text)


def _spread(texts: Sequence[str], n: int) -> list[str]:
    """At most `n` of `texts`, spread evenly over them."""
    step = max(1, -(-len(texts) // n))
    return list(texts[::step])


def filter_config(params: dict[str, Any], seeds: Sequence[str]) -> filters.FilterConfig:
    """The job's filter settings: `params.languages`, else the seeds' dominant language(s)
    detected from `seeds` (the texts the method read); none placed: no language check."""
    languages = params.get("languages") or language.dominant(_spread(seeds, LANGUAGE_SAMPLE))
    return filters.FilterConfig(languages=tuple(languages) or None)


def curate_answer(
    candidate: Candidate,
    names: Sequence[str] | None,
    config: filters.FilterConfig | None = None,
) -> Rejection | None:
    steps = list(names) if names is not None else list(filters.ANSWER_FILTERS)
    return filters.apply_filters(candidate, steps, config or filters.FilterConfig())


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
    filter_config: filters.FilterConfig | None = None,
) -> ExampleOut:
    """The example one teacher answer makes: accepted, or rejected with the reason (a prompt
    the teacher refused included); retryable failures must not get here (:func:`to_retry`)."""
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
        if not is_refusal(error):
            raise error
        return ExampleOut(
            **common,
            status="rejected",
            reject_reason=TEACHER_REFUSED,
            reject_detail=_describe(error),
            meta={**meta, "error": error.as_dict()},
        )
    generation = result.generations[0]
    text = generation.text
    usage = usage_of(result)
    candidate = Candidate(
        instruction, input, text, raw=text, finish_reason=generation.finish_reason
    )
    rejection = curate_answer(candidate, filter_names, filter_config)
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


async def job_benchmarks(task: TaskInput, ctx: MethodContext) -> decontamination.Index | None:
    """The contamination index of the job's benchmarks (``params.decontaminate``), or None."""
    ids = task.params.get("decontaminate") or []
    return await ctx.benchmark_index(ids) if ids else None


def reject_contaminated(
    examples: Sequence[ExampleOut], index: decontamination.Index | None
) -> None:
    """Reject as `contaminated` every accepted example whose task (instruction and input) or
    answer matches an item of the job's benchmarks; the detail names the benchmark and item."""
    if index is None:
        return
    for example in examples:
        if example.status != "accepted":
            continue
        candidate = Candidate(example.instruction, example.input, example.output)
        rejection = decontamination.check_candidate(candidate, index)
        if rejection is not None:
            example.status = "rejected"
            example.reject_reason = rejection.reason
            example.reject_detail = rejection.detail
