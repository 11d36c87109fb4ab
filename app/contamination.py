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
- **exact** (shorter items): the text contains all the item's words, contiguous, in order,
  and the match ends its clause (no word or apostrophe follows on the same line).
  "Who wrote Hamlet?" is caught when repeated, not "Who wrote Macbeth?" nor "Who wrote
  Hamlet's sequel?", which are other questions. An item of function words only ("Is it?")
  matches only a text of exactly its words.
- **multiple choice**: an item with lettered options ("A. ...", "(B) ...", one a line or
  inline) is aligned as its question and each option on its own, so reordered or relabelled
  options cost nothing; and its question alone is an item too (fuzzy, options dropped) when it
  is shorter than n words (a longer one hits the n-gram rule) and has at least
  `min_stem_words` distinctive content words: not the frame ("which of the following
  statements is correct?" is shared by many questions), not numbers ("3x + 7 = 2x - 5" is a
  template once numbers fold). Options alone are not an item.
- **13-gram** (items of >= 13 words): the text shares a run of 13 words with the item (GPT-3's
  rule, Brown et al. 2020), which catches a long passage quoted in part.

Finding candidates is O(the text's words): an inverted index maps each content word to the
items holding it (numpy arrays); one bincount gives every item's bag-of-words overlap with the
text, an upper bound of the LCS, so only the items that can pass are aligned (rapidfuzz LCS).
Questions matched alone have their own, smaller postings (numbers and frame words left out:
they are in nearly every question) and a second bincount.
"""

from __future__ import annotations

import hashlib
import itertools
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


_DIGIT: Final = re.compile(r"\d|#")
# an option label: "A." / "A)" / "(A)" / "A:" opening a line, or "(A)" inline
_OPTION: Final = re.compile(r"(?:^|\n)[^\S\n]*\(?([A-J])[.):][^\S\n]|\(([A-J])\)\s", re.IGNORECASE)

# the words of a multiple-choice question's frame ("Which of the following statements is
# correct?"): shared by many questions, so they do not make a question distinctive
MCQ_FRAME: Final = frozenset(
    ["following", "statement", "statements", "true", "false", "correct", "incorrect", "best",
     "describes", "describe", "explains", "except", "likely", "least", "option", "options",
     "answer", "choose", "select"]
)  # fmt: skip


def _distinctive(content: list[str]) -> int:
    """Content words that tell one multiple-choice question from another: not its frame, not
    numbers nor "3x" (an equation's question is a template once numbers fold)."""
    return sum(t not in MCQ_FRAME and not _DIGIT.search(t) for t in content)


def mcq_parts(text: str) -> tuple[str, list[str]] | None:
    """A multiple-choice item's question and options (the text after labels "A", "B", ... in
    order, at least two), or None when `text` has none."""
    marks: list[tuple[int, int]] = []  # (label start, option text start)
    for m in _OPTION.finditer(text):
        if (m.group(1) or m.group(2)).upper() == "ABCDEFGHIJ"[len(marks)]:
            marks.append((m.start(), m.end()))
    if len(marks) < 2 or not text[: marks[0][0]].strip():
        return None
    ends = [start for start, _ in marks[1:]] + [len(text)]
    return text[: marks[0][0]].strip(), [
        text[a:b].strip() for (_, a), b in zip(marks, ends, strict=True)
    ]


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
    # a multiple-choice question is matched alone when it has this many distinctive words
    min_stem_words: int = 5
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
    # lengths of the parts of a fuzzy item aligned one by one (a question, then its options, in
    # any order); () for an item aligned whole
    fuzzy_parts: list[tuple[int, ...]] = field(default_factory=list)
    fuzzy_need: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    # content word id -> (fuzzy items holding it, how often each holds it, the largest count)
    postings: dict[int, tuple[np.ndarray, np.ndarray, int]] = field(default_factory=dict)
    # a multiple-choice item whose question is distinctive is matched by its question alone
    # too (its first `fuzzy_parts[i][0]` words): fuzzy item -> (words needed, words of the
    # question left out of `stem_postings`: numbers and the frame, in nearly every question)
    stems: dict[int, tuple[int, int]] = field(default_factory=dict)
    stem_items: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # -> fuzzy
    # per question (positions in `stem_items`): how many of its other words a match needs
    stem_need: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    # content word id -> (questions holding it, positions in `stem_items`; how often; the most)
    stem_postings: dict[int, tuple[np.ndarray, np.ndarray, int]] = field(default_factory=dict)
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
            parts: tuple[int, ...] = ()  # a question and its options, aligned one by one
            stem: list[str] = []  # a distinctive question, matched alone too
            mcq = mcq_parts(text)
            if mcq is not None:
                question, *options = (content_words(words(part)) for part in (mcq[0], *mcq[1]))
                unlabelled = [t for part in (question, *options) for t in part]
            if mcq is not None and len(unlabelled) >= config.min_content_words:
                content = unlabelled
                parts = tuple(len(part) for part in (question, *options))
                # a question of n words or more repeated alone hits the n-gram rule already
                short = len(words(mcq[0])) < config.n
                if short and _distinctive(question) >= config.min_stem_words:
                    stem = question
            seq = [index.vocab.setdefault(t, len(index.vocab)) for t in content]
            fuzzy = len(index.fuzzy_items)
            index.fuzzy_items.append(position)
            index.fuzzy_seqs.append(seq)
            index.fuzzy_parts.append(parts)
            need.append(_need(config, len(seq)))
            if stem:
                left_out = sum(t == NUMBER or t in MCQ_FRAME for t in stem)
                index.stems[fuzzy] = (_need(config, len(stem)), left_out)
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
    stem_post: dict[int, tuple[list[int], list[int]]] = {}
    frequent = {index.vocab[t] for t in (NUMBER, *MCQ_FRAME) if t in index.vocab}
    for position, fuzzy in enumerate(index.stems):
        question_ids = index.fuzzy_seqs[fuzzy][: index.fuzzy_parts[fuzzy][0]]
        for word_id, count in Counter(w for w in question_ids if w not in frequent).items():
            ids, counts = stem_post.setdefault(word_id, ([], []))
            ids.append(position)
            counts.append(count)
    index.stem_items = np.fromiter(index.stems, np.int64, len(index.stems))
    index.stem_need = np.asarray(
        [max(1, needed - left_out) for needed, left_out in index.stems.values()], np.int64
    )
    index.stem_postings = {
        w: (np.asarray(ids, np.int64), np.asarray(counts, np.int64), max(counts))
        for w, (ids, counts) in stem_post.items()
    }
    return index


def _need(config: Config, length: int) -> int:
    """How many of `length` content words a fuzzy match must hold."""
    return math.ceil(config.min_recall * length - 1e-9)


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
    return (
        _check_exact(text, tokens, index)
        or _check_grams(tokens, index)
        or _check_fuzzy(tokens, index)
    )


def _check_exact(text: str, tokens: list[str], index: Index) -> Match | None:
    position = index.whole.get(tuple(tokens)) if index.whole else None
    if position is not None:
        return Match(index.items[position], "exact", 1.0)
    if not index.exact:
        return None
    for i, token in enumerate(tokens):
        for key, position in index.exact.get(token, ()):
            if tuple(tokens[i : i + len(key)]) == key and _ends_clause(text, key):
                return Match(index.items[position], "exact", 1.0)
    return None


def _ends_clause(text: str, key: tuple[str, ...]) -> bool:
    """Whether `key` occurs in `text` not followed, on the same line, by a word or an
    apostrophe: "Who wrote Hamlet?" is in "Who wrote Hamlet? Shakespeare", not in "Who wrote
    Hamlet's sequel?" nor "Who wrote Hamlet and Macbeth?" (other questions). Only run on a
    token match (rare), so the regex costs nothing on clean texts."""
    pattern = r"(?<!\w)" + r"\W+".join(map(re.escape, key)) + r"(?![^\S\n]*['\u2019\w])"
    return re.search(pattern, unicodedata.normalize("NFKC", text).casefold()) is not None


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
    share = overlap[hopeful] / index.fuzzy_need[hopeful]
    wholes = hopeful.size  # hopeful[wholes:]: questions of multiple-choice items, alone
    stem_overlap = _stem_overlap(counts, index) if index.stem_postings else {}
    if stem_overlap:
        hopeful = np.concatenate([hopeful, np.fromiter(stem_overlap, np.int64)])
        share = np.concatenate([share, [o / index.stems[f][0] for f, o in stem_overlap.items()]])
    if hopeful.size == 0:
        return None
    best: Match | None = None
    # the most overlapping (as a share of the item) first, and at most `max_aligned` of them:
    # a long text made of a topic's common words may overlap many items in bulk
    for k in np.argsort(-share, kind="stable")[: index.config.max_aligned]:
        fuzzy = hopeful[k]
        item_seq, parts = index.fuzzy_seqs[fuzzy], index.fuzzy_parts[fuzzy]
        if k >= wholes:  # the question alone
            item_seq, parts, bound = item_seq[: parts[0]], (), stem_overlap[int(fuzzy)]
        else:
            bound = overlap[fuzzy]
        recall = _window_recall(seq, item_seq, index.config.window, parts)
        recall = min(recall, bound / len(item_seq))  # parts may share a text word
        if recall >= index.config.min_recall and (best is None or recall > best.score):
            best = Match(index.items[index.fuzzy_items[fuzzy]], "fuzzy", recall)
            if recall >= 1.0:
                break
    return best


def _stem_overlap(counts: Counter[int], index: Index) -> dict[int, int]:
    """The questions (of multiple-choice items) the text's words `counts` may match alone:
    fuzzy item -> bag-of-words overlap, at least the words a match needs."""
    ids, weights = [], []
    for word_id in counts.keys() & index.stem_postings.keys():
        count, (item_ids, item_counts, most) = counts[word_id], index.stem_postings[word_id]
        ids.append(item_ids)
        weights.append(item_counts if count >= most else np.minimum(item_counts, count))
    if not ids:
        return {}
    overlap = np.bincount(
        np.concatenate(ids), weights=np.concatenate(weights), minlength=len(index.stem_items)
    )
    found = {}
    for position in np.flatnonzero(overlap >= index.stem_need):
        fuzzy = int(index.stem_items[position])
        # + the question's numbers and frame words: still an upper bound of the LCS
        found[fuzzy] = int(overlap[position]) + index.stems[fuzzy][1]
    return found


def _window_recall(
    text: list[int], item: list[int], window: float, parts: tuple[int, ...] = ()
) -> float:
    """max over windows of `text` (starting at a word of `item`) of LCS(item, window)/len(item).
    An item in `parts` (a question and its options) is also scored, in the window that aligns
    best whole, as the sum of each part's LCS with it: parts in any order."""
    words_of_item = set(item)
    width = max(len(item) + 1, math.ceil(window * len(item)))
    best, best_start = 0, -1
    for start, word in enumerate(text):
        if word not in words_of_item:
            continue
        lcs = LCSseq.similarity(item, text[start : start + width])
        if lcs > best:
            best, best_start = lcs, start
            if best == len(item):
                return 1.0
    if parts and best_start >= 0:
        span = text[best_start : best_start + width]
        ends = itertools.accumulate(parts)
        best = max(
            best,
            sum(LCSseq.similarity(item[e - n : e], span) for e, n in zip(ends, parts, strict=True)),
        )
    return best / len(item)


def check_example(
    instruction: str, input: str, output: str | None, index: Index
) -> tuple[Match, str] | None:
    """The first match of an example's task (instruction and input), else of its answer, with
    where it was found ("instruction" or "output"); None when neither matches."""
    fields = [("instruction", f"{instruction}\n{input}")]
    if output:
        fields.append(("output", output))
    for where, text in fields:
        found = check(text, index)
        if found is not None:
            return found, where
    return None
