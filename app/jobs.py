"""Jobs: create (validated params, first tasks planned, one transaction), read, list, cancel."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app import benchmarks, datasets, export, job_counters, kinds, paging, queue, taxonomy
from app.config import Settings
from app.errors import Conflict, NotFound, RateLimited, ValidationFailed
from app.examples import answers_itself, is_current_child
from app.hashing import content_hash
from app.models import Dataset, Example, Job, Skill, SoftTarget
from app.schemas import AnyJobCreate, JobHealth, JobRead, Progress

SKILL_TEXT = ("name", "description", "domain", "guidelines", "rubric", "output_format")
NOTHING_TO_LABEL = "nothing to label: every prompt has an answer (relabel=true answers again)"
NO_PROMPTS = "nothing to label: the dataset has no examples (upload seeds first)"
NO_SEEDS = "expansion needs seed examples in the dataset: upload seeds first"
NOTHING_TO_SCORE = (
    "nothing to score: every example with a response has soft targets (rescore=true scores again)"
)
NO_RESPONSES = (
    "nothing to score: the dataset has no accepted example with a response (upload samples "
    "with outputs first)"
)
NO_PROMPTS_TO_JUDGE = "nothing to judge: the dataset has no prompts (upload seeds first)"
NO_OPENINGS = "nothing to open a dialogue with: the dataset has no prompts (upload seeds first)"
NOTHING_TO_EVOLVE = "nothing to evolve: the dataset has no instructions (upload seeds first)"
NOTHING_TO_JUDGE = (
    "nothing to judge: no picked prompt has a response to judge (samples=0 judges only the "
    "responses the dataset holds; pairwise needs two)"
)
_IN_CHUNK = 500
_STREAM_ROWS = 5000


async def create_job(
    *,
    session: AsyncSession,
    tenant_id: uuid.UUID,
    request: AnyJobCreate,
    settings: Settings,
) -> Job:
    """Validate the request, plan the first tasks and enqueue them with the job."""
    params = request.params
    queued = await session.scalar(
        select(func.count())
        .select_from(Job)
        .where(Job.tenant_id == tenant_id, Job.status == "queued")
    )
    if (queued or 0) >= settings.max_queued_jobs_per_tenant:
        raise RateLimited(
            f"{queued} jobs are already queued (at most {settings.max_queued_jobs_per_tenant}); "
            "wait for some to start or cancel them",
            headers={"Retry-After": "30"},
        )
    dataset = await datasets.get_dataset(
        session=session, tenant_id=tenant_id, dataset_id=request.dataset_id
    )
    frozen: dict[str, Any] = {}
    if request.skill_id is not None:
        skill = await datasets.get_skill(
            session=session, tenant_id=tenant_id, skill_id=request.skill_id
        )
        # the job keeps the skill it started with: a later PATCH changes later jobs only, and
        # every worker sees the same spec (the curation kind freezes the taxonomy's leaves)
        frozen["skill_spec"] = {"id": str(skill.id), **{f: getattr(skill, f) for f in SKILL_TEXT}}
    teacher = request.teacher or kinds.TeacherSpec()
    _check_rationale(params, teacher)
    # the benchmarks the job checks against: those named, then the tenant's defaults (a scoring
    # job writes no examples: it has none)
    named = getattr(params, "decontaminate", None)
    decontaminate = (
        []
        if named is None
        else await benchmarks.resolve(
            session=session,
            tenant_id=tenant_id,
            named=named,
            loc=["body", "params", "decontaminate"],
        )
    )
    job = Job(
        tenant_id=tenant_id,
        dataset_id=dataset.id,
        skill_id=request.skill_id,
        kind=request.kind,
        params={
            **params.model_dump(mode="json"),
            **({} if named is None else {"decontaminate": [str(b) for b in decontaminate]}),
            **frozen,
        },
        teacher=teacher.model_dump(mode="json"),
        teacher_model=teacher.model,
        priority=request.priority,
        status="queued",
    )
    payloads: list[dict[str, Any]]
    if isinstance(params, kinds.LabelingParams):
        ids = await _examples_to_label(session, dataset.id, params)
        chunk = params.chunk_size or settings.labeling_chunk_size
        payloads = [
            {"example_ids": [str(i) for i in ids[start : start + chunk]]}
            for start in range(0, len(ids), chunk)
        ]
        job.total = len(ids)
        if not ids:  # the job succeeds at once (queue.enqueue_job)
            job.stop_reason = NOTHING_TO_LABEL
    elif isinstance(params, kinds.ExpansionParams):
        if request.skill_id is None:
            job.params = {**job.params, "skill_from_dataset": _skill_from_dataset(dataset)}
        await _require_examples(session, dataset.id, NO_SEEDS)
        # one chain of rounds per lane: lane l runs rounds l, l + P, l + 2P ...
        lanes = min(params.parallel_rounds, params.max_rounds)
        payloads = [{"round": lane} for lane in range(lanes)]
        job.total = params.target
    elif isinstance(params, kinds.ScoringParams):
        payloads, job.total = await _plan_scoring(session, dataset.id, params, settings)
        if not payloads:
            job.stop_reason = NOTHING_TO_SCORE
    elif isinstance(params, kinds.FeedbackParams):
        payloads, job.total = await _plan_feedback(session, dataset.id, params, settings)
    elif isinstance(params, kinds.EvolParams):
        payloads, job.total = await _plan_evol(session, dataset.id, params, settings)
    elif isinstance(params, kinds.DialogueParams):
        payloads, job.total = await _plan_dialogue(session, request, params, settings)
    elif isinstance(params, kinds.CurationParams):
        payloads, job.total = await _plan_curation(session, request, params, settings)
    else:  # pragma: no cover - kinds.KINDS and this function must name the same kinds
        raise AssertionError(f"no planner for kind {request.kind}")
    await queue.enqueue_job(
        session=session, job=job, payloads=payloads, max_attempts=settings.task_max_attempts
    )
    return job


async def _examples_to_label(
    session: AsyncSession, dataset_id: uuid.UUID, params: kinds.LabelingParams
) -> list[uuid.UUID]:
    """The prompts the job answers, in id order.

    A prompt is a root example (not itself an answer) that is not rejected. Without `relabel`:
    those with no current answer (neither an accepted output of their own nor an accepted
    labeled answer). With `relabel`: every prompt; the new answers replace the current ones at
    commit. An answer's id in `example_ids` stands for its prompt.
    """
    prompt = and_(
        Example.dataset_id == dataset_id,
        Example.source_id.is_(None),
        Example.status != "rejected",
    )
    answer = aliased(Example)
    unanswered = and_(
        ~answers_itself(),
        ~exists().where(answer.source_id == Example.id, is_current_child(answer)),
    )
    if params.example_ids is None:
        stmt = select(Example.id).where(prompt)
        if not params.relabel:
            stmt = stmt.where(unanswered)
        ids = list((await session.scalars(stmt.order_by(Example.id))).all())
        if not ids:
            await _require_examples(session, dataset_id, NO_PROMPTS)
        return ids
    wanted = list(dict.fromkeys(params.example_ids))
    # an answer stands for its prompt
    named: dict[uuid.UUID, uuid.UUID] = {}
    for start in range(0, len(wanted), _IN_CHUNK):
        rows = await session.execute(
            select(Example.id, Example.source_id).where(
                Example.dataset_id == dataset_id, Example.id.in_(wanted[start : start + _IN_CHUNK])
            )
        )
        named.update({row.id: row.source_id or row.id for row in rows})
    prompts = list(dict.fromkeys(named[i] for i in wanted if i in named))
    eligible: set[uuid.UUID] = set()
    for start in range(0, len(prompts), _IN_CHUNK):
        stmt = select(Example.id).where(prompt, Example.id.in_(prompts[start : start + _IN_CHUNK]))
        if not params.relabel:
            stmt = stmt.where(unanswered)
        eligible.update((await session.scalars(stmt)).all())
    refused = [i for i in wanted if named.get(i) not in eligible]
    if refused:
        raise ValidationFailed(
            f"{len(refused)} example_ids are not in the dataset, rejected, or answered already "
            "(pass relabel=true to answer again)",
            details=[
                {"loc": ["body", "params", "example_ids"], "msg": f"not eligible: {m}"}
                for m in refused[:20]
            ],
        )
    return sorted(eligible)


async def _plan_scoring(
    session: AsyncSession,
    dataset_id: uuid.UUID,
    params: kinds.ScoringParams,
    settings: Settings,
) -> tuple[list[dict[str, Any]], int]:
    """The tasks of a scoring job (chunks of example ids, in id order) and its total.

    Eligible: accepted examples that no relabel replaced, with a response (a non-blank output;
    a conversation's final assistant turn is its output) and, unless `rescore`, no soft targets
    yet. Named `example_ids` that are not eligible are a 422 naming them; a dataset without any
    example with a response is a 409.
    """
    scorable = and_(
        Example.dataset_id == dataset_id,
        Example.status == "accepted",
        Example.superseded_by.is_(None),
        Example.output.is_not(None),
        func.trim(Example.output) != "",
    )
    if not params.rescore:
        scorable = and_(scorable, ~exists().where(SoftTarget.example_id == Example.id))
    if params.example_ids is None:
        stmt = select(Example.id).where(scorable).order_by(Example.id)
        ids = list((await session.scalars(stmt)).all())
        if not ids:
            found = await session.scalar(
                select(Example.id)
                .where(
                    Example.dataset_id == dataset_id,
                    Example.status == "accepted",
                    Example.output.is_not(None),
                    func.trim(Example.output) != "",
                )
                .limit(1)
            )
            if found is None:
                raise Conflict(NO_RESPONSES)
    else:
        wanted = list(dict.fromkeys(params.example_ids))
        eligible: set[uuid.UUID] = set()
        for start in range(0, len(wanted), _IN_CHUNK):
            chunk = wanted[start : start + _IN_CHUNK]
            stmt = select(Example.id).where(scorable, Example.id.in_(chunk))
            eligible.update((await session.scalars(stmt)).all())
        refused = [i for i in wanted if i not in eligible]
        if refused:
            raise ValidationFailed(
                f"{len(refused)} example_ids are not in the dataset, not accepted, without a "
                "response, or scored already (pass rescore=true to score again)",
                details=[
                    {"loc": ["body", "params", "example_ids"], "msg": f"not eligible: {i}"}
                    for i in refused[:20]
                ],
            )
        ids = sorted(eligible)
    chunk_size = params.chunk_size or settings.labeling_chunk_size
    payloads = [
        {"example_ids": [str(i) for i in ids[start : start + chunk_size]]}
        for start in range(0, len(ids), chunk_size)
    ]
    return payloads, len(ids)


async def _plan_feedback(
    session: AsyncSession,
    dataset_id: uuid.UUID,
    params: kinds.FeedbackParams,
    settings: Settings,
) -> tuple[list[dict[str, Any]], int]:
    """The tasks of a feedback job (chunks of prompt groups, in prompt order) and its total
    (the number of groups).

    A prompt is a root example (no ``source_id``) that is accepted or pending. Its responses:
    its own output when it answers itself, the current answers pointing at it, and the
    ``candidate`` responses of earlier feedback jobs. Roots whose prompts are the same text
    (:func:`prompt_key`: same instruction and input, or the same conversation up to its last
    user turn; normalised as exact duplicates are) are one group: its ``prompt_id`` is the
    lowest root id and every root's responses are its responses. `example_ids` and `origin`
    pick groups (an answer's or candidate's id stands for its prompt; a group is picked when
    one of its roots is of `origin`), and a picked group brings all its responses. With
    ``existing=false`` no response of the dataset is judged (only the teacher's samples). A
    group with fewer responses than the mode needs (1 pointwise, 2 pairwise, samples included)
    is left out; 409 when none is left.
    """
    if not params.existing and params.samples == 0:
        raise ValidationFailed(
            "nothing would be judged: existing=false and samples=0",
            details=[
                {"loc": ["body", "params", "samples"], "msg": "at least 1 when existing=false"}
            ],
        )
    # root id -> its group's key; group key -> its roots, in id order
    group_of: dict[uuid.UUID, str] = {}
    roots: dict[str, list[uuid.UUID]] = {}
    origins: dict[str, set[str]] = {}
    responses: dict[str, list[uuid.UUID]] = {}
    stmt = (
        select(
            Example.id,
            Example.origin,
            Example.instruction,
            Example.input,
            Example.messages,
            answers_itself().label("answers_itself"),
        )
        .where(
            Example.dataset_id == dataset_id,
            Example.source_id.is_(None),
            Example.status.in_(("accepted", "pending")),
        )
        .order_by(Example.id)
        .execution_options(yield_per=_STREAM_ROWS)
    )
    # streamed: only (id, group key) per root stays in memory, not the prompts' texts
    async for row in (await session.stream(stmt)).mappings():
        key = prompt_key(row)
        group_of[row["id"]] = key
        roots.setdefault(key, []).append(row["id"])
        origins.setdefault(key, set()).add(row["origin"])
        if row["answers_itself"]:
            responses.setdefault(key, []).append(row["id"])
    if not group_of:
        raise Conflict(NO_PROMPTS_TO_JUDGE)
    if params.existing:
        candidate = and_(Example.source_id.is_not(None), Example.status == "candidate")
        answers = select(Example.id, Example.source_id).where(
            Example.dataset_id == dataset_id, or_(is_current_child(), candidate)
        )
        answers = answers.execution_options(yield_per=_STREAM_ROWS)
        async for response_id, source_id in (await session.stream(answers)).tuples():
            group = group_of.get(source_id) if source_id is not None else None
            if group is not None:  # not the answer of a rejected prompt
                responses.setdefault(group, []).append(response_id)
    else:
        responses = {}
    picked = set(roots)
    if params.example_ids is not None:
        picked = await _named_groups(session, dataset_id, params.example_ids, group_of)
    if params.origin is not None:
        picked = {key for key in picked if params.origin in origins[key]}
    needed = 2 if params.mode == "pairwise" else 1
    groups = sorted(
        (roots[key][0], sorted(responses.get(key, [])))
        for key in picked
        if len(responses.get(key, [])) + params.samples >= needed
    )
    if not groups:
        raise Conflict(NOTHING_TO_JUDGE)
    chunk = params.chunk_size or settings.feedback_chunk_size
    payloads = [
        {
            "groups": [
                {"prompt_id": str(prompt), "responses": [str(r) for r in group]}
                for prompt, group in groups[start : start + chunk]
            ]
        }
        for start in range(0, len(groups), chunk)
    ]
    return payloads, len(groups)


def prompt_key(row: Any) -> str:
    """What makes two root examples one prompt: the normalised hash (as exact duplicates are
    told apart) of their prompt messages (:func:`app.export.prompt_messages`), so the same
    instruction and input, or the same conversation up to its last user turn, is one prompt."""
    return content_hash(None, None, None, export.prompt_messages(row))


async def _named_groups(
    session: AsyncSession,
    dataset_id: uuid.UUID,
    example_ids: list[uuid.UUID],
    group_of: dict[uuid.UUID, str],
) -> set[str]:
    """The groups of the prompts `example_ids` name (an answer or candidate stands for its
    prompt); a 422 naming the ids that are not in the dataset or whose prompt is rejected."""
    wanted = list(dict.fromkeys(example_ids))
    root_of: dict[uuid.UUID, uuid.UUID] = {}
    for start in range(0, len(wanted), _IN_CHUNK):
        rows = await session.execute(
            select(Example.id, Example.source_id).where(
                Example.dataset_id == dataset_id, Example.id.in_(wanted[start : start + _IN_CHUNK])
            )
        )
        root_of.update({row.id: row.source_id or row.id for row in rows})
    refused = [i for i in wanted if root_of.get(i) not in group_of]
    if refused:
        raise ValidationFailed(
            f"{len(refused)} example_ids are not in the dataset or their prompt is rejected",
            details=[
                {"loc": ["body", "params", "example_ids"], "msg": f"not a prompt: {i}"}
                for i in refused[:20]
            ],
        )
    return {group_of[root_of[i]] for i in wanted}


async def _plan_dialogue(
    session: AsyncSession,
    request: AnyJobCreate,
    params: kinds.DialogueParams,
    settings: Settings,
) -> tuple[list[dict[str, Any]], int]:
    """The tasks of a dialogue job (chunks of conversations: `conversations_per_prompt` per
    opening, in opening order) and its total (the conversations).

    Openings: the dataset's prompts (root examples that are not rejected and that no dialogue
    job wrote; 409 when there are none), or those `example_ids` name (an answer's id stands for
    its prompt; 422 naming the ids that are not a prompt of the dataset); with `from_taxonomy`,
    the leaves of the skill's taxonomy as they are now (422 without a skill, or for a skill
    without a taxonomy).
    """
    loc = ["body", "params"]
    if params.min_turns > params.turns:
        raise ValidationFailed(
            f"min_turns ({params.min_turns}) is more than turns ({params.turns}): no "
            "conversation could be kept",
            details=[{"loc": [*loc, "min_turns"], "msg": f"at most turns ({params.turns})"}],
        )
    openings: list[dict[str, Any]]
    if params.from_taxonomy:
        if params.example_ids is not None:
            raise ValidationFailed(
                "example_ids and from_taxonomy exclude each other",
                details=[{"loc": [*loc, "example_ids"], "msg": "not with from_taxonomy"}],
            )
        if request.skill_id is None:
            raise ValidationFailed(
                "from_taxonomy needs a skill with a taxonomy: pass skill_id",
                details=[{"loc": ["body", "skill_id"], "msg": "required with from_taxonomy"}],
            )
        skill = await session.get(Skill, request.skill_id)
        leaves = taxonomy.leaves(skill.taxonomy) if skill is not None and skill.taxonomy else []
        if not leaves:
            raise ValidationFailed(
                "the skill has no taxonomy: give it one (PATCH /v1/skills/{id}) first",
                details=[{"loc": [*loc, "from_taxonomy"], "msg": "the skill has no taxonomy"}],
            )
        openings = [
            {"topic": leaf["path"], **({"description": d} if (d := leaf["description"]) else {})}
            for leaf in leaves
        ]
    else:
        ids = await _dialogue_openings(session, request.dataset_id, params.example_ids)
        openings = [{"opening_id": str(i)} for i in ids]
    items = [{**o, "n": n} for o in openings for n in range(params.conversations_per_prompt)]
    chunk = params.chunk_size or settings.labeling_chunk_size
    payloads = [
        {"conversations": items[start : start + chunk]} for start in range(0, len(items), chunk)
    ]
    return payloads, len(items)


async def _dialogue_openings(
    session: AsyncSession,
    dataset_id: uuid.UUID,
    example_ids: list[uuid.UUID] | None,
    empty: str = NO_OPENINGS,
) -> list[uuid.UUID]:
    """The prompts a dialogue job opens from, in id order (see :func:`_plan_dialogue`); an evol
    job's roots too (409 `empty` when there are none)."""
    prompt = and_(
        Example.dataset_id == dataset_id,
        Example.source_id.is_(None),
        Example.status != "rejected",
    )
    if example_ids is None:
        not_a_dialogue = or_(Example.method.is_(None), Example.method != "dialogue")
        stmt = select(Example.id).where(prompt, not_a_dialogue).order_by(Example.id)
        ids = list((await session.scalars(stmt)).all())
        if not ids:
            raise Conflict(empty)
        return ids
    wanted = list(dict.fromkeys(example_ids))
    root_of: dict[uuid.UUID, uuid.UUID] = {}  # an answer stands for its prompt
    for start in range(0, len(wanted), _IN_CHUNK):
        rows = await session.execute(
            select(Example.id, Example.source_id).where(
                Example.dataset_id == dataset_id, Example.id.in_(wanted[start : start + _IN_CHUNK])
            )
        )
        root_of.update({row.id: row.source_id or row.id for row in rows})
    roots = list(dict.fromkeys(root_of.values()))
    eligible: set[uuid.UUID] = set()
    for start in range(0, len(roots), _IN_CHUNK):
        stmt = select(Example.id).where(prompt, Example.id.in_(roots[start : start + _IN_CHUNK]))
        eligible.update((await session.scalars(stmt)).all())
    refused = [i for i in wanted if root_of.get(i) not in eligible]
    if refused:
        raise ValidationFailed(
            f"{len(refused)} example_ids are not in the dataset or their prompt is rejected",
            details=[
                {"loc": ["body", "params", "example_ids"], "msg": f"not a prompt: {i}"}
                for i in refused[:20]
            ],
        )
    return sorted(dict.fromkeys(root_of[i] for i in wanted))


