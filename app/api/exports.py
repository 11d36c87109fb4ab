"""/v1/datasets/{id}/export: streamed JSONL in the format the trainer wants."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from app import datasets, export
from app.api.deps import DbDep, SettingsDep, TenantDep
from app.api.responses import ERRORS
from app.models import Origin
from app.schemas import ExportFormat

router = APIRouter(prefix="/v1/datasets", tags=["exports"], responses=ERRORS)


@router.get(
    "/{dataset_id}/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}}, "description": "JSONL lines"}},
)
async def export_dataset(
    dataset_id: uuid.UUID,
    db: DbDep,
    tenant: TenantDep,
    settings: SettingsDep,
    format: ExportFormat = "alpaca",
    origin: Origin | None = None,
    status: Annotated[
        Literal["accepted", "rejected", "pending", "all"],
        Query(description="`all` for every status"),
    ] = "accepted",
    job_id: uuid.UUID | None = None,
    metadata: Annotated[
        bool, Query(description="add provenance (reject reason and detail, source, successor)")
    ] = False,
    system: Annotated[
        bool, Query(description="add the system prompt the teacher saw (the job's, or the row's)")
    ] = False,
) -> StreamingResponse:
    """Download a dataset's examples as JSONL, streamed from a server-side cursor.

    `status=accepted` (the default) gives one row per prompt: answers replaced by a relabel are
    left out (`status=all` shows them, with `superseded_by` under `metadata`)."""
    async with db.reading() as session:
        dataset = await datasets.get_dataset(
            session=session, tenant_id=tenant, dataset_id=dataset_id
        )
    body = export.stream_jsonl(
        db,
        dataset_id=dataset.id,
        fmt=format,
        origin=origin,
        status=None if status == "all" else status,
        job_id=job_id,
        with_metadata=metadata,
        with_system=system,
        batch_rows=settings.export_batch_rows,
    )
    name = export.filename(dataset.name, format)
    return StreamingResponse(
        body,
        media_type="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
