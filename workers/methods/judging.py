"""The teacher as judge: judge prompts, judgments validated on our side, and what they make
(scores per response, preference pairs, the `low_score` filter of generating methods).

Two modes:

* **pointwise** (UltraFeedback, Cui et al. 2023): one response at a time, scored 1-10 on each
  aspect with a short rationale; the aspects are the job's `aspects`, else its rubric (the job's
  or the skill's) as the one aspect ``rubric``, else UltraFeedback's four. The overall score is
  the mean of the aspects.
* **pairwise** (LLM-as-a-judge, Zheng et al. 2023): A vs B with a verdict (``A``, ``B`` or
  ``tie``) and a rationale, asked in both orders; a comparison counts only when the two orders
  agree (A in one is B in the other), and how often they disagree (position bias) is counted.
  A response's overall score is its win rate over the agreed comparisons (a tie counts half)
  times 10, so pair margins in both modes are differences of overall scores.

The judge is asked for JSON (``TeacherRequest.json_schema``, which servers may ignore and local
backends do not enforce) and every answer is validated here (pydantic): every aspect present,
integer scores 1..10, a known verdict. An answer that cannot be read or is invalid is asked again
(greedy first, then sampled at :data:`REASK_TEMPERATURE`), at most :data:`MAX_ASKS` times in all;
then the judgment is counted as failed, never turned into a score. A teacher failure is not an
invalid judgment: it goes back to the caller, which asks again later through the retry follow-ups
of :mod:`workers.methods.common` like any teacher call.

The module is plain functions over plain data except :func:`ask` and :func:`judge_answers`, which
call the teacher through the method context (no SQL).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from statistics import fmean
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from app.kinds import UF_ASPECTS
from workers.curation.types import LOW_SCORE
from workers.methods.base import ExampleOut, MethodContext, TaskInput
from workers.methods.common import open_turns, sampling_from, to_retry
from workers.methods.parsing import load_json
from workers.prompts import render
from workers.teachers.base import (
    SamplingParams,
    TeacherBadResponse,
    TeacherError,
    TeacherRequest,
    TeacherResult,
)

JUDGE_VERSION = "v1"
SYSTEM_ID = "judge/system"
POINTWISE_ID = "judge/pointwise"
PAIRWISE_ID = "judge/pairwise"
MAX_ASKS = 3  # an unreadable or invalid judgment is asked again twice, then counted as failed
REASK_TEMPERATURE = 0.7  # greedy decoding would give the same unreadable answer again
RUBRIC_ASPECT = "rubric"  # the one aspect a rubric alone is scored as
MARGIN_DIGITS = 4

Mode = Literal["pointwise", "pairwise"]


# --- what is judged, and against what -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Criteria:
    """What the judge scores: the aspects, and the rubric shown with them (or None)."""

    aspects: tuple[str, ...]
    rubric: str | None


def _key(name: str) -> str:
    """An aspect name as the judge's JSON keys are matched: case, spaces, `-` and `_` folded."""
    return re.sub(r"[\s_-]+", "_", name.strip().casefold())


def criteria(spec: Mapping[str, Any], skill: Mapping[str, Any] | None) -> Criteria:
    """The criteria of a job's params (`rubric`, `aspects`) or judge spec, the skill's rubric
    standing in for a missing rubric. Aspect names are stripped; blank ones and repeats (as
    keys are matched) are dropped."""
    rubric = str(spec.get("rubric") or (skill or {}).get("rubric") or "").strip() or None
    named: dict[str, str] = {}
    for aspect in spec.get("aspects") or ():
        if aspect.strip():
            named.setdefault(_key(aspect), aspect.strip())
    if named:
        aspects = tuple(named.values())
    elif rubric:
        aspects = (RUBRIC_ASPECT,)
    else:
        aspects = UF_ASPECTS
    return Criteria(aspects=aspects, rubric=rubric)


