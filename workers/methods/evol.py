"""Evol-Instruct (WizardLM): evolve the dataset's instructions over generations, eliminate the
evolutions that failed, curate and answer the rest.

Paper: Xu et al. 2023, "WizardLM: Empowering Large Language Models to Follow Complex
Instructions", §3. Input: root examples of the dataset (their instruction and input), the job's
skill spec as the system message. Output: one example per lineage and generation, accepted,
pending (``answer: false``) or rejected with its reason, each with its lineage in ``metadata``:
``root_id``, ``parent_id`` (the example it was evolved from), ``operation`` and ``generation``.

A lineage starts at a root. Each generation draws one operation from ``params.operations``
(uniformly, with an RNG seeded by job, root and generation, so a retried step draws the same
one): in depth (``add_constraints``, ``deepen``, ``concretize``, ``increase_reasoning``,
``complicate_input``: the paper's rewriting prompts, ``evol/depth``) or in breadth (a new, rarer
instruction of the same domain, ``evol/breadth``). The teacher answers with JSON
``{"instruction", "input"}`` (a schema where the backend enforces one; validated here).

Elimination (§3.2), each rule with its own reason; an eliminated evolution is stored rejected and
the lineage goes on from its parent:

- ``evol_copied_prompt``: the evolution copies words of the evolving prompt ("#Rewritten
  Prompt#", "given prompt", "created prompt" ...);
- ``evol_no_new_information``: it adds nothing to its parent: the same words, or nearly
  (ROUGE-L >= :data:`NEAR_EQUAL` against its parent or an earlier ancestor), or the teacher,
  asked as in the paper, judges the two "Equal" (``equality_check``);
- ``evol_refusal``: the teacher's answer to it is refusal-like (the curation refusal patterns, or
  the paper's rule: "sorry" in an answer under :data:`SORRY_WORDS` words);
- ``evol_degenerate_answer``: the answer is only punctuation and stop words.

Evolutions that pass go through the curation of expansion: the instruction filters
(``params.filters``), decontamination, then exact and near duplicates (ROUGE-L >=
``similarity_threshold``) against the dataset, its own ancestors excepted (an evolution is meant
to be close to what it evolved from), and against the other evolutions of the task; answers
(``params.answer``) take the labeling answer path, with the answer filters and rationales. An
evolution rejected for any reason ends that step: the next generation evolves the last accepted
one (the root at first), so a lineage never builds on an evolution that is not in the dataset.

One task is one generation of a chunk of lineages (payload ``{"generation", "lineages": [{"root",
"chain"}]}``, ``chain``: the ids of the lineage's evolutions so far); it hands the next
generation to a follow-up task, so every step is stored once, in the transaction that completes
its task: a worker killed mid-task loses the step (redone) and doubles nothing. The rows' ids are
chosen here (uuid7) so that the next generation can name its parent; the next task evolves the
last link of the chain that is still accepted (one a commit-time check rejected is skipped).
A step whose teacher call failed is not stored but asked again (whole: evolution and answer) in
a follow-up task with ``retry``, backed off by the queue. Progress: a job's ``total`` is
lineages x generations, and each step counts once, whatever became of its evolution; a step the
teacher refused for good (HTTP 400/413/422) counts as ``failed`` and the lineage goes on.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from rapidfuzz import process
from rapidfuzz.distance import LCSseq

from app.ids import uuid7
from app.kinds import EVOL_OPERATIONS
from workers.curation import decontamination, dedup, filters, patterns
from workers.curation.types import NEAR_DUPLICATE, TRUNCATED, UNPARSEABLE, Candidate, Rejection
from workers.methods.base import ExampleOut, MethodContext, TaskInput, TaskOutcome
from workers.methods.common import (
    TEACHER_REFUSED,
    Reasoned,
    answer_example,
    answer_request,
    filter_config,
    first_error,
    job_benchmarks,
    read_rationales,
    reject_contaminated,
    retry_followup,
    sampling_from,
    to_retry,
    usage_totals,
)
from workers.methods.expansion import RECHECK_MARGIN, recheck_against
from workers.methods.parsing import load_json
from workers.prompts import render, skill_system_prompt
from workers.teachers.base import SamplingParams, TeacherError, TeacherRequest, TeacherResult

DEPTH_ID = "evol/depth"
BREADTH_ID = "evol/breadth"
EQUAL_ID = "evol/equal"
PROMPT_VERSION = "v1"

# elimination reasons (stable: stored with the example, counted per generation in the report)
NO_NEW_INFORMATION: Final = "evol_no_new_information"
REFUSAL: Final = "evol_refusal"
DEGENERATE_ANSWER: Final = "evol_degenerate_answer"
COPIED_PROMPT: Final = "evol_copied_prompt"
ELIMINATIONS: Final = (NO_NEW_INFORMATION, REFUSAL, DEGENERATE_ANSWER, COPIED_PROMPT)

NEAR_EQUAL: Final = 0.95  # ROUGE-L with an ancestor at or above this: nothing new was added
SORRY_WORDS: Final = 80  # the paper: "sorry" in an answer shorter than this is a failed evolution
EQUAL_MAX_TOKENS: Final = 32  # the verdict is "Equal" or "Not Equal"
_USAGE: Final = ("prompt_tokens", "completion_tokens")

EVOLUTION_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {"instruction": {"type": "string"}, "input": {"type": "string"}},
    "required": ["instruction", "input"],
    "additionalProperties": False,
}

_COPIED = re.compile(r"\b(?:given|rewritten|created)\s+prompt\b", re.IGNORECASE)
_SORRY = re.compile(r"\bsorry\b", re.IGNORECASE)
_WORDS = re.compile(r"[^\W_]+")
_NOT_EQUAL = re.compile(r"\b(?:not\s+equal|unequal|different)\b", re.IGNORECASE)
_EQUAL = re.compile(r"\bequal\b", re.IGNORECASE)

# English stop words (NLTK's list): an answer made of these and punctuation alone is degenerate
STOP_WORDS: Final = frozenset((
    "i", "me", "my", "myself", "we", "our", "ours", "ourselves", "you", "your", "yours",
    "yourself", "yourselves", "he", "him", "his", "himself", "she", "her", "hers", "herself",
    "it", "its", "itself", "they", "them", "their", "theirs", "themselves", "what", "which",
    "who", "whom", "this", "that", "these", "those", "am", "is", "are", "was", "were", "be",
    "been", "being", "have", "has", "had", "having", "do", "does", "did", "doing", "a", "an",
    "the", "and", "but", "if", "or", "because", "as", "until", "while", "of", "at", "by", "for",
    "with", "about", "against", "between", "into", "through", "during", "before", "after",
    "above", "below", "to", "from", "up", "down", "in", "out", "on", "off", "over", "under",
    "again", "further", "then", "once", "here", "there", "when", "where", "why", "how", "all",
    "any", "both", "each", "few", "more", "most", "other", "some", "such", "no", "nor", "not",
    "only", "own", "same", "so", "than", "too", "very", "s", "t", "can", "will", "just", "don",
    "should", "now", "d", "ll", "m", "o", "re", "ve", "y", "ain", "aren", "couldn", "didn",
    "doesn", "hadn", "hasn", "haven", "isn", "ma", "mightn", "mustn", "needn", "shan", "shouldn",
    "wasn", "weren", "won", "wouldn",
))  # fmt: skip


async def run(task: TaskInput, ctx: MethodContext) -> TaskOutcome:
    params, payload = task.params, task.payload
    generation = int(payload["generation"])
    lineages: list[dict[str, Any]] = payload["lineages"]
    wanted = list(dict.fromkeys(i for line in lineages for i in (line["root"], *line["chain"])))
    clock = Clock()
    rows = {row["id"]: row for row in await ctx.fetch_examples(wanted)}
    operations = params.get("operations") or list(EVOL_OPERATIONS)
    steps: list[Step] = []
    missing = 0  # lineages whose every link left the dataset (deleted, or rejected since)
    for index, line in enumerate(lineages):
        step = start_step(task.job_id, index, line, rows, operations, generation)
        if step is None:
            missing += 1
        else:
            steps.append(step)
    system = skill_system_prompt(task.skill)
    roots = [rows[line["root"]]["instruction"] for line in lineages if line["root"] in rows]
    config = await asyncio.to_thread(filter_config, params, roots)
    sampling = sampling_from(task.teacher, seed_offset=generation)

    requests = [
        evolve_request(system, step, sampling, f"{task.task_id}:evolve:{step.index}")
        for step in steps
    ]
    await ctx.check_cancel()
    clock.lap("read")
    evolved = await ctx.teacher.generate(requests) if requests else []
    clock.lap("evolve")
    await ctx.check_cancel()
    retry = set(to_retry(evolved))  # asked again in a follow-up task, not stored
    again = [steps[i] for i in sorted(retry)]
    live = [step for i, step in enumerate(steps) if i not in retry]
    for step, result in zip(steps, evolved, strict=True):
        step.evolution = result
        step.usage = _add(step.usage, result)
    for step in live:
        read_evolution(step)

    snapshot = dt.datetime.now(dt.UTC)
    pool = await ctx.dataset_pool()
    benchmarks = await job_benchmarks(task, ctx)
    dedup_config = dedup.DedupConfig(threshold=params["similarity_threshold"])
    # CPU-bound: off the event loop, so heartbeats and other tasks of the worker keep running
    await asyncio.to_thread(
        curate_evolutions,
        live,
        steps,
        pool,
        params.get("filters"),
        config,
        benchmarks,
        dedup_config,
    )
    clock.lap("curate")
    answered = await judge_and_answer(task, ctx, system, [s for s in live if s.rejection is None])
    clock.lap("answer")
    again += answered.retry
    done = [step for step in live if step not in answered.retry]
    examples = [make_example(step, params, config, sampling) for step in done]
    await asyncio.to_thread(reject_contaminated, examples, benchmarks)  # the answers

    followups: list[dict[str, Any]] = []
    if generation < int(params["generations"]):
        nexts = [next_lineage(step, e) for step, e in zip(done, examples, strict=True)]
        if nexts:
            followups.append({"generation": generation + 1, "lineages": nexts})
    if again:
        error = first_error(evolved, sorted(retry)) or answered.error
        followups.append(
            {
                "generation": generation,
                "lineages": [{"root": s.root, "chain": list(s.chain)} for s in again],
                "retry": retry_followup(payload, len(again), error),
            }
        )
    refused = sum(1 for e in examples if e.reject_reason == TEACHER_REFUSED)
    left = int(params["generations"]) - generation + 1  # steps of a missing lineage, this one on
    accepted = [e for e in examples if e.status == "accepted"]
    excluded = {a["instruction"] for step in steps for a in step.ancestors}
    check = recheck_against([(e.item_index, e.instruction) for e in accepted], dedup_config)
    prompt_tokens, completion_tokens, teacher_seconds = usage_totals([*evolved, *answered.results])
    return TaskOutcome(
        examples=examples,
        completed=len(examples) - refused,
        failed=refused + missing * left,
        followups=followups,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        teacher_seconds=teacher_seconds,
        # what other tasks stored meanwhile, this lineage's own ancestors excepted
        recheck=_without(excluded, check),
        recheck_since=snapshot - RECHECK_MARGIN,
        summary={
            "generation": generation,
            "lineages": len(lineages),
            "evolved": len(examples),
            "accepted": len(accepted),
            "eliminated": dict(
                Counter(e.reject_reason for e in examples if e.reject_reason in ELIMINATIONS)
            ),
            "operations": dict(Counter(step.operation for step in done)),
            "retried": len(again),
            "missing": missing,
            "languages": list(config.languages or ()),
            "seconds": clock.laps,  # where the task's time went
        },
        system_prompt=system,
    )


class Clock:
    """Seconds per phase of a task, for its summary."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self._last, 4)
        self._last = now