async def _plan_evol(
    session: AsyncSession,
    dataset_id: uuid.UUID,
    params: kinds.EvolParams,
    settings: Settings,
) -> tuple[list[dict[str, Any]], int]:
    """The first tasks of an evol job (generation 1 of chunks of lineages, in root order) and
    its total: lineages x generations, every step counted once whatever became of it.

    A lineage starts at a root: a prompt of the dataset (a root example that is not rejected
    and that no dialogue job wrote; 409 when there are none), or one `example_ids` names (an
    answer's id stands for its prompt; 422 naming those that are not a prompt of the dataset).
    Each task hands the next generation of its lineages to a follow-up task.
    """
    roots = await _dialogue_openings(session, dataset_id, params.example_ids, NOTHING_TO_EVOLVE)
    chunk = params.chunk_size or settings.labeling_chunk_size
    lineages = [{"root": str(root), "chain": []} for root in roots]
    payloads = [
        {"generation": 1, "lineages": lineages[start : start + chunk]}
        for start in range(0, len(lineages), chunk)
    ]
    return payloads, len(roots) * params.generations


NO_TAXONOMY = "the skill has no taxonomy: give one (PATCH /v1/skills/{id}) or pass propose=true"


async def _plan_curation(
    session: AsyncSession,
    request: AnyJobCreate,
    params: kinds.CurationParams,
    settings: Settings,
) -> tuple[list[dict[str, Any]], int]:
    """The first tasks of a curation job and its total (the sum of the leaves' quotas, exact).

    The job needs a skill (422 naming ``skill_id``). A skill with a taxonomy: its leaves are
    frozen with their quotas (the leaf's own, else ``quota_per_leaf``) into one lane of rounds
    per leaf, payload ``{"leaf": {"path", "description", "quota"}, "round": 0}``; a later edit
    of the skill changes nothing of the job. A skill without one: 422 unless ``propose``; with
    it, one task asks the teacher for a taxonomy and stores it on the skill, then (without
    ``review``) queues the leaves' lanes and sets the total (until then 0).
    """
    if request.skill_id is None:
        raise ValidationFailed(
            "a curation job needs a skill (its taxonomy says what to generate): pass skill_id",
            details=[{"loc": ["body", "skill_id"], "msg": "required for kind curation"}],
        )
    skill = await session.get(Skill, request.skill_id)
    stored = skill.taxonomy if skill is not None else None
    if not stored:
        if not params.propose:
            raise ValidationFailed(
                NO_TAXONOMY,
                details=[
                    {"loc": ["body", "params", "propose"], "msg": "the skill has no taxonomy"}
                ],
            )
        return [{"propose": True}], 0
    leaves = taxonomy.leaf_quotas(stored, params.quota_per_leaf)
    return [{"leaf": leaf, "round": 0} for leaf in leaves], sum(leaf["quota"] for leaf in leaves)


