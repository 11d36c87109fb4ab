"""Expansion (Self-Instruct / Alpaca): new tasks from demonstrations, curated, then answered.

Paper: Wang et al. 2022, "Self-Instruct: Aligning Language Models with Self-Generated
Instructions"; Taori et al. 2023 (Alpaca). Input: the dataset's seeds (and what earlier rounds
accepted) as demonstrations, the job's skill spec. Output: accepted instruction-response pairs,
plus every rejected candidate with its reason.

One task is one round:

1. stop if the target is reached, the token budget is spent or the round cap is hit;
2. ``calls_per_round`` prompts, each with ``demos_per_prompt`` demonstrations (a share
   ``seed_demo_fraction`` from the seeds, the rest from generated examples), asking for
   ``candidates_per_call`` new tasks as JSON (a JSON schema where the backend enforces one; a
   tolerant parser otherwise);
3. curation of the proposed instructions: filters, then exact and near duplicates (ROUGE-L >=
   ``similarity_threshold``) against every non-rejected example of the dataset and the round's
   earlier candidates; candidates past what the target still needs are kept as ``over_target``
   rejections rather than answered;
4. two-stage (default): the kept tasks are answered in a second call that shows the skill spec
   and the task only, no demonstrations, so answers are not shaped by (or copied from) the demo
   answers and each answer gets the full context budget; single-stage asks for the output with
   the task in one call (cheaper, lower quality);
5. the answers go through the answer filters; the next round is enqueued unless this one
   reached the target.

The target is exact: the queue accepts at most ``target - accepted`` examples of a round, under
the job's lock, so rounds running at once on several workers never overshoot.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections.abc import Callable, Sequence
from typing import Any

from workers.curation import dedup, filters
from workers.curation.types import EMPTY, TRUNCATED, UNPARSEABLE, Candidate, Rejection
from workers.methods.base import ExampleOut, MethodContext, TaskInput, TaskOutcome
from workers.methods.common import (
    answer_example,
    answer_messages,
    curate_answer,
    raise_if_all_failed,
    sampling_from,
    usage_of,
    usage_totals,
)
from workers.methods.parsing import parse_tasks, tasks_schema
from workers.prompts import render, skill_system_prompt
from workers.teachers.base import TeacherRequest, TeacherResult

PROPOSE_ID = "expansion/propose"
ANSWER_ID = "expansion/answer"
PROMPT_VERSION = "v1"
OVER_TARGET = "over_target"
RECHECK_MARGIN = dt.timedelta(seconds=10)  # commit-to-created_at gap and clock skew


async def run(task: TaskInput, ctx: MethodContext) -> TaskOutcome:
    params = task.params
    round_no = int(task.payload.get("round", 0))
    progress = await ctx.job_progress()
    stop = stop_reason(params, progress, round_no)
    if stop is not None:
        return TaskOutcome(stop_reason=stop, summary={"round": round_no, "stopped": stop})
    remaining = params["target"] - progress["accepted"]
    system = skill_system_prompt(task.skill)
    rng = random.Random(f"{task.job_id}:{round_no}:{task.attempt}")

    calls, per_prompt = params["calls_per_round"], params["demos_per_prompt"]
    n_seed = round(per_prompt * params["seed_demo_fraction"])
    demos = await ctx.sample_demos(n_seed * calls, (per_prompt - n_seed) * calls)
    two_stage = params["two_stage"]
    propose_sampling = sampling_from(task.teacher, seed_offset=round_no)
    requests = [
        TeacherRequest(
            messages=[
                {"role": "system", "content": system},
                {
                    "role": "user",
                    "content": render(
                        PROPOSE_ID,
                        PROMPT_VERSION,
                        count=params["candidates_per_call"],
                        demos=pick_demos(demos, per_prompt, n_seed, rng),
                        with_output=not two_stage,
                    ),
                },
            ],
            sampling=propose_sampling,
            json_schema=tasks_schema(with_output=not two_stage),
            request_id=f"{task.task_id}:propose:{i}",
        )
        for i in range(calls)
    ]
    await ctx.check_cancel()
    proposals = await ctx.teacher.generate(requests)
    raise_if_all_failed(proposals)
    await ctx.check_cancel()

    examples: list[ExampleOut] = []
    candidates, failed_calls = read_proposals(proposals, examples, propose_sampling.as_dict())
    dedup_config = dedup.DedupConfig(threshold=params["similarity_threshold"])
    snapshot = dt.datetime.now(dt.UTC)
    pool = await ctx.dataset_pool()
    # CPU-bound: off the event loop, so heartbeats and other tasks of the worker keep running
    kept = await asyncio.to_thread(
        curate_round, pool, candidates, params.get("filters"), dedup_config
    )
    to_answer: list[tuple[Candidate, dict[str, Any]]] = []
    for candidate, rejection, meta in kept:
        if rejection is None and len(to_answer) >= remaining:
            rejection = Rejection(OVER_TARGET, "the target needs no more candidates this round")
        if rejection is not None:
            examples.append(
                rejected(len(examples), candidate, rejection, meta, propose_sampling.as_dict())
            )
        else:
            to_answer.append((candidate, meta))

    answers: list[TeacherResult] = []
    if two_stage and to_answer:
        answer_sampling = sampling_from(task.teacher, seed_offset=round_no)
        answer_requests = [
            TeacherRequest(
                messages=answer_messages(system, c.instruction, c.input),
                sampling=answer_sampling,
                top_logprobs=task.teacher.get("top_logprobs"),
                request_id=f"{task.task_id}:answer:{i}",
            )
            for i, (c, _) in enumerate(to_answer)
        ]
        await ctx.check_cancel()
        answers = await ctx.teacher.generate(answer_requests)
        raise_if_all_failed(answers)
        await ctx.check_cancel()
        for (candidate, meta), result in zip(to_answer, answers, strict=True):
            examples.append(
                answer_example(
                    item_index=len(examples),
                    instruction=candidate.instruction,
                    input=candidate.input,
                    result=result,
                    filter_names=params.get("answer_filters"),
                    prompt_id=ANSWER_ID,
                    prompt_version=PROMPT_VERSION,
                    sampling=answer_sampling,
                    meta=meta,
                )
            )
    else:
        for candidate, meta in to_answer:
            examples.append(
                single_stage(len(examples), candidate, meta, params, propose_sampling.as_dict())
            )

    accepted = [e for e in examples if e.status == "accepted"]
    for example, sig in zip(
        accepted, dedup.signatures([e.instruction for e in accepted]), strict=True
    ):
        example.signature = sig
    prompt_tokens, completion_tokens, teacher_seconds = usage_totals([*proposals, *answers])
    reached = progress["accepted"] + len(accepted) >= params["target"]
    next_round = round_no + params.get("parallel_rounds", 1)  # the next round of this lane
    next_stop = (
        "target reached"
        if reached
        else stop_reason(
            params,
            {
                **progress,
                "prompt_tokens": progress["prompt_tokens"] + prompt_tokens,
                "completion_tokens": progress["completion_tokens"] + completion_tokens,
            },
            next_round,
        )
    )
    return TaskOutcome(
        examples=examples,
        completed=len(accepted),
        failed=failed_calls,
        followups=[] if next_stop else [{"round": next_round}],
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        teacher_seconds=teacher_seconds,
        stop_reason=next_stop,
        max_accepted=remaining,
        recheck=recheck_against([(e.item_index, e.instruction) for e in accepted], dedup_config),
        # rows a parallel round committed after our snapshot carry a time at most a little earlier
        recheck_since=snapshot - RECHECK_MARGIN,
        summary={
            "round": round_no,
            "proposed": len(candidates),
            "answered": len(to_answer),
            "accepted": len(accepted),
            "failed_calls": failed_calls,
        },
    )


def stop_reason(params: dict[str, Any], progress: dict[str, Any], round_no: int) -> str | None:
    """Why the job should stop before this round, or None to go on."""
    if progress["accepted"] >= params["target"]:
        return "target reached"
    budget = params.get("token_budget")
    used = progress["prompt_tokens"] + progress["completion_tokens"]
    if budget is not None and used >= budget:
        return f"token budget spent ({used} of {budget} tokens)"
    if round_no >= params["max_rounds"]:
        return f"round limit reached ({params['max_rounds']} rounds)"
    return None


def pick_demos(
    pool: Sequence[dict[str, Any]], k: int, n_seed: int, rng: random.Random
) -> list[dict[str, Any]]:
    """`n_seed` seed demonstrations and `k - n_seed` generated ones (seeds fill a shortfall)."""
    seeds = [d for d in pool if d["origin"] == "seed"]
    generated = [d for d in pool if d["origin"] != "seed"]
    chosen = rng.sample(generated, min(k - n_seed, len(generated)))
    chosen += rng.sample(seeds, min(k - len(chosen), len(seeds)))
    rng.shuffle(chosen)
    return chosen


def read_proposals(
    results: Sequence[TeacherResult], examples: list[ExampleOut], sampling: dict[str, Any]
) -> tuple[list[tuple[Candidate, dict[str, Any]]], int]:
    """The candidates proposed; unreadable proposals become rejected examples (raw text kept)."""
    candidates: list[tuple[Candidate, dict[str, Any]]] = []
    failed = 0
    for call, result in enumerate(results):
        if result.error is not None or not result.generations:
            failed += 1
            continue
        generation = result.generations[0]
        tasks = parse_tasks(generation.text)
        if tasks is None:
            reason = TRUNCATED if generation.finish_reason == "length" else UNPARSEABLE
            examples.append(
                ExampleOut(
                    item_index=len(examples),
                    instruction="",
                    status="rejected",
                    reject_reason=reason,
                    reject_detail="no tasks could be read from the teacher's proposal",
                    raw_output=generation.text,
                    prompt_id=PROPOSE_ID,
                    prompt_version=PROMPT_VERSION,
                    sampling=sampling,
                    usage=usage_of(result),
                    meta={"call": call},
                )
            )
            continue
        for position, parsed in enumerate(tasks):
            candidate = Candidate(
                parsed["instruction"].strip(),
                parsed["input"].strip(),
                parsed.get("output"),
                raw=generation.text,
                finish_reason=generation.finish_reason,
            )
            candidates.append((candidate, {"call": call, "position": position}))
    return candidates, failed


def curate_round(
    pool: list[tuple[str, bytes | None]],
    candidates: Sequence[tuple[Candidate, dict[str, Any]]],
    names: Sequence[str] | None,
    config: dedup.DedupConfig,
) -> list[tuple[Candidate, Rejection | None, dict[str, Any]]]:
    """The round's curation against the dataset's pool (seeds and accepted examples)."""
    return curate_instructions(candidates, names, dedup.NearDupIndex.from_rows(pool, config))


def curate_instructions(
    candidates: Sequence[tuple[Candidate, dict[str, Any]]],
    names: Sequence[str] | None,
    index: dedup.NearDupIndex,
) -> list[tuple[Candidate, Rejection | None, dict[str, Any]]]:
    """Filters first; the survivors are checked for duplicates in order (the round's own too)."""
    steps = list(names) if names is not None else list(filters.INSTRUCTION_FILTERS)
    config = filters.FilterConfig()
    verdicts = [filters.apply_filters(c, steps, config) for c, _ in candidates]
    survivors = [i for i, v in enumerate(verdicts) if v is None]
    texts = [_dedup_text(candidates[i][0]) for i in survivors]
    for i, rejection in zip(survivors, dedup.dedupe_batch(texts, index), strict=True):
        verdicts[i] = rejection
    return [(c, v, meta) for (c, meta), v in zip(candidates, verdicts, strict=True)]


def _dedup_text(candidate: Candidate) -> str:
    # Self-Instruct's rule compares instructions only (one task on two inputs is a duplicate)
    return candidate.instruction


def recheck_against(
    accepted: list[tuple[int, str]], config: dedup.DedupConfig
) -> Callable[[list[tuple[str, bytes | None]]], set[int]]:
    """The commit-time check: which accepted items are near duplicates of `rows`."""

    def check(rows: list[tuple[str, bytes | None]]) -> set[int]:
        index = dedup.NearDupIndex.from_rows(rows, config)
        return {item for item, text in accepted if index.check(text) is not None}

    return check


def rejected(
    index: int,
    candidate: Candidate,
    rejection: Rejection,
    meta: dict[str, Any],
    sampling: dict[str, Any],
) -> ExampleOut:
    return ExampleOut(
        item_index=index,
        instruction=candidate.instruction,
        input=candidate.input,
        output=candidate.output,
        status="rejected",
        reject_reason=rejection.reason,
        reject_detail=rejection.detail,
        raw_output=candidate.raw,
        prompt_id=PROPOSE_ID,
        prompt_version=PROMPT_VERSION,
        sampling=sampling,
        meta=meta,
    )


def single_stage(
    index: int,
    candidate: Candidate,
    meta: dict[str, Any],
    params: dict[str, Any],
    sampling: dict[str, Any],
) -> ExampleOut:
    rejection = (
        Rejection(EMPTY, "the proposal has no output")
        if not candidate.output
        else curate_answer(candidate, params.get("answer_filters"))
    )
    if rejection is not None:
        return rejected(index, candidate, rejection, meta, sampling)
    return ExampleOut(
        item_index=index,
        instruction=candidate.instruction,
        input=candidate.input,
        output=candidate.output,
        raw_output=candidate.raw,
        prompt_id=PROPOSE_ID,
        prompt_version=PROMPT_VERSION,
        sampling=sampling,
        meta=meta,
    )
