"""Decontamination: reject candidates that share a word n-gram with benchmark texts.

Training data written by a teacher can reproduce test items it has seen; a student trained on
them then scores too well on that benchmark. Like GPT-3 (Brown et al. 2020) and the
contamination checks that followed, a candidate is `contaminated` when it shares a 13-gram of
normalised words (NFKC, casefolded, Unicode word characters; punctuation ignored) with any
benchmark text. Benchmarks are supplied as data (the runner loads them); this module holds no
lists. A text shorter than n words is one gram of all its words, so a short benchmark item
is still caught when a candidate repeats exactly it.

Grams are stored as 64-bit hashes (a polynomial over blake2b word hashes), stable across
processes, so a built set may be cached. Self-Instruct (Wang et al. 2022) has no such step; it
belongs to the curation a distillation service owes its users.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import Final

from workers.curation.types import CONTAMINATED, Rejection

DEFAULT_N: Final = 13
_WORD: Final = re.compile(r"\w+")
_MASK: Final = (1 << 64) - 1
_BASE: Final = 0x100000001B3  # odd multiplier of the polynomial gram hash


def words(text: str) -> list[str]:
    """Normalised words: NFKC, casefolded, runs of Unicode word characters."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


@lru_cache(maxsize=1 << 18)
def _word_hash(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")


def ngram_hashes(text: str, n: int = DEFAULT_N) -> Iterator[int]:
    """Hashes of the word n-grams of `text` (one gram of all words if it has fewer than n)."""
    if n < 1:
        raise ValueError("n must be >= 1")
    hashes = [_word_hash(w) for w in words(text)]
    if not hashes:
        return
    if len(hashes) < n:
        yield _polynomial(hashes)
        return
    top = pow(_BASE, n - 1, 1 << 64)  # weight of the word leaving the window
    h = _polynomial(hashes[:n])
    yield h
    for i in range(n, len(hashes)):
        h = ((h - hashes[i - n] * top) * _BASE + hashes[i]) & _MASK
        yield h


def _polynomial(hashes: list[int]) -> int:
    h = 0
    for w in hashes:
        h = (h * _BASE + w) & _MASK
    return h


def build_ngram_set(texts: Iterable[str], n: int = DEFAULT_N) -> set[int]:
    """The n-gram hashes of all benchmark `texts`."""
    grams: set[int] = set()
    for text in texts:
        grams.update(ngram_hashes(text, n))
    return grams


def contaminated(text: str, ngram_set: set[int], n: int = DEFAULT_N) -> Rejection | None:
    """`contaminated` if `text` shares an n-gram with the set (built with the same n)."""
    for position, gram in enumerate(ngram_hashes(text, n)):
        if gram in ngram_set:
            shown = " ".join(words(text)[position : position + n])
            return Rejection(CONTAMINATED, f"shares a {n}-gram with a benchmark: {shown!r}")
    return None
