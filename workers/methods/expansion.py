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

Teacher failures lose nothing: a round whose proposal calls all failed is enqueued again (payload
``retry``, backed off by the queue); kept tasks whose answer call failed go to a follow-up task
that answers just them (payload ``answer``), checked again for near duplicates at commit against
what was stored since the round's snapshot. Nor do rejected answers: a candidate rejected only
as a (near) duplicate of a candidate of the same round whose answer is then rejected is curated
again against what the round keeps and answered in the same round (`answer_twins`).

The target is exact: the queue accepts at most ``target - accepted`` examples of a round, under
the job's lock, so rounds running at once on several workers never overshoot.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from workers.curation import decontamination, dedup, filters
from workers.curation.types import (
    DUPLICATE,
    EMPTY,
    TRUNCATED,
    UNPARSEABLE,
    Candidate,
    Rejection,
)
from workers.methods import pool_index
from workers.methods.base import ExampleOut, MethodContext, TaskInput, TaskOutcome
from workers.methods.common import (
    answer_example,
    answer_request,
    curate_answer,
    filter_config,
    first_error,
    job_benchmarks,
    read_rationales,
    reject_contaminated,
    retry_followup,
    sampling_from,
    to_retry,
    usage_of,
    usage_totals,
)
from workers.methods.judging import judge_answers
from workers.methods.parsing import parse_tasks, tasks_schema
from workers.prompts import render, skill_system_prompt
from workers.teachers.base import TeacherRequest, TeacherResult

PROPOSE_ID = "expansion/propose"
ANSWER_ID = "expansion/answer"
PROMPT_VERSION = "v1"
OVER_TARGET = "over_target"
RECHECK_MARGIN = pool_index.RECHECK_MARGIN  # commit-to-created_at gap and clock skew
WAVES = 4  # proposal calls of a round whose quota is far, in calls_per_round's
# shares of proposed tasks kept and of answers accepted, until a round has seen ten of each:
# optimistic (a shortfall costs another call, an excess costs candidates over the target)
YIELD_PRIOR = 1.0
ANSWER_PRIOR = 1.0


async def run(task: TaskInput, ctx: MethodContext) -> TaskOutcome:
    params = task.params
    round_no = int(task.payload.get("round", 0))
    progress = await ctx.job_progress()
    if "answer" in task.payload:
        return await answer_again(task, ctx, progress)
    stop = stop_reason(params, progress, round_no)
    if stop is not None:
        return TaskOutcome(stop_reason=stop, summary={"round": round_no, "stopped": stop})
    lanes = max(1, min(int(params.get("parallel_rounds", 1)), params["max_rounds"]))
    lane, target = round_no % lanes, params["target"]
    share = target // lanes + (1 if round_no % lanes < target % lanes else 0)
    lane_done = await ctx.lane_accepted(lanes, lane) if lanes > 1 else progress["accepted"]
    quota = int(min(share - lane_done, target - progress["accepted"]))
    if quota <= 0:  # this lane's share is stored: the other lanes make the rest
        return TaskOutcome(summary={"round": round_no, "stopped": "lane done", "lane": lane})
    system = skill_system_prompt(task.skill)
    rng = random.Random(f"{task.job_id}:{round_no}:{task.attempt}")

    calls, per_prompt = params["calls_per_round"], params["demos_per_prompt"]
    n_seed = round(per_prompt * params["seed_demo_fraction"])
    demos = await ctx.sample_demos(n_seed * calls, (per_prompt - n_seed) * calls)
    config = await asyncio.to_thread(filter_config, params, seed_texts(demos))
    two_stage = params["two_stage"]
    propose_sampling = sampling_from(task.teacher, seed_offset=round_no)

    def request(i: int, count: int) -> TeacherRequest:
        return TeacherRequest(
            messages=[
                {"role": "system", "content": system},
                {
                    "role": "user",
                    "content": render(
                        PROPOSE_ID,
                        PROMPT_VERSION,
                        count=count,
                        demos=pick_demos(demos, per_prompt, n_seed, rng),
                        with_output=not two_stage,
                    ),
                },
            ],
            sampling=propose_sampling,
            json_schema=tasks_schema(with_output=not two_stage),
            request_id=f"{task.task_id}:propose:{i}",
        )

    await ctx.check_cancel()
    flow = Stream(task, ctx, Curation(system, config, quota, propose_sampling.as_dict()), request)
    await flow.run()
    await ctx.check_cancel()
    proposals = flow.proposals
    if not flow.candidates and flow.failed_calls == len(proposals):  # the round again, later
        retry = retry_followup(task.payload, 1, first_error(proposals, list(range(len(proposals)))))
        prompt_tokens, completion_tokens, teacher_seconds = usage_totals(proposals)
        return TaskOutcome(
            followups=[{"round": round_no, "retry": retry}],
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            teacher_seconds=teacher_seconds,
            summary={"round": round_no, "proposed": 0, "failed_calls": len(proposals)},
            system_prompt=system,
        )
    done = await flow.finish()
    examples, accepted, followups = done.examples, done.accepted, done.followups
    prompt_tokens, completion_tokens, teacher_seconds = usage_totals([*proposals, *done.answers])
    next_round = round_no + lanes  # the next round of this lane
    # the next round of the lane always runs (unless a budget or the round cap stops it): it
    # stops at once when the lane's share is stored, judged on what was committed, not on what
    # this round hopes to commit (the commit may still drop some of it)
    next_stop = stop_reason(
        params,
        {
            **progress,
            "accepted": 0,
            "prompt_tokens": progress["prompt_tokens"] + prompt_tokens,
            "completion_tokens": progress["completion_tokens"] + completion_tokens,
        },
        next_round,
    )
    return TaskOutcome(
        examples=examples,
        completed=len(accepted),
        followups=followups + ([] if next_stop else [{"round": next_round}]),
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        teacher_seconds=teacher_seconds,
        stop_reason=next_stop,
        max_accepted=quota,
        recheck=recheck_against([(e.item_index, e.instruction) for e in accepted], flow.dedup),
        # rows a parallel round committed after our snapshot carry a time at most a little earlier
        recheck_since=flow.snapshot - RECHECK_MARGIN,
        recheck_skip=flow.pool.seen_since(flow.snapshot - RECHECK_MARGIN),
        summary={
            "round": round_no,
            "lane": lane,
            "quota": quota,
            "proposed": len(flow.candidates),
            "proposal_calls": len(proposals),
            "answered": done.answered,
            "accepted": len(accepted),
            "failed_calls": flow.failed_calls,
            # teacher tokens of candidates left unanswered over the target (their share of
            # their proposal call): what the job report counts as wasted besides commit drops
            "over_target_tokens": round(flow.over_target_tokens),
            "languages": list(config.languages or ()),
            # answers the judge (params.judge) could not score: kept, without a score
            "judge_failed": sum(1 for e in examples if "judge_failed" in e.meta),
        },
        system_prompt=system,
    )


