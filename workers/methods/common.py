"""Pieces both methods use: sampling from the job's teacher spec, chat prompts, answer curation."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.soft_targets import SoftTargets
from workers.curation import decontamination, filters, language
from workers.curation.types import TRUNCATED, Candidate, Rejection
from workers.methods.base import ExampleOut, MethodContext, TaskFailed, TaskInput
from workers.methods.parsing import load_json
from workers.prompts import render
from workers.teachers.base import (
    Generation,
    SamplingParams,
    ScoreResult,
    TeacherBadResponse,
    TeacherError,
    TeacherRequest,
    TeacherResult,
    TokenLogprob,
)

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
    return retry_indexes(
        [
            None
            if result.error is None and result.generations
            else result.error or TeacherBadResponse("no generation returned")
            for result in results
        ]
    )


def retry_indexes(errors: Sequence[TeacherError | None]) -> list[int]:
    """:func:`to_retry` over the items' errors (None: answered), for any kind of teacher call."""
    retry = []
    for i, error in enumerate(errors):
        if error is None:
            continue
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


def first_error(
    results: Sequence[TeacherResult | ScoreResult], indexes: Sequence[int]
) -> TeacherError | None:
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


# Rationales (``params.rationale``; Distilling step-by-step, Hsieh et al. 2023): the answer call
# asks for the teacher's reasoning and its final answer as separate JSON fields. The reply is
# validated here (servers may ignore the schema, local backends do not enforce it): one that
# does not parse is a malformed body, asked again later like any (``TeacherBadResponse``), never
# stored half; one cut at ``max_tokens`` is stored rejected ``truncated`` with its raw text.
RATIONALE_ID = "rationale"
RATIONALE_VERSION = "v1"
RATIONALE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"rationale": {"type": "string"}, "answer": {"type": "string"}},
    "required": ["rationale", "answer"],
    "additionalProperties": False,
}


@dataclass(frozen=True, slots=True)
class Reasoned:
    """A rationale job's reply: the reasoning (None when the reply was cut at ``max_tokens``
    before it could be read) and the raw JSON text it came in."""

    rationale: str | None
    raw: str


def answer_request(
    system: str,
    instruction: str,
    input: str,
    *,
    sampling: SamplingParams,
    request_id: str,
    history: Sequence[dict[str, Any]] | None = None,
    top_logprobs: int | None = None,
    rationale: bool = False,
) -> TeacherRequest:
    """The teacher request for one answer (:func:`answer_messages`). With `rationale` the last
    user turn asks for ``{"rationale", "answer"}`` (prompt ``rationale/v1``) and the request
    carries that JSON schema."""
    messages = answer_messages(system, instruction, input, history)
    if not rationale:
        return TeacherRequest(
            messages=messages, sampling=sampling, top_logprobs=top_logprobs, request_id=request_id
        )
    ask = render(RATIONALE_ID, RATIONALE_VERSION)
    if messages[-1]["role"] == "user":
        last = messages[-1]
        messages = [*messages[:-1], {**last, "content": f"{last['content']}\n\n{ask}"}]
    else:
        messages = [*messages, {"role": "user", "content": ask}]
    return TeacherRequest(
        messages=messages,
        sampling=sampling,
        json_schema=RATIONALE_SCHEMA,
        top_logprobs=top_logprobs,
        request_id=request_id,
    )


def parse_rationale(text: str) -> tuple[str, str] | None:
    """(rationale, answer) from a reply, or None unless it is a JSON object with both as
    non-blank strings (a fenced block or surrounding prose is tolerated)."""
    data = load_json(text)
    if not isinstance(data, dict):
        return None
    rationale, answer = data.get("rationale"), data.get("answer")
    if not isinstance(rationale, str) or not isinstance(answer, str):
        return None
    if not rationale.strip() or not answer.strip():
        return None
    return rationale.strip(), answer.strip()


