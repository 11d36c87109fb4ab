"""Curation: taxonomy-driven generation, with a quota per leaf and coverage in the report.

Input: the job's skill and its taxonomy (topics -> subtopics, ``app.taxonomy``), given by the
user or proposed by the teacher in a first task. Output: accepted instruction-response pairs,
each with ``topic`` = its leaf's path ("topic/subtopic"), plus every rejected candidate with its
reason (and its leaf).

Tasks, by payload:

- ``{"propose": true}``: the teacher proposes a taxonomy of ``topics`` x ``subtopics`` as JSON
  (``curation/taxonomy``); it is validated (:class:`app.taxonomy.Taxonomy`, names cleaned of
  "/", duplicates and extras dropped) and asked again up to :data:`PROPOSE_TRIES` times when it
  is unusable. The queue stores it on the skill (unless the skill has one by then). With
  ``review`` the job ends there (the user edits the taxonomy and starts another job); without,
  the leaves' lanes are queued and the job's total is set (the sum of their quotas).
- ``{"leaf": {"path", "description", "quota"}, "round": r}``: one round of one leaf. The task
  first counts the job's accepted examples of the leaf: at its quota, or past
  ``max_rounds_per_leaf`` rounds, the leaf is done (the reason in the task's summary, for the
  report). Otherwise ``calls_per_leaf`` calls each ask for ``candidates_per_call`` new tasks of
  that leaf (``curation/propose``: the skill, the leaf's path and description and, once there
  are some, a few accepted examples of the leaf as demonstrations); the candidates are curated
  and answered exactly as an expansion round's (:func:`workers.methods.expansion.
  curate_and_answer`: instruction filters, decontamination, exact and near duplicates against
  the whole dataset, every leaf's examples included, answers and their filters, a retry task
  for failed answer calls), and the next round of the leaf is queued; it starts by the same
  check, so a leaf ends only on what was committed.
- ``{"leaf", "round", "answer": [...]}``: kept tasks of a round whose answer call failed,
  answered again (:func:`workers.methods.expansion.answer_retry`).

Quotas are exact with leaves in parallel: each task caps its accepted examples at what its
leaf still needs (``max_accepted_topic``), which the queue applies at commit under the job's
lock against the leaf's committed count; the surplus is stored rejected ``over_target``. The
commit-time near-duplicate recheck (``recheck``) covers what other leaves stored meanwhile.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any, Final

from app import taxonomy
from workers.curation import filters
from workers.methods import expansion
from workers.methods.base import ExampleOut, MethodContext, TaskFailed, TaskInput, TaskOutcome
from workers.methods.common import (
    filter_config,
    first_error,
    retry_followup,
    sampling_from,
    to_retry,
    usage_totals,
)
from workers.methods.parsing import load_json, tasks_schema
from workers.prompts import render, skill_system_prompt
from workers.teachers.base import TeacherBadResponse, TeacherError, TeacherRequest

PROPOSE_ID: Final = "curation/propose"
TAXONOMY_ID: Final = "curation/taxonomy"
PROMPT_VERSION: Final = "v1"
DEMOS_PER_CALL: Final = 3  # accepted examples of the leaf shown in each proposal call
PROPOSE_TRIES: Final = 3  # unusable taxonomy proposals asked again before the task fails
QUOTA_MET: Final = "quota met"
ALL_MET: Final = "every leaf's quota met"
REVIEW: Final = (
    "taxonomy proposed and stored on the skill: review or edit it (PATCH /v1/skills/{id}), "
    "then start another curation job to generate"
)

_NODE: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "description": {"type": "string"}},
    "required": ["name", "description"],
    "additionalProperties": False,
}
TAXONOMY_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "topics": {
            "type": "array",
            "minItems": 1,
            "items": {
                **_NODE,
                "properties": {
                    **_NODE["properties"],
                    "subtopics": {"type": "array", "minItems": 1, "items": _NODE},
                },
                "required": ["name", "description", "subtopics"],
            },
        }
    },
    "required": ["topics"],
    "additionalProperties": False,
}


async def run(task: TaskInput, ctx: MethodContext) -> TaskOutcome:
    if task.payload.get("propose"):
        return await propose_taxonomy(task, ctx)
    if "answer" in task.payload:
        return await answer_again(task, ctx)
    return await leaf_round(task, ctx)


# --- a leaf's round --------------------------------------------------------------------------


def leaf_done(params: dict[str, Any], accepted: int, quota: int, round_no: int) -> str | None:
    """Why the leaf is done before this round, or None to go on."""
    if accepted >= quota:
        return QUOTA_MET
    if round_no >= params["max_rounds_per_leaf"]:
        return f"round budget spent ({params['max_rounds_per_leaf']} rounds)"
    return None


async def leaf_round(task: TaskInput, ctx: MethodContext) -> TaskOutcome:
    params, payload = task.params, task.payload
    leaf = payload["leaf"]
    path, quota = leaf["path"], int(leaf["quota"])
    round_no = int(payload.get("round", 0))
    have = await ctx.topic_accepted(path)
    done = leaf_done(params, have, quota, round_no)
    if done is not None:
        return await leaf_finished(ctx, leaf, round_no, have, done)
    remaining = quota - have
    system = skill_system_prompt(task.skill)
    calls = params["calls_per_leaf"]
    rng = random.Random(f"{task.job_id}:{path}:{round_no}:{task.attempt}")
    demos = await ctx.topic_demos(path, DEMOS_PER_CALL * calls)
    config = await language_config(task, ctx, demos)
    # one seed per call: the calls of a round share their prompt until the leaf has examples
    samplings = [
        sampling_from(task.teacher, seed_offset=round_no * calls + i) for i in range(calls)
    ]
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
                        names=path.split(taxonomy.SEPARATOR),
                        description=leaf.get("description") or "",
                        demos=rng.sample(demos, min(DEMOS_PER_CALL, len(demos))),
                    ),
                },
            ],
            sampling=samplings[i],
            json_schema=tasks_schema(with_output=False),
            request_id=f"{task.task_id}:propose:{i}",
        )
        for i in range(calls)
    ]
    await ctx.check_cancel()
    proposals = await ctx.teacher.generate(requests)
    await ctx.check_cancel()
    failed = to_retry(proposals)
    if len(failed) == len(proposals):  # nothing proposed: the round again, later
        retry = retry_followup(payload, 1, first_error(proposals, failed))
        prompt_tokens, completion_tokens, teacher_seconds = usage_totals(proposals)
        return TaskOutcome(
            followups=[{"leaf": leaf, "round": round_no, "retry": retry}],
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            teacher_seconds=teacher_seconds,
            summary={"leaf": path, "round": round_no, "proposed": 0, "failed_calls": calls},
            system_prompt=system,
        )

    examples: list[ExampleOut] = []
    sampling = samplings[0].as_dict()
    candidates, failed_calls = expansion.read_proposals(proposals, examples, sampling, PROPOSE_ID)
    done_round = await expansion.curate_and_answer(
        task,
        ctx,
        expansion.Curation(system, config, remaining, sampling, PROPOSE_ID),
        candidates,
        examples,
    )
    for example in done_round.examples:  # a rejected candidate records its own call's sampling
        call = example.meta.get("call")
        if example.prompt_id == PROPOSE_ID and isinstance(call, int) and 0 <= call < calls:
            example.sampling = samplings[call].as_dict()
    accepted = done_round.accepted
    prompt_tokens, completion_tokens, teacher_seconds = usage_totals(
        [*proposals, *done_round.answers]
    )
    outcome = TaskOutcome(
        examples=done_round.examples,
        completed=len(accepted),
        # the next round starts by counting what is committed: a leaf ends on stored examples
        followups=[*done_round.followups, {"round": round_no + 1}],
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        teacher_seconds=teacher_seconds,
        max_accepted=remaining,
        recheck=expansion.recheck_against(
            [(e.item_index, e.instruction) for e in accepted], done_round.dedup_config
        ),
        recheck_since=done_round.snapshot - expansion.RECHECK_MARGIN,
        summary={
            "round": round_no,
            "proposed": len(candidates),
            "answered": done_round.answered,
            "accepted": len(accepted),
            "failed_calls": failed_calls,
            "languages": list(config.languages or ()),
        },
        system_prompt=system,
    )
    return in_leaf(outcome, leaf)


async def leaf_finished(
    ctx: MethodContext, leaf: dict[str, Any], round_no: int, accepted: int, done: str
) -> TaskOutcome:
    """The last task of a leaf's lane: its reason in the summary (the report's coverage); the
    job's ``stop_reason`` says when every quota is met, or names a leaf that fell short."""
    path, quota = leaf["path"], int(leaf["quota"])
    if done == QUOTA_MET:
        progress = await ctx.job_progress()
        stop = ALL_MET if 0 < progress.get("total", 0) <= progress.get("accepted", 0) else None
    else:
        stop = f"leaf {path!r} stopped at {accepted}/{quota}: {done} (see the report's coverage)"
    return TaskOutcome(
        stop_reason=stop,
        summary={"leaf": path, "round": round_no, "accepted": accepted, "done": done},
    )


