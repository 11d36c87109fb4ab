"""Reads the pages need that the API has no function for (each checks the tenant)."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app import job_counters
from app.errors import NotFound
from app.models import Dataset, Example, Job


async def get_example(
    *, session: AsyncSession, tenant_id: uuid.UUID, example_id: uuid.UUID
) -> tuple[Example, Dataset]:
    """An example of the tenant with its dataset; another tenant's is not found."""
    row = (
        await session.execute(
            select(Example, Dataset)
            .join(Dataset, Dataset.id == Example.dataset_id)
            .where(Example.id == example_id, Dataset.tenant_id == tenant_id)
        )
    ).first()
    if row is None:
        raise NotFound(f"example {example_id} not found")
    return row[0], row[1]


async def reject_reasons(*, session: AsyncSession, dataset_id: uuid.UUID) -> dict[str, int]:
    """The rejection reasons found in a dataset, with how many examples have each."""
    rows = await session.execute(
        select(Example.reject_reason, func.count())
        .where(Example.dataset_id == dataset_id, Example.status == "rejected")
        .group_by(Example.reject_reason)
        .order_by(func.count().desc(), Example.reject_reason)
    )
    return {reason or "unknown": n for reason, n in rows}


async def jobs_of(*, session: AsyncSession, dataset_id: uuid.UUID, limit: int) -> list[Job]:
    """The dataset's latest jobs, newest first."""
    rows = await session.scalars(
        select(Job).where(Job.dataset_id == dataset_id).order_by(Job.id.desc()).limit(limit)
    )
    found = list(rows.all())
    await job_counters.load(session, found)
    return found


async def dataset_names(
    *, session: AsyncSession, tenant_id: uuid.UUID, dataset_ids: list[uuid.UUID]
) -> dict[uuid.UUID, str]:
    if not dataset_ids:
        return {}
    rows = await session.execute(
        select(Dataset.id, Dataset.name).where(
            Dataset.tenant_id == tenant_id, Dataset.id.in_(set(dataset_ids))
        )
    )
    return {dataset_id: name for dataset_id, name in rows}
