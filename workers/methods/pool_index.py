"""The near-duplicate index of a dataset's pool, kept by the worker process and fed as it grows.

Expansion (and the methods that curate like it) checks every proposed task against the pool of
its dataset: the instruction of every non-rejected example. Rebuilding that index from the
database for every round costs a full read of the pool and a full build of its prefix table;
here one :class:`NearDupIndex` per dataset (and threshold) lives in the worker process and is
refreshed from the rows created since its last read: a ``created_at`` watermark, read again
from ``RECHECK_MARGIN`` before it (a row's ``created_at`` is taken a little before its commit,
by the clock of whichever worker wrote it), the ids already read skipped.

The rounds of this worker curate against the shared index, so the tasks one of them keeps join
it at once: two rounds of one worker do not answer near copies of each other (each would be
dropped at the other's commit). A kept task that is not stored in the end (its answer rejected,
over the target) stays in the index: a later near copy of it is rejected too, which costs that
candidate, never a near duplicate in the dataset. Rows that leave the pool later (an example
rejected or deleted afterwards) stay as well, until the worker restarts or the index is evicted
(least recently used, `MAX_DATASETS` per process).

Checks run on the event loop (a proposal's ten-odd candidates against the index take well under
a millisecond of lookups); nothing here is thread-safe.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from workers.curation import dedup

RECHECK_MARGIN = dt.timedelta(seconds=10)  # commit-to-created_at gap and clock skew
MAX_DATASETS = 16


class PoolReader(Protocol):
    async def dataset_pool_rows(self, since: dt.datetime | None) -> list[tuple[Any, str, Any]]:
        """(id, instruction, created_at) of the dataset's non-rejected examples created at or
        after `since` (all of them for None)."""
        ...


@dataclass(slots=True)
class PoolIndex:
    """One dataset's pool as this worker last read it, plus what its rounds kept since."""

    index: dedup.NearDupIndex
    watermark: dt.datetime | None = None  # the latest created_at read
    seen: dict[str, dt.datetime] = field(default_factory=dict)  # ids read within the margin
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    reads: int = 0  # refreshes (for tests and logs)
    rows_read: int = 0

    def seen_since(self, since: dt.datetime) -> frozenset[str]:
        """Ids of the rows read that were created at or after `since` (the commit-time
        recheck need not look at them again: the task's curation saw them)."""
        return frozenset(i for i, at in self.seen.items() if _aware(at) >= since)

    def add(self, rows: Sequence[tuple[Any, str, Any]]) -> int:
        """Put rows read from the database in the index (ids read before are skipped)."""
        fresh = []
        for row_id, text, created in rows:
            key = str(row_id)
            if key in self.seen:
                continue
            at = _aware(created)
            if self.watermark is not None and at < self.watermark - 2 * RECHECK_MARGIN:
                continue  # read by an earlier refresh already (before `seen` was pruned)
            self.seen[key] = at
            fresh.append(text)
            if self.watermark is None or at > self.watermark:
                self.watermark = at
        self.index.add_many(fresh)
        if self.watermark is not None and len(self.seen) > 4 * len(fresh) + 1024:
            floor = self.watermark - 2 * RECHECK_MARGIN
            self.seen = {k: at for k, at in self.seen.items() if at >= floor}
        return len(fresh)


_CACHE: OrderedDict[tuple[str, float], PoolIndex] = OrderedDict()


async def pool_index(
    ctx: PoolReader, dataset_id: str, config: dedup.DedupConfig
) -> tuple[PoolIndex, dt.datetime]:
    """The worker's index of the dataset's pool, refreshed now, and the time of the refresh
    (rows created before it minus `RECHECK_MARGIN` are in the index)."""
    key = (str(dataset_id), config.threshold)
    pool = _CACHE.get(key)
    if pool is None:
        pool = _CACHE[key] = PoolIndex(dedup.NearDupIndex(config))
        while len(_CACHE) > MAX_DATASETS:
            _CACHE.popitem(last=False)
    _CACHE.move_to_end(key)
    async with pool.lock:  # one refresh at a time; rounds arriving meanwhile use its result
        snapshot = dt.datetime.now(dt.UTC)
        since = None if pool.watermark is None else pool.watermark - RECHECK_MARGIN
        rows = await ctx.dataset_pool_rows(since)
        pool.reads += 1
        pool.rows_read += len(rows)
        pool.add(rows)
    return pool, snapshot


def forget(dataset_id: str | None = None) -> None:
    """Drop the cached index of a dataset (of every dataset for None)."""
    for key in [k for k in _CACHE if dataset_id is None or k[0] == str(dataset_id)]:
        del _CACHE[key]


def _aware(value: Any) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    assert isinstance(value, dt.datetime)
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