def read_rationales(
    results: Sequence[TeacherResult], rationale: bool
) -> tuple[list[TeacherResult], list[Reasoned | None]]:
    """The answer calls' results with each reply split (`rationale` jobs; otherwise as they
    are): a readable reply becomes a result whose text is the final answer, its reasoning
    returned beside it; an unreadable one becomes a retryable ``TeacherBadResponse`` result
    (tokens kept), for :func:`to_retry`; one cut at ``max_tokens`` stays as it is, with a
    :class:`Reasoned` without rationale (:func:`answer_example` rejects it ``truncated``)."""
    if not rationale:
        return list(results), [None] * len(results)
    out: list[TeacherResult] = []
    reasons: list[Reasoned | None] = []
    for result in results:
        if result.error is not None or not result.generations:
            out.append(result)
            reasons.append(None)
            continue
        generation = result.generations[0]
        parsed = parse_rationale(generation.text)
        if parsed is not None:
            answer = Generation(parsed[1], generation.finish_reason, generation.logprobs)
            out.append(dataclasses.replace(result, generations=[answer]))
            reasons.append(Reasoned(parsed[0], generation.text))
        elif generation.finish_reason == "length":
            out.append(result)
            reasons.append(Reasoned(None, generation.text))
        else:
            error = TeacherBadResponse(
                'the reply is not JSON {"rationale": str, "answer": str} with both filled'
            )
            out.append(dataclasses.replace(result, generations=[], error=error))
            reasons.append(None)
    return out, reasons


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
    reasoning: Reasoned | None = None,
) -> ExampleOut:
    """The example one teacher answer makes: accepted, or rejected with the reason (a prompt
    the teacher refused included); retryable failures must not get here (:func:`to_retry`).
    `reasoning` (rationale jobs, :func:`read_rationales`): the answer's rationale, stored
    apart from the output, and the raw reply."""
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
    if reasoning is not None and reasoning.rationale is None:  # cut before it could be read
        return ExampleOut(
            **common,
            status="rejected",
            reject_reason=TRUNCATED,
            reject_detail="finish_reason=length: the reply (rationale and answer) was cut",
            meta=dict(meta),
            raw_output=reasoning.raw,
            usage=usage,
        )
    candidate = Candidate(
        instruction, input, text, raw=text, finish_reason=generation.finish_reason
    )
    rejection = curate_answer(candidate, filter_names, filter_config)
    targets = None
    if generation.logprobs is not None:  # white-box distillation: stored packed, not in meta
        targets = soft_targets_of(generation.logprobs, "generation")
    if messages is not None:
        messages = [*messages, {"role": "assistant", "content": text}]
    return ExampleOut(
        **common,
        output=text,
        status="rejected" if rejection else "accepted",
        reject_reason=rejection.reason if rejection else None,
        reject_detail=rejection.detail if rejection else None,
        messages=messages,
        meta=dict(meta),
        raw_output=text if reasoning is None else reasoning.raw,
        usage=usage,
        soft_targets=targets,
        rationale=None if reasoning is None else reasoning.rationale,
    )


NO_TOKEN_IDS = (
    "the teacher returned logprobs without token ids; soft targets need them (an "
    "OpenAI-compatible server must return token ids, as vLLM does when asked)"
)


def soft_targets_of(tokens: Sequence[TokenLogprob], source: str) -> SoftTargets:
    """The soft targets of one completion from the teacher's per-token logprobs, each position's
    alternatives sorted by logprob, descending. A token or alternative without its id fails the
    task: a distribution over token texts is no use to a trainer."""
    top_ids: list[list[int]] = []
    top_logprobs: list[list[float]] = []
    for token in tokens:
        if token.token_id is None or any(alt[1] is None for alt in token.top):
            raise TaskFailed(NO_TOKEN_IDS)
        top = sorted(token.top, key=lambda alt: alt[2], reverse=True)
        top_ids.append([int(alt[1]) for alt in top])  # type: ignore[arg-type]
        top_logprobs.append([float(alt[2]) for alt in top])
    return SoftTargets(
        token_ids=[int(t.token_id) for t in tokens],  # type: ignore[arg-type]
        token_logprobs=[float(t.logprob) for t in tokens],
        top_ids=top_ids,
        top_logprobs=top_logprobs,
        source=source,
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
    """Reject as `contaminated` every accepted (or feedback `candidate`) example whose task
    (instruction and input) or answer matches an item of the job's benchmarks; the detail names
    the benchmark and item."""
    if index is None:
        return
    for example in examples:
        if example.status not in ("accepted", "candidate"):
            continue
        candidate = Candidate(example.instruction, example.input, example.output)
        rejection = decontamination.check_candidate(candidate, index)
        if rejection is not None:
            example.status = "rejected"
            example.reject_reason = rejection.reason
            example.reject_detail = rejection.detail