@dataclass(slots=True, eq=False)
class Step:
    """One lineage's evolution in this task (its row's item index is the lineage's position)."""

    index: int
    root: str
    chain: list[str]  # the lineage's evolutions so far (accepted when they were written)
    parent: dict[str, Any]  # the example evolved now: the chain's last accepted link, or the root
    ancestors: list[dict[str, Any]]  # the root and the chain's links still accepted, in order
    operation: str
    generation: int
    id: str = field(default_factory=lambda: str(uuid7()))  # the row's: the next step names it
    evolution: TeacherResult | None = None
    candidate: Candidate | None = None
    rejection: Rejection | None = None
    verdict: bool | None = None  # the teacher's: equal to its parent (None: not asked or read)
    answer: TeacherResult | None = None
    reasoning: Reasoned | None = None  # a rationale job's answer: its reasoning, raw reply
    usage: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_USAGE, 0))

    @property
    def prompt_id(self) -> str:
        return BREADTH_ID if self.operation == "breadth" else DEPTH_ID

    def meta(self) -> dict[str, Any]:
        return {
            "root_id": self.root,
            "parent_id": self.parent["id"],
            "operation": self.operation,
            "generation": self.generation,
        }


def start_step(
    job_id: str,
    index: int,
    line: dict[str, Any],
    rows: dict[str, dict[str, Any]],
    operations: Sequence[str],
    generation: int,
) -> Step | None:
    """The step of lineage `line`, or None when none of its links is left to evolve."""
    links = [rows[i] for i in (line["root"], *line["chain"]) if i in rows]
    living = [row for row in links if row["status"] != "rejected"]
    if not living:
        return None
    rng = random.Random(f"{job_id}:{line['root']}:{generation}")
    return Step(
        index=index,
        root=line["root"],
        chain=list(line["chain"]),
        parent=living[-1],
        ancestors=living,
        operation=rng.choice(list(operations)),
        generation=generation,
    )


