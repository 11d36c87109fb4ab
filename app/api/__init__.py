"""The HTTP API: one router per resource."""

from __future__ import annotations

from fastapi import APIRouter

from app.api import benchmarks, datasets, exports, health, jobs, metrics, skills, workers

api_router = APIRouter()
for module in (health, datasets, exports, skills, jobs, workers, benchmarks, metrics):
    api_router.include_router(module.router)
