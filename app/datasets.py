"""Datasets and skills of a tenant: create, get, list; another tenant's resource is not found."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app import paging
from app.errors import Conflict, NotFound, ValidationFailed
from app.models import (
    EXAMPLE_STATUSES,
    ORIGINS,
    Dataset,
    Example,
    Job,
    PreferencePair,
    Skill,
    SoftTarget,
    Task,
    TaskEvent,
)

ACTIVE_STATUSES = ("queued", "running")


async def add_dataset(
    *,
    session: AsyncSession,
    tenant_id: uuid.UUID,
    name: str,
    description: str,
    license: str | None = None,
) -> Dataset:
    dataset = Dataset(tenant_id=tenant_id, name=name, description=description, license=license)
    try:
        async with session.begin_nested():
            session.add(dataset)
            await session.flush()
    except IntegrityError:
        raise Conflict(f"a dataset named {name!r} already exists") from None
    return dataset


async def update_dataset(
    *,
    session: AsyncSession,
    tenant_id: uuid.UUID,
    dataset_id: uuid.UUID,
    changes: dict[str, str | None],
) -> Dataset:
    """Set `changes` (description, license) on the tenant's dataset; a null description is
    refused (it is text, empty at most)."""
    dataset = await get_dataset(session=session, tenant_id=tenant_id, dataset_id=dataset_id)
    if "description" in changes:
        if changes["description"] is None:
            raise ValidationFailed('description: must be text (use "" to clear it)')
        dataset.description = changes["description"]
    if "license" in changes:
        dataset.license = changes["license"]
    await session.flush()
    return dataset


async def get_dataset(
    *, session: AsyncSession, tenant_id: uuid.UUID, dataset_id: uuid.UUID
) -> Dataset:
    dataset = await session.get(Dataset, dataset_id)
    if dataset is None or dataset.tenant_id != tenant_id:
        raise NotFound(f"dataset {dataset_id} not found")
    return dataset


async def list_datasets(
    *, session: AsyncSession, tenant_id: uuid.UUID, limit: int, cursor: str | None
) -> tuple[list[Dataset], str | None]:
    stmt = select(Dataset).where(Dataset.tenant_id == tenant_id)
    return await paging.page(session, stmt, Dataset, limit, cursor)


async def _active_job(session: AsyncSession, *condition: Any) -> Job | None:
    return await session.scalar(
        select(Job).where(*condition, Job.status.in_(ACTIVE_STATUSES)).order_by(Job.id).limit(1)
    )


async def delete_dataset(
    *, session: AsyncSession, tenant_id: uuid.UUID, dataset_id: uuid.UUID
) -> None:
    """Delete a dataset with its examples, soft targets, preference pairs, jobs and their tasks,
    in the caller's transaction; refused (409) while one of its jobs is queued or running."""
    await get_dataset(session=session, tenant_id=tenant_id, dataset_id=dataset_id)
    active = await _active_job(session, Job.dataset_id == dataset_id)
    if active is not None:
        raise Conflict(
            f"job {active.id} of this dataset is {active.status}: cancel job {active.id} first "
            f"(POST /v1/jobs/{active.id}/cancel), then delete the dataset once it has stopped"
        )
    jobs = select(Job.id).where(Job.dataset_id == dataset_id).scalar_subquery()
    # children first: correct whether or not the database cascades (SQLite needs the pragma)
    for stmt in (
        delete(PreferencePair).where(PreferencePair.dataset_id == dataset_id),
        delete(SoftTarget).where(SoftTarget.dataset_id == dataset_id),
        delete(Example).where(Example.dataset_id == dataset_id),
        delete(TaskEvent).where(TaskEvent.job_id.in_(jobs)),
        delete(Task).where(Task.job_id.in_(jobs)),
        delete(Job).where(Job.dataset_id == dataset_id),
        delete(Dataset).where(Dataset.id == dataset_id),
    ):
        await session.execute(stmt)


async def count_examples(
    *, session: AsyncSession, dataset_id: uuid.UUID
) -> dict[str, dict[str, int]]:
    """Examples of a dataset by origin, then by status (zeros included)."""
    return (await count_examples_of(session=session, dataset_ids=[dataset_id]))[dataset_id]


async def count_examples_of(
    *, session: AsyncSession, dataset_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, dict[str, dict[str, int]]]:
    """:func:`count_examples` for several datasets (a page of them) in one grouped query."""
    counts = {
        dataset_id: {origin: dict.fromkeys(EXAMPLE_STATUSES, 0) for origin in ORIGINS}
        for dataset_id in dataset_ids
    }
    if not counts:
        return counts
    rows = await session.execute(
        select(Example.dataset_id, Example.origin, Example.status, func.count())
        .where(Example.dataset_id.in_(list(counts)))
        .group_by(Example.dataset_id, Example.origin, Example.status)
    )
    for dataset_id, origin, status, n in rows:
        counts[dataset_id].setdefault(origin, dict.fromkeys(EXAMPLE_STATUSES, 0))[status] = n
    return counts


async def add_skill(*, session: AsyncSession, tenant_id: uuid.UUID, **fields: Any) -> Skill:
    skill = Skill(tenant_id=tenant_id, **fields)
    session.add(skill)
    await session.flush()
    return skill


async def get_skill(*, session: AsyncSession, tenant_id: uuid.UUID, skill_id: uuid.UUID) -> Skill:
    skill = await session.get(Skill, skill_id)
    if skill is None or skill.tenant_id != tenant_id:
        raise NotFound(f"skill {skill_id} not found")
    return skill


async def update_skill(
    *, session: AsyncSession, tenant_id: uuid.UUID, skill_id: uuid.UUID, fields: dict[str, Any]
) -> Skill:
    """Replace the fields given (a PATCH); jobs already created keep what they froze."""
    skill = await get_skill(session=session, tenant_id=tenant_id, skill_id=skill_id)
    for name, value in fields.items():
        setattr(skill, name, value)
    await session.flush()
    return skill


async def delete_skill(*, session: AsyncSession, tenant_id: uuid.UUID, skill_id: uuid.UUID) -> None:
    """Delete a skill spec; refused (409) while a queued or running job uses it. Finished jobs
    keep the spec they froze (`params.skill_spec`); their `skill_id` becomes null."""
    await get_skill(session=session, tenant_id=tenant_id, skill_id=skill_id)
    active = await _active_job(session, Job.skill_id == skill_id)
    if active is not None:
        raise Conflict(
            f"job {active.id} uses this skill and is {active.status}: cancel job {active.id} "
            "first, or wait for it to finish"
        )
    # the foreign key sets it null too; said here so it holds whatever the database enforces
    await session.execute(update(Job).where(Job.skill_id == skill_id).values(skill_id=None))
    await session.execute(delete(Skill).where(Skill.id == skill_id))


async def list_skills(
    *, session: AsyncSession, tenant_id: uuid.UUID, limit: int, cursor: str | None
) -> tuple[list[Skill], str | None]:
    stmt = select(Skill).where(Skill.tenant_id == tenant_id)
    return await paging.page(session, stmt, Skill, limit, cursor)