def evolve_request(
    system: str, step: Step, sampling: SamplingParams, request_id: str
) -> TeacherRequest:
    prompt = render(
        step.prompt_id,
        PROMPT_VERSION,
        operation=step.operation,
        instruction=step.parent["instruction"],
        input=step.parent["input"],
    )
    return TeacherRequest(
        messages=[{"role": "system", "content": system}, {"role": "user", "content": prompt}],
        sampling=sampling,
        json_schema=EVOLUTION_SCHEMA,
        request_id=request_id,
    )


def parse_evolution(text: str) -> tuple[str, str] | None:
    """(instruction, input) of an evolution reply, or None unless it is a JSON object with a
    non-blank string ``instruction`` (``input``: a string, or missing for "")."""
    data = load_json(text)
    if not isinstance(data, dict):
        return None
    instruction, input_ = data.get("instruction"), data.get("input", "")
    if not isinstance(instruction, str) or not instruction.strip():
        return None
    if input_ is None:
        input_ = ""
    if not isinstance(input_, str):
        return None
    return instruction.strip(), input_.strip()


def read_evolution(step: Step) -> None:
    """The step's candidate from the teacher's reply, or its rejection (the teacher refused the
    request for good; the reply cannot be read)."""
    result = step.evolution
    assert result is not None
    if result.error is not None or not result.generations:
        error = result.error or TeacherError("no generation returned")
        step.rejection = Rejection(TEACHER_REFUSED, f"{type(error).__name__}: {error.message}")
        return
    generation = result.generations[0]
    parsed = parse_evolution(generation.text)
    if parsed is None:
        reason = TRUNCATED if generation.finish_reason == "length" else UNPARSEABLE
        step.rejection = Rejection(reason, 'no {"instruction", "input"} in the evolution reply')
        return
    step.candidate = Candidate(
        parsed[0], parsed[1], None, raw=generation.text, finish_reason=generation.finish_reason
    )


