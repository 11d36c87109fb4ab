"""/v1/workers: the registered workers, and whether each is live (any tenant may list them)."""

from __future__ import annotations

from fastapi import APIRouter

from app import workers
from app.api.deps import DbDep, SettingsDep, TenantDep
from app.api.responses import ERRORS
from app.db import utcnow
from app.schemas import Page, WorkerRead

router = APIRouter(prefix="/v1/workers", tags=["workers"], responses=ERRORS)


@router.get("")
async def list_workers(db: DbDep, _tenant: TenantDep, settings: SettingsDep) -> Page[WorkerRead]:
    """Every registered worker, the most recently seen first; `live` while it heartbeats."""
    async with db.reading() as session:
        rows = await workers.list_workers(session=session)
    now = utcnow()
    window = workers.live_window(settings.heartbeat_seconds)
    data = [
        WorkerRead.model_validate(
            {
                **{name: getattr(w, name) for name in WorkerRead.model_fields if name != "live"},
                "live": workers.is_live(w, now, window),
            }
        )
        for w in rows
    ]
    return Page(data=data, next_cursor=None)
