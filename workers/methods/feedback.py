"""Feedback: the teacher as judge of responses to the dataset's prompts (the survey's "feedback"
knowledge, Xu et al. 2024, §3.5; UltraFeedback, Cui et al. 2023).

Input: a task's ``groups`` (planned by ``app.jobs``): per prompt, ``prompt_id`` (the root
example holding the prompt: instruction and input, or a conversation up to its last user turn)
and ``responses`` (the existing examples whose response to it is judged: the root's own output,
its answers, earlier candidates, uploaded student or other-model answers).

Per group:

1. gather candidates: ``samples`` teacher answers (``temperatures`` cycled, else the teacher's),
   each through the answer curation of labeling; an answer a filter rejects, or the same as
   another response of the prompt (``duplicate``), is stored rejected and not judged; the rest
   are stored with status ``candidate`` (not training data by themselves) and ``source_id`` the
   prompt; plus the existing responses;
2. judge them (:mod:`workers.methods.judging`): pointwise, every response scored per aspect;
   pairwise, every two responses compared in both orders;
3. scores go on the new candidates and, as score updates, on the existing responses; preference
   pairs (best vs worst, or every pair over ``min_margin``) reference both kinds.

A group any of whose teacher calls failed (retryably) is not stored: a follow-up task (payload
``retry``) takes it again, carrying the samples already written so they are not asked twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.hashing import content_hash
from workers.curation.types import DUPLICATE
from workers.methods import judging
from workers.methods.base import ExampleOut, MethodContext, PairOut, TaskInput, TaskOutcome
from workers.methods.common import (
    answer_example,
    answer_messages,
    filter_config,
    job_benchmarks,
    open_turns,
    reject_contaminated,
    retry_followup,
    sampling_from,
    to_retry,
    usage_totals,
)
from workers.methods.labeling import PROMPT_ID as SAMPLE_PROMPT_ID
from workers.methods.labeling import PROMPT_VERSION as SAMPLE_PROMPT_VERSION
from workers.prompts import skill_system_prompt
from workers.teachers.base import SamplingParams, TeacherError, TeacherRequest, TeacherResult


@dataclass(slots=True)
class Response:
    """One response of a group: an existing example (`example_id`) or a new sample (`example`)."""

    text: str
    label: str  # how rationales name it: the example id, or "sample <k>"
    example_id: str | None = None
    example: ExampleOut | None = None

    @property
    def ref(self) -> int | str:
        """How a pair names it (:class:`app.outcomes.PairOut`)."""
        if self.example is not None:
            return self.example.item_index
        assert self.example_id is not None
        return self.example_id


@dataclass(slots=True)
class Group:
    """One prompt of the task and what became of it."""

    prompt_id: str
    response_ids: list[str]
    samples: dict[int, TeacherResult] = field(default_factory=dict)  # sample number -> answer
    error: TeacherError | None = None  # a retryable teacher failure: the group is retried
    examples: list[ExampleOut] = field(default_factory=list)  # its new samples, all statuses
    responses: list[Response] = field(default_factory=list)  # what is judged
    requests: list[int] = field(default_factory=list)  # its judge requests (task-wide positions)

    def followup(self) -> dict[str, Any]:
        return {
            "prompt_id": self.prompt_id,
            "responses": self.response_ids,
            "samples": [
                {"k": k, "result": result.as_dict()} for k, result in sorted(self.samples.items())
            ],
        }


@dataclass(slots=True)
class Tally:
    """The task's numbers, stored in its summary (the job report adds them up)."""

    prompts: int = 0
    prompts_with_pair: int = 0
    margins: list[float] = field(default_factory=list)
    responses: int = 0
    judged: int = 0
    samples: int = 0
    samples_rejected: int = 0
    comparisons: int = 0
    disagreements: int = 0
    judge_failed: int = 0
    aspects: dict[str, list[float]] = field(default_factory=dict)  # aspect -> [sum, count]

    def add_aspects(self, judgment: judging.Pointwise) -> None:
        for aspect, (score, _) in judgment.aspects.items():
            total = self.aspects.setdefault(aspect, [0.0, 0.0])
            total[0] += score
            total[1] += 1


