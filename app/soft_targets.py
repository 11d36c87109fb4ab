"""Soft targets (the teacher's token distributions) as plain data, and their packed storage.

One example's soft targets: for each of its ``n`` completion tokens, the token id and the
teacher's logprob of it, and the teacher's top ``k`` alternatives (ids and logprobs, sorted by
logprob, descending). Stored packed (``soft_targets.data``), never as JSON.

Encoding ``z1`` (zstd of four little-endian planes, back to back)::

    token_ids       uint32[n]
    token_logprobs  float32[n]          exact as the teacher gave them (to float32)
    top_ids         uint32[n * k]       0xFFFFFFFF pads a position that had fewer than k
    top_q           uint16[n * k]       round(-logprob * 1024), clamped to 65535

So an alternative costs 6 bytes before compression (4 for the id, 2 for its logprob), and a
top-k logprob comes back within 2**-11 (< 5e-4) of the teacher's for logprobs >= -64; anything
below -64 (a probability under 1.6e-28) comes back as -64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import zstandard

ENCODING = "z1"
Q_SCALE = 1024.0
Q_MAX = 65535
MIN_LOGPROB = -Q_MAX / Q_SCALE  # -63.999...
NO_ID = 0xFFFFFFFF
_LEVEL = 3


@dataclass(slots=True)
class SoftTargets:
    """The teacher's distribution over one completion, position by position.

    ``top_ids[t]`` and ``top_logprobs[t]`` hold up to ``k`` alternatives at position ``t``,
    most likely first. ``source``: "generation" (the teacher wrote the text) or "scoring".
    """

    token_ids: list[int]
    token_logprobs: list[float]
    top_ids: list[list[int]]
    top_logprobs: list[list[float]]
    source: str = "generation"

    @property
    def positions(self) -> int:
        return len(self.token_ids)

    @property
    def k(self) -> int:
        return max((len(t) for t in self.top_ids), default=0)


def pack(targets: SoftTargets) -> bytes:
    """The ``z1`` bytes of `targets` (see the module docstring)."""
    n, k = targets.positions, targets.k
    if (
        len(targets.token_logprobs) != n
        or len(targets.top_ids) != n
        or len(targets.top_logprobs) != n
    ):
        raise ValueError("soft targets: every plane needs one entry per position")
    ids = np.full((n, k), NO_ID, dtype="<u4")
    q = np.full((n, k), Q_MAX, dtype="<u2")
    for t, (row_ids, row_lps) in enumerate(zip(targets.top_ids, targets.top_logprobs, strict=True)):
        if len(row_ids) != len(row_lps):
            raise ValueError(
                f"soft targets: position {t} has {len(row_ids)} ids and {len(row_lps)} logprobs"
            )
        m = len(row_ids)
        if m:
            ids[t, :m] = row_ids
            lp = np.nan_to_num(np.asarray(row_lps, dtype=np.float64), neginf=MIN_LOGPROB)
            q[t, :m] = np.clip(np.rint(-lp * Q_SCALE), 0, Q_MAX)
    body = b"".join(
        (
            np.asarray(targets.token_ids, dtype="<u4").tobytes(),
            np.asarray(targets.token_logprobs, dtype="<f4").tobytes(),
            ids.tobytes(),
            q.tobytes(),
        )
    )
    return zstandard.ZstdCompressor(level=_LEVEL).compress(body)


def unpack_arrays(
    data: bytes, positions: int, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(token_ids uint32[n], token_logprobs float32[n], top_ids uint32[n, k] with NO_ID pads,
    top_logprobs float32[n, k] with -inf at pads) of a ``z1`` blob."""
    body = zstandard.ZstdDecompressor().decompress(data, max_output_size=positions * (8 + 6 * k))
    n = positions
    at = 0
    token_ids = np.frombuffer(body, dtype="<u4", count=n, offset=at)
    at += 4 * n
    token_logprobs = np.frombuffer(body, dtype="<f4", count=n, offset=at)
    at += 4 * n
    top_ids = np.frombuffer(body, dtype="<u4", count=n * k, offset=at).reshape(n, k)
    at += 4 * n * k
    q = np.frombuffer(body, dtype="<u2", count=n * k, offset=at).reshape(n, k)
    top_logprobs = (-q.astype(np.float32) / np.float32(Q_SCALE)).astype(np.float32)
    top_logprobs[top_ids == NO_ID] = -np.inf
    return token_ids, token_logprobs, top_ids, top_logprobs


def unpack(data: bytes, positions: int, k: int, source: str = "generation") -> SoftTargets:
    """Inverse of :func:`pack` (top-k logprobs to within 2**-11; pads dropped)."""
    token_ids, token_logprobs, top_ids, top_logprobs = unpack_arrays(data, positions, k)
    keep = top_ids != NO_ID
    return SoftTargets(
        token_ids=token_ids.tolist(),
        token_logprobs=token_logprobs.astype(float).tolist(),
        top_ids=[row[m].tolist() for row, m in zip(top_ids, keep, strict=True)],
        top_logprobs=[
            row[m].astype(float).tolist() for row, m in zip(top_logprobs, keep, strict=True)
        ],
        source=source,
    )