@dataclass(frozen=True, slots=True)
class Curation:
    """What :func:`curate_and_answer` needs of a round besides its candidates."""

    system: str
    filter_config: filters.FilterConfig
    room: int  # accepted examples the target (a curation leaf: its quota) still takes
    sampling: dict[str, Any]  # of the proposal calls, recorded with rejected candidates
    prompt_id: str = PROPOSE_ID  # the proposal prompt, recorded with rejected candidates


@dataclass(slots=True)
class Curated:
    """A round's curated and answered candidates (:func:`curate_and_answer`)."""

    examples: list[ExampleOut]  # every candidate's example, rejected ones included
    accepted: list[ExampleOut]
    answers: list[TeacherResult]  # the answer (and judge) calls' results
    answered: int  # candidates sent to be answered
    followups: list[dict[str, Any]]  # answer retries (payload ``answer``)
    dedup_config: dedup.DedupConfig
    snapshot: dt.datetime  # when the dataset pool was read


class Stream:
    """One expansion round as a pipeline: every proposal call is its own request; as each
    returns, its tasks are curated (against the worker's index of the dataset's pool and the
    round's own kept tasks) and the kept ones are sent to be answered at once, while the other
    proposals are still out. No more tasks are answered than the round's quota (`Curation.room`)
    still takes: the rest wait in a reserve, answered only when an answer is rejected, and end
    as ``over_target``. More proposal calls go out, at most ``calls_per_round`` at a time, while
    what is accepted and what is in flight (at the rates seen so far) falls short of the quota;
    `WAVES` x ``calls_per_round`` calls in all when the target is far, ``calls_per_round``
    otherwise."""

    def __init__(
        self,
        task: TaskInput,
        ctx: MethodContext,
        round_: Curation,
        request: Callable[[int, int], TeacherRequest],
    ) -> None:
        self.task, self.ctx, self.round, self.request = task, ctx, round_, request
        params = task.params
        self.dedup = dedup.DedupConfig(threshold=params["similarity_threshold"])
        self.window = int(params["calls_per_round"])
        self.per_call = int(params["candidates_per_call"])
        far = round_.room >= 2 * self.window * self.per_call
        self.max_calls = self.window * WAVES if far else self.window
        self.examples: list[ExampleOut] = []
        self.candidates: list[tuple[Candidate, Rejection | None, dict[str, Any]]] = []
        self.proposals: list[TeacherResult] = []
        self.answers: list[TeacherResult] = []
        self.asked = 0  # candidates asked of the proposal calls in flight
        self.seen = 0  # candidates proposed by the calls returned
        self.twins: dict[int, int] = {}  # candidate -> the earlier candidate it duplicates
        self.slots: dict[int, int] = {}  # candidate -> its example's position (item index)
        self.answered: set[int] = set()
        self.unanswered: list[int] = []  # answer call failed: to a follow-up task
        self.reserve: deque[int] = deque()  # kept, not (yet) answered
        self.share: dict[int, float] = {}  # candidate -> its share of its call's tokens
        self.local = dedup.NearDupIndex(self.dedup)  # the round's kept tasks
        self.local_owner: list[int] = []  # position in `local` -> candidate
        self.accepted = self.answering = self.launched = self.returned = 0
        self.kept = self.judged = self.judged_ok = self.failed_calls = 0
        self.over_target_tokens = 0.0
        self.pending: dict[asyncio.Future[Any], tuple[str, Any]] = {}

    async def run(self) -> None:
        """Propose, curate and answer until nothing is in flight."""
        self.pool, self.snapshot = await pool_index.pool_index(
            self.ctx, self.task.dataset_id, self.dedup
        )
        self.benchmarks = await job_benchmarks(self.task, self.ctx)
        while count := self._next_count():
            self._propose(count)
        while self.pending:
            done, _ = await asyncio.wait(self.pending, return_when=asyncio.FIRST_COMPLETED)
            for future in done:
                kind, what = self.pending.pop(future)
                if kind == "propose":
                    self.asked -= what[1]
                    self._on_proposal(what[0], future.result()[0])
                else:
                    self._on_answers(what, *future.result())
            while count := self._next_count():
                self._propose(count)

    def _propose(self, count: int) -> None:
        call = self.launched
        self.launched += 1
        self.asked += count
        future = asyncio.ensure_future(self.ctx.teacher.generate([self.request(call, count)]))
        self.pending[future] = ("propose", (call, count))

    def _next_count(self) -> int:
        """Candidates to ask of one more proposal call now (0: none): what the quota still
        lacks beyond what is accepted and in flight, at the rates seen so far."""
        if self.launched >= self.max_calls or self.launched - self.returned >= self.window:
            return 0
        keep = self.kept / self.seen if self.seen >= 10 else YIELD_PRIOR
        rate = self.judged_ok / self.judged if self.judged >= 10 else ANSWER_PRIOR
        expected = (
            self.accepted
            + len(self.unanswered)
            + (self.answering + len(self.reserve) + self.asked * keep) * rate
        )
        lacking = self.round.room - expected
        if lacking <= 0:
            return 0
        return min(self.per_call, math.ceil(lacking / max(keep * rate, 0.05)))

    def _on_proposal(self, call: int, result: TeacherResult) -> None:
        self.proposals.append(result)
        self.returned += 1
        found, failed = read_proposals(
            [result], self.examples, self.round.sampling, self.round.prompt_id, first_call=call
        )
        self.failed_calls += failed
        self.seen += len(found)
        if not found:
            return
        tokens = (result.usage.prompt_tokens + result.usage.completion_tokens) / len(found)
        verdicts, positions, matched = curate_batch(
            found,
            self.task.params.get("filters"),
            self.pool.index,
            self.benchmarks,
            self.round.filter_config,
            self.local,
        )
        base = len(self.candidates)
        for k, ((candidate, meta), verdict) in enumerate(zip(found, verdicts, strict=True)):
            c = base + k
            self.candidates.append((candidate, verdict, meta))
            self.share[c] = tokens
            if k in positions:
                self.local_owner.append(c)
            elif k in matched:  # a near copy of a task this round kept
                self.twins[c] = self.local_owner[matched[k]]
        to_answer: list[int] = []
        for k, verdict in enumerate(verdicts):
            c = base + k
            if verdict is not None:
                self._reject(c, verdict)
                continue
            self.kept += 1
            if self._room() > len(to_answer):
                to_answer.append(c)
            else:
                self.reserve.append(c)
        self._answer(to_answer, f"answer{call}")

    def _room(self) -> int:
        return self.round.room - self.accepted - self.answering - len(self.unanswered)

    def _reject(self, c: int, rejection: Rejection) -> None:
        candidate, _, meta = self.candidates[c]
        self.slots[c] = len(self.examples)
        self.examples.append(
            rejected(
                len(self.examples),
                candidate,
                rejection,
                meta,
                self.round.sampling,
                self.round.prompt_id,
            )
        )

    def _answer(self, cs: list[int], tag: str) -> None:
        if not cs:
            return
        self.answering += len(cs)
        items = [(self.candidates[c][0], self.candidates[c][2]) for c in cs]
        future = asyncio.ensure_future(
            answer_tasks(
                self.task, self.ctx, self.round.system, items, self.round.filter_config, tag
            )
        )
        self.pending[future] = ("answer", cs)

    def _on_answers(
        self, cs: list[int], results: list[TeacherResult], made: list[ExampleOut | None]
    ) -> None:
        self.answering -= len(cs)
        self.answers += results
        fresh = []
        for c, example in zip(cs, made, strict=True):
            if example is None:
                self.unanswered.append(c)
                continue
            self.slots[c] = example.item_index = len(self.examples)
            self.examples.append(example)
            self.answered.add(c)
            fresh.append(example)
        reject_contaminated(fresh, self.benchmarks)
        for example in fresh:
            self.judged += 1
            if example.status == "accepted":
                self.judged_ok += 1
                self.accepted += 1
        more = [self.reserve.popleft() for _ in range(min(self._room(), len(self.reserve)))]
        self._answer(more, f"more{len(self.answers)}")

    async def finish(self) -> Curated:
        """The reserve left over as ``over_target``, failed answers to a follow-up task,
        twins of rejected answers answered (:func:`answer_twins`)."""
        task, round_ = self.task, self.round
        round_no = int(task.payload.get("round", 0))
        late = Rejection(OVER_TARGET, "the target needs no more candidates this round")
        while self.reserve:
            c = self.reserve.popleft()
            self.over_target_tokens += self.share.get(c, 0.0)
            self._reject(c, late)
        followups: list[dict[str, Any]] = []
        since = self.snapshot - RECHECK_MARGIN
        if self.unanswered:
            errors = [r for r in self.answers if r.error is not None]
            retry = retry_followup(
                task.payload, len(self.unanswered), first_error(errors, list(range(len(errors))))
            )
            items = [(self.candidates[c][0], self.candidates[c][2]) for c in self.unanswered]
            followups.append(answer_followup(items, round_no, retry, since))
        more, carried, dropped = await answer_twins(
            task,
            self.ctx,
            TwinRound(
                round_.system, round_.filter_config, self.benchmarks, self.dedup, round_.room
            ),
            self.candidates,
            self.twins,
            self.slots,
            self.examples,
            set(self.answered),
            list(self.unanswered),
        )
        self.answers += more
        if carried:
            retry = int(task.payload.get("retry", 0))  # not a teacher failure of theirs
            followups.append(answer_followup(carried, round_no, retry, since))
        examples = [e for e in self.examples if e.item_index not in dropped]
        accepted = [e for e in examples if e.status == "accepted"]
        answered = self.judged + len(self.unanswered)
        return Curated(
            examples, accepted, self.answers, answered, followups, self.dedup, self.snapshot
        )


