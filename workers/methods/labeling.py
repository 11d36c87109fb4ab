"""Labeling: the teacher answers the dataset's examples that lack an output.

Input: a task's ``example_ids`` (a chunk planned at job creation). Output: one generated example
per prompt, keeping the source's instruction and input, the teacher's answer, and provenance
(prompt id and version, sampling, usage, raw output, source example id). The skill spec is the
system message. Answers go through the answer-stage curation filters; rejected ones are kept
with their reason. This is the survey's "labeling" elicitation (Xu et al. 2024, §3.1).
"""

from __future__ import annotations

from workers.methods.base import MethodContext, TaskInput, TaskOutcome
from workers.methods.common import (
    TEACHER_ERROR,
    answer_example,
    answer_messages,
    open_turns,
    raise_if_all_failed,
    sampling_from,
    usage_totals,
)
from workers.prompts import skill_system_prompt
from workers.teachers.base import TeacherRequest

PROMPT_ID = "labeling"
PROMPT_VERSION = "v1"


async def run(task: TaskInput, ctx: MethodContext) -> TaskOutcome:
    rows = await ctx.fetch_examples(task.payload["example_ids"])
    system = skill_system_prompt(task.skill)
    sampling = sampling_from(task.teacher)
    top_logprobs = task.teacher.get("top_logprobs")
    requests = [
        TeacherRequest(
            messages=answer_messages(system, row["instruction"], row["input"], row.get("messages")),
            sampling=sampling,
            top_logprobs=top_logprobs,
            request_id=f"{task.task_id}:{i}",
        )
        for i, row in enumerate(rows)
    ]
    await ctx.check_cancel()
    results = await ctx.teacher.generate(requests) if requests else []
    raise_if_all_failed(results)
    await ctx.check_cancel()
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
        )
        for i, (row, result) in enumerate(zip(rows, results, strict=True))
    ]
    prompt_tokens, completion_tokens, teacher_seconds = usage_totals(results)
    failed = sum(1 for e in examples if e.reject_reason == TEACHER_ERROR)
    return TaskOutcome(
        examples=examples,
        completed=len(rows) - failed,
        failed=failed,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        teacher_seconds=teacher_seconds,
        summary={"prompts": len(rows), "missing": len(task.payload["example_ids"]) - len(rows)},
    )
