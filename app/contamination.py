"""Benchmark contamination: does a text repeat, or lightly edit, an item of a benchmark?

Plain functions over plain data, used by the workers (every candidate of a job that names
benchmarks) and by the API (re-checking what a dataset holds), so it lives in `app` (which
never imports `workers`).

A text is contaminated by a benchmark item when one of these holds (words: NFKC, casefolded
runs of Unicode word characters; *content words*: words not in a short list of English
function words):

- **fuzzy** (items with >= `min_content_words` content words): some window of the text's
  content words holds the item's content words in order, but for a few: the longest common
  subsequence (LCS) of the item's content words and the window is at least `min_recall` of
  the item's (ROUGE-L recall over content words; the window is 1.5x the item; every number is
  one token, so changed numbers cost nothing). A number or a
  name changed, a word added or dropped, a sentence wrapped around the item: still caught.
- **exact** (shorter items): the text contains all the item's words, contiguous, in order.
  "Who wrote Hamlet?" is caught when repeated, not "Who wrote Macbeth?", which is another
  question. An item of function words only ("Is it?") matches only a text of exactly its words.
- **13-gram** (items of >= 13 words): the text shares a run of 13 words with the item (GPT-3's
  rule, Brown et al. 2020), which catches a long passage quoted in part.

Finding candidates is O(the text's words): an inverted index maps each content word to the
items holding it (numpy arrays); one bincount gives every item's bag-of-words overlap with the
text, an upper bound of the LCS, so only the items that can pass are aligned (rapidfuzz LCS).
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final

import numpy as np
from rapidfuzz.distance import LCSseq

DEFAULT_N: Final = 13
PREVIEW_CHARS: Final = 80
_WORD: Final = re.compile(r"\w+")
_MASK: Final = (1 << 64) - 1
_BASE: Final = 0x100000001B3  # odd multiplier of the polynomial gram hash

# English function words: left out of the fuzzy comparison (a changed "the" or "how" says
# nothing), so "How many apples does Tom have?" is compared as "many apples tom"
_STOPWORDS = """a an the and or but nor if then else so than that this these those there here of
    to in on at by for with from into onto over under about above below between through during after
    before as is are was were be been being am do does did doing have has had having will would
    shall should can could may might must i me my mine we us our ours you your yours he him his
    she her hers it its they them their theirs what which who whom whose when where why how all
    any each both few more most other some such no not only own same too very just also s t
    let lets please"""
STOPWORDS: Final = frozenset(_STOPWORDS.split())


def words(text: str) -> list[str]:
    """Normalised words: NFKC, casefolded, runs of Unicode word characters."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


NUMBER: Final = "#"


def content_words(tokens: list[str]) -> list[str]:
    """The words a fuzzy match compares: function words left out, every number one token, so
    a benchmark problem with its numbers changed (the commonest light edit) still aligns."""
    return [NUMBER if t.isdecimal() else t for t in tokens if t not in STOPWORDS]