def _prompt_text(instruction: str, input_: str) -> str:
    return f"{instruction}\n\n{input_}" if input_ else instruction


def copied_prompt(candidate: Candidate) -> Rejection | None:
    """`evol_copied_prompt`: the evolution names the evolving prompt's own labels."""
    found = _COPIED.search(candidate.instruction) or _COPIED.search(candidate.input)
    if found is None:
        return None
    return Rejection(COPIED_PROMPT, f"copies {found.group(0)!r} from the evolving prompt")


def no_new_information(
    candidate: Candidate, ancestors: Sequence[dict[str, Any]]
) -> Rejection | None:
    """`evol_no_new_information`: the evolution is (nearly) the words of its parent or of an
    earlier ancestor: ROUGE-L of instruction and input >= :data:`NEAR_EQUAL`."""
    text = _prompt_text(candidate.instruction, candidate.input)
    for ancestor in reversed(ancestors):  # the parent first
        score = dedup.rouge_l(text, _prompt_text(ancestor["instruction"], ancestor["input"]))
        if score >= NEAR_EQUAL:
            return Rejection(
                NO_NEW_INFORMATION,
                f"rouge_l={score:.3f} with ancestor {ancestor['id']}: "
                f'"{dedup.shorten(ancestor["instruction"])}"',
            )
    return None