async def curate_and_answer(
    task: TaskInput,
    ctx: MethodContext,
    round_: Curation,
    candidates: list[tuple[Candidate, dict[str, Any]]],
    examples: list[ExampleOut],
) -> Curated:
    """Steps 3 to 5 of a round (expansion's, and a curation leaf's): the proposed candidates
    curated against the dataset's pool, those the target has room for answered (retries and
    twins included), the answers curated; `examples` (the unreadable proposals so far) grows
    by one example per candidate."""
    params = task.params
    round_no = int(task.payload.get("round", 0))
    system, config, remaining = round_.system, round_.filter_config, round_.room
    dedup_config = dedup.DedupConfig(threshold=params["similarity_threshold"])
    snapshot = dt.datetime.now(dt.UTC)
    pool = await ctx.dataset_pool()
    benchmarks = await job_benchmarks(task, ctx)
    # CPU-bound: off the event loop, so heartbeats and other tasks of the worker keep running
    twins: dict[int, int] = {}  # candidate -> the earlier candidate it duplicates
    kept = await asyncio.to_thread(
        curate_round,
        pool,
        candidates,
        params.get("filters"),
        dedup_config,
        benchmarks,
        config,
        twins,
    )
    to_answer: list[tuple[Candidate, dict[str, Any]]] = []
    answering: list[int] = []  # the candidate of each task to answer
    slots: dict[int, int] = {}  # candidate -> the position (and item index) of its example
    for c, (candidate, rejection, meta) in enumerate(kept):
        if rejection is None and len(to_answer) >= remaining:
            rejection = Rejection(OVER_TARGET, "the target needs no more candidates this round")
        if rejection is not None:
            slots[c] = len(examples)
            examples.append(
                rejected(
                    len(examples), candidate, rejection, meta, round_.sampling, round_.prompt_id
                )
            )
        else:
            to_answer.append((candidate, meta))
            answering.append(c)

    followups: list[dict[str, Any]] = []
    answers, made = await answer_tasks(task, ctx, system, to_answer, config, "answer")
    unanswered = [i for i, example in enumerate(made) if example is None]
    if unanswered:
        retry = retry_followup(task.payload, len(unanswered), first_error(answers, unanswered))
        followups.append(
            answer_followup(
                [to_answer[i] for i in unanswered], round_no, retry, snapshot - RECHECK_MARGIN
            )
        )
    for c, example in zip(answering, made, strict=True):
        if example is not None:
            slots[c] = example.item_index = len(examples)
            examples.append(example)

    await asyncio.to_thread(reject_contaminated, examples, benchmarks)  # the answers
    more, carried, dropped = await answer_twins(
        task,
        ctx,
        TwinRound(system, config, benchmarks, dedup_config, remaining),
        kept,
        twins,
        slots,
        examples,
        {answering[i] for i in range(len(made)) if made[i] is not None},
        [answering[i] for i in unanswered],
    )
    answers += more
    if carried:
        retry = int(task.payload.get("retry", 0))  # not a teacher failure of theirs
        followups.append(answer_followup(carried, round_no, retry, snapshot - RECHECK_MARGIN))
    examples = [e for e in examples if e.item_index not in dropped]
    accepted = [e for e in examples if e.status == "accepted"]
    return Curated(examples, accepted, answers, len(to_answer), followups, dedup_config, snapshot)


