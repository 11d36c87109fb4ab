"""/v1/skills: skill specs, the system part of every teacher prompt of a job."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response

from app import datasets
from app.api.deps import DbDep, TenantDep
from app.api.responses import ERRORS
from app.schemas import Cursor, Page, SkillCreate, SkillRead, SkillUpdate

router = APIRouter(prefix="/v1/skills", tags=["skills"], responses=ERRORS)


@router.post("", status_code=201)
async def create_skill(body: SkillCreate, db: DbDep, tenant: TenantDep) -> SkillRead:
    """Create a skill spec."""
    async with db.transaction() as session:
        skill = await datasets.add_skill(session=session, tenant_id=tenant, **body.model_dump())
    return SkillRead.model_validate(skill)


@router.get("")
async def list_skills(
    db: DbDep,
    tenant: TenantDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Cursor = None,
) -> Page[SkillRead]:
    """The tenant's skill specs, oldest first."""
    async with db.reading() as session:
        rows, next_cursor = await datasets.list_skills(
            session=session, tenant_id=tenant, limit=limit, cursor=cursor
        )
    return Page(data=[SkillRead.model_validate(s) for s in rows], next_cursor=next_cursor)


@router.get("/{skill_id}")
async def get_skill(skill_id: uuid.UUID, db: DbDep, tenant: TenantDep) -> SkillRead:
    """One skill spec."""
    async with db.reading() as session:
        skill = await datasets.get_skill(session=session, tenant_id=tenant, skill_id=skill_id)
    return SkillRead.model_validate(skill)


@router.patch("/{skill_id}")
async def update_skill(
    skill_id: uuid.UUID, body: SkillUpdate, db: DbDep, tenant: TenantDep
) -> SkillRead:
    """Change a skill spec: the fields given replace the stored ones (e.g. a reviewed taxonomy
    before a curation job generates). Jobs already created keep the skill they started with."""
    fields = body.model_dump(exclude_unset=True)
    async with db.transaction() as session:
        skill = await datasets.update_skill(
            session=session, tenant_id=tenant, skill_id=skill_id, fields=fields
        )
    return SkillRead.model_validate(skill)


@router.delete("/{skill_id}", status_code=204)
async def delete_skill(skill_id: uuid.UUID, db: DbDep, tenant: TenantDep) -> Response:
    """Delete a skill spec; 409 while a queued or running job uses it. Finished jobs keep the
    spec they froze."""
    async with db.transaction() as session:
        await datasets.delete_skill(session=session, tenant_id=tenant, skill_id=skill_id)
    return Response(status_code=204)
