"""/metrics: Prometheus text format (open by default: DISTILLERY_METRICS_PUBLIC)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from app import metrics
from app.api.deps import get_state, get_tenant
from app.api.responses import ERRORS

router = APIRouter(tags=["operations"], responses=ERRORS)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {metrics.CONTENT_TYPE: {}}, "description": "metrics"}},
)
async def get_metrics(request: Request) -> Response:
    """Jobs, tasks, queue depth and age, examples by status and reason, live workers (from the
    database, cached `metrics_cache_seconds`), and this process's counters (the embedded
    worker's). Needs an API key when DISTILLERY_METRICS_PUBLIC is false."""
    state = await get_state(request)
    if not state.settings.metrics_public:
        await get_tenant(request)
    cache: metrics.GaugeCache | None = getattr(request.app.state, "metrics_cache", None)
    if cache is None:
        cache = metrics.GaugeCache(max_age=state.settings.metrics_cache_seconds)
        request.app.state.metrics_cache = cache
    gauges = await cache.get(state.db, state.settings.heartbeat_seconds)
    return Response(metrics.render(gauges), media_type=metrics.CONTENT_TYPE)
