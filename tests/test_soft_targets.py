"""app.soft_targets: packing the teacher's distributions and reading them back."""

from __future__ import annotations

import math

import numpy as np
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from app.soft_targets import (
    ENCODING,
    MIN_LOGPROB,
    NO_ID,
    Q_MAX,
    SoftTargets,
    pack,
    unpack,
    unpack_arrays,
)

STEP = 2**-11  # half of the 1/1024 grid: the most a top-k logprob may move
ids = st.integers(0, NO_ID - 1)
logprobs = st.one_of(
    st.floats(-80.0, 0.0, allow_nan=False, width=32),
    st.just(-math.inf),
)


@st.composite
def soft_targets(draw: st.DrawFn) -> SoftTargets:
    n = draw(st.integers(0, 12))
    k = draw(st.integers(0, 6))
    top_ids, top_logprobs = [], []
    for _ in range(n):
        m = draw(st.integers(0, k))  # fewer than k: the position is padded
        row = sorted(draw(st.lists(logprobs, min_size=m, max_size=m)), reverse=True)
        top_ids.append(draw(st.lists(ids, min_size=m, max_size=m)))
        top_logprobs.append(row)
    return SoftTargets(
        token_ids=draw(st.lists(ids, min_size=n, max_size=n)),
        token_logprobs=draw(st.lists(logprobs, min_size=n, max_size=n)),
        top_ids=top_ids,
        top_logprobs=top_logprobs,
        source=draw(st.sampled_from(["generation", "scoring"])),
    )


def expected_logprob(lp: float) -> float:
    return max(lp, MIN_LOGPROB)


@settings(max_examples=300, deadline=None)
@given(soft_targets())
def test_roundtrip_is_exact_for_ids_and_within_the_grid_for_logprobs(
    targets: SoftTargets,
) -> None:
    data = pack(targets)
    back = unpack(data, targets.positions, targets.k, source=targets.source)
    assert back.source == targets.source
    assert back.token_ids == targets.token_ids
    assert back.top_ids == targets.top_ids  # pads dropped: every position as long as given
    # the chosen token's logprob is stored as float32, exactly
    assert back.token_logprobs == [float(np.float32(x)) for x in targets.token_logprobs]
    for got, want in zip(back.top_logprobs, targets.top_logprobs, strict=True):
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert abs(g - expected_logprob(w)) <= STEP + 1e-6
        assert got == sorted(got, reverse=True)  # still most likely first
    # the arrays view: pads are NO_ID with -inf
    token_ids, _, top_ids, top_lps = unpack_arrays(data, targets.positions, targets.k)
    assert token_ids.dtype == np.uint32 and top_ids.shape == (targets.positions, targets.k)
    assert bool(np.all(np.isneginf(top_lps[top_ids == NO_ID])))
    assert bool(np.all(np.isfinite(top_lps[top_ids != NO_ID])))


def test_edges_empty_k0_pads_big_ids_and_extremes() -> None:
    empty = SoftTargets([], [], [], [])
    assert unpack(pack(empty), 0, 0) == empty
    no_alternatives = SoftTargets([5, 6], [-0.5, -1.5], [[], []], [[], []], source="scoring")
    assert unpack(pack(no_alternatives), 2, 0, source="scoring") == no_alternatives
    big = [151_935, 2**20 + 3, NO_ID - 1]  # vocab ids past 65535 and up to the largest one
    targets = SoftTargets(
        token_ids=[151_935, 0],
        token_logprobs=[-math.inf, 0.0],
        top_ids=[big, [7]],
        top_logprobs=[[0.0, -64.5, -math.inf], [math.nan]],
    )
    back = unpack(pack(targets), 2, 3)
    assert back.top_ids == [big, [7]]
    assert back.token_logprobs[0] == -math.inf
    assert back.top_logprobs[0] == [0.0, -Q_MAX / 1024, -Q_MAX / 1024]  # clamped at -64
    assert back.top_logprobs[1] == [-Q_MAX / 1024]  # NaN: no mass, not probability 1


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="one entry per position"):
        pack(SoftTargets([1], [], [[1]], [[0.0]]))
    with pytest.raises(ValueError, match="position 0 has 2 ids and 1 logprobs"):
        pack(SoftTargets([1], [0.0], [[1, 2]], [[0.0]]))
    with pytest.raises(ValueError, match="top_ids"):
        pack(SoftTargets([1], [0.0], [[NO_ID]], [[0.0]]))  # would read back as a pad
    with pytest.raises(ValueError, match="token_ids"):
        pack(SoftTargets([-1], [0.0], [[1]], [[0.0]]))
    data = pack(SoftTargets([1, 2], [0.0, 0.0], [[1], [2]], [[0.0], [0.0]]))
    with pytest.raises(ValueError, match="needs"):
        unpack_arrays(data, 3, 1)  # a shape that does not match the blob
    with pytest.raises(ValueError, match="unknown encoding"):
        unpack_arrays(data, 2, 1, encoding="z9")


def test_z1_rows_still_read() -> None:
    """Rows stored before z2 (planes as they are, zstd) decode by their encoding."""
    n, k = 2, 2
    body = b"".join(
        (
            np.array([3, 70_000], "<u4").tobytes(),
            np.array([-0.25, -1.0], "<f4").tobytes(),
            np.array([[3, 4], [70_000, NO_ID]], "<u4").tobytes(),
            np.array([[256, 2048], [1024, Q_MAX]], "<u2").tobytes(),
        )
    )
    back = unpack(zstandard.ZstdCompressor().compress(body), n, k, encoding="z1")
    assert back.token_ids == [3, 70_000]
    assert back.top_ids == [[3, 4], [70_000]]
    assert back.top_logprobs == [[-0.25, -2.0], [-1.0]]


def test_an_alternative_costs_six_bytes_before_compression_and_less_after() -> None:
    """Zipf-like ids from a 152k vocab and sorted logprobs: z2 packs under 6 bytes each."""
    rng = np.random.default_rng(0)
    n, k = 400, 20
    top = np.minimum(rng.zipf(1.2, size=(n, k)), 151_935)
    lps = np.sort(-rng.exponential(3.0, size=(n, k)), axis=1)[:, ::-1]
    targets = SoftTargets(top[:, 0].tolist(), lps[:, 0].tolist(), top.tolist(), lps.tolist())
    data = pack(targets)
    assert ENCODING == "z2"
    assert len(zstandard.ZstdDecompressor().decompress(data)) == n * (8 + 6 * k)
    assert len(data) < n * k * 6 * 0.8
