"""Shared fixtures: real Postgres (template database cloned per test) and real SQLite (a migrated
file copied per test), settings, and the API served over real HTTP on loopback.

Postgres is reached at DISTILLERY_TEST_PG (default postgresql://postgres@127.0.0.1:5432).
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from app import migrate
from app.config import Settings
from app.main import create_app
from app.state import Database

PG_BASE = os.environ.get("DISTILLERY_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
PG_ADMIN_DB = "postgres"


def pg_url(dbname: str, driver: str = "asyncpg") -> str:
    rest = PG_BASE.split("://", 1)[1]
    return f"postgresql+{driver}://{rest}/{dbname}"


async def _pg_admin(*statements: str) -> None:
    conn = await asyncpg.connect(f"{PG_BASE}/{PG_ADMIN_DB}")
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def _run(coro) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    asyncio.run(coro)


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A Postgres database at `alembic upgrade head`, used as the template of each test's one."""
    name = f"distillery_tpl_{os.getpid()}"
    _run(_pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", f"CREATE DATABASE {name}"))
    migrate.upgrade(pg_url(name))
    yield name
    _run(_pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    migrate.upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture
def pg_database_url(pg_template: str) -> Iterator[str]:
    name = f"distillery_t_{uuid.uuid4().hex[:12]}"
    _run(_pg_admin(f"CREATE DATABASE {name} TEMPLATE {pg_template}"))
    yield pg_url(name)
    _run(_pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture
def sqlite_database_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "test.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """A fresh migrated database of each kind: every test using it runs on both."""
    fixture = "sqlite_database_url" if request.param == "sqlite" else "pg_database_url"
    return request.getfixturevalue(fixture)  # type: ignore[no-any-return]


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, auto_migrate=False)


@pytest.fixture
def quick(settings: Settings) -> Settings:
    """Settings for a worker in the test's process: short leases, polls and retries."""
    return settings.model_copy(
        update={
            "lease_seconds": 5.0,
            "heartbeat_seconds": 1.0,
            "poll_interval_seconds": 0.05,
            "retry_base_seconds": 0.05,
            "retry_max_seconds": 0.5,
            "shutdown_grace_seconds": 1.0,
            "worker_concurrency": 2,
        }
    )


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[Database]:
    db = Database.from_url(settings.database_url)
    yield db
    await db.engine.dispose()


class LiveServer:
    """The API served by uvicorn in a background thread on a free loopback port."""

    def __init__(self, settings: Settings, app: FastAPI | None = None) -> None:
        config = uvicorn.Config(
            app or create_app(settings),
            host="127.0.0.1",
            port=0,
            log_level="warning",
            lifespan="on",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> LiveServer:
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("server failed to start")
            threading.Event().wait(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def live_server(settings: Settings) -> Iterator[LiveServer]:
    server = LiveServer(settings).start()
    yield server
    server.stop()


@pytest.fixture
def client(live_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, timeout=60) as c:
        yield c
