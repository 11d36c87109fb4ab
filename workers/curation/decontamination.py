"""Decontamination: reject candidates that repeat, or lightly edit, an item of a benchmark.

Training data written by a teacher can reproduce test items it has seen; a student trained on
them then scores too well on that benchmark. The matching itself lives in `app.contamination`
(the API re-checks stored datasets with it too, and `app` never imports `workers`): a light
edit of a benchmark question (fuzzy, ROUGE-L recall over content words), an exact repeat of a
short one, or a shared 13-gram of a long one (Brown et al. 2020). Benchmarks are data the
runner loads (tenants upload them); this module holds no lists.

`build_ngram_set` / `contaminated` keep the plain verbatim n-gram rule for callers that want
only that.
"""

from __future__ import annotations

from collections.abc import Iterable

from app.contamination import DEFAULT_N, Index, build_index, check_example, ngram_hashes, words
from app.contamination import check as match
from workers.curation.types import CONTAMINATED, Candidate, Rejection

__all__ = [
    "DEFAULT_N",
    "Index",
    "build_index",
    "build_ngram_set",
    "check_candidate",
    "contaminated",
    "match",
    "ngram_hashes",
    "words",
]


def check_candidate(candidate: Candidate, index: Index | None) -> Rejection | None:
    """`contaminated` when the task (instruction and input) or the answer matches an item."""
    if index is None or not len(index):
        return None
    found = check_example(candidate.instruction, candidate.input, candidate.output, index)
    return None if found is None else Rejection(CONTAMINATED, found[0].detail(found[1]))


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