def answer_followup(
    items: Sequence[tuple[Candidate, dict[str, Any]]],
    round_no: int,
    retry: int,
    since: dt.datetime,
) -> dict[str, Any]:
    """The payload of a task that answers kept tasks whose answer call failed."""
    return {
        "round": round_no,
        "retry": retry,
        "since": since.isoformat(),
        "answer": [
            # the output too where it came with the task (single-stage, a judge call failed)
            {"instruction": c.instruction, "input": c.input, "meta": meta}
            | ({} if c.output is None else {"output": c.output})
            for c, meta in items
        ],
    }


async def answer_again(
    task: TaskInput, ctx: MethodContext, progress: dict[str, Any]
) -> TaskOutcome:
    """Answer the kept tasks of an earlier round whose answer call failed (two-stage)."""
    params = task.params
    seeds = [] if params.get("languages") else seed_texts(await ctx.sample_demos(100, 0))
    config = await asyncio.to_thread(filter_config, params, seeds)
    outcome = await answer_retry(task, ctx, params["target"] - progress["accepted"], config)
    if progress["accepted"] + outcome.completed >= params["target"]:
        outcome.stop_reason = "target reached"
    return outcome


async def answer_retry(
    task: TaskInput, ctx: MethodContext, remaining: int, config: filters.FilterConfig
) -> TaskOutcome:
    """The answers to kept tasks whose answer call failed (payload ``answer``, from
    :func:`answer_followup`), at most `remaining` of them accepted; with no room left they are
    stored as ``over_target`` rejections, not dropped unanswered."""
    params, payload = task.params, task.payload
    round_no = int(payload.get("round", 0))
    items = [
        (
            Candidate(item["instruction"], item["input"], item.get("output")),
            dict(item.get("meta") or {}),
        )
        for item in payload["answer"]
    ]
    if remaining <= 0:  # the other rounds got there first: stored, not dropped unanswered
        late = Rejection(OVER_TARGET, "the target was reached before this task's answer retry")
        return TaskOutcome(
            examples=[
                rejected(i, candidate, late, meta, sampling_from(task.teacher).as_dict())
                for i, (candidate, meta) in enumerate(items)
            ],
            summary={"round": round_no, "stopped": "target reached"},
        )
    system = skill_system_prompt(task.skill)
    answers, made = await answer_tasks(task, ctx, system, items, config, "answer")
    since = dt.datetime.fromisoformat(payload["since"])
    unanswered = [i for i, example in enumerate(made) if example is None]
    followups = []
    if unanswered:
        retry = retry_followup(payload, len(unanswered), first_error(answers, unanswered))
        followups.append(answer_followup([items[i] for i in unanswered], round_no, retry, since))
    examples = []
    for i, example in enumerate(made):
        if example is not None:
            example.item_index = i
            examples.append(example)
    await asyncio.to_thread(reject_contaminated, examples, await job_benchmarks(task, ctx))
    accepted = [e for e in examples if e.status == "accepted"]
    dedup_config = dedup.DedupConfig(threshold=params["similarity_threshold"])
    prompt_tokens, completion_tokens, teacher_seconds = usage_totals(answers)
    return TaskOutcome(
        examples=examples,
        completed=len(accepted),
        followups=followups,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        teacher_seconds=teacher_seconds,
        max_accepted=remaining,
        recheck=recheck_against([(e.item_index, e.instruction) for e in accepted], dedup_config),
        recheck_since=since,
        summary={"round": round_no, "answered": len(examples), "retried": len(unanswered)},
        system_prompt=system,
    )


