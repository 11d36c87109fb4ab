"""Hot reads straight on the pooled asyncpg connection (Postgres only).

The API's busiest requests (``GET /v1/jobs/{id}`` polls, the API-key lookup of every
authenticated request) are one or two small SELECTs each. Through SQLAlchemy's async execution
layer (greenlet hops, compiled-cache lookup, parameter and result processing) a statement cost
about 0.2 ms of CPU, as much as the rest of the request. Here a statement is compiled by
SQLAlchemy once, at import, and run by asyncpg itself (prepared once per connection, kept in
asyncpg's statement cache), outside a transaction: each statement is its own snapshot, as with
``Database.quick_read``. The connection still comes from (and goes back to) the engine's pool.

The values are the ones SQLAlchemy would give: JSON columns are decoded by the codec the engine
installed on each connection, timestamps arrive aware and in UTC, UUIDs as ``uuid.UUID``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
from sqlalchemy import Select
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect

from app.state import Database

T = TypeVar("T")

# what a connection that died under us raises (a database restart, a terminated backend);
# InternalClientError: the server's FATAL arrived, its socket close not handled yet
_DEAD_CONNECTION = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,
)


@dataclass(frozen=True)
class Statement:
    """A statement compiled once for asyncpg: its SQL and how to order and convert its
    parameters (the statement's literals fixed, the named ones given at each call)."""

    sql: str
    params: tuple[tuple[str, Any, Callable[[Any], Any] | None], ...]  # name, literal, processor

    @classmethod
    def of(cls, statement: Select[*tuple[Any, ...]]) -> Statement:
        dialect = asyncpg_dialect()  # type: ignore[no-untyped-call]
        compiled = statement.compile(dialect=dialect)
        params = tuple(
            (name, bind.value, bind.type.bind_processor(dialect))
            for name in compiled.positiontup or ()
            for bind in [compiled.binds[name]]
        )
        return cls(sql=str(compiled), params=params)

    def args(self, given: dict[str, Any]) -> list[Any]:
        out: list[Any] = []
        for name, literal, process in self.params:
            value = given.get(name, literal)
            out.append(process(value) if process is not None else value)
        return out


async def run(db: Database, read: Callable[[Any], Awaitable[T]]) -> T:
    """`read(asyncpg_connection)` on a connection of the pool. A connection found dead (a
    database restart) invalidates the pool's connections of that age, as SQLAlchemy does on a
    disconnect, and the read, idempotent, is tried once more on a fresh one: the caller sees
    the answer rather than a 503 while the pool refills."""
    for attempt in (1, 2):
        async with db.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            try:
                return await read(raw.driver_connection)
            except _DEAD_CONNECTION as exc:
                db.engine.pool._invalidate(raw, exc)  # SQLAlchemy's own disconnect handling
                if attempt == 2:
                    raise
    raise AssertionError("unreachable")
