"""Rate limit per key (429 with Retry-After) and the cap on queued jobs per tenant."""

from __future__ import annotations

import httpx
import pytest

from app.config import Settings
from app.errors import RateLimited
from app.ratelimit import RateLimiter
from tests.conftest import LiveServer
from tests.factories import make_dataset, seed_items, upload_seeds
from tests.test_api_datasets import assert_error


def test_token_bucket() -> None:
    limiter = RateLimiter(per_minute=60, burst=3)
    for _ in range(3):
        limiter.check("k", now=100.0)
    with pytest.raises(RateLimited) as refused:
        limiter.check("k", now=100.0)
    assert refused.value.headers == {"Retry-After": "1"}
    limiter.check("other", now=100.0)  # buckets are per key
    limiter.check("k", now=101.0)  # one token back after a second
    with pytest.raises(RateLimited):
        limiter.check("k", now=101.5)
    RateLimiter(per_minute=0, burst=1).check("k")  # 0: off


@pytest.fixture
def strict(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"rate_limit_per_minute": 60, "rate_limit_burst": 5, "max_queued_jobs_per_tenant": 2}
    )


def test_rate_limit_and_queued_jobs_cap(strict: Settings) -> None:
    server = LiveServer(strict).start()
    try:
        with httpx.Client(base_url=server.url) as client:
            ds = make_dataset(client)
            upload_seeds(client, ds["id"], seed_items(3, with_output=False))
            body = {"dataset_id": ds["id"], "kind": "labeling"}
            assert client.post("/v1/jobs", json=body).status_code == 202
            assert client.post("/v1/jobs", json=body).status_code == 202
            err = assert_error(client.post("/v1/jobs", json=body), 429, "rate_limited")
            assert "already queued" in err["message"]
            response = client.get("/v1/jobs")  # the sixth request within a second
            assert_error(response, 429, "rate_limited")
            assert int(response.headers["retry-after"]) >= 1
            assert client.get("/healthz").status_code == 200  # health is not limited
    finally:
        server.stop()