async def run(task: TaskInput, ctx: MethodContext) -> TaskOutcome:
    params = task.params
    groups = [
        Group(
            prompt_id=str(g["prompt_id"]),
            response_ids=[str(r) for r in g.get("responses", ())],
            samples={
                int(s["k"]): TeacherResult.from_dict(s["result"]) for s in g.get("samples", ())
            },
        )
        for g in task.payload["groups"]
    ]
    ids = list(dict.fromkeys(i for g in groups for i in (g.prompt_id, *g.response_ids)))
    rows = {row["id"]: row for row in await ctx.fetch_examples(ids)}
    live = [g for g in groups if g.prompt_id in rows]
    system = skill_system_prompt(task.skill)
    config = await asyncio.to_thread(
        filter_config, params, [rows[g.prompt_id]["instruction"] for g in live]
    )

    spent = await draw_samples(task, ctx, system, live, rows)
    ready = [g for g in live if g.error is None]
    seen: dict[str, str] = {}  # content hash -> the label of the response that has it
    for group in ready:
        gather(task, group, rows[group.prompt_id], rows, config, seen)
    candidates = [e for g in ready for e in g.examples if e.status == "candidate"]
    await asyncio.to_thread(reject_contaminated, candidates, await job_benchmarks(task, ctx))
    for group in ready:
        group.responses = [
            r for r in group.responses if r.example is None or r.example.status == "candidate"
        ]

    rules = judging.criteria(params, task.skill)
    requests, parsers = judge_requests(task, ready, rows, rules)
    asked, judged_results = await judging.ask(ctx, requests, parsers)
    spent += judged_results
    for group in ready:
        retry = next((asked[i].retry for i in group.requests if asked[i].retry), None)
        group.error = retry
    done = [g for g in live if g.error is None]
    waiting = [g for g in live if g.error is not None]

    examples: list[ExampleOut] = []
    for group in done:
        for example in group.examples:
            example.item_index = len(examples)
            examples.append(example)
    tally = Tally(prompts=len(done))
    score_updates: dict[str, dict[str, Any]] = {}
    pairs: list[PairOut] = []
    info = judging.judge_info(
        ctx.teacher.model,
        judging.POINTWISE_ID if params["mode"] == "pointwise" else judging.PAIRWISE_ID,
        task.job_id,
    )
    for group in done:
        scores, picks = judge_group(params, group, asked, info, tally)
        for response, score in zip(group.responses, scores, strict=True):
            if score is None:
                continue
            if response.example is not None:
                response.example.scores = score
            else:
                assert response.example_id is not None
                score_updates[response.example_id] = score
        for pick in picks:
            chosen, rejected = group.responses[pick.chosen], group.responses[pick.rejected]
            pairs.append(
                PairOut(
                    prompt_id=group.prompt_id,
                    chosen=chosen.ref,
                    rejected=rejected.ref,
                    margin=pick.margin,
                    mode=params["mode"],
                    chosen_score=scores[pick.chosen]["overall"],  # type: ignore[index]
                    rejected_score=scores[pick.rejected]["overall"],  # type: ignore[index]
                )
            )
            tally.margins.append(pick.margin)
        tally.prompts_with_pair += bool(picks)
        tally.samples += sum(1 for e in group.examples if e.status == "candidate")
        tally.samples_rejected += sum(1 for e in group.examples if e.status == "rejected")

    followups = []
    if waiting:
        number = retry_followup(task.payload, len(waiting), waiting[0].error)
        followups.append({"groups": [g.followup() for g in waiting], "retry": number})
    prompt_tokens, completion_tokens, teacher_seconds = usage_totals(spent)
    return TaskOutcome(
        examples=examples,
        completed=len(done),
        followups=followups,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        teacher_seconds=teacher_seconds,
        score_updates=score_updates,
        pairs=pairs,
        summary={
            "mode": params["mode"],
            "prompts": tally.prompts,
            "prompts_with_pair": tally.prompts_with_pair,
            "pairs": len(pairs),
            "margins": tally.margins,
            "responses": tally.responses,
            "judged": tally.judged,
            "samples": tally.samples,
            "samples_rejected": tally.samples_rejected,
            "comparisons": tally.comparisons,
            "disagreements": tally.disagreements,
            "judge_failed": tally.judge_failed,
            "judge_calls": len(judged_results),
            "aspects": {
                aspect: {"sum": total, "count": int(count)}
                for aspect, (total, count) in tally.aspects.items()
            },
            "missing": len(groups) - len(live),
            "retried": len(waiting),
            "languages": list(config.languages or ()),
        },
        system_prompt=system if params["samples"] else None,
    )


