"""Benchmarks: a tenant's test sets, kept out of generated data (`contaminated`).

Uploads are JSON `{"name", "items": [{"text"}], "default"?}` or JSONL (one `{"text"}` per line,
the name in the query), all or nothing, with the seed upload's limits. A benchmark marked
`default` applies to every job of its tenant; a job's effective list (named + defaults) is
resolved and stored on the job when it is created. `recheck_dataset` applies the same matching
(`app.contamination`) to what a dataset already holds.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, cast

import orjson
from pydantic import ValidationError
from sqlalchemy import Select, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app import contamination, paging
from app.errors import BadRequest, NotFound, PayloadTooLarge, UnsupportedMediaType, ValidationFailed
from app.examples import NDJSON_TYPES, raise_line_errors, validation_errors
from app.models import Benchmark, BenchmarkItem, Example
from app.schemas import BenchmarkCreate, BenchmarkItemIn, BenchmarkRead

MAX_REPORTED_ERRORS = 20
INSERT_CHUNK = 1000
RECHECK_BATCH = 1000  # examples read, checked and updated at a time


def parse_upload(
    body: bytes,
    content_type: str,
    *,
    name: str | None,
    default: bool,
    max_items: int,
    max_chars: int,
) -> BenchmarkCreate:
    """The benchmark an upload describes, or a 4xx naming the field or the JSONL line at fault."""
    media = content_type.split(";", 1)[0].strip().lower()
    if not body.strip():
        raise BadRequest('empty body: send {"name": ..., "items": [{"text": ...}]} or JSONL')
    if media in NDJSON_TYPES:
        upload = _parse_ndjson(body, name, default, max_items)
    elif media in ("application/json", ""):
        upload = _parse_json(body, max_items)
    else:
        raise UnsupportedMediaType(
            f"unsupported content type {media!r}: use application/json or application/x-ndjson"
        )
    for i, item in enumerate(upload.items):
        if len(item.text) > max_chars:
            raise ValidationFailed(
                f"items.{i}.text is longer than {max_chars} characters",
                details=[{"loc": ["body", "items", i, "text"], "msg": "too long"}],
            )
    return upload


def _parse_json(body: bytes, max_items: int) -> BenchmarkCreate:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not valid JSON (UTF-8): {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("items"), list):
        _check_count(len(data["items"]), max_items)
    try:
        return BenchmarkCreate.model_validate(data)
    except ValidationError as exc:
        errors = validation_errors(exc, ["body"])[:MAX_REPORTED_ERRORS]
        where = ".".join(str(p) for p in errors[0]["loc"][1:])
        raise ValidationFailed(f"{where or 'body'}: {errors[0]['msg']}", details=errors) from None


def _parse_ndjson(body: bytes, name: str | None, default: bool, max_items: int) -> BenchmarkCreate:
    if name is None or not name.strip():
        raise ValidationFailed(
            "a JSONL upload needs the benchmark's name as ?name=",
            details=[{"loc": ["query", "name"], "msg": "missing"}],
        )
    items: list[BenchmarkItemIn] = []
    errors: list[dict[str, Any]] = []
    for lineno, raw in enumerate(body.split(b"\n"), start=1):
        if not raw.strip():
            continue
        _check_count(len(items) + len(errors) + 1, max_items)
        loc: list[Any] = ["body", f"line {lineno}"]
        try:
            items.append(BenchmarkItemIn.model_validate(orjson.loads(raw.decode("utf-8"))))
        except UnicodeDecodeError as exc:
            errors.append({"loc": loc, "line": lineno, "msg": f"invalid UTF-8 ({exc.reason})"})
        except orjson.JSONDecodeError as exc:
            errors.append({"loc": loc, "line": lineno, "msg": f"invalid JSON: {exc}"})
        except ValidationError as exc:
            errors.extend({**e, "line": lineno} for e in validation_errors(exc, loc))
        if len(errors) >= MAX_REPORTED_ERRORS:
            break
    raise_line_errors(errors)
    if not items:
        raise BadRequest("no items in the JSONL body")
    try:
        return BenchmarkCreate(name=name, items=items, default=default)
    except ValidationError as exc:
        errors = [{**e, "loc": ["query", *e["loc"]]} for e in validation_errors(exc, [])]
        raise ValidationFailed(f"name: {errors[0]['msg']}", details=errors) from None


def _check_count(n: int, max_items: int) -> None:
    if n > max_items:
        raise PayloadTooLarge(f"too many items in one upload (at most {max_items})")


def read(benchmark: Benchmark) -> BenchmarkRead:
    return BenchmarkRead(
        id=benchmark.id,
        name=benchmark.name,
        items=benchmark.items,
        default=benchmark.is_default,
        created_at=benchmark.created_at,
    )


async def add_benchmark(
    *, session: AsyncSession, tenant_id: uuid.UUID, upload: BenchmarkCreate
) -> Benchmark:
    """Store a benchmark and its items in the caller's transaction."""
    benchmark = Benchmark(
        tenant_id=tenant_id, name=upload.name, items=len(upload.items), is_default=upload.default
    )
    session.add(benchmark)
    await session.flush()
    rows = [
        {"benchmark_id": benchmark.id, "idx": i, "text": item.text}
        for i, item in enumerate(upload.items)
    ]
    for start in range(0, len(rows), INSERT_CHUNK):
        await session.execute(insert(BenchmarkItem), rows[start : start + INSERT_CHUNK])
    return benchmark


async def get_benchmark(
    *, session: AsyncSession, tenant_id: uuid.UUID, benchmark_id: uuid.UUID
) -> Benchmark:
    benchmark = await session.get(Benchmark, benchmark_id)
    if benchmark is None or benchmark.tenant_id != tenant_id:
        raise NotFound(f"benchmark {benchmark_id} not found")
    return benchmark


