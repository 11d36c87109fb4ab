"""The migrations build exactly the schema the models describe, on Postgres and SQLite."""

from __future__ import annotations

import asyncio

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select

from app import migrate
from app.db import Base
from app.models import DEFAULT_TENANT, Tenant
from app.state import Database


async def schema_diff(database: Database) -> list:
    def diff(connection):  # type: ignore[no-untyped-def]
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)

    async with database.engine.connect() as conn:
        return await conn.run_sync(diff)  # type: ignore[no-any-return]


async def test_models_match_migrations(database: Database) -> None:
    assert await schema_diff(database) == []
    async with database.reading() as session:
        names = (await session.scalars(select(Tenant.name))).all()
    assert names == [DEFAULT_TENANT]


async def test_a_model_change_is_detected(database: Database) -> None:
    from sqlalchemy import Column, Integer

    table = Base.metadata.tables["datasets"]
    extra = Column("extra_for_test", Integer)
    table.append_column(extra)
    try:
        diff = await schema_diff(database)
    finally:
        table._columns.remove(
            extra
        )  # the check must see a difference, then leave models as they were
    assert any(op[0] == "add_column" and op[3].name == "extra_for_test" for op in diff)


def test_downgrade_and_upgrade_again(database_url: str) -> None:
    async def tables() -> set[str]:
        db = Database.from_url(database_url)
        try:
            async with db.engine.connect() as conn:
                return set(await conn.run_sync(lambda c: c.dialect.get_table_names(c)))
        finally:
            await db.engine.dispose()

    async def diff() -> list:
        db = Database.from_url(database_url)
        try:
            return await schema_diff(db)
        finally:
            await db.engine.dispose()

    command.downgrade(migrate.alembic_config(database_url), "base")
    assert asyncio.run(tables()) <= {"alembic_version"}
    migrate.upgrade(database_url)
    assert "examples" in asyncio.run(tables())
    assert asyncio.run(diff()) == []