@lru_cache(maxsize=1 << 18)
def _word_hash(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")


def _polynomial(hashes: list[int]) -> int:
    h = 0
    for w in hashes:
        h = (h * _BASE + w) & _MASK
    return h


def ngram_hashes(text: str | list[str], n: int = DEFAULT_N, *, whole_if_short: bool = True
                 ) -> Iterator[int]:  # fmt: skip
    """Hashes of the word n-grams of `text` (stable across processes: blake2b word hashes,
    combined polynomially). A text of fewer than n words is one gram of all its words, unless
    `whole_if_short` is false (then it has none)."""
    if n < 1:
        raise ValueError("n must be >= 1")
    hashes = [_word_hash(w) for w in (words(text) if isinstance(text, str) else text)]
    if not hashes or (len(hashes) < n and not whole_if_short):
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


@dataclass(frozen=True, slots=True)
class Config:
    min_recall: float = 0.75  # share of an item's content words a fuzzy match must hold
    min_content_words: int = 4  # shorter items are matched exactly
    n: int = DEFAULT_N  # the verbatim n-gram rule, for items of at least n words
    window: float = 1.5  # a fuzzy window spans this many times the item's content words
    max_aligned: int = 64  # items aligned per text at most (the most overlapping first)


@dataclass(frozen=True, slots=True)
class Item:
    """One benchmark item as the index keeps it: where it is from and how it starts."""

    benchmark_id: str
    benchmark: str  # the benchmark's name
    idx: int
    preview: str  # the first PREVIEW_CHARS characters


@dataclass(frozen=True, slots=True)
class Match:
    item: Item
    rule: str  # "fuzzy", "exact" or "13-gram"
    score: float  # fuzzy: the LCS recall; exact and n-gram: 1.0

    def detail(self, where: str = "") -> str:
        """The rejection detail: `benchmark <name> item <idx>: <first 80 chars>`."""
        how = self.rule if self.rule != "fuzzy" else f"fuzzy {self.score:.2f}"
        prefix = f"{where} matches " if where else ""
        return (
            f"{prefix}benchmark {self.item.benchmark} item {self.item.idx} ({how}): "
            f"{self.item.preview}"
        )


@dataclass(slots=True)
class Index:
    """Benchmark items, indexed for :func:`check`. Plain data; build with :func:`build_index`."""

    config: Config
    items: list[Item] = field(default_factory=list)
    vocab: dict[str, int] = field(default_factory=dict)  # content word -> id
    # fuzzy items (positions in `fuzzy_items`): content-word ids, in order
    fuzzy_items: list[int] = field(default_factory=list)  # -> position in `items`
    fuzzy_seqs: list[list[int]] = field(default_factory=list)
    fuzzy_need: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    # content word id -> (fuzzy items holding it, how often each holds it, the largest count)
    postings: dict[int, tuple[np.ndarray, np.ndarray, int]] = field(default_factory=dict)
    # exact items by first word: (all words, position in `items`)
    exact: dict[str, list[tuple[tuple[str, ...], int]]] = field(default_factory=dict)
    # items of function words only ("Is it?"): matched by a text of exactly their words
    whole: dict[tuple[str, ...], int] = field(default_factory=dict)
    grams: dict[int, int] = field(default_factory=dict)  # n-gram hash -> position in `items`

    def __len__(self) -> int:
        return len(self.items)


def build_index(items: Iterable[tuple[str, str, int, str]], config: Config | None = None) -> Index:
    """The index of (benchmark_id, benchmark name, idx, text) items."""
    config = config or Config()
    index = Index(config=config)
    post: dict[int, tuple[list[int], list[int]]] = {}
    need: list[int] = []
    for benchmark_id, name, idx, text in items:
        tokens = words(text)
        if not tokens:
            continue
        position = len(index.items)
        index.items.append(Item(benchmark_id, name, idx, _preview(text)))
        content = content_words(tokens)
        if len(content) >= config.min_content_words:
            seq = [index.vocab.setdefault(t, len(index.vocab)) for t in content]
            fuzzy = len(index.fuzzy_items)
            index.fuzzy_items.append(position)
            index.fuzzy_seqs.append(seq)
            need.append(math.ceil(config.min_recall * len(seq) - 1e-9))
            for word_id, count in Counter(seq).items():
                ids, counts = post.setdefault(word_id, ([], []))
                ids.append(fuzzy)
                counts.append(count)
        elif content:
            index.exact.setdefault(tokens[0], []).append((tuple(tokens), position))
        else:
            index.whole.setdefault(tuple(tokens), position)
        if len(tokens) >= config.n:
            for gram in ngram_hashes(tokens, config.n):
                index.grams.setdefault(gram, position)
    index.postings = {
        w: (np.asarray(ids, np.int64), np.asarray(counts, np.int64), max(counts))
        for w, (ids, counts) in post.items()
    }
    index.fuzzy_need = np.asarray(need, np.int64)
    return index


def _preview(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= PREVIEW_CHARS else flat[:PREVIEW_CHARS] + "…"


def check(text: str, index: Index) -> Match | None:
    """The first benchmark item `text` repeats or lightly edits, or None."""
    if not index.items or not text:
        return None
    tokens = words(text)
    if not tokens:
        return None
    return _check_exact(tokens, index) or _check_grams(tokens, index) or _check_fuzzy(tokens, index)


def _check_exact(tokens: list[str], index: Index) -> Match | None:
    position = index.whole.get(tuple(tokens)) if index.whole else None
    if position is not None:
        return Match(index.items[position], "exact", 1.0)
    if not index.exact:
        return None
    for i, token in enumerate(tokens):
        for key, position in index.exact.get(token, ()):
            if tuple(tokens[i : i + len(key)]) == key:
                return Match(index.items[position], "exact", 1.0)
    return None


def _check_grams(tokens: list[str], index: Index) -> Match | None:
    n = index.config.n
    if not index.grams or len(tokens) < n:
        return None
    for gram in ngram_hashes(tokens, n, whole_if_short=False):
        position = index.grams.get(gram)
        if position is not None:
            return Match(index.items[position], f"{n}-gram", 1.0)
    return None


def _check_fuzzy(tokens: list[str], index: Index) -> Match | None:
    if not index.fuzzy_items:
        return None
    # the text's content words as ids (-1: a word no fuzzy item has)
    seq = [index.vocab.get(t, -1) for t in content_words(tokens)]
    counts = Counter(w for w in seq if w >= 0)
    if not counts:
        return None
    ids, weights = [], []
    for word_id, count in counts.items():
        item_ids, item_counts, most = index.postings[word_id]
        ids.append(item_ids)
        weights.append(item_counts if count >= most else np.minimum(item_counts, count))
    # bag-of-words overlap per item: an upper bound of the LCS with any window of the text
    overlap = np.bincount(
        np.concatenate(ids), weights=np.concatenate(weights), minlength=len(index.fuzzy_items)
    )
    hopeful = np.flatnonzero(overlap >= index.fuzzy_need)
    if hopeful.size == 0:
        return None
    best: Match | None = None
    # the most overlapping (as a share of the item) first, and at most `max_aligned` of them:
    # a long text made of a topic's common words may overlap many items in bulk
    share = overlap[hopeful] / index.fuzzy_need[hopeful]
    for fuzzy in hopeful[np.argsort(-share, kind="stable")][: index.config.max_aligned]:
        recall = _window_recall(seq, index.fuzzy_seqs[fuzzy], index.config.window)
        if recall >= index.config.min_recall and (best is None or recall > best.score):
            best = Match(index.items[index.fuzzy_items[fuzzy]], "fuzzy", recall)
            if recall >= 1.0:
                break
    return best


def _window_recall(text: list[int], item: list[int], window: float) -> float:
    """max over windows of `text` (starting at a word of `item`) of LCS(item, window)/len(item)."""
    words_of_item = set(item)
    width = max(len(item) + 1, math.ceil(window * len(item)))
    best = 0
    for start, word in enumerate(text):
        if word not in words_of_item:
            continue
        lcs = LCSseq.similarity(item, text[start : start + width])
        if lcs > best:
            best = lcs
            if best == len(item):
                break
    return best / len(item)
