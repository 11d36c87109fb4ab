"""/v1/benchmarks: a tenant's test sets for decontamination; re-checking a dataset against them."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from app import benchmarks, datasets
from app.api.deps import DbDep, SettingsDep, TenantDep
from app.api.responses import ERRORS
from app.errors import ValidationFailed
from app.schemas import (
    BenchmarkCreate,
    BenchmarkRead,
    BenchmarkUpdate,
    Cursor,
    DecontaminateRequest,
    DecontaminateResult,
    Page,
)

router = APIRouter(tags=["benchmarks"], responses=ERRORS)


@router.post(
    "/v1/benchmarks",
    status_code=201,
    openapi_extra={
        "requestBody": {
            "required": True,
            # JSONL (application/x-ndjson, the name in `?name=`) is accepted too; it is left out
            # here because a JSONL body is only valid with its query parameter
            "content": {"application/json": {"schema": BenchmarkCreate.model_json_schema()}},
        }
    },
)
async def create_benchmark(
    request: Request,
    db: DbDep,
    tenant: TenantDep,
    settings: SettingsDep,
    name: Annotated[str | None, Query(max_length=200, description="JSONL uploads only")] = None,
    default: Annotated[bool, Query(description="JSONL uploads only")] = False,
) -> BenchmarkRead:
    """Upload a benchmark, all or nothing: JSON `{name, items: [{text}], default?}` or JSONL
    (one `{"text": ...}` per line, `?name=` and `?default=` in the query)."""
    upload = benchmarks.parse_upload(
        await request.body(),
        request.headers.get("content-type", ""),
        name=name,
        default=default,
        max_items=settings.max_examples_per_upload,
        max_chars=settings.max_field_chars,
    )
    async with db.transaction() as session:
        benchmark = await benchmarks.add_benchmark(session=session, tenant_id=tenant, upload=upload)
    return benchmarks.read(benchmark)


@router.get("/v1/benchmarks")
async def list_benchmarks(
    db: DbDep,
    tenant: TenantDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Cursor = None,
) -> Page[BenchmarkRead]:
    """The tenant's benchmarks, oldest first."""
    async with db.reading() as session:
        rows, next_cursor = await benchmarks.list_benchmarks(
            session=session, tenant_id=tenant, limit=limit, cursor=cursor
        )
    return Page(data=[benchmarks.read(b) for b in rows], next_cursor=next_cursor)


@router.get("/v1/benchmarks/{benchmark_id}")
async def get_benchmark(benchmark_id: uuid.UUID, db: DbDep, tenant: TenantDep) -> BenchmarkRead:
    """One benchmark (its items are not sent back)."""
    async with db.reading() as session:
        benchmark = await benchmarks.get_benchmark(
            session=session, tenant_id=tenant, benchmark_id=benchmark_id
        )
    return benchmarks.read(benchmark)


@router.patch("/v1/benchmarks/{benchmark_id}")
async def update_benchmark(
    benchmark_id: uuid.UUID, body: BenchmarkUpdate, db: DbDep, tenant: TenantDep
) -> BenchmarkRead:
    """Mark a benchmark as a tenant default (applied to every job created from now on), or not."""
    async with db.transaction() as session:
        benchmark = await benchmarks.set_default(
            session=session, tenant_id=tenant, benchmark_id=benchmark_id, default=body.default
        )
    return benchmarks.read(benchmark)


@router.delete("/v1/benchmarks/{benchmark_id}", status_code=204)
async def delete_benchmark(benchmark_id: uuid.UUID, db: DbDep, tenant: TenantDep) -> Response:
    """Delete a benchmark; jobs that named it no longer check against it."""
    async with db.transaction() as session:
        await benchmarks.delete_benchmark(
            session=session, tenant_id=tenant, benchmark_id=benchmark_id
        )
    return Response(status_code=204)


@router.post("/v1/datasets/{dataset_id}/decontaminate")
async def decontaminate_dataset(
    dataset_id: uuid.UUID, db: DbDep, tenant: TenantDep, body: DecontaminateRequest | None = None
) -> DecontaminateResult:
    """Re-check the dataset's accepted and pending examples against benchmarks (default: the
    tenant's defaults); hits become rejected `contaminated`. Idempotent."""
    request = body or DecontaminateRequest()
    async with db.reading() as session:
        await datasets.get_dataset(session=session, tenant_id=tenant, dataset_id=dataset_id)
        if request.benchmarks is None:
            ids = await benchmarks.resolve(session=session, tenant_id=tenant, named=[], loc=[])
            if not ids:
                raise ValidationFailed(
                    "no benchmarks named and the tenant has no default benchmark",
                    details=[{"loc": ["body", "benchmarks"], "msg": "missing"}],
                )
        else:
            ids = list(dict.fromkeys(request.benchmarks))
            await benchmarks.resolve(
                session=session,
                tenant_id=tenant,
                named=request.benchmarks,
                loc=["body", "benchmarks"],
            )
    checked, contaminated, by_benchmark = await benchmarks.recheck_dataset(
        db=db, dataset_id=dataset_id, benchmark_ids=ids
    )
    return DecontaminateResult(
        checked=checked, contaminated=contaminated, by_benchmark=by_benchmark
    )