async def answer_again(task: TaskInput, ctx: MethodContext) -> TaskOutcome:
    """Kept tasks of a leaf's round whose answer call failed, answered again (at most what the
    leaf still needs accepted)."""
    leaf = task.payload["leaf"]
    have = await ctx.topic_accepted(leaf["path"])
    config = await language_config(task, ctx, [])
    outcome = await expansion.answer_retry(task, ctx, int(leaf["quota"]) - have, config)
    return in_leaf(outcome, leaf)


def in_leaf(outcome: TaskOutcome, leaf: dict[str, Any]) -> TaskOutcome:
    """`outcome` as the leaf's: its examples carry the leaf's path (rejected ones too, for the
    coverage report), at most the leaf's quota stays accepted, follow-ups stay in the leaf."""
    path = leaf["path"]
    for example in outcome.examples:
        example.topic = path
        if example.prompt_id == expansion.PROPOSE_ID:  # expansion's helpers' default
            example.prompt_id, example.prompt_version = PROPOSE_ID, PROMPT_VERSION
    outcome.followups = [{**followup, "leaf": leaf} for followup in outcome.followups]
    outcome.max_accepted_topic = (path, int(leaf["quota"]))
    outcome.summary = {"leaf": path, **outcome.summary}
    return outcome


async def language_config(
    task: TaskInput, ctx: MethodContext, demos: list[dict[str, Any]]
) -> filters.FilterConfig:
    """The job's filter settings: `params.languages`, else the dominant language of the
    dataset's seeds, else of the leaf's examples (none: no language check)."""
    seeds: list[str] = []
    if not task.params.get("languages"):
        seeds = expansion.seed_texts(await ctx.sample_demos(100, 0))
        seeds = seeds or [d["instruction"] for d in demos]
    return await asyncio.to_thread(filter_config, task.params, seeds)


