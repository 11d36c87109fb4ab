"""/v1/datasets/{id}/export: streamed JSONL in the format the trainer wants."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from app import datasets, export, export_kd
from app.api.deps import DbDep, SettingsDep, TenantDep
from app.api.responses import ERRORS
from app.errors import ValidationFailed
from app.models import Origin
from app.schemas import ExportFormat
from app.state import Database

router = APIRouter(prefix="/v1/datasets", tags=["exports"], responses=ERRORS)
PARQUET = "application/vnd.apache.parquet"


@router.get(
    "/{dataset_id}/export",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"application/x-ndjson": {}, PARQUET: {}},
            "description": "JSONL lines (Parquet with format=kd&encoding=parquet)",
        }
    },
)
async def export_dataset(
    dataset_id: uuid.UUID,
    db: DbDep,
    tenant: TenantDep,
    settings: SettingsDep,
    format: ExportFormat = "alpaca",
    origin: Origin | None = None,
    status: Annotated[
        Literal["accepted", "rejected", "pending", "candidate", "all"],
        Query(
            description="`all` for every status; `candidate`: responses gathered to be judged "
            "(feedback jobs), never in the default export"
        ),
    ] = "accepted",
    job_id: uuid.UUID | None = None,
    metadata: Annotated[
        bool, Query(description="add provenance (reject reason and detail, source, successor)")
    ] = False,
    system: Annotated[
        bool, Query(description="add the system prompt the teacher saw (the job's, or the row's)")
    ] = False,
    min_score: Annotated[
        float | None,
        Query(
            allow_inf_nan=False,
            description="only rows whose judged overall score is at least this (preference: the "
            "chosen side's); rows never judged are left out",
        ),
    ] = None,
    max_score: Annotated[
        float | None,
        Query(
            allow_inf_nan=False,
            description="only rows whose judged overall score is at most this (preference: the "
            "rejected side's); rows never judged are left out",
        ),
    ] = None,
    encoding: Annotated[
        Literal["jsonl", "parquet"],
        Query(description="`parquet`: the same rows as a Parquet file (format=kd only)"),
    ] = "jsonl",
    topic: Annotated[
        str | None,
        Query(
            max_length=500,
            pattern=r"[^/\s]",  # names something: not empty, not only "/"
            description='only rows generated for this taxonomy leaf ("topic/subtopic"), or for '
            'every leaf under a topic ("topic" or "topic/")',
        ),
    ] = None,
    rationale: Annotated[
        Literal["think", "field", "none"],
        Query(
            description="where the teacher's reasoning of `rationale: true` jobs goes: `think`: "
            "a `<think>` block before the answer; `field`: a separate `rationale` key; `none`: "
            "left out. Rows without one are unchanged"
        ),
    ] = "think",
) -> StreamingResponse:
    """Download a dataset's examples as JSONL, streamed from a server-side cursor.

    `status=accepted` (the default) gives one row per prompt: answers replaced by a relabel are
    left out (`status=all` shows them, with `superseded_by` under `metadata`). `preference` and
    `kto` rows come from the dataset's preference pairs (`job_id`: the feedback job's); `origin`,
    `status` and `topic` do not apply to them."""
    async with db.reading() as session:
        dataset = await datasets.get_dataset(
            session=session, tenant_id=tenant, dataset_id=dataset_id
        )
    # options that only clash with each other: after the lookup, so a missing dataset is a 404
    single = format not in export.PAIR_FORMATS  # a pair's bounds are of its two sides
    if single and min_score is not None and max_score is not None and min_score > max_score:
        raise ValidationFailed(
            f"min_score {min_score} is above max_score {max_score}: no row can match",
            details=[{"loc": ["query", "min_score"], "msg": "greater than max_score"}],
        )
    if encoding == "parquet" and format != "kd":
        raise ValidationFailed(
            "encoding=parquet is available for format=kd only",
            details=[{"loc": ["query", "encoding"], "msg": "parquet needs format=kd"}],
        )
    if encoding == "parquet" and metadata:
        raise ValidationFailed(
            "metadata=true is available with encoding=jsonl only",
            details=[{"loc": ["query", "metadata"], "msg": "not with encoding=parquet"}],
        )
    if format == "kd":
        filters = {
            "dataset_id": dataset.id,
            "origin": origin,
            "status": None if status == "all" else status,
            "job_id": job_id,
            "min_score": min_score,
            "max_score": max_score,
            "batch_rows": settings.export_batch_rows,
            "topic": topic,
        }
        return _kd_response(db, dataset.name, encoding, metadata, filters)
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
        min_score=min_score,
        max_score=max_score,
        rationale=rationale,
        topic=topic,
    )
    name = export.filename(dataset.name, format)
    return StreamingResponse(
        body,
        media_type="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _kd_response(
    db: Database, name: str, encoding: str, metadata: bool, filters: dict[str, Any]
) -> StreamingResponse:
    """The soft targets of the dataset's examples (docs/kd.md), as JSONL or Parquet."""
    if encoding == "parquet":
        body = export_kd.stream_kd_parquet(db, **filters)
        media_type, ext = PARQUET, "parquet"
    else:
        body = export_kd.stream_kd(db, with_metadata=metadata, **filters)
        media_type, ext = "application/x-ndjson", "jsonl"
    return StreamingResponse(
        body,
        media_type=media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{export.filename(name, "kd", ext)}"'
        },
    )