def seed_texts(demos: Sequence[dict[str, Any]]) -> list[str]:
    """The instructions of the seed demonstrations (of all, when none is a seed): the texts
    the default `languages` of a job is detected from."""
    seeds = [d["instruction"] for d in demos if d.get("origin") == "seed"]
    return seeds or [d["instruction"] for d in demos]


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
    results: Sequence[TeacherResult],
    examples: list[ExampleOut],
    sampling: dict[str, Any],
    prompt_id: str = PROPOSE_ID,
    first_call: int = 0,
) -> tuple[list[tuple[Candidate, dict[str, Any]]], int]:
    """The candidates proposed; unreadable proposals become rejected examples (raw text kept),
    recorded as of the proposal prompt `prompt_id` (curation's is its own)."""
    candidates: list[tuple[Candidate, dict[str, Any]]] = []
    failed = 0
    for call, result in enumerate(results, start=first_call):
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
                    prompt_id=prompt_id,
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


async def answer_tasks(
    task: TaskInput,
    ctx: MethodContext,
    system: str,
    items: Sequence[tuple[Candidate, dict[str, Any]]],
    config: filters.FilterConfig,
    tag: str,
) -> tuple[list[TeacherResult], list[ExampleOut | None]]:
    """The examples of kept tasks (item index 0: the caller numbers them), and the teacher's
    results: two-stage asks the teacher (None where the call failed and should be asked
    again), single-stage checks the output that came with the proposal."""
    params = task.params
    sampling = sampling_from(task.teacher, seed_offset=int(task.payload.get("round", 0)))
    if not params.get("two_stage", True):  # curation jobs always answer in a second call
        made: list[ExampleOut | None] = [
            single_stage(0, c, meta, params, sampling.as_dict(), config) for c, meta in items
        ]
        # no answer calls: empty results stand for them, so indexes of `made` index the results
        return await judged(task, ctx, [TeacherResult(generations=[]) for _ in made], made, tag)
    if not items:
        return [], []
    rationale = bool(params.get("rationale"))
    requests = [
        answer_request(
            system,
            c.instruction,
            c.input,
            sampling=sampling,
            top_logprobs=task.teacher.get("top_logprobs"),
            request_id=f"{task.task_id}:{tag}:{i}",
            rationale=rationale,
        )
        for i, (c, _) in enumerate(items)
    ]
    await ctx.check_cancel()
    answers = await ctx.teacher.generate(requests)
    await ctx.check_cancel()
    # rationale jobs: replies split into reasoning and answer; unreadable ones asked again
    answers, reasoning = read_rationales(answers, rationale)
    skip = set(to_retry(answers))
    made = [
        None
        if i in skip
        else answer_example(
            item_index=0,
            instruction=candidate.instruction,
            input=candidate.input,
            result=result,
            filter_names=params.get("answer_filters"),
            prompt_id=ANSWER_ID,
            prompt_version=PROMPT_VERSION,
            sampling=sampling,
            meta=meta,
            filter_config=config,
            reasoning=reasoning[i],
        )
        for i, ((candidate, meta), result) in enumerate(zip(items, answers, strict=True))
    ]
    return await judged(task, ctx, answers, made, tag)