def sample_sampling(
    teacher: dict[str, Any], temperatures: Sequence[float] | None, k: int
) -> SamplingParams:
    """The sampling of sample `k`: the job's, at the k-th of `temperatures` (cycled), with the
    job's seed moved by k so samples at one temperature differ."""
    sampling = sampling_from(teacher, seed_offset=k)
    if temperatures:
        sampling = dataclasses.replace(
            sampling, temperature=float(temperatures[k % len(temperatures)])
        )
    return sampling


async def draw_samples(
    task: TaskInput,
    ctx: MethodContext,
    system: str,
    groups: Sequence[Group],
    rows: Mapping[str, Mapping[str, Any]],
) -> list[TeacherResult]:
    """Ask the teacher for the samples each group still lacks; a group any of whose calls
    failed (retryably) gets its `error` (it is retried, keeping the samples it has)."""
    count, temperatures = task.params["samples"], task.params.get("temperatures")
    wanted = [(g, k) for g in groups for k in range(count) if k not in g.samples]
    if not wanted:
        return []
    requests = []
    for group, k in wanted:
        row = rows[group.prompt_id]
        requests.append(
            TeacherRequest(
                messages=answer_messages(
                    system, row["instruction"], row["input"], row.get("messages")
                ),
                sampling=sample_sampling(task.teacher, temperatures, k),
                top_logprobs=task.teacher.get("top_logprobs"),
                request_id=f"{task.task_id}:{group.prompt_id}:sample:{k}",
            )
        )
    await ctx.check_cancel()
    results = await ctx.teacher.generate(requests)
    await ctx.check_cancel()
    retry = set(to_retry(results))  # raises a final error that is not about one request
    for i, ((group, k), result) in enumerate(zip(wanted, results, strict=True)):
        if i in retry:
            group.error = group.error or result.error
        else:
            group.samples[k] = result
    return results


def gather(
    task: TaskInput,
    group: Group,
    prompt: Mapping[str, Any],
    rows: Mapping[str, Mapping[str, Any]],
    config: Any,
    seen: dict[str, str],
) -> None:
    """The group's responses: the existing ones with a response text, then the samples, each
    curated like a labeled answer; a response the same as one seen before (in this task) is
    not judged twice: a sample is then stored as a rejected `duplicate`."""
    for response_id in group.response_ids:
        row = rows.get(response_id)
        text = None if row is None else judging.response_text(row)
        if row is None or text is None:
            continue
        digest = content_hash(
            row["instruction"], row["input"], row.get("output"), row.get("messages")
        )
        if digest in seen:
            continue
        seen[digest] = response_id
        group.responses.append(Response(text=text, label=response_id, example_id=response_id))
    history = open_turns(prompt.get("messages"))
    temperatures = task.params.get("temperatures")
    for k, result in sorted(group.samples.items()):
        sampling = sample_sampling(task.teacher, temperatures, k)
        example = answer_example(
            item_index=0,
            instruction=prompt["instruction"],
            input=prompt["input"],
            result=result,
            filter_names=task.params.get("filters"),
            prompt_id=SAMPLE_PROMPT_ID,
            prompt_version=SAMPLE_PROMPT_VERSION,
            sampling=sampling,
            meta={"source_example_id": group.prompt_id, "sample": k},
            messages=history,
            filter_config=config,
        )
        example.source_id = group.prompt_id
        group.examples.append(example)
        if example.status != "accepted":
            continue
        example.status = "candidate"
        digest = content_hash(example.instruction, example.input, example.output, example.messages)
        if digest in seen:
            example.status = "rejected"
            example.reject_reason = DUPLICATE
            example.reject_detail = f"the same response as {seen[digest]}"
            continue
        seen[digest] = f"sample {k}"
        group.responses.append(
            Response(text=example.output or "", label=f"sample {k}", example=example)
        )


Parser = Callable[[str], tuple[Any, str | None]]


