"""API keys: bearer tokens mapped to a tenant; only the sha256 of a key is stored."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from app import asyncpg_reads
from app.db import utcnow
from app.errors import NotFound, Unauthorized
from app.models import ApiKey, Tenant
from app.state import Database

KEY_PREFIX = "dk_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def get_or_add_tenant(*, session: AsyncSession, name: str) -> Tenant:
    tenant = await session.scalar(select(Tenant).where(Tenant.name == name))
    if tenant is None:
        tenant = Tenant(name=name)
        session.add(tenant)
        await session.flush()
    return tenant


async def add_key(*, session: AsyncSession, tenant_name: str, name: str = "") -> tuple[ApiKey, str]:
    """A new key for the tenant (created if new); the plain key is returned once, never stored."""
    tenant = await get_or_add_tenant(session=session, name=tenant_name)
    plain = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(tenant_id=tenant.id, name=name, prefix=plain[:10], key_hash=hash_key(plain))
    session.add(key)
    await session.flush()
    return key, plain


async def list_keys(*, session: AsyncSession) -> list[tuple[ApiKey, str]]:
    rows = await session.execute(
        select(ApiKey, Tenant.name).join(Tenant, Tenant.id == ApiKey.tenant_id).order_by(ApiKey.id)
    )
    return [(key, tenant) for key, tenant in rows]


async def revoke_key(*, session: AsyncSession, key_id: uuid.UUID) -> ApiKey:
    key = await session.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"key {key_id} not found")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
    return key


_KEY_LOOKUP = select(ApiKey.tenant_id, ApiKey.revoked_at).where(
    ApiKey.key_hash == bindparam("key_hash")
)
_KEY_LOOKUP_PG = asyncpg_reads.Statement.of(_KEY_LOOKUP)


async def tenant_for_key_hash(*, db: Database, key_hash: str) -> uuid.UUID:
    """The tenant of a live key by its hash, or 401: what every authenticated API request runs,
    so one cached Core statement on a pooled connection, no ORM session. Not cached between
    requests: a revoked key is refused from the next request on. On Postgres straight on
    asyncpg (app.asyncpg_reads)."""
    row: Any
    if db.dialect == "postgresql":
        args = _KEY_LOOKUP_PG.args({"key_hash": key_hash})
        row = await asyncpg_reads.run(db, lambda driver: driver.fetchrow(_KEY_LOOKUP_PG.sql, *args))
    else:
        async with db.quick_read() as conn:
            row = (await conn.execute(_KEY_LOOKUP, {"key_hash": key_hash})).mappings().first()
    if row is None or row["revoked_at"] is not None:
        raise Unauthorized("invalid or revoked API key")
    return row["tenant_id"]  # type: ignore[no-any-return]


async def tenant_for_key(*, session: AsyncSession, key: str) -> uuid.UUID:
    """The tenant of a live key, or 401 (unknown and revoked keys look the same)."""
    found = await session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key)))
    if found is None or found.revoked_at is not None:
        raise Unauthorized("invalid or revoked API key")
    return found.tenant_id