async def judged(
    task: TaskInput,
    ctx: MethodContext,
    answers: list[TeacherResult],
    made: list[ExampleOut | None],
    tag: str,
) -> tuple[list[TeacherResult], list[ExampleOut | None]]:
    """The answers through the job's judge (``params.judge``), benchmark matches taken out
    first: one whose judge call failed becomes None (asked again, as a failed answer call is);
    the judge's calls are appended to the results."""
    if not task.params.get("judge"):
        return answers, made
    present = [e for e in made if e is not None]
    await asyncio.to_thread(reject_contaminated, present, await job_benchmarks(task, ctx))
    verdicts = await judge_answers(task, ctx, present, tag)
    lost = {id(present[i]) for i in verdicts.unjudged}
    return [*answers, *verdicts.results], [
        None if example is not None and id(example) in lost else example for example in made
    ]


@dataclass(frozen=True, slots=True)
class TwinRound:
    """What `answer_twins` needs of the round besides its candidates and examples."""

    system: str
    filter_config: filters.FilterConfig
    benchmarks: decontamination.Index | None
    dedup_config: dedup.DedupConfig
    room: int  # accepted examples the target still takes


async def answer_twins(
    task: TaskInput,
    ctx: MethodContext,
    round_: TwinRound,
    kept: Sequence[tuple[Candidate, Rejection | None, dict[str, Any]]],
    twins: dict[int, int],
    slots: dict[int, int],
    examples: list[ExampleOut],
    answered: set[int],
    pending: list[int],
) -> tuple[list[TeacherResult], list[tuple[Candidate, dict[str, Any]]], set[int]]:
    """Another chance for candidates rejected only as (near) duplicates of a candidate of the
    same round (their twin) whose answer was rejected afterwards: they are curated again
    against what the round keeps (its accepted examples and the `pending` candidates whose
    answer call failed, not the twin) and the survivors are answered in this round; again
    while the answers of such survivors are rejected in turn. A candidate's new example takes
    its slot in `examples`; one whose answer call failed is carried to a follow-up task: it is
    returned (with the teacher's results and the slots to drop)."""
    results: list[TeacherResult] = []
    carried: list[tuple[Candidate, dict[str, Any]]] = []
    dropped: set[int] = set()
    step = 0
    while True:
        lost = {t for t in answered if examples[slots[t]].status != "accepted"}
        siblings = sorted(c for c, t in twins.items() if t in lost)
        if not siblings:
            return results, carried, dropped
        for c in siblings:
            del twins[c]
        live = [e.instruction for e in examples if e.status == "accepted"]
        index = dedup.NearDupIndex.from_rows(
            [*live, *(kept[c][0].instruction for c in pending)], round_.dedup_config
        )
        base = len(index)
        texts = [_dedup_text(kept[c][0]) for c in siblings]
        found, matches = dedup.dedupe_batch_matches(texts, index)
        again: list[int] = []
        for c, rejection, match in zip(siblings, found, matches, strict=True):
            if rejection is None:
                again.append(c)
                continue
            if match >= base:
                twins[c] = again[match - base]
            example = examples[slots[c]]
            example.reject_reason, example.reject_detail = rejection.reason, rejection.detail
        room = round_.room - sum(e.status == "accepted" for e in examples)
        for c in again[max(room, 0) :]:
            example = examples[slots[c]]
            example.reject_reason = OVER_TARGET
            example.reject_detail = "the target needs no more candidates this round"
        again = again[: max(room, 0)]
        step += 1
        items = [(kept[c][0], kept[c][2]) for c in again]
        more, made = await answer_tasks(
            task, ctx, round_.system, items, round_.filter_config, f"twin{step}"
        )
        results += more
        for c, item, answer in zip(again, items, made, strict=True):
            if answer is None:
                carried.append(item)
                pending.append(c)
                dropped.add(slots[c])
                continue
            answer.item_index = slots[c]
            examples[slots[c]] = answer
            answered.add(c)
        fresh = [e for e in made if e is not None]
        await asyncio.to_thread(reject_contaminated, fresh, round_.benchmarks)


