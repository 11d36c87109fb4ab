"""Labeling: the teacher answers the dataset's examples that lack an output.

Input: a task's ``example_ids`` (a chunk planned at job creation). Output: one generated example
per prompt, keeping the source's instruction and input, the teacher's answer, and provenance
(prompt id and version, sampling, usage, raw output, source example id). The skill spec is the
system message. Answers go through the answer-stage curation filters; rejected ones are kept
with their reason. Prompts whose teacher call failed are not stored: a follow-up task asks the
teacher again for those alone (``workers.methods.common``). This is the survey's "labeling"
elicitation (Xu et al. 2024, §3.1).
"""

from __future__ import annotations

import asyncio

from workers.methods.base import MethodContext, TaskInput, TaskOutcome
from workers.methods.common import (
    TEACHER_REFUSED,
    answer_example,
    answer_request,
    filter_config,
    first_error,
    job_benchmarks,
    open_turns,
    read_rationales,
    reject_contaminated,
    retry_followup,
    sampling_from,
    to_retry,
    usage_totals,
)
from workers.methods.judging import judge_answers
from workers.prompts import skill_system_prompt

PROMPT_ID = "labeling"
PROMPT_VERSION = "v1"


async def run(task: TaskInput, ctx: MethodContext) -> TaskOutcome:
    rows = await ctx.fetch_examples(task.payload["example_ids"])
    system = skill_system_prompt(task.skill)
    sampling = sampling_from(task.teacher)
    top_logprobs = task.teacher.get("top_logprobs")
    # the rows are this job's seeds: their dominant language is the default for the answers
    config = await asyncio.to_thread(
        filter_config, task.params, [row["instruction"] for row in rows]
    )
    rationale = bool(task.params.get("rationale"))
    requests = [
        answer_request(
            system,
            row["instruction"],
            row["input"],
            history=row.get("messages"),
            sampling=sampling,
            top_logprobs=top_logprobs,
            request_id=f"{task.task_id}:{i}",
            rationale=rationale,
        )
        for i, row in enumerate(rows)
    ]
    await ctx.check_cancel()
    results = await ctx.teacher.generate(requests) if requests else []
    await ctx.check_cancel()
    # rationale jobs: replies split into reasoning and answer; unreadable ones asked again
    results, reasoning = read_rationales(results, rationale)
    retry = to_retry(results)  # not stored: asked again by a follow-up task, with backoff
    skip = set(retry)
    examples = [
        answer_example(
            item_index=i,
            instruction=row["instruction"],
            input=row["input"],
            result=result,
            filter_names=task.params.get("filters"),
            prompt_id=PROMPT_ID,
            prompt_version=PROMPT_VERSION,
            sampling=sampling,
            meta={"source_example_id": str(row["id"])},
            messages=open_turns(row.get("messages")),
            filter_config=config,
            reasoning=reasoning[i],
        )
        for i, (row, result) in enumerate(zip(rows, results, strict=True))
        if i not in skip
    ]
    kept_rows = [row for i, row in enumerate(rows) if i not in skip]
    for example, row in zip(examples, kept_rows, strict=True):
        example.source_id = str(row["id"])
    # CPU-bound: off the event loop, so heartbeats and other tasks of the worker keep running
    await asyncio.to_thread(reject_contaminated, examples, await job_benchmarks(task, ctx))
    # the job's judge (params.judge) last: an answer whose judge call failed is asked again too
    verdicts = await judge_answers(task, ctx, examples, "answer")
    again = [str(rows[i]["id"]) for i in retry]
    again += [str(kept_rows[i]["id"]) for i in verdicts.unjudged]
    followups = []
    if again:
        error = first_error(results, retry) or verdicts.error
        followups.append(
            {"example_ids": again, "retry": retry_followup(task.payload, len(again), error)}
        )
    unjudged = set(verdicts.unjudged)
    examples = [e for i, e in enumerate(examples) if i not in unjudged]
    prompt_tokens, completion_tokens, teacher_seconds = usage_totals([*results, *verdicts.results])
    failed = sum(1 for e in examples if e.reject_reason == TEACHER_REFUSED)
    return TaskOutcome(
        examples=examples,
        completed=len(examples) - failed,
        failed=failed,
        followups=followups,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        teacher_seconds=teacher_seconds,
        summary={
            "prompts": len(rows),
            "missing": len(task.payload["example_ids"]) - len(rows),
            "retried": len(again),
            "languages": list(config.languages or ()),
            **verdicts.summary(),
        },
        system_prompt=system,
    )