def _check_rationale(params: Any, teacher: kinds.TeacherSpec) -> None:
    """422 for a rationale job the answer call cannot serve: with soft targets (they would be
    of the JSON reply, not of the answer), or an expansion without its answer call."""
    if not getattr(params, "rationale", False):
        return
    if teacher.top_logprobs is not None:
        raise ValidationFailed(
            "rationale and teacher.top_logprobs exclude each other: the soft targets would be "
            "those of the JSON reply (rationale and answer), not of the answer",
            details=[{"loc": ["body", "params", "rationale"], "msg": "not with top_logprobs"}],
        )
    if isinstance(params, kinds.ExpansionParams) and not params.two_stage:
        raise ValidationFailed(
            "rationale needs two_stage: the answer call asks for the reasoning",
            details=[{"loc": ["body", "params", "rationale"], "msg": "needs two_stage=true"}],
        )
    if isinstance(params, kinds.EvolParams) and not params.answer:
        raise ValidationFailed(
            "rationale needs answer=true: the answer call asks for the reasoning",
            details=[{"loc": ["body", "params", "rationale"], "msg": "needs answer=true"}],
        )


def _skill_from_dataset(dataset: Dataset) -> dict[str, str]:
    """The skill an expansion job without `skill_id` asks for: the dataset's description.

    Stored in the job's params (`skill_from_dataset`), where the worker reads it as the skill
    spec, so the prompt is fixed when the job is created.
    """
    if not dataset.description.strip():
        raise ValidationFailed(
            "expansion needs a skill: pass skill_id, or give the dataset a description",
            details=[
                {"loc": ["body", "skill_id"], "msg": "required: the dataset has no description"}
            ],
        )
    return {"name": dataset.name, "description": dataset.description}


