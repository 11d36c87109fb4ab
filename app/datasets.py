"""Datasets and skills of a tenant: create, get, list; another tenant's resource is not found."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app import paging
from app.errors import Conflict, NotFound
from app.models import EXAMPLE_STATUSES, ORIGINS, Dataset, Example, Skill


async def add_dataset(
    *, session: AsyncSession, tenant_id: uuid.UUID, name: str, description: str
) -> Dataset:
    dataset = Dataset(tenant_id=tenant_id, name=name, description=description)
    try:
        async with session.begin_nested():
            session.add(dataset)
            await session.flush()
    except IntegrityError:
        raise Conflict(f"a dataset named {name!r} already exists") from None
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


async def list_skills(
    *, session: AsyncSession, tenant_id: uuid.UUID, limit: int, cursor: str | None
) -> tuple[list[Skill], str | None]:
    stmt = select(Skill).where(Skill.tenant_id == tenant_id)
    return await paging.page(session, stmt, Skill, limit, cursor)