def curate_round(
    pool: Sequence[str | tuple[str, Any]],
    candidates: Sequence[tuple[Candidate, dict[str, Any]]],
    names: Sequence[str] | None,
    config: dedup.DedupConfig,
    benchmarks: decontamination.Index | None = None,
    filter_config: filters.FilterConfig | None = None,
    twins: dict[int, int] | None = None,
) -> list[tuple[Candidate, Rejection | None, dict[str, Any]]]:
    """The round's curation against the dataset's pool (seeds and accepted examples)."""
    index = dedup.NearDupIndex.from_rows(pool, config)
    return curate_instructions(candidates, names, index, benchmarks, filter_config, twins)


def curate_instructions(
    candidates: Sequence[tuple[Candidate, dict[str, Any]]],
    names: Sequence[str] | None,
    index: dedup.NearDupIndex,
    benchmarks: decontamination.Index | None = None,
    filter_config: filters.FilterConfig | None = None,
    twins: dict[int, int] | None = None,
) -> list[tuple[Candidate, Rejection | None, dict[str, Any]]]:
    """Filters first, then benchmark contamination (before dedup: a contaminated task must not
    join the pool); the survivors are checked for duplicates in order (the round's own too).
    `twins`, if given, gets for each candidate rejected as a (near) duplicate of an earlier
    candidate of the round the index of that one (its twin)."""
    steps = list(names) if names is not None else list(filters.INSTRUCTION_FILTERS)
    config = filter_config or filters.FilterConfig()
    verdicts = [filters.apply_filters(c, steps, config) for c, _ in candidates]
    verdicts = [
        v or decontamination.check_candidate(c, benchmarks)
        for (c, _), v in zip(candidates, verdicts, strict=True)
    ]
    survivors = [i for i, v in enumerate(verdicts) if v is None]
    texts = [_dedup_text(candidates[i][0]) for i in survivors]
    base = len(index)
    found, matches = dedup.dedupe_batch_matches(texts, index)
    kept = [i for i, rejection in zip(survivors, found, strict=True) if rejection is None]
    for i, rejection, match in zip(survivors, found, matches, strict=True):
        verdicts[i] = rejection
        if rejection is not None and match >= base and twins is not None:
            twins[i] = kept[match - base]  # kept candidates join the pool in order
    return [(c, v, meta) for (c, meta), v in zip(candidates, verdicts, strict=True)]