def prompt_turns(
    instruction: str, input: str, messages: Sequence[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """The conversation a response answers: a conversation's turns before its final answer,
    else one user turn (instruction and input, as the teacher was asked)."""
    turns = open_turns(messages) if messages else None
    if turns:
        return turns
    return [
        {"role": "user", "content": render("labeling", "v1", instruction=instruction, input=input)}
    ]


def response_text(row: Mapping[str, Any]) -> str | None:
    """The response an example holds: its output, else its conversation's final assistant turn."""
    output = row.get("output")
    if output is not None:
        return str(output)
    messages = row.get("messages") or []
    if messages and messages[-1].get("role") == "assistant":
        return str(messages[-1].get("content") or "")
    return None


def judge_sampling(teacher: dict[str, Any]) -> SamplingParams:
    """Greedy, with the job's token limit and seed: a judgment should not depend on luck."""
    return dataclasses.replace(sampling_from(teacher), temperature=0.0, top_p=1.0)


def judge_info(model: str, prompt_id: str, job_id: str) -> dict[str, Any]:
    """Who judged, with which prompt: stored with every score."""
    return {
        "model": model,
        "prompt_id": prompt_id,
        "prompt_version": JUDGE_VERSION,
        "job_id": job_id,
    }


# --- requests ------------------------------------------------------------------------------------


def pointwise_schema(aspects: Sequence[str]) -> dict[str, Any]:
    """The JSON schema of a pointwise judgment: one object per aspect, rationale first."""
    item = {
        "type": "object",
        "properties": {
            "rationale": {"type": "string"},
            "score": {"type": "integer", "minimum": 1, "maximum": 10},
        },
        "required": ["rationale", "score"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {aspect: item for aspect in aspects},
        "required": list(aspects),
        "additionalProperties": False,
    }


PAIRWISE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "rationale": {"type": "string"},
        "verdict": {"type": "string", "enum": ["A", "B", "tie"]},
    },
    "required": ["rationale", "verdict"],
    "additionalProperties": False,
}


def _messages(prompt_id: str, **context: Any) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": render(SYSTEM_ID, JUDGE_VERSION)},
        {"role": "user", "content": render(prompt_id, JUDGE_VERSION, **context)},
    ]


def pointwise_request(
    turns: Sequence[Mapping[str, Any]],
    response: str,
    criteria: Criteria,
    skill: Mapping[str, Any] | None,
    sampling: SamplingParams,
    request_id: str,
) -> TeacherRequest:
    """Ask the judge to score one response on every aspect."""
    return TeacherRequest(
        messages=_messages(
            POINTWISE_ID,
            skill=dict(skill or {}),
            turns=list(turns),
            response=response,
            aspects=list(criteria.aspects),
            rubric=criteria.rubric,
        ),
        sampling=sampling,
        json_schema=pointwise_schema(criteria.aspects),
        request_id=request_id,
    )


def pairwise_request(
    turns: Sequence[Mapping[str, Any]],
    first: str,
    second: str,
    criteria: Criteria,
    skill: Mapping[str, Any] | None,
    sampling: SamplingParams,
    request_id: str,
) -> TeacherRequest:
    """Ask the judge which of two responses is better, `first` shown as A."""
    return TeacherRequest(
        messages=_messages(
            PAIRWISE_ID,
            skill=dict(skill or {}),
            turns=list(turns),
            first=first,
            second=second,
            aspects=list(criteria.aspects),
            rubric=criteria.rubric,
        ),
        sampling=sampling,
        json_schema=PAIRWISE_SCHEMA,
        request_id=request_id,
    )


# --- reading judgments ---------------------------------------------------------------------------


