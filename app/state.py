"""What the running app holds: settings, engine and session factory, built once at start."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from app.config import Settings
from app.db import make_engine, make_sessionmaker
from app.ratelimit import RateLimiter


@dataclass
class Database:
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]

    @classmethod
    def from_url(cls, url: str) -> Database:
        engine = make_engine(url)
        return cls(engine=engine, sessionmaker=make_sessionmaker(engine))

    @classmethod
    def for_api(cls, url: str) -> Database:
        """The API's engine. No pre-ping (a round trip on every checkout): a connection the
        database dropped fails one statement, the pool is invalidated and the request answers
        503 with Retry-After (``GET /v1/jobs/{id}`` retries once instead). A pool with little
        overflow: an overflow connection is closed on return, so under bursts a small pool
        with a large overflow reconnects (TCP, auth: ms of CPU each) over and over; requests
        wait for a pooled connection instead (503 busy after ``pool_timeout``)."""
        engine = make_engine(url, pool_pre_ping=False, pool_size=16, max_overflow=4)
        return cls(engine=engine, sessionmaker=make_sessionmaker(engine))

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session that commits when the block ends, rolls back on error."""
        async with self.sessionmaker() as session, session.begin():
            yield session

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        """A read-only session; on SQLite it does not take the write lock."""
        async with self.sessionmaker() as session:
            await session.connection(execution_options={"readonly": True})
            yield session  # closing the session ends the transaction; loaded objects stay usable

    @asynccontextmanager
    async def quick_read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for a few small reads, no ORM session: on Postgres without a
        transaction (no BEGIN/ROLLBACK round trips; each statement is its own snapshot), on
        SQLite in a deferred (read) transaction."""
        if self.dialect == "postgresql":
            async with self.engine.connect() as conn:
                yield await conn.execution_options(isolation_level="AUTOCOMMIT")
        else:
            async with self.engine.connect() as conn:
                yield await conn.execution_options(readonly=True)


@dataclass
class AppState:
    settings: Settings
    db: Database
    limiter: RateLimiter = field(default_factory=lambda: RateLimiter(0, 1))

    @classmethod
    def build(cls, settings: Settings, db: Database) -> AppState:
        limiter = RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
        return cls(settings=settings, db=db, limiter=limiter)