def refusal_like(answer: str) -> Rejection | None:
    """`evol_refusal`: the answer refuses (the refusal patterns of curation), or says "sorry" in
    under :data:`SORRY_WORDS` words (WizardLM's rule)."""
    found = patterns.refusal(answer)
    if found is not None:
        return Rejection(REFUSAL, f"answer: {found}")
    if _SORRY.search(answer) and len(answer.split()) < SORRY_WORDS:
        return Rejection(REFUSAL, f'answer says "sorry" in under {SORRY_WORDS} words')
    return None


def degenerate(answer: str) -> Rejection | None:
    """`evol_degenerate_answer`: the answer has no word but stop words (punctuation only, or
    "the of and ...")."""
    words = _WORDS.findall(answer.lower())
    if all(word in STOP_WORDS for word in words):
        shown = " ".join(answer.split())[:60]
        return Rejection(DEGENERATE_ANSWER, f"only punctuation and stop words: {shown!r}")
    return None


def read_verdict(result: TeacherResult | None) -> bool | None:
    """The teacher's equality verdict: True "Equal", False "Not Equal", None unread."""
    if result is None or result.error is not None or not result.generations:
        return None
    text = result.generations[0].text
    if _NOT_EQUAL.search(text):
        return False
    if _EQUAL.search(text):
        return True
    return None


def curate_evolutions(
    live: Sequence[Step],
    chunk: Sequence[Step],
    pool: Sequence[str],
    names: Sequence[str] | None,
    config: filters.FilterConfig,
    benchmarks: decontamination.Index | None,
    dedup_config: dedup.DedupConfig,
) -> None:
    """Set each live step's rejection: the instruction-side eliminations first, then the
    instruction filters and decontamination (before dedup: a contaminated task must not join the
    pool), then near duplicates of the ancestors of the chunk's other lineages, then exact and
    near duplicates in order: against `pool` (the dataset) without the chunk's ancestors and
    against the earlier kept evolutions of the chunk."""
    steps = list(names) if names is not None else list(filters.INSTRUCTION_FILTERS)
    for step in live:
        if step.rejection is not None:
            continue
        candidate = step.candidate
        assert candidate is not None
        step.rejection = (
            copied_prompt(candidate)
            or no_new_information(candidate, step.ancestors)
            or filters.apply_filters(candidate, steps, config)
            or decontamination.check_candidate(candidate, benchmarks)
        )
    # the other lineages' ancestors first: a text rejected there must not reject others later
    _against_other_lineages(
        [step for step in live if step.rejection is None], chunk, dedup_config.threshold
    )
    kept = [step for step in live if step.rejection is None]
    if not kept:
        return
    ancestry = {a["instruction"] for step in chunk for a in step.ancestors}
    index = dedup.NearDupIndex.from_rows([t for t in pool if t not in ancestry], dedup_config)
    texts = [step.candidate.instruction for step in kept]  # type: ignore[union-attr]
    for step, rejection in zip(kept, dedup.dedupe_batch(texts, index), strict=True):
        step.rejection = rejection