# --- the taxonomy ----------------------------------------------------------------------------


async def propose_taxonomy(task: TaskInput, ctx: MethodContext) -> TaskOutcome:
    """Ask the teacher for the taxonomy (unusable replies asked again, up to
    :data:`PROPOSE_TRIES`); hand it to the queue for the skill, with the leaves' lanes."""
    params, payload = task.params, task.payload
    system = skill_system_prompt(task.skill)
    retry = int(payload.get("retry", 0))
    prompt = render(
        TAXONOMY_ID, PROMPT_VERSION, topics=params["topics"], subtopics=params["subtopics"]
    )
    results = []
    proposed: dict[str, Any] | None = None
    problem = ""
    for attempt in range(PROPOSE_TRIES):
        request = TeacherRequest(
            messages=[{"role": "system", "content": system}, {"role": "user", "content": prompt}],
            sampling=sampling_from(task.teacher, seed_offset=retry * PROPOSE_TRIES + attempt),
            json_schema=TAXONOMY_SCHEMA,
            request_id=f"{task.task_id}:taxonomy:{attempt}",
        )
        await ctx.check_cancel()
        [result] = await ctx.teacher.generate([request])
        await ctx.check_cancel()
        results.append(result)
        if to_retry([result]):  # a teacher failure: the task again, backed off
            error = first_error([result], [0]) or TeacherBadResponse("no generation returned")
            return TaskOutcome(
                followups=[{"propose": True, "retry": retry_followup(payload, 1, error)}],
                **_usage(results),
                summary={"propose": True, "failed_calls": 1},
                system_prompt=system,
            )
        if result.error is not None:  # refused for good (400/413/422): nothing to retry
            raise TaskFailed(f"the teacher refused the taxonomy request: {_describe(result.error)}")
        generation = result.generations[0]
        try:
            proposed = read_taxonomy(generation.text, params["topics"], params["subtopics"])
            break
        except ValueError as exc:
            if generation.finish_reason == "length":
                raise TaskFailed(
                    f"the taxonomy proposal was cut at max_tokens "
                    f"({task.teacher.get('max_tokens')}): raise teacher.max_tokens or ask for "
                    "fewer topics or subtopics"
                ) from exc
            problem = str(exc).splitlines()[0][:300]
    if proposed is None:
        raise TaskFailed(f"no usable taxonomy in {PROPOSE_TRIES} proposals; the last: {problem}")
    leaves = taxonomy.leaf_quotas(proposed, params["quota_per_leaf"])
    summary = {
        "propose": True,
        "topics": len(proposed["topics"]),
        "leaves": len(leaves),
        "tries": len(results),
    }
    if params.get("review"):
        return TaskOutcome(
            taxonomy=proposed,
            total=0,
            stop_reason=REVIEW,
            **_usage(results),
            summary=summary,
            system_prompt=system,
        )
    return TaskOutcome(
        taxonomy=proposed,
        total=sum(leaf["quota"] for leaf in leaves),
        followups=[{"leaf": leaf, "round": 0} for leaf in leaves],
        **_usage(results),
        summary=summary,
        system_prompt=system,
    )