def judge_requests(
    task: TaskInput,
    groups: Sequence[Group],
    rows: Mapping[str, Mapping[str, Any]],
    rules: judging.Criteria,
) -> tuple[list[TeacherRequest], list[Parser]]:
    """Every judge request of the task (each group's positions in `group.requests`):
    pointwise, one per response; pairwise, two per pair of responses (i as A, then j as A)."""
    sampling = judging.judge_sampling(task.teacher)
    requests: list[TeacherRequest] = []
    parsers: list[Parser] = []

    def pointwise(text: str) -> tuple[Any, str | None]:
        return judging.parse_pointwise(text, rules.aspects)

    for group in groups:
        prompt = rows[group.prompt_id]
        turns = judging.prompt_turns(prompt["instruction"], prompt["input"], prompt.get("messages"))
        base = f"{task.task_id}:{group.prompt_id}:judge"
        responses = group.responses
        if task.params["mode"] == "pointwise":
            for i, response in enumerate(responses):
                group.requests.append(len(requests))
                requests.append(
                    judging.pointwise_request(
                        turns, response.text, rules, task.skill, sampling, f"{base}:{i}"
                    )
                )
                parsers.append(pointwise)
            continue
        for i in range(len(responses)):
            for j in range(i + 1, len(responses)):
                for a, b in ((i, j), (j, i)):
                    group.requests.append(len(requests))
                    requests.append(
                        judging.pairwise_request(
                            turns,
                            responses[a].text,
                            responses[b].text,
                            rules,
                            task.skill,
                            sampling,
                            f"{base}:{a}v{b}",
                        )
                    )
                    parsers.append(judging.parse_pairwise)
    return requests, parsers


def judge_group(
    params: Mapping[str, Any],
    group: Group,
    asked: Sequence[judging.Asked],
    info: Mapping[str, Any],
    tally: Tally,
) -> tuple[list[dict[str, Any] | None], list[judging.Pick]]:
    """Each response's scores (None: no valid judgment) and the group's preference pairs."""
    outcomes = [asked[i] for i in group.requests]
    tally.responses += len(group.responses)
    tally.judge_failed += sum(1 for o in outcomes if o.failed)
    if params["mode"] == "pointwise":
        scores: list[dict[str, Any] | None] = []
        for response, outcome in zip(group.responses, outcomes, strict=True):
            if outcome.value is None:
                if response.example is not None:
                    response.example.meta = {
                        **response.example.meta,
                        "judge_failed": outcome.problem,
                    }
                scores.append(None)
                continue
            tally.add_aspects(outcome.value)
            scores.append(judging.pointwise_scores(outcome.value, info))
        contradicted = None
    else:
        scores, contradicted = _pairwise(group, outcomes, info, tally)
    tally.judged += sum(1 for s in scores if s is not None)
    overall = [None if s is None else s["overall"] for s in scores]
    picks = judging.pick_pairs(overall, params["pairs"], params["min_margin"], contradicted)
    return scores, picks


def _pairwise(
    group: Group,
    outcomes: Sequence[judging.Asked],
    info: Mapping[str, Any],
    tally: Tally,
) -> tuple[list[dict[str, Any] | None], Callable[[int, int], bool]]:
    """Scores from the agreed comparisons of a group (outcomes in :func:`judge_requests`'
    order), and the check that a pair does not contradict its own agreed comparison."""
    responses = group.responses
    records = [judging.Record() for _ in responses]
    verdicts: dict[tuple[int, int], str] = {}
    slots = iter(outcomes)
    for i in range(len(responses)):
        for j in range(i + 1, len(responses)):
            first, second = next(slots), next(slots)
            for a, b, outcome in ((i, j, first), (j, i, second)):
                if outcome.value is not None:
                    for me, other, position in ((a, b, "A"), (b, a, "B")):
                        records[me].rationales.append(
                            {
                                "against": responses[other].label,
                                "shown_as": position,
                                "verdict": outcome.value.verdict,
                                "rationale": outcome.value.rationale,
                            }
                        )
            if first.value is None or second.value is None:
                continue
            tally.comparisons += 1
            verdict = judging.agreed(first.value.verdict, second.value.verdict)
            if verdict is None:
                tally.disagreements += 1
            else:
                verdicts[(i, j)] = verdict
    counted = judging.tally(len(responses), verdicts)
    for record, kept in zip(counted, records, strict=True):
        record.rationales = kept.rationales
    scores = [
        None if record.comparisons == 0 else judging.pairwise_scores(record, info)
        for record in counted
    ]

    def contradicted(chosen: int, rejected: int) -> bool:
        low, high = min(chosen, rejected), max(chosen, rejected)
        verdict = verdicts.get((low, high))
        if verdict is None:
            return False
        # the judge agreed, in both orders, that neither is better or that the other one is
        return verdict == "tie" or (low if verdict == "A" else high) != chosen

    return scores, contradicted