async def _require_examples(session: AsyncSession, dataset_id: uuid.UUID, message: str) -> None:
    """A 409 with `message` unless the dataset holds an example that is not rejected."""
    found = await session.scalar(
        select(Example.id)
        .where(Example.dataset_id == dataset_id, Example.status != "rejected")
        .limit(1)
    )
    if found is None:
        raise Conflict(message)


async def get_job(*, session: AsyncSession, tenant_id: uuid.UUID, job_id: uuid.UUID) -> Job:
    job = await session.get(Job, job_id, populate_existing=True)
    if job is None or job.tenant_id != tenant_id:
        raise NotFound(f"job {job_id} not found")
    await job_counters.load(session, [job])
    return job


async def list_jobs(
    *,
    session: AsyncSession,
    tenant_id: uuid.UUID,
    dataset_id: uuid.UUID | None,
    status: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Job], str | None]:
    stmt = select(Job).where(Job.tenant_id == tenant_id)
    if dataset_id is not None:
        stmt = stmt.where(Job.dataset_id == dataset_id)
    if status is not None:
        stmt = stmt.where(Job.status == status)
    rows, next_cursor = await paging.page(session, stmt, Job, limit, cursor)
    await job_counters.load(session, rows)
    return rows, next_cursor


async def cancel_job(*, session: AsyncSession, tenant_id: uuid.UUID, job_id: uuid.UUID) -> Job:
    await get_job(session=session, tenant_id=tenant_id, job_id=job_id)
    return await queue.cancel_job(session=session, job_id=job_id)


def job_read(job: Job, health: JobHealth) -> JobRead:
    fields: dict[str, Any] = {
        name: getattr(job, name)
        for name in (
            "id", "dataset_id", "skill_id", "kind", "status", "params", "teacher", "error",
            "stop_reason", "cancel_requested", "created_at", "started_at", "finished_at",
            "priority", "tokenizer",
        )
    }  # fmt: skip
    progress = Progress(
        total=job.total,
        completed=job.completed,
        accepted=job.accepted,
        rejected=job.rejected,
        failed=job.failed,
    )
    return JobRead(**fields, progress=progress, health=health)
