"""/v1/datasets: create, list, read, delete; seed uploads (JSON or JSONL), example listing and
the dataset card."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from app import cards, datasets, examples
from app.api.deps import DbDep, SettingsDep, TenantDep
from app.api.responses import ERRORS
from app.models import Origin
from app.outcomes import ExampleStatus
from app.schemas import (
    Cursor,
    DatasetCreate,
    DatasetRead,
    DatasetUpdate,
    ExampleRead,
    Page,
    SeedsResult,
    SeedsUpload,
)

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], responses=ERRORS)

Limit = Annotated[int, Query(ge=1, le=1000)]


def _read(dataset, counts=None) -> DatasetRead:  # type: ignore[no-untyped-def]
    total = sum(sum(by_status.values()) for by_status in counts.values()) if counts else None
    return DatasetRead(
        id=dataset.id,
        name=dataset.name,
        description=dataset.description,
        license=dataset.license,
        created_at=dataset.created_at,
        counts=counts,
        total_examples=total,
    )


@router.post("", status_code=201)
async def create_dataset(body: DatasetCreate, db: DbDep, tenant: TenantDep) -> DatasetRead:
    """Create a dataset (names are unique per tenant)."""
    async with db.transaction() as session:
        dataset = await datasets.add_dataset(
            session=session,
            tenant_id=tenant,
            name=body.name,
            description=body.description,
            license=body.license,
        )
        counts = await datasets.count_examples(session=session, dataset_id=dataset.id)
    return _read(dataset, counts)


@router.get("")
async def list_datasets(
    db: DbDep, tenant: TenantDep, limit: Limit = 100, cursor: Cursor = None
) -> Page[DatasetRead]:
    """The tenant's datasets, oldest first, each with its examples counted."""
    async with db.reading() as session:
        rows, next_cursor = await datasets.list_datasets(
            session=session, tenant_id=tenant, limit=limit, cursor=cursor
        )
        counts = await datasets.count_examples_of(session=session, dataset_ids=[d.id for d in rows])
    return Page(data=[_read(d, counts[d.id]) for d in rows], next_cursor=next_cursor)


@router.get("/{dataset_id}")
async def get_dataset(dataset_id: uuid.UUID, db: DbDep, tenant: TenantDep) -> DatasetRead:
    """One dataset with its examples counted by origin and status."""
    async with db.reading() as session:
        dataset = await datasets.get_dataset(
            session=session, tenant_id=tenant, dataset_id=dataset_id
        )
        counts = await datasets.count_examples(session=session, dataset_id=dataset.id)
    return _read(dataset, counts)


@router.patch("/{dataset_id}")
async def update_dataset(
    dataset_id: uuid.UUID, body: DatasetUpdate, db: DbDep, tenant: TenantDep
) -> DatasetRead:
    """Change a dataset's description or license (fields left out stay; `license: null`
    clears it)."""
    async with db.transaction() as session:
        dataset = await datasets.update_dataset(
            session=session,
            tenant_id=tenant,
            dataset_id=dataset_id,
            changes=body.model_dump(exclude_unset=True),
        )
        counts = await datasets.count_examples(session=session, dataset_id=dataset.id)
    return _read(dataset, counts)


@router.delete("/{dataset_id}", status_code=204)
async def delete_dataset(dataset_id: uuid.UUID, db: DbDep, tenant: TenantDep) -> Response:
    """Delete a dataset with its examples, soft targets, preference pairs and jobs, in one
    transaction; 409 while one of its jobs is queued or running (cancel it first)."""
    async with db.transaction() as session:
        await datasets.delete_dataset(session=session, tenant_id=tenant, dataset_id=dataset_id)
    return Response(status_code=204)


@router.get(
    "/{dataset_id}/card",
    response_class=Response,
    responses={200: {"content": {cards.MEDIA_TYPE: {}}, "description": "README.md"}},
)
async def get_dataset_card(
    dataset_id: uuid.UUID, request: Request, db: DbDep, tenant: TenantDep
) -> Response:
    """The dataset's Hugging Face dataset card (README.md: YAML header and markdown): teachers,
    jobs and their parameters, the curation report, decontamination, and how to load each
    export."""
    async with db.reading() as session:
        dataset = await datasets.get_dataset(
            session=session, tenant_id=tenant, dataset_id=dataset_id
        )
        text = await cards.dataset_card(
            session=session, dataset=dataset, base_url=str(request.base_url)
        )
    return Response(text, media_type=cards.MEDIA_TYPE)


@router.post(
    "/{dataset_id}/seeds",
    status_code=201,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": SeedsUpload.model_json_schema()},
                "application/x-ndjson": {"schema": {"type": "string"}},
            },
        }
    },
)
async def upload_seeds(
    dataset_id: uuid.UUID, request: Request, db: DbDep, tenant: TenantDep, settings: SettingsDep
) -> SeedsResult:
    """Add seed examples, all or nothing; exact duplicates are counted, not stored twice."""
    async with db.reading() as session:
        await datasets.get_dataset(session=session, tenant_id=tenant, dataset_id=dataset_id)
    body = await request.body()
    items = examples.parse_seeds(
        body,
        request.headers.get("content-type", ""),
        max_examples=settings.max_examples_per_upload,
    )
    examples.check_field_lengths(items, settings.max_field_chars)
    async with db.transaction() as session:
        inserted, duplicates = await examples.add_seeds(
            session=session, dataset_id=dataset_id, examples=items
        )
    return SeedsResult(inserted=inserted, duplicates=duplicates)


@router.get("/{dataset_id}/examples")
async def list_examples(
    dataset_id: uuid.UUID,
    db: DbDep,
    tenant: TenantDep,
    origin: Origin | None = None,
    status: ExampleStatus | None = None,
    job_id: uuid.UUID | None = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[ExampleRead]:
    """Page through a dataset's examples in creation order."""
    async with db.reading() as session:
        await datasets.get_dataset(session=session, tenant_id=tenant, dataset_id=dataset_id)
        rows, next_cursor = await examples.list_examples(
            session=session,
            dataset_id=dataset_id,
            origin=origin,
            status=status,
            job_id=job_id,
            limit=limit,
            cursor=cursor,
        )
    return Page(data=[ExampleRead.model_validate(r) for r in rows], next_cursor=next_cursor)
