"""Dependencies of the routes: the app state, the database and the caller's tenant."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Request

from app import auth
from app.config import Settings
from app.errors import Unauthorized
from app.models import DEFAULT_TENANT_ID
from app.state import AppState, Database


async def get_state(request: Request) -> AppState:
    return request.app.state.distillery  # type: ignore[no-any-return]


async def get_db(state: Annotated[AppState, Depends(get_state)]) -> Database:
    return state.db


async def get_settings(state: Annotated[AppState, Depends(get_state)]) -> Settings:
    return state.settings


async def get_tenant(request: Request) -> uuid.UUID:
    """The tenant of the bearer key; without auth, the default tenant.

    No sub-dependency (each one costs FastAPI's resolver time on every request): the state is
    read from the app directly."""
    state: AppState = request.app.state.distillery
    header = request.headers.get("authorization")
    if header is None:
        if state.settings.auth:
            raise Unauthorized()
        state.limiter.check(f"tenant:{DEFAULT_TENANT_ID}")
        return DEFAULT_TENANT_ID
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("expected `Authorization: Bearer <key>`")
    key_hash = auth.hash_key(key.strip())
    tenant = await auth.tenant_for_key_hash(db=state.db, key_hash=key_hash)
    state.limiter.check(f"key:{key_hash}")
    return tenant


DbDep = Annotated[Database, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
TenantDep = Annotated[uuid.UUID, Depends(get_tenant)]