async def list_benchmarks(
    *, session: AsyncSession, tenant_id: uuid.UUID, limit: int, cursor: str | None
) -> tuple[list[Benchmark], str | None]:
    stmt = select(Benchmark).where(Benchmark.tenant_id == tenant_id)
    return await paging.page(session, stmt, Benchmark, limit, cursor)


async def delete_benchmark(
    *, session: AsyncSession, tenant_id: uuid.UUID, benchmark_id: uuid.UUID
) -> None:
    """Delete a benchmark and its items. Jobs that named it stop checking against it."""
    await get_benchmark(session=session, tenant_id=tenant_id, benchmark_id=benchmark_id)
    await session.execute(delete(BenchmarkItem).where(BenchmarkItem.benchmark_id == benchmark_id))
    await session.execute(delete(Benchmark).where(Benchmark.id == benchmark_id))


async def set_default(
    *, session: AsyncSession, tenant_id: uuid.UUID, benchmark_id: uuid.UUID, default: bool
) -> Benchmark:
    benchmark = await get_benchmark(session=session, tenant_id=tenant_id, benchmark_id=benchmark_id)
    benchmark.is_default = default
    await session.flush()
    return benchmark


async def resolve(
    *,
    session: AsyncSession,
    tenant_id: uuid.UUID,
    named: Sequence[uuid.UUID],
    loc: Sequence[Any],
) -> list[uuid.UUID]:
    """The tenant's benchmarks `named` (each must exist: else a 422 at `loc`) followed by its
    defaults, without repeats."""
    wanted = list(dict.fromkeys(named))
    found = set()
    if wanted:
        found = set(
            (
                await session.scalars(
                    select(Benchmark.id).where(
                        Benchmark.tenant_id == tenant_id, Benchmark.id.in_(wanted)
                    )
                )
            ).all()
        )
    unknown = [(i, b) for i, b in enumerate(named) if b not in found]
    if unknown:
        raise ValidationFailed(
            f"{'.'.join(map(str, loc))}: benchmark {unknown[0][1]} not found",
            details=[
                {"loc": [*loc, i], "msg": f"benchmark {b} not found"}
                for i, b in unknown[:MAX_REPORTED_ERRORS]
            ],
        )
    defaults = await session.scalars(
        select(Benchmark.id)
        .where(Benchmark.tenant_id == tenant_id, Benchmark.is_default.is_(True))
        .order_by(Benchmark.id)
    )
    return list(dict.fromkeys([*wanted, *defaults.all()]))


def items_query(benchmark_ids: Iterable[uuid.UUID | str]) -> Select[Any]:
    """SELECT (benchmark id, name, idx, text) of the items of these benchmarks."""
    ids = [uuid.UUID(str(b)) for b in benchmark_ids]
    return cast(
        Select[Any],
        select(Benchmark.id, Benchmark.name, BenchmarkItem.idx, BenchmarkItem.text)
        .join(BenchmarkItem, BenchmarkItem.benchmark_id == Benchmark.id)
        .where(Benchmark.id.in_(ids))
        .order_by(Benchmark.id, BenchmarkItem.idx),
    )


def item_tuples(rows: Iterable[Any]) -> list[tuple[str, str, int, str]]:
    """Rows of :func:`items_query` as `app.contamination.build_index` takes them."""
    return [(str(r.id), r.name, r.idx, r.text) for r in rows]


async def load_items(
    session: AsyncSession, benchmark_ids: Iterable[uuid.UUID | str]
) -> list[tuple[str, str, int, str]]:
    """(benchmark id, name, idx, text) of the items of these benchmarks (missing ones: none)."""
    return item_tuples(await session.execute(items_query(benchmark_ids)))


async def recheck_dataset(
    *, db: Any, dataset_id: uuid.UUID, benchmark_ids: Sequence[uuid.UUID]
) -> tuple[int, int, dict[str, int]]:
    """Reject as `contaminated` the accepted and pending examples of a dataset that match the
    benchmarks; returns (checked, contaminated, hits per benchmark id).

    Reads, checks and updates `RECHECK_BATCH` examples at a time, each batch in its own
    transaction (memory stays bounded; a rerun finds only what is left: idempotent).
    """
    async with db.reading() as session:
        items = await load_items(session, benchmark_ids)
    index = await asyncio.to_thread(contamination.build_index, items)
    checked, hits = 0, Counter({str(b): 0 for b in benchmark_ids})
    after: uuid.UUID | None = None
    while True:
        async with db.transaction() as session:
            stmt = select(
                Example.id, Example.instruction, Example.input, Example.output
            ).where(
                Example.dataset_id == dataset_id, Example.status.in_(("accepted", "pending"))
            )  # fmt: skip
            if after is not None:
                stmt = stmt.where(Example.id > after)
            rows = (await session.execute(stmt.order_by(Example.id).limit(RECHECK_BATCH))).all()
            if not rows:
                break
            after = rows[-1].id
            checked += len(rows)
            found = await asyncio.to_thread(_check_rows, rows, index)
            for example_id, match, where in found:
                hits[match.item.benchmark_id] += 1
                await session.execute(
                    update(Example)
                    .where(Example.id == example_id)
                    .values(
                        status="rejected",
                        reject_reason="contaminated",
                        reject_detail=match.detail(where),
                        dedup_key=None,
                    )
                )
    return checked, sum(hits.values()), dict(hits)


def _check_rows(
    rows: Sequence[Any], index: contamination.Index
) -> list[tuple[uuid.UUID, contamination.Match, str]]:
    found = []
    for row in rows:
        hit = contamination.check_example(row.instruction, row.input, row.output, index)
        if hit is not None:
            found.append((row.id, *hit))
    return found