def curate_batch(
    candidates: Sequence[tuple[Candidate, dict[str, Any]]],
    names: Sequence[str] | None,
    pool: dedup.NearDupIndex,
    benchmarks: decontamination.Index | None,
    filter_config: filters.FilterConfig | None,
    local: dedup.NearDupIndex,
) -> tuple[list[Rejection | None], dict[int, int], dict[int, int]]:
    """:func:`curate_instructions` for a pipelined round: the survivors of the filters are
    checked against `pool` (left as it is: the worker's index of the dataset), then in order
    against `local` (the round's kept tasks, which the kept ones join). Returns the verdicts,
    the `local` position of each kept candidate, and for each candidate rejected as a near copy
    of a task of `local` that position (its twin)."""
    steps = list(names) if names is not None else list(filters.INSTRUCTION_FILTERS)
    config = filter_config or filters.FilterConfig()
    verdicts = [filters.apply_filters(c, steps, config) for c, _ in candidates]
    verdicts = [
        v or decontamination.check_candidate(c, benchmarks)
        for (c, _), v in zip(candidates, verdicts, strict=True)
    ]
    survivors = [i for i, v in enumerate(verdicts) if v is None]
    found, _ = dedup.check_batch([_dedup_text(candidates[i][0]) for i in survivors], pool)
    for i, rejection in zip(survivors, found, strict=True):
        verdicts[i] = rejection
    survivors = [i for i in survivors if verdicts[i] is None]
    base = len(local)
    found, matches = dedup.dedupe_batch_matches(
        [_dedup_text(candidates[i][0]) for i in survivors], local
    )
    positions: dict[int, int] = {}
    matched: dict[int, int] = {}
    for i, rejection, match in zip(survivors, found, matches, strict=True):
        verdicts[i] = rejection
        if rejection is None:
            positions[i] = base + len(positions)
        else:
            matched[i] = match
    return verdicts, positions, matched


def _dedup_text(candidate: Candidate) -> str:
    # Self-Instruct's rule compares instructions only (one task on two inputs is a duplicate)
    return candidate.instruction


def recheck_against(
    accepted: list[tuple[int, str]], config: dedup.DedupConfig
) -> Callable[[list[str]], dict[int, tuple[str, str]]]:
    """The commit-time check: which accepted items duplicate (same words) or nearly duplicate
    the instruction of one of `rows` (stored meanwhile by other tasks), as item -> (reject
    reason, detail naming the match and its ROUGE-L)."""

    def check(rows: list[str]) -> dict[int, tuple[str, str]]:
        # the items against the rows alone, in one batch through the prefix filter (candidate
        # pairs only, no scan of every row per item): the same verdicts and best matches as
        # `NearDupIndex.check` one by one
        index = dedup.NearDupIndex.from_rows(rows, config)
        verdicts, positions = dedup.check_batch([text for _, text in accepted], index)
        found: dict[int, tuple[str, str]] = {}
        for (item, text), rejection, position in zip(accepted, verdicts, positions, strict=True):
            if rejection is None:
                continue
            match = dedup.shorten(index.text(position))
            if rejection.reason == DUPLICATE:
                detail = "same words as"
            else:
                detail = f"rouge_l={dedup.rouge_l(text, index.text(position)):.3f} with"
            found[item] = (
                rejection.reason,
                f'{detail} an example stored by a parallel round: "{match}"',
            )
        return found

    return check


def rejected(
    index: int,
    candidate: Candidate,
    rejection: Rejection,
    meta: dict[str, Any],
    sampling: dict[str, Any],
    prompt_id: str = PROPOSE_ID,
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
        prompt_id=prompt_id,
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
    config: filters.FilterConfig | None = None,
) -> ExampleOut:
    rejection = (
        Rejection(EMPTY, "the proposal has no output")
        if not candidate.output
        else curate_answer(candidate, params.get("answer_filters"), config)
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
