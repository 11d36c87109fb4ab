"""Per-key request rate limit: a token bucket per caller, in the API process's memory.

Each API process keeps its own buckets (N processes behind a load balancer allow N times the
rate); a shared limiter (Redis, the database) is the next step when that matters.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from app.errors import RateLimited


@dataclass
class _Bucket:
    tokens: float
    stamp: float


@dataclass
class RateLimiter:
    """`per_minute` requests a minute per key, with bursts up to `burst`; 0 turns it off."""

    per_minute: int
    burst: int
    buckets: dict[str, _Bucket] = field(default_factory=dict)
    max_keys: int = 100_000

    def check(self, key: str, now: float | None = None) -> None:
        """Take one token for `key`, or raise 429 with the seconds until one is back."""
        if self.per_minute <= 0:
            return
        now = time.monotonic() if now is None else now
        rate = self.per_minute / 60.0
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) >= self.max_keys:  # forget idle callers rather than grow
                self.buckets.clear()
            bucket = self.buckets[key] = _Bucket(tokens=float(self.burst), stamp=now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.stamp) * rate)
        bucket.stamp = now
        if bucket.tokens < 1.0:
            wait = math.ceil((1.0 - bucket.tokens) / rate)
            raise RateLimited(
                f"rate limit of {self.per_minute} requests a minute exceeded; retry in {wait} s",
                headers={"Retry-After": str(wait)},
            )
        bucket.tokens -= 1.0