class _Judged(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    rationale: str


class AspectScore(_Judged):
    """One aspect's judgment: an integer 1..10 (7.0 is 7, as in JSON Schema; "7", 7.5 and
    true are not) and the rationale."""

    score: int = Field(ge=1, le=10)

    @field_validator("score", mode="before")
    @classmethod
    def _integral(cls, value: Any) -> Any:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value


class Verdict(_Judged):
    """A pairwise judgment ("a", "Tie" read as "A", "tie")."""

    verdict: Literal["A", "B", "tie"]

    @field_validator("verdict", mode="before")
    @classmethod
    def _fold(cls, value: Any) -> Any:
        if isinstance(value, str):
            folded = value.strip()
            return folded.lower() if folded.lower() == "tie" else folded.upper()
        return value


@dataclass(frozen=True, slots=True)
class Pointwise:
    """A valid pointwise judgment: aspect -> (score, rationale)."""

    aspects: dict[str, tuple[int, str]]

    @property
    def overall(self) -> float:
        return round(fmean(score for score, _ in self.aspects.values()), MARGIN_DIGITS)


def _problem(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "value"
    return f"{where}: {first['msg']}"


def parse_pointwise(text: str, aspects: Sequence[str]) -> tuple[Pointwise | None, str | None]:
    """The judgment in `text`, or (None, what is wrong with it)."""
    data = load_json(text)
    if not isinstance(data, dict):
        return None, "no JSON object in the judgment"
    by_key = {_key(str(k)): v for k, v in data.items()}
    found: dict[str, tuple[int, str]] = {}
    for aspect in aspects:
        if _key(aspect) not in by_key:
            return None, f"aspect {aspect!r} missing"
        try:
            judged = AspectScore.model_validate(by_key[_key(aspect)])
        except ValidationError as exc:
            return None, f"aspect {aspect!r}: {_problem(exc)}"
        found[aspect] = (judged.score, judged.rationale)
    return Pointwise(found), None


def parse_pairwise(text: str) -> tuple[Verdict | None, str | None]:
    """The verdict in `text`, or (None, what is wrong with it)."""
    data = load_json(text)
    if not isinstance(data, dict):
        return None, "no JSON object in the judgment"
    try:
        return Verdict.model_validate(data), None
    except ValidationError as exc:
        return None, _problem(exc)


# --- asking --------------------------------------------------------------------------------------


@dataclass(slots=True)
class Asked:
    """What came of one judge request: a valid judgment (`value`), a retryable teacher failure
    (`retry`: the caller asks again later), or neither: failed for good (`problem` says why:
    the last invalid answer, or the teacher's refusal of the request)."""

    value: Any = None
    problem: str | None = None
    asks: int = 0
    retry: TeacherError | None = None

    @property
    def failed(self) -> bool:
        return self.value is None and self.retry is None


def reask(request: TeacherRequest, attempt: int) -> TeacherRequest:
    """The request asked again after an invalid answer: sampled, with another seed."""
    sampling = request.sampling
    seed = None if sampling.seed is None else sampling.seed + attempt
    return dataclasses.replace(
        request,
        sampling=dataclasses.replace(sampling, temperature=REASK_TEMPERATURE, seed=seed),
        request_id=None if request.request_id is None else f"{request.request_id}:ask{attempt}",
    )


async def ask(
    ctx: MethodContext,
    requests: Sequence[TeacherRequest],
    parsers: Sequence[Callable[[str], tuple[Any, str | None]]],
) -> tuple[list[Asked], list[TeacherResult]]:
    """Send the judge requests; re-ask those whose answer `parsers` (one per request) cannot
    read, up to :data:`MAX_ASKS` asks in all. Returns the outcome per request and every teacher
    result (for token counts). A final teacher error that is not about one request (a wrong key,
    an unknown model) raises, as :func:`workers.methods.common.to_retry` does."""
    asked = [Asked() for _ in requests]
    spent: list[TeacherResult] = []
    pending = list(range(len(requests)))
    for attempt in range(MAX_ASKS):
        if not pending:
            break
        batch = [requests[i] if attempt == 0 else reask(requests[i], attempt) for i in pending]
        await ctx.check_cancel()
        results = await ctx.teacher.generate(batch)
        await ctx.check_cancel()
        spent += results
        retry = set(to_retry(results))
        again = []
        for slot, (i, result) in enumerate(zip(pending, results, strict=True)):
            outcome = asked[i]
            outcome.asks += 1
            if slot in retry:
                outcome.retry = result.error or TeacherBadResponse("no generation returned")
            elif result.error is not None or not result.generations:  # refused: final
                error = result.error or TeacherError("no generation returned")
                outcome.problem = f"the teacher refused the request: {error.message}"
            else:
                outcome.value, outcome.problem = parsers[i](result.generations[0].text)
                if outcome.value is None:
                    again.append(i)
        pending = again
    return asked, spent


# --- scores --------------------------------------------------------------------------------------


def pointwise_scores(judgment: Pointwise, judge: Mapping[str, Any]) -> dict[str, Any]:
    """What is stored in an example's ``scores`` for a pointwise judgment."""
    return {
        "overall": judgment.overall,
        "mode": "pointwise",
        "aspects": {
            aspect: {"score": score, "rationale": rationale}
            for aspect, (score, rationale) in judgment.aspects.items()
        },
        "judge": dict(judge),
    }


def agreed(first: str, second: str) -> str | None:
    """The verdict on (x, y) from x shown as A (`first`) and x shown as B (`second`): "A" (x is
    better), "B" (y is), "tie"; None when the two orders disagree."""
    swapped = {"A": "B", "B": "A", "tie": "tie"}[second]
    return first if first == swapped else None


@dataclass(slots=True)
class Record:
    """One response's agreed comparisons."""

    wins: int = 0
    losses: int = 0
    ties: int = 0
    rationales: list[dict[str, Any]] = field(default_factory=list)

    @property
    def comparisons(self) -> int:
        return self.wins + self.losses + self.ties

    @property
    def win_rate(self) -> float | None:
        if not self.comparisons:
            return None
        return round((self.wins + self.ties / 2) / self.comparisons, MARGIN_DIGITS)

    @property
    def overall(self) -> float | None:
        rate = self.win_rate
        return None if rate is None else round(rate * 10, MARGIN_DIGITS)


def tally(n: int, outcomes: Mapping[tuple[int, int], str]) -> list[Record]:
    """Each of `n` responses' record from the agreed verdicts on pairs (i, j), i < j ("A": i
    is better)."""
    records = [Record() for _ in range(n)]
    for (i, j), verdict in outcomes.items():
        if verdict == "tie":
            records[i].ties += 1
            records[j].ties += 1
        else:
            winner, loser = (i, j) if verdict == "A" else (j, i)
            records[winner].wins += 1
            records[loser].losses += 1
    return records


def pairwise_scores(record: Record, judge: Mapping[str, Any]) -> dict[str, Any]:
    """What is stored in an example's ``scores`` for its pairwise record."""
    return {
        "overall": record.overall,
        "mode": "pairwise",
        "wins": record.wins,
        "losses": record.losses,
        "ties": record.ties,
        "comparisons": record.comparisons,
        "win_rate": record.win_rate,
        "rationales": list(record.rationales),
        "judge": dict(judge),
    }


@dataclass(frozen=True, slots=True)
class Pick:
    """A preference pair by position: `chosen` is preferred to `rejected` by `margin`."""

    chosen: int
    rejected: int
    margin: float


def pick_pairs(
    overall: Sequence[float | None],
    how: Literal["best_worst", "all"],
    min_margin: float,
    contradicted: Callable[[int, int], bool] | None = None,
) -> list[Pick]:
    """Preference pairs from the responses' overall scores (None: not judged, left out).

    ``best_worst``: the best against the worst; among equal scores the earliest response is the
    best and the latest the worst. ``all``: every pair with a higher score against a lower one,
    best first. Ties never make a pair, nor a margin below `min_margin`, nor a pair whose
    direct comparison the judge agreed went the other way (`contradicted(chosen, rejected)`).
    """
    judged = [(i, s) for i, s in enumerate(overall) if s is not None]
    if len(judged) < 2:
        return []
    ranked = sorted(judged, key=lambda item: (-item[1], item[0]))
    if how == "best_worst":
        best = ranked[0]
        worst = min(judged, key=lambda item: (item[1], -item[0]))
        candidates = [(best, worst)]
    else:
        candidates = [(a, b) for x, a in enumerate(ranked) for b in ranked[x + 1 :]]
    pairs = []
    for (chosen, high), (rejected, low) in candidates:
        margin = round(high - low, MARGIN_DIGITS)
        if margin <= 0 or margin < min_margin - 1e-9:
            continue
        if contradicted is not None and contradicted(chosen, rejected):
            continue
        pairs.append(Pick(chosen, rejected, margin))
    return pairs


# --- the judge as a filter of generating methods -------------------------------------------------


@dataclass(slots=True)
class Verdicts:
    """What the judge made of a task's accepted answers (`params.judge`)."""

    unjudged: list[int] = field(default_factory=list)  # positions whose judge call must be retried
    results: list[TeacherResult] = field(default_factory=list)  # every judge call (tokens)
    error: TeacherError | None = None  # the first retryable teacher error
    judged: int = 0
    low_score: int = 0
    failed: int = 0
    active: bool = False  # the job has a judge

    def summary(self) -> dict[str, int]:
        """The counts a task's summary carries (none without a judge)."""
        if not self.active:
            return {}
        return {
            "judged": self.judged,
            "low_score": self.low_score,
            "judge_failed": self.failed,
            "judge_calls": len(self.results),
        }


async def judge_answers(
    task: TaskInput, ctx: MethodContext, examples: Sequence[ExampleOut], tag: str
) -> Verdicts:
    """Judge the accepted answers pointwise against the job's ``params.judge`` and reject those
    whose overall score is below its ``min_score`` as `low_score`; the judgment is kept in
    ``scores`` either way. An answer whose judgment stays invalid keeps its status, without a
    score (``meta.judge_failed`` says why); one whose judge call failed (retryable) is listed in
    ``unjudged`` for the caller to ask again. No-op without ``params.judge``."""
    spec = task.params.get("judge")
    if not spec:
        return Verdicts()
    rules = criteria(spec, task.skill)
    sampling = judge_sampling(task.teacher)
    todo = [i for i, e in enumerate(examples) if e.status == "accepted" and e.output is not None]
    requests = [
        pointwise_request(
            prompt_turns(examples[i].instruction, examples[i].input, examples[i].messages),
            examples[i].output or "",
            rules,
            task.skill,
            sampling,
            f"{task.task_id}:{tag}:judge:{i}",
        )
        for i in todo
    ]
    asked, results = await ask(
        ctx, requests, [lambda text: parse_pointwise(text, rules.aspects)] * len(requests)
    )
    verdicts = Verdicts(results=results, active=True)
    info = judge_info(ctx.teacher.model, POINTWISE_ID, task.job_id)
    bar = float(spec["min_score"])
    for i, outcome in zip(todo, asked, strict=True):
        example = examples[i]
        if outcome.retry is not None:
            verdicts.unjudged.append(i)
            verdicts.error = verdicts.error or outcome.retry
            continue
        if outcome.value is None:
            verdicts.failed += 1
            example.meta = {**example.meta, "judge_failed": outcome.problem}
            continue
        verdicts.judged += 1
        example.scores = pointwise_scores(outcome.value, info)
        overall = outcome.value.overall
        if overall < bar:
            verdicts.low_score += 1
            aspects = ", ".join(f"{a} {s}" for a, (s, _) in outcome.value.aspects.items())
            example.status = "rejected"
            example.reject_reason = LOW_SCORE
            example.reject_detail = f"overall score {overall:g} < min_score {bar:g} ({aspects})"
    return verdicts
