"""The HTTP API: one router per resource."""

from __future__ import annotations

from fastapi import APIRouter

from app.api import datasets, exports, health, jobs, skills

api_router = APIRouter()
for module in (health, datasets, exports, skills, jobs):
    api_router.include_router(module.router)