def read_taxonomy(text: str, topics: int, subtopics: int) -> dict[str, Any]:
    """The taxonomy in a reply: at most `topics` topics of at most `subtopics` subtopics each
    (extras dropped), names cleaned ("/" -> "-", whitespace collapsed), repeated or blank names
    dropped, no quotas (the job's ``quota_per_leaf`` applies); validated as
    :class:`app.taxonomy.Taxonomy`. Raises ValueError saying what is wrong."""
    data = load_json(text)
    if not isinstance(data, dict) or not isinstance(data.get("topics"), list):
        raise ValueError('not a JSON object {"topics": [...]}')
    nodes = _nodes(data["topics"], topics, subtopics)
    return taxonomy.Taxonomy.model_validate({"topics": nodes}).model_dump()


def _nodes(items: list[Any], limit: int, children: int | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for item in items:
        node = {"name": item} if isinstance(item, str) else item
        if not isinstance(node, dict) or not isinstance(node.get("name"), str):
            continue
        name = " ".join(node["name"].replace(taxonomy.SEPARATOR, "-").split())[:200].strip()
        if not name or name.lower() in seen:
            continue
        seen.add(name.lower())
        description = node.get("description")
        kept: dict[str, Any] = {
            "name": name,
            "description": description.strip()[:2000] if isinstance(description, str) else "",
        }
        subtopics = node.get("subtopics")
        if children is not None and isinstance(subtopics, list):
            kept["subtopics"] = _nodes(subtopics, children, None)
        out.append(kept)
        if len(out) == limit:
            break
    return out


def _usage(results: list[Any]) -> dict[str, Any]:
    prompt_tokens, completion_tokens, teacher_seconds = usage_totals(results)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "teacher_seconds": teacher_seconds,
    }


def _describe(error: TeacherError) -> str:
    return f"{type(error).__name__}: {error.message}"
