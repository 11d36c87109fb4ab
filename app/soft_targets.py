"""Soft targets (the teacher's token distributions) as plain data, and their packed storage.

One example's soft targets: for each of its ``n`` completion tokens, the token id and the
teacher's logprob of it, and the teacher's top ``k`` alternatives (ids and logprobs, sorted by
logprob, descending). Stored packed (``soft_targets.data``), never as JSON.

Four planes, little-endian::

    token_ids       uint32[n]
    token_logprobs  float32[n]          exact as the teacher gave them (to float32)
    top_ids         uint32[n, k]        0xFFFFFFFF pads a position that had fewer than k
    top_q           uint16[n, k]        round(-logprob * 1024), clamped to 65535

An alternative costs 6 bytes before compression (4 for the id, 2 for its logprob), and a top-k
logprob comes back within 2**-11 (< 5e-4) of the teacher's for logprobs >= -64; anything below
-64 (a probability under 1.6e-28; -inf and NaN too) comes back as -64.

Encodings (``soft_targets.encoding``):

* ``z2`` (written now): ``top_q`` delta-coded along each position (the first value, then the
  differences modulo 2**16: logprobs are sorted, so the differences are small), every plane
  byte-shuffled (byte 0 of each value, then byte 1, ...: the high bytes of ids below 2**24 are
  runs of zeros), then zstd level 3. 25-30% smaller than ``z1`` on top-k ids from a 152k vocab
  (``bench/soft_targets.py``).
* ``z1``: zstd level 3 of the four planes back to back, as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import zstandard

ENCODING = "z2"
ENCODINGS = ("z1", "z2")
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


def _quantize(logprobs: np.ndarray) -> np.ndarray:
    lp = np.nan_to_num(np.asarray(logprobs, dtype=np.float64), nan=MIN_LOGPROB, neginf=MIN_LOGPROB)
    return np.clip(np.rint(-lp * Q_SCALE), 0, Q_MAX).astype("<u2")


def _planes(targets: SoftTargets) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(token_ids, token_logprobs, top_ids [n, k] with NO_ID pads, top_q [n, k])."""
    n, k = targets.positions, targets.k
    if (
        len(targets.token_logprobs) != n
        or len(targets.top_ids) != n
        or len(targets.top_logprobs) != n
    ):
        raise ValueError("soft targets: every plane needs one entry per position")
    token_ids = np.asarray(targets.token_ids, dtype=np.int64).reshape(n)
    token_logprobs = np.asarray(targets.token_logprobs, dtype="<f4").reshape(n)
    lengths = np.array([len(ids) for ids in targets.top_ids], dtype=np.int64)
    for t, (ids, lps) in enumerate(zip(targets.top_ids, targets.top_logprobs, strict=True)):
        if len(ids) != len(lps):
            raise ValueError(
                f"soft targets: position {t} has {len(ids)} ids and {len(lps)} logprobs"
            )
    if n == 0 or lengths.min() == k:  # the usual case: k alternatives everywhere, in one go
        top = np.asarray(targets.top_ids, dtype=np.int64).reshape(n, k)
        q = _quantize(np.asarray(targets.top_logprobs, dtype=np.float64).reshape(n, k))
        given = top
    else:
        top = np.full((n, k), NO_ID, dtype=np.int64)
        q = np.full((n, k), Q_MAX, dtype="<u2")
        for t, (ids, lps) in enumerate(zip(targets.top_ids, targets.top_logprobs, strict=True)):
            if ids:
                top[t, : len(ids)] = ids
                q[t, : len(ids)] = _quantize(np.asarray(lps, dtype=np.float64))
        given = top[np.arange(k) < lengths[:, None]]
    for name, plane in (("token_ids", token_ids), ("top_ids", given)):
        if plane.size and (plane.min() < 0 or plane.max() >= NO_ID):
            raise ValueError(f"soft targets: {name} must be in [0, 2**32 - 1)")
    return token_ids.astype("<u4"), token_logprobs, top.astype("<u4"), q


def _shuffle(plane: np.ndarray) -> bytes:
    """Byte-shuffled: byte 0 of every value, then byte 1, ... (one strided copy per byte: several
    times faster than transposing the whole byte matrix)."""
    width = plane.dtype.itemsize
    data = np.ascontiguousarray(plane).reshape(-1).view(np.uint8).reshape(-1, width)
    out = np.empty((width, data.shape[0]), dtype=np.uint8)
    for byte in range(width):
        out[byte] = data[:, byte]
    return out.tobytes()


def _unshuffle(body: bytes, dtype: str, count: int, offset: int) -> np.ndarray:
    width = np.dtype(dtype).itemsize
    raw = np.frombuffer(body, dtype=np.uint8, count=count * width, offset=offset)
    planes = raw.reshape(width, count)
    out = np.empty((count, width), dtype=np.uint8)
    for byte in range(width):
        out[:, byte] = planes[byte]
    return out.view(dtype).reshape(count)


def pack(targets: SoftTargets) -> bytes:
    """The ``z2`` bytes of `targets` (see the module docstring)."""
    token_ids, token_logprobs, top_ids, q = _planes(targets)
    dq = q.copy()
    if dq.shape[1] > 1:
        dq[:, 1:] = q[:, 1:] - q[:, :-1]  # uint16: wraps modulo 2**16, exact both ways
    body = b"".join(_shuffle(p) for p in (token_ids, token_logprobs, top_ids, dq))
    return zstandard.ZstdCompressor(level=_LEVEL).compress(body)


def unpack_arrays(
    data: bytes, positions: int, k: int, encoding: str = ENCODING
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(token_ids uint32[n], token_logprobs float32[n], top_ids uint32[n, k] with NO_ID pads,
    top_logprobs float32[n, k] with -inf at pads) of a packed blob."""
    n = positions
    size = n * (8 + 6 * k)
    body = zstandard.ZstdDecompressor().decompress(data, max_output_size=max(size, 1))
    if len(body) != size:
        raise ValueError(f"soft targets: {len(body)} bytes where {n} x {k} needs {size}")
    if encoding == "z2":
        token_ids = _unshuffle(body, "<u4", n, 0)
        token_logprobs = _unshuffle(body, "<f4", n, 4 * n)
        top_ids = _unshuffle(body, "<u4", n * k, 8 * n).reshape(n, k)
        q = np.cumsum(
            _unshuffle(body, "<u2", n * k, 8 * n + 4 * n * k).reshape(n, k), axis=1, dtype="<u2"
        )
    elif encoding == "z1":
        token_ids = np.frombuffer(body, dtype="<u4", count=n, offset=0)
        token_logprobs = np.frombuffer(body, dtype="<f4", count=n, offset=4 * n)
        top_ids = np.frombuffer(body, dtype="<u4", count=n * k, offset=8 * n).reshape(n, k)
        q = np.frombuffer(body, dtype="<u2", count=n * k, offset=8 * n + 4 * n * k).reshape(n, k)
    else:
        raise ValueError(f"soft targets: unknown encoding {encoding!r}")
    top_logprobs = q.astype(np.float32) / np.float32(-Q_SCALE)
    top_logprobs[top_ids == NO_ID] = -np.inf
    return token_ids, token_logprobs, top_ids, top_logprobs


def unpack(
    data: bytes, positions: int, k: int, source: str = "generation", encoding: str = ENCODING
) -> SoftTargets:
    """Inverse of :func:`pack` (top-k logprobs to within 2**-11; pads dropped)."""
    token_ids, token_logprobs, top_ids, top_logprobs = unpack_arrays(data, positions, k, encoding)
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