def _against_other_lineages(kept: Sequence[Step], chunk: Sequence[Step], threshold: float) -> None:
    """Reject as near duplicates the evolutions at or over `threshold` ROUGE-L with an ancestor
    of another lineage of the chunk (left out of the pool index, as every ancestor is)."""
    texts = sorted({a["instruction"] for step in chunk for a in step.ancestors})
    if not kept or not texts:
        return
    vocab: dict[str, int] = {}

    def ids(text: str) -> list[int]:
        return [vocab.setdefault(word, len(vocab)) for word in dedup.tokenize(text)]

    pool = [ids(t) for t in texts]
    queries = [ids(step.candidate.instruction) for step in kept]  # type: ignore[union-attr]
    common = process.cdist(queries, pool, scorer=LCSseq.similarity, workers=1)
    for q, step in enumerate(kept):
        own = {a["instruction"] for a in step.ancestors}
        best, match = 0.0, -1
        for j, text in enumerate(texts):
            size = len(queries[q]) + len(pool[j])
            if text in own or not size:
                continue
            score = 2.0 * float(common[q, j]) / size
            if score > best:
                best, match = score, j
        if match >= 0 and best >= threshold:
            step.rejection = Rejection(
                NEAR_DUPLICATE,
                f"rouge_l={best:.3f} with an ancestor of another lineage: "
                f'"{dedup.shorten(texts[match])}"',
            )


@dataclass(slots=True)
class Answered:
    """The teacher calls of the surviving evolutions: their results, the steps to ask again
    (a call failed and may succeed later), and the first such error."""

    results: list[TeacherResult] = field(default_factory=list)
    retry: list[Step] = field(default_factory=list)
    error: TeacherError | None = None


async def judge_and_answer(
    task: TaskInput, ctx: MethodContext, system: str, survivors: Sequence[Step]
) -> Answered:
    """One batch for all survivors: the equality check (``equality_check``) and the answer
    (``answer``; with ``rationale``, reasoning and answer apart) of each."""
    params = task.params
    generation = int(task.payload["generation"])
    check, answer = bool(params.get("equality_check", True)), bool(params.get("answer", True))
    rationale = bool(params.get("rationale"))
    sampling = sampling_from(task.teacher, seed_offset=generation)
    verdict_sampling = SamplingParams(
        temperature=0.0, max_tokens=min(EQUAL_MAX_TOKENS, sampling.max_tokens), seed=sampling.seed
    )
    requests: list[TeacherRequest] = []
    slots: list[tuple[Step, str]] = []
    for step in survivors:
        candidate = step.candidate
        assert candidate is not None
        if check:
            equal = render(
                EQUAL_ID,
                PROMPT_VERSION,
                first=_prompt_text(step.parent["instruction"], step.parent["input"]),
                second=_prompt_text(candidate.instruction, candidate.input),
            )
            requests.append(
                TeacherRequest(
                    messages=[
                        {"role": "system", "content": system},
                        {"role": "user", "content": equal},
                    ],
                    sampling=verdict_sampling,
                    request_id=f"{task.task_id}:equal:{step.index}",
                )
            )
            slots.append((step, "equal"))
        if answer:
            requests.append(
                answer_request(
                    system,
                    candidate.instruction,
                    candidate.input,
                    sampling=sampling,
                    top_logprobs=task.teacher.get("top_logprobs"),
                    request_id=f"{task.task_id}:answer:{step.index}",
                    rationale=rationale,
                )
            )
            slots.append((step, "answer"))
    if not requests:
        return Answered()
    await ctx.check_cancel()
    results = await ctx.teacher.generate(requests)
    await ctx.check_cancel()
    answers = [i for i, (_, kind) in enumerate(slots) if kind == "answer"]
    read, reasoning = read_rationales([results[i] for i in answers], rationale)
    split = list(results)
    for i, result, reasons in zip(answers, read, reasoning, strict=True):
        split[i] = result
        slots[i][0].reasoning = reasons
    failed = to_retry(split)  # raises a final error that is not about one item
    retry: dict[int, Step] = {}
    for i in failed:
        retry.setdefault(id(slots[i][0]), slots[i][0])
    for (step, kind), result in zip(slots, split, strict=True):
        step.usage = _add(step.usage, result)
        if kind == "equal":
            step.verdict = read_verdict(result)  # a refused check is no verdict
        else:
            step.answer = result
    return Answered(
        results=split,
        retry=list(retry.values()),
        error=first_error(split, failed),
    )


