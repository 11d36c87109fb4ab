"""Scoring: the teacher's token distributions over text it did not write (teacher forcing).

Input: a task's ``example_ids`` (a chunk planned at job creation: accepted examples with a
response, typically a student's samples uploaded as examples). For each example the teacher
sees the prompt as labeling would have shown it (the skill's system prompt, then the
conversation or the rendered instruction) and the example's response as its own answer; at
every response token it reports its logprob of that token and its ``top_logprobs`` most likely
alternatives, with token ids (vLLM ``prompt_logprobs``; a completions request with ``echo`` over
HTTP; a forward pass with transformers). Output: the soft targets of the *existing* examples
(``TaskOutcome.soft_targets``, keyed by example id; no example row is written, so "one answer per
prompt" stands), and the teacher's tokenizer identity on the job.

The on-policy distillation methods need this: MiniLLM (Gu et al. 2024, reverse KL on the
student's samples) and GKD (Agarwal et al. 2024). Teacher failures follow labeling's rule
(``workers.methods.common``): items whose call failed with a retryable error go to a follow-up
task; an item the teacher refused for good (HTTP 400/413/422, e.g. longer than its context) is
counted as failed, its reason in the task summary; any other final error fails the job.
"""

from __future__ import annotations

from workers.methods.base import MethodContext, TaskFailed, TaskInput, TaskOutcome
from workers.methods.common import (
    answer_messages,
    first_error,
    is_refusal,
    retry_followup,
    retry_indexes,
    soft_targets_of,
)
from workers.prompts import skill_system_prompt
from workers.teachers.base import (
    ScoreRequest,
    ScoreResult,
    TeacherError,
    TeacherRejected,
    TokenizerInfo,
    WhiteBoxTeacher,
)

MAX_REFUSALS_SHOWN = 20  # refused items named in the task summary


async def teacher_tokenizer(ctx: MethodContext) -> tuple[WhiteBoxTeacher, TokenizerInfo]:
    """The white-box view of the task's teacher and its tokenizer identity; a teacher that
    cannot give token ids fails the task (and the job) with the reason."""
    teacher = ctx.teacher
    if not isinstance(teacher, WhiteBoxTeacher):
        raise TaskFailed(
            f"scoring needs a teacher that gives token ids and logprobs; the "
            f"{teacher.backend} teacher ({teacher.model}) does not"
        )
    try:
        return teacher, await teacher.tokenizer_info()
    except TeacherError as error:
        if error.retryable:
            raise
        raise TaskFailed(f"scoring needs the teacher's token ids: {error.message}") from error


def _error_of(result: ScoreResult) -> TeacherError | None:
    if result.error is not None or result.tokens:
        return result.error
    # a response that tokenizes to nothing: asking again gives the same; the item is refused
    return TeacherRejected("the teacher scored no token of the response", status=422)


async def run(task: TaskInput, ctx: MethodContext) -> TaskOutcome:
    teacher, tokenizer = await teacher_tokenizer(ctx)
    rows = await ctx.fetch_examples(task.payload["example_ids"])
    # an example that lost its response since the job was planned has nothing to score
    rows = [row for row in rows if (row.get("output") or "").strip()]
    system = skill_system_prompt(task.skill)
    k = int(task.params["top_logprobs"])
    requests = [
        ScoreRequest(
            messages=answer_messages(system, row["instruction"], row["input"], row.get("messages")),
            completion=row["output"],
            top_logprobs=k,
            request_id=f"{task.task_id}:{i}",
        )
        for i, row in enumerate(rows)
    ]
    await ctx.check_cancel()
    results = await teacher.score(requests) if requests else []
    await ctx.check_cancel()
    errors = [_error_of(result) for result in results]
    retry = retry_indexes(errors)  # raises a final error that is not about one item
    followups = []
    if retry:
        number = retry_followup(task.payload, len(retry), first_error(results, retry))
        followups.append({"example_ids": [str(rows[i]["id"]) for i in retry], "retry": number})
    refused = {
        str(row["id"]): f"{type(error).__name__}: {error.message}"
        for row, error in zip(rows, errors, strict=True)
        if error is not None and is_refusal(error)
    }
    scored = {
        str(row["id"]): soft_targets_of(result.tokens, "scoring")
        for row, result, error in zip(rows, results, errors, strict=True)
        if error is None
    }
    return TaskOutcome(
        soft_targets=scored,
        replace_soft_targets=bool(task.params.get("rescore")),
        completed=len(scored),
        failed=len(refused),
        followups=followups,
        prompt_tokens=sum(r.prompt_tokens for r in results),
        completion_tokens=sum(len(r.tokens) for r in results),
        teacher_seconds=sum(r.latency_s for r in results),
        summary={
            "examples": len(rows),
            "missing": len(task.payload["example_ids"]) - len(rows),
            "scored": len(scored),
            "positions": sum(t.positions for t in scored.values()),
            "retried": len(retry),
            "refused": dict(list(refused.items())[:MAX_REFUSALS_SHOWN]),
        },
        system_prompt=system,
        tokenizer=tokenizer,
    )