def make_example(
    step: Step, params: dict[str, Any], config: filters.FilterConfig, sampling: SamplingParams
) -> ExampleOut:
    """The stored row of a step: rejected with its reason (elimination, curation, the teacher's
    refusal), pending (not answered), or the answer example (accepted or rejected); its usage
    is the step's calls summed (evolution, equality check, answer)."""
    evolution = step.evolution
    assert evolution is not None
    common: dict[str, Any] = {
        "item_index": step.index,
        "id": step.id,
        "prompt_id": step.prompt_id,
        "prompt_version": PROMPT_VERSION,
        "sampling": sampling.as_dict(),
        "meta": step.meta(),
    }
    raw = evolution.generations[0].text if evolution.generations else None
    candidate = step.candidate
    if step.rejection is not None or candidate is None:
        rejection = step.rejection or Rejection(UNPARSEABLE, "no evolution")
        return ExampleOut(
            **common,
            instruction="" if candidate is None else candidate.instruction,
            input="" if candidate is None else candidate.input,
            status="rejected",
            reject_reason=rejection.reason,
            reject_detail=rejection.detail,
            raw_output=raw,
            usage=dict(step.usage),
        )
    if step.verdict is True:
        elimination: Rejection | None = Rejection(
            NO_NEW_INFORMATION, "the teacher judged it equal to its parent"
        )
    else:
        elimination = None
    answer = step.answer
    if answer is None:  # answer: false
        if elimination is None:
            return ExampleOut(
                **common,
                instruction=candidate.instruction,
                input=candidate.input,
                status="pending",
                raw_output=raw,
                usage=dict(step.usage),
            )
        return ExampleOut(
            **common,
            instruction=candidate.instruction,
            input=candidate.input,
            status="rejected",
            reject_reason=elimination.reason,
            reject_detail=elimination.detail,
            raw_output=raw,
            usage=dict(step.usage),
        )
    example = answer_example(
        item_index=step.index,
        instruction=candidate.instruction,
        input=candidate.input,
        result=answer,
        filter_names=params.get("answer_filters"),
        prompt_id=step.prompt_id,
        prompt_version=PROMPT_VERSION,
        sampling=sampling,
        meta=step.meta(),
        filter_config=config,
        reasoning=step.reasoning,
    )
    example.id = step.id
    example.usage = dict(step.usage)
    if elimination is None and answer.generations and example.output is not None:
        text = example.output
        elimination = refusal_like(text) or degenerate(text)
    if elimination is not None:
        example.status = "rejected"
        example.reject_reason = elimination.reason
        example.reject_detail = elimination.detail
    return example


def next_lineage(step: Step, example: ExampleOut) -> dict[str, Any]:
    """The lineage as the next generation gets it: this step's row joins the chain when it was
    kept (accepted, or pending unanswered); the next task skips it if the commit rejected it."""
    kept = example.status in ("accepted", "pending")
    return {"root": step.root, "chain": [*step.chain, step.id] if kept else list(step.chain)}


def _add(usage: dict[str, int], result: TeacherResult) -> dict[str, int]:
    return {
        "prompt_tokens": usage["prompt_tokens"] + result.usage.prompt_tokens,
        "completion_tokens": usage["completion_tokens"] + result.usage.completion_tokens,
    }


def _without(
    excluded: set[str], check: Callable[[list[str]], dict[int, tuple[str, str]]]
) -> Callable[[list[str]], dict[int, tuple[str, str]]]:
    def recheck(rows: list[str]) -> dict[int, tuple[str, str]]:
        return check([text for text in rows if text not in excluded])

    return recheck
