"""Near-duplicate detection: Self-Instruct's ROUGE-L rule, exact, with prefix-filter candidates.

Self-Instruct (Wang et al. 2022, "Self-Instruct: Aligning Language Models with Self-Generated
Instructions") keeps a machine-written instruction only if its ROUGE-L F-measure against every
instruction already in the pool (the seeds and every accepted example) is below 0.7. Here a
candidate is rejected as `near_duplicate` when that F-measure is >= `DedupConfig.threshold`
(0.7; Self-Instruct's own script rejects only > 0.7), and as `duplicate` when it has exactly the
words of a pool instruction (same text up to case and punctuation). The rejection's detail names
the matched instruction (its pool position and its text, shortened) and the score.

How:

- Words as `rouge_score`'s default tokenizer makes them: lowercase, every character outside
  ``[a-z0-9]`` separates, no stemming. Texts without such words (e.g. only CJK) have ROUGE-L 0
  against everything, as in `rouge_score`, so they are never near duplicates. Words are split
  for a whole batch at once with numpy; a word of up to 8 bytes is identified by its bytes, a
  longer one by a 63-bit hash. Each distinct word gets an id, and a text becomes a string with
  one code point per word, so rapidfuzz's `LCSseq` computes the longest common subsequence in
  C++: F = 2 * LCS / (m + n), `rouge_score`'s fmeasure (tests compare the two on random pairs).
- Candidates come from prefix filtering (Bayardo et al. 2007, "Scaling up all pairs similarity
  search"; Xiao et al. 2008, PPJoin's positional filter; Wang et al. 2012, the l-prefix scheme),
  which misses no pair at or above the threshold:
  F >= t needs LCS >= t(m+n)/2, and LCS <= O, the overlap of the two word multisets (each
  occurrence of a word is its own element: ("the", 0), ("the", 1), ...). So O >= a(m, n) =
  ceil(t(m+n)/2), and since n >= t*m/(2-t) then, O >= amin(m) = ceil(t*m/(2-t)). With every
  text's elements sorted in one global order (rarest first), two texts with O >= a share their
  first two common elements inside both texts' first m - amin(m) + 2 elements. Each text gets a
  key per pair of elements in that prefix (a hash of the two); texts meet only in a key's group.
  In the group of key (x, y), where y is element j (0-based) of a text of m words, at most
  2 + (m - j - 1) elements are common (x, y and what follows y), so a pair is kept only if
  2 + min(m-j-1, n-k-1) >= a(m, n), i.e. n <= cap = floor(2(m - j + 1)/t - m) on each side.
  The table holds, per key group, the entries sorted by length and by cap, so each new entry
  walks only the shorter of its two compatible ranges. Texts so short that one common word can
  reach the threshold (m + n <= 2/t) get single-element keys as well.
- The candidate pairs get the exact ROUGE-L (rapidfuzz `cpdist`); the rejections are true
  matches, and no match is missed (tests compare with an exhaustive scan).

Cost: a text of m words gets about ((1-t) m / (2-t) + 2)^2 / 2 keys (55 for 20 words at 0.7,
~2,500 for 150, the length filter's cap on instructions): fine for instructions, heavy for texts
of thousands of words.

The global order is each element's document frequency at the time it was first indexed (then
frozen, so that every stored key stays valid; a word first seen later counts as rare, which only
costs candidates, never recall). `NearDupIndex.from_rows` builds the table from the texts alone:
nothing needs to be stored per example. The table is a few sorted runs (merged when two reach a
similar size), so adding a batch costs O(batch), amortised.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import LCSseq

from workers.curation.types import DUPLICATE, NEAR_DUPLICATE, Rejection

__all__ = [
    "DedupConfig",
    "NearDupIndex",
    "check_batch",
    "dedupe_batch",
    "dedupe_batch_matches",
    "rouge_l",
    "shorten",
    "tokenize",
]

_NON_ALNUM: Final = re.compile(r"[^a-z0-9]+")
# bytes.translate table: [a-z0-9] and the text separator \x00 stay, every other byte is a space.
_WORD_BYTES: Final = bytes(
    c if (0x30 <= c <= 0x39 or 0x61 <= c <= 0x7A or c == 0) else 0x20 for c in range(256)
)
_BYTE_MASKS: Final = np.array([(1 << (8 * n)) - 1 for n in range(8)] + [(1 << 64) - 1], np.uint64)
_LONG_WORD: Final = np.uint64(1 << 63)
_MAX_CODE_POINT: Final = 0x10FFFF  # word ids up to this are one character of a str
_EPS: Final = 1e-6  # slack for float rounding in the bounds (only ever admits more candidates)
_CHUNK: Final = 100_000  # texts per step of dedupe_batch and of building the table
_BLOCK: Final = 2_048  # batch rows decided together (see `_batch_matches`)
_STEP: Final = 1 << 20  # key entries per step of a table walk (bounds memory)
_OCCURRENCE_BITS: Final = 24  # element = word id << 24 | occurrence of the word in its text
_LEN_BITS: Final = 16  # table sort key: top 48 bits of the key's hash, then length or cap
_LEN_MAX: Final = (1 << _LEN_BITS) - 1
_SINGLE: Final = np.uint64(0xFFFFFFFF)  # second half of a single-element key
_DOC_BITS: Final = 17  # texts per `_Order.elements` call: at most 2^17 (> _CHUNK)
_DETAIL_CHARS: Final = 80  # of the matched text, in a rejection's detail


@dataclass(frozen=True, slots=True)
class DedupConfig:
    """Knobs of the near-duplicate check."""

    threshold: float = 0.7  # reject when ROUGE-L F >= threshold
    scan_max_pool: int = 20_000  # max_similarity: a full scan up to this pool size (exact best)
    workers: int = -1  # rapidfuzz threads (-1: all cores)


# ---------------------------------------------------------------------------- reference


def tokenize(text: str) -> list[str]:
    """Split like `rouge_score`'s default tokenizer: lowercase, non-[a-z0-9] runs split, no stem."""
    return _NON_ALNUM.sub(" ", text.lower()).split()


def rouge_l(a: str, b: str) -> float:
    """ROUGE-L F-measure of two texts, as `rouge_score` computes it without stemming."""
    vocab: dict[str, int] = {}
    x = [vocab.setdefault(w, len(vocab)) for w in tokenize(a)]
    y = [vocab.setdefault(w, len(vocab)) for w in tokenize(b)]
    if not x or not y:
        return 0.0
    return 2.0 * LCSseq.similarity(x, y) / (len(x) + len(y))


# ---------------------------------------------------------------------------- words


def _splitmix64(h: np.ndarray) -> np.ndarray:
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    mixed: np.ndarray = h ^ (h >> np.uint64(31))
    return mixed


def _word_keys(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Every word of every text as a uint64 key, and the number of words of each text.

    Same words as `tokenize`, computed on all texts at once: the texts are joined with \\x00,
    lowercased, UTF-8 encoded (non-ASCII bytes are >= 0x80, so they separate, as in the
    regex) and translated to word bytes and spaces. A word of up to 8 bytes is its key exactly
    (its bytes, little-endian); a longer word's key is a 63-bit hash with the top bit set.
    """
    joined = "\x00".join(texts)
    if joined.count("\x00") != max(len(texts) - 1, 0):  # a text holds \x00: it separates anyway
        joined = "\x00".join(t.replace("\x00", " ") for t in texts)
    raw = joined.lower().encode("utf-8", "surrogatepass").translate(_WORD_BYTES)
    size = len(raw)
    buf = np.frombuffer(raw + bytes(8), np.uint8)
    inside = np.zeros(size + 2, np.int8)
    inside[1:-1] = buf[:size] > 0x20
    edges = np.flatnonzero(np.diff(inside))
    starts, lens = edges[0::2], edges[1::2] - edges[0::2]
    counts = np.bincount(
        np.searchsorted(np.flatnonzero(buf[:size] == 0), starts), minlength=len(texts)
    )
    words8 = np.ndarray((size + 1,), "<u8", buffer=buf, strides=(1,))  # 8 bytes at each offset
    keys = words8[starts] & _BYTE_MASKS[np.minimum(lens, 8)]
    long = np.flatnonzero(lens > 8)
    chunk = 1
    while long.size:
        rest = lens[long] - 8 * chunk
        part = words8[starts[long] + 8 * chunk] & _BYTE_MASKS[np.clip(rest, 0, 8)]
        keys[long] = _splitmix64(keys[long] ^ part) | _LONG_WORD
        long = long[rest > 8]
        chunk += 1
    return keys, counts.astype(np.int64)


@dataclass(slots=True)
class _Encoded:
    """A batch of texts as word ids: flat ids, offsets, lengths and rapidfuzz-ready docs."""

    docs: list[str | list[int]]  # one code point (or int) per word: what LCSseq compares
    ids: np.ndarray  # int64, the words of all texts
    offsets: np.ndarray  # int64, len(docs) + 1
    lens: np.ndarray  # int64, words per text


class _Vocabulary:
    """Word key -> dense id (a sorted array, searched with numpy), and each id's word hash."""

    def __init__(self) -> None:
        self.keys = np.empty(0, np.uint64)  # sorted
        self.ids = np.empty(0, np.int64)  # id of keys[i]
        self.hashes = np.empty(0, np.uint64)  # by id: a stable 64-bit hash of the word

    def __len__(self) -> int:
        return len(self.hashes)

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Ids of `keys`, giving new words the next ids."""
        if keys.size == 0:
            return np.empty(0, np.int64)
        distinct = _unique(keys)
        at = np.searchsorted(self.keys, distinct)
        known = at < len(self.keys)
        known[known] = self.keys[at[known]] == distinct[known]
        fresh = distinct[~known]
        if fresh.size:
            merged = np.concatenate((self.keys, fresh))
            order = np.argsort(merged, kind="stable")
            new_ids = len(self.hashes) + np.arange(fresh.size)
            self.keys = merged[order]
            self.ids = np.concatenate((self.ids, new_ids))[order]
            self.hashes = np.concatenate((self.hashes, _splitmix64(fresh)))
        return self.ids[np.searchsorted(self.keys, keys)]

    def encode(self, texts: Sequence[str]) -> _Encoded:
        keys, lens = _word_keys(texts)
        ids = self.lookup(keys)
        offsets = np.concatenate(([0], np.cumsum(lens)))
        return _Encoded(_as_docs(ids, offsets), ids, offsets, lens)


def _as_docs(ids: np.ndarray, offsets: np.ndarray) -> list[str | list[int]]:
    """One string per text, one character per word id (ids above U+10FFFF: a list of ints)."""
    bounds = list(zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True))
    if ids.size == 0 or int(ids.max()) <= _MAX_CODE_POINT:
        flat = ids.astype("<u4").tobytes().decode("utf-32-le", "surrogatepass")
        return [flat[a:b] for a, b in bounds]
    # rapidfuzz compares a str's code points and a list's ints alike, so both may coexist.
    return [_as_doc(ids[a:b]) for a, b in bounds]


def _as_doc(ids: np.ndarray) -> str | list[int]:
    if ids.size == 0 or int(ids.max()) <= _MAX_CODE_POINT:
        return ids.astype("<u4").tobytes().decode("utf-32-le", "surrogatepass")
    listed: list[int] = ids.tolist()
    return listed


def _doc_key(doc: str | list[int]) -> str | tuple[int, ...]:
    return doc if isinstance(doc, str) else tuple(doc)


# ---------------------------------------------------------------------------- prefix keys


class _Order:
    """Elements (a word and its occurrence in a text) as dense ids, and the global order.

    An element's place (its rank) is its document frequency when first seen, on a log scale
    (15 bits, rarest first), then its id (32 bits): frozen once given, so that the keys stored
    in the table stay valid.
    """

    def __init__(self) -> None:
        self.ids = _Vocabulary()  # element key -> dense id
        self.rank = np.empty(0, np.uint64)  # by element id

    def elements(
        self, enc: _Encoded, rows: np.ndarray, known: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Elements of texts `rows` of `enc` (at most 2^17), each text's in the global order
        (flat), and the texts' lengths. `known` texts are indexed already (for frequencies)."""
        assert len(rows) <= 1 << _DOC_BITS
        lens = enc.lens[rows]
        words = enc.ids[_ranges(enc.offsets[rows], lens)].astype(np.uint64)
        doc = np.repeat(np.arange(len(rows), dtype=np.uint64), lens)
        by_word = np.sort((doc << np.uint64(40)) | words)  # word ids stay below 2^40
        first = np.ones(len(by_word), bool)
        first[1:] = by_word[1:] != by_word[:-1]
        starts = np.flatnonzero(first)
        occurrence = np.arange(len(by_word)) - np.repeat(
            starts, np.diff(np.append(starts, len(by_word)))
        )
        keys = ((by_word & np.uint64((1 << 40) - 1)) << np.uint64(_OCCURRENCE_BITS)) | np.minimum(
            occurrence, (1 << _OCCURRENCE_BITS) - 1
        ).astype(np.uint64)
        before = len(self.ids)
        elems = self.ids.lookup(keys)
        fresh = len(self.ids) - before
        if fresh:
            count = np.bincount(elems[elems >= before] - before, minlength=fresh)
            share = count / max(known + len(rows), 1)
            place = np.clip(np.round(np.log2(share) * 400.0) + 32767, 0, 32767)
            self.rank = np.concatenate(
                (
                    self.rank,
                    (place.astype(np.uint64) << np.uint64(32))
                    | np.arange(before, before + fresh, dtype=np.uint64),
                )
            )
        doc = by_word >> np.uint64(40)
        in_order = np.sort((doc << np.uint64(64 - _DOC_BITS)) | self.rank[elems])
        ids = (in_order & np.uint64(0xFFFFFFFF)).astype(np.int64)
        return ids, lens


def _entries(
    elems: np.ndarray, lens: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The prefix keys of texts (elements in the global order, flat): hash, text, cap.

    A text of m words with elements e_0 .. e_{m-1} gets (e_i, e_j) for i < j < m - amin(m) + 2,
    cap floor(2(m - j + 1)/t - m); a very short text also (e_i, -) for i < m - amin(m) + 1,
    cap floor(2(m - i)/t - m). See the module docstring.
    """
    t = threshold
    starts = np.concatenate(([0], np.cumsum(lens)[:-1]))
    amin = np.maximum(np.ceil(t * lens / (2.0 - t) - _EPS), 1).astype(np.int64)
    per_j = np.maximum(np.minimum(lens, lens - amin + 2) - 1, 0)
    text_j = np.repeat(np.arange(len(lens)), per_j)
    j = 1 + _offsets_within(per_j)
    text = np.repeat(text_j, j)
    jj = np.repeat(j, j)
    x = elems[starts[text] + _offsets_within(j)].astype(np.uint64)
    y = elems[starts[text] + jj].astype(np.uint64)
    m = lens[text]
    pair_h = _splitmix64((x << np.uint64(32)) | y)
    pair_cap = np.floor(2.0 * (m - jj + 1) / t - m + _EPS).astype(np.int64)

    tiny = lens <= np.floor(2.0 / t - 1.0 + _EPS)
    per_i = np.where(tiny, lens - amin + 1, 0)
    text_i = np.repeat(np.arange(len(lens)), per_i)
    i = _offsets_within(per_i)
    m = lens[text_i]
    single_h = _splitmix64((elems[starts[text_i] + i].astype(np.uint64) << np.uint64(32)) | _SINGLE)
    single_cap = np.floor(2.0 * (m - i) / t - m + _EPS).astype(np.int64)
    return (
        np.concatenate((pair_h, single_h)),
        np.concatenate((text, text_i)),
        np.concatenate((pair_cap, single_cap)),
    )


@dataclass(slots=True)
class _Run:
    """Sorted key entries: (key group, length), with each entry's owner and cap.

    A key group is the top 48 bits of the key's hash (a collision only merges two groups);
    lengths and caps are clipped to 16 bits (which keeps every comparison between them right).
    `owners` are pool positions, or batch rows while a batch is checked.
    """

    keys: np.ndarray  # uint64, sorted: group | length
    owners: np.ndarray  # int32
    caps: np.ndarray  # uint16

    @classmethod
    def build(cls, h: np.ndarray, owners: np.ndarray, lens: np.ndarray, caps: np.ndarray) -> _Run:
        keys = (h & ~np.uint64(_LEN_MAX)) | np.minimum(lens, _LEN_MAX).astype(np.uint64)
        order = np.argsort(keys)
        caps = np.clip(caps, 0, _LEN_MAX).astype(np.uint16)
        return cls(keys[order], owners[order].astype(np.int32), caps[order])

    def __len__(self) -> int:
        return len(self.keys)

    def subset(self, keep: np.ndarray, owners: np.ndarray) -> _Run:
        """The entries whose owner is kept (`keep[owner]`), renamed `owners[owner]`."""
        a = keep[self.owners]
        return _Run(self.keys[a], owners[self.owners[a]].astype(np.int32), self.caps[a])

    def merge(self, other: _Run) -> _Run:
        """One run of both: `other`'s entries placed after this run's equal keys."""
        at = np.searchsorted(self.keys, other.keys, "right") + np.arange(len(other))
        mine = np.ones(len(self) + len(other), bool)
        mine[at] = False
        parts = []
        for a, b in ((self.keys, other.keys), (self.owners, other.owners), (self.caps, other.caps)):
            merged = np.empty(len(mine), a.dtype)
            merged[at], merged[mine] = b, a
            parts.append(merged)
        return _Run(*parts)

    @classmethod
    def merge_all(cls, runs: list[_Run]) -> _Run:
        """One run of many (a stable sort of sorted runs merges them)."""
        keys = np.concatenate([r.keys for r in runs])
        order = np.argsort(keys, kind="stable")
        return cls(
            keys[order],
            np.concatenate([r.owners for r in runs])[order],
            np.concatenate([r.caps for r in runs])[order],
        )

    def pairs(self, queries: _Run, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        """(query index, owner) for the entries of this run in each query's group that pass
        the positional bound on both sides: length <= the query's cap, cap >= its length.

        Each query (sorted by group, so each search starts near where the previous one ended)
        walks the entries of its group with a length from the length bound (n >= t*m/(2-t))
        up to its cap, and checks their caps.
        """
        mask = np.uint64(_LEN_MAX)
        out_queries, out_owners = [], []
        for lo in range(0, len(queries), _STEP):
            keys = queries.keys[lo : lo + _STEP]
            group, m = keys & ~mask, (keys & mask).astype(np.int64)
            shortest = np.ceil(threshold * m / (2.0 - threshold) - _EPS).astype(np.uint64)
            start = np.searchsorted(self.keys, group | shortest, "left")
            stop = np.searchsorted(self.keys, group | queries.caps[lo : lo + _STEP], "right")
            count = np.maximum(stop - start, 0)
            query = np.repeat(np.arange(lo, lo + len(keys)), count)
            at = np.repeat(start, count) + _offsets_within(count)
            ok = self.caps[at] >= m[query - lo]
            out_queries.append(query[ok])
            out_owners.append(self.owners[at[ok]])
        return _concat(out_queries), _concat(out_owners)


def _unique(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values (numpy 2's hash-based `np.unique` is ~20x slower on int64)."""
    values = np.sort(values)
    if values.size:
        values = values[np.concatenate(([True], values[1:] != values[:-1]))]
    return values


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.empty(0, np.int64)


def _ranges(starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + n) for each (s, n)."""
    at: np.ndarray = np.repeat(starts, lens) + _offsets_within(lens)
    return at


def _offsets_within(count: np.ndarray) -> np.ndarray:
    """Concatenation of arange(c) for each c in `count`."""
    offsets: np.ndarray = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
    return offsets


# ---------------------------------------------------------------------------- the index


class NearDupIndex:
    """The pool of one dataset (seeds and accepted instructions), for the ROUGE-L check.

    Plain in-memory state (lists, dicts, numpy arrays): picklable, and rebuilt after a restart
    with `from_rows`. Pool positions (`#n` in rejection details) follow insertion order. Adding
    is lazy: `add`/`add_many` queue texts, the next query indexes them in one vectorised step.
    """

    def __init__(self, config: DedupConfig | None = None) -> None:
        self.config = config or DedupConfig()
        self._vocab = _Vocabulary()
        self._order = _Order()
        self._texts: list[str] = []
        self._docs: list[str | list[int]] = []
        self._docs_array = np.empty(0, object)  # the first docs, for fancy indexing
        self._lens = np.empty(0, np.int64)
        self._exact: dict[str | tuple[int, ...], int] = {}
        self._runs: list[_Run] = []
        self._pending: list[str] = []

    @classmethod
    def from_rows(
        cls, rows: Iterable[str | tuple[str, Any]], config: DedupConfig | None = None
    ) -> NearDupIndex:
        """An index of the texts of `rows`: texts, or tuples whose first item is the text (rows
        read along with other columns; the rest is not needed)."""
        index = cls(config)
        index.add_many(r if isinstance(r, str) else r[0] for r in rows)
        index._flush()
        return index

    def __len__(self) -> int:
        return len(self._docs) + len(self._pending)

    def add(self, text: str) -> None:
        """Put `text` in the pool unchecked (seeds, or examples accepted elsewhere)."""
        self._pending.append(text)

    def add_many(self, texts: Iterable[str]) -> None:
        """Put `texts` in the pool unchecked."""
        self._pending.extend(texts)

    def text(self, position: int) -> str:
        """The pool text at `position`."""
        self._flush()
        return self._texts[position]

    def max_similarity(self, text: str) -> tuple[float, int]:
        """Highest ROUGE-L F of `text` against the pool, and the pool position reaching it.

        (0.0, -1) for an empty pool or a text without words. Exact up to `scan_max_pool` texts;
        beyond, exact for any match >= the threshold (below it, the best of the candidates).
        """
        self._flush()
        enc = self._vocab.encode([text])
        doc, m = enc.docs[0], int(enc.lens[0])
        if m == 0 or not self._docs:
            return 0.0, -1
        if (same := self._exact.get(_doc_key(doc))) is not None:
            return 1.0, same
        if len(self._docs) <= self.config.scan_max_pool:
            pool = np.arange(len(self._docs))
        else:
            elems, lens = self._order.elements(enc, np.array([0]), len(self._docs))
            h, row, caps = _entries(elems, lens, self.config.threshold)
            probe = _Run.build(h, row, lens[row], caps)
            pool = _unique(self._pool_pairs(probe)[1])
        if pool.size == 0:
            return 0.0, -1
        choices = self._docs_upto()[pool]
        lcs = process.cdist([doc], choices, scorer=LCSseq.similarity, dtype=np.int64)[0]
        scores = 2.0 * lcs / (m + self._lens[pool])
        best = int(np.argmax(scores))
        if scores[best] == 0.0:
            return 0.0, -1
        return float(scores[best]), int(pool[best])

    def check(self, text: str) -> Rejection | None:
        """`duplicate` or `near_duplicate` if `text` is too close to the pool, else None."""
        score, match = self.max_similarity(text)
        if match < 0 or score < self.config.threshold:
            return None
        if self._exact.get(_doc_key(self._vocab.encode([text]).docs[0])) == match:
            return _duplicate(match, self._texts[match])
        return _near_duplicate(score, match, self._texts[match])

    # -- internals ----------------------------------------------------------------------

    def _docs_upto(self) -> np.ndarray:
        """`_docs` as an object array (extended as the pool grows)."""
        have = len(self._docs_array)
        if have < len(self._docs):
            more = np.empty(len(self._docs) - have, object)
            for k, doc in enumerate(self._docs[have:]):
                more[k] = doc
            self._docs_array = np.concatenate((self._docs_array, more))
        return self._docs_array

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        runs = []
        for lo in range(0, len(pending), _CHUNK):
            texts = pending[lo : lo + _CHUNK]
            enc = self._vocab.encode(texts)
            rows = np.flatnonzero(enc.lens > 0)
            elems, lens = self._order.elements(enc, rows, len(self._docs))
            h, entry_row, caps = _entries(elems, lens, self.config.threshold)
            owners = len(self._docs) + rows[entry_row]
            self._append(texts, enc, np.arange(len(texts)))
            runs.append(_Run.build(h, owners, lens[entry_row], caps))
        if runs:
            self._add_run(runs[0] if len(runs) == 1 else _Run.merge_all(runs))

    def _append(self, texts: Sequence[str], enc: _Encoded, take: np.ndarray) -> None:
        """Append texts `take` of `enc` to the pool, in order (the table is `_add_run`'s)."""
        base = len(self._docs)
        for position, k in enumerate(take.tolist(), start=base):
            if enc.lens[k]:
                self._exact.setdefault(_doc_key(enc.docs[k]), position)
            self._docs.append(enc.docs[k])
            self._texts.append(texts[k])
        self._lens = np.concatenate((self._lens, enc.lens[take]))

    def _add_run(self, run: _Run) -> None:
        """Add a run to the table; merge the newest runs while the older is < 2x the newer."""
        if not len(run):
            return
        self._runs.append(run)
        while len(self._runs) > 1 and len(self._runs[-2]) < 2 * len(self._runs[-1]):
            newer = self._runs.pop()
            self._runs[-1] = self._runs[-1].merge(newer)

    def _pool_pairs(self, probe: _Run) -> tuple[np.ndarray, np.ndarray]:
        """(owner in `probe`, pool position) of the candidate pairs of the probe's entries."""
        rows, owners = [], []
        for run in self._runs:
            q, o = run.pairs(probe, self.config.threshold)
            rows.append(probe.owners[q])
            owners.append(o)
        return _concat(rows), _concat(owners)


def shorten(text: str) -> str:
    """`text` on one line, cut to `_DETAIL_CHARS` characters: how a rejection detail quotes it."""
    flat = " ".join(text.split())
    return flat if len(flat) <= _DETAIL_CHARS else flat[: _DETAIL_CHARS - 1] + "…"


def _duplicate(match: int, text: str) -> Rejection:
    return Rejection(DUPLICATE, f'same words as #{match}: "{shorten(text)}"')


def _near_duplicate(score: float, match: int, text: str) -> Rejection:
    return Rejection(NEAR_DUPLICATE, f'rouge_l={score:.3f} with #{match}: "{shorten(text)}"')


# ---------------------------------------------------------------------------- batches


def dedupe_batch(texts: Sequence[str], index: NearDupIndex) -> list[Rejection | None]:
    """Check `texts` in order against the pool and the earlier accepted texts of the batch.

    Accepted texts (result None) join `index` in order; a rejected one does not, so it cannot
    reject later texts (Self-Instruct's sequential rule). Large batches are processed in chunks
    of `_CHUNK` texts, which bounds memory and changes nothing.
    """
    return dedupe_batch_matches(texts, index)[0]


def dedupe_batch_matches(
    texts: Sequence[str], index: NearDupIndex
) -> tuple[list[Rejection | None], list[int]]:
    """`dedupe_batch`, and for each text the pool position of what rejected it (-1 if kept).

    Texts of the batch that are kept get the positions `len(index)` (before the call) onwards,
    in order, so a position at or past it names a text of the same batch.
    """
    results: list[Rejection | None] = []
    matches: list[int] = []
    for lo in range(0, len(texts), _CHUNK):
        found, where = _dedupe_chunk(texts[lo : lo + _CHUNK], index)
        results += found
        matches += where
    return results, matches


def check_batch(
    texts: Sequence[str], index: NearDupIndex
) -> tuple[list[Rejection | None], list[int]]:
    """Each text against the pool alone (not against each other), the pool left as it was:
    the rejection (`duplicate`, `near_duplicate` naming the best match) or None, and the pool
    position matched (-1 if none). What `dedupe_batch` decides for a text, minus the batch."""
    results: list[Rejection | None] = [None] * len(texts)
    matches = [-1] * len(texts)
    if not texts or not len(index):
        return results, matches
    index._flush()
    cfg = index.config
    enc = index._vocab.encode(texts)
    live = enc.lens > 0
    for k in np.flatnonzero(live).tolist():
        if (same := index._exact.get(_doc_key(enc.docs[k]))) is not None:
            results[k], matches[k], live[k] = _duplicate(same, index._texts[same]), same, False
    rows = np.flatnonzero(live)
    if rows.size == 0:
        return results, matches
    elems, lens = index._order.elements(enc, rows, len(index._docs))
    h, entry_row, caps = _entries(elems, lens, cfg.threshold)
    docs = np.empty(len(rows), object)
    for r, k in enumerate(rows.tolist()):
        docs[r] = enc.docs[k]
    later, owners = index._pool_pairs(_Run.build(h, entry_row, lens[entry_row], caps))
    pool_edges = _verify(docs, lens, later, index._docs_upto(), index._lens, owners, cfg)
    accepted, score, match = _pool_matches(len(rows), pool_edges)
    for r in np.flatnonzero(~accepted).tolist():
        target = int(match[r])
        results[int(rows[r])] = _near_duplicate(float(score[r]), target, index._texts[target])
        matches[int(rows[r])] = target
    return results, matches


def _dedupe_chunk(
    texts: Sequence[str], index: NearDupIndex
) -> tuple[list[Rejection | None], list[int]]:
    index._flush()
    cfg = index.config
    enc = index._vocab.encode(texts)
    results, live, copy_of = _exact_copies(enc, index)
    matches = [-1] * len(texts)
    for k, rejection in enumerate(results):
        if rejection is not None:
            matches[k] = index._exact[_doc_key(enc.docs[k])]
    rows = np.flatnonzero(live)
    elems, lens = index._order.elements(enc, rows, len(index._docs))
    h, entry_row, caps = _entries(elems, lens, cfg.threshold)
    docs = np.empty(len(rows), object)
    for r, k in enumerate(rows.tolist()):
        docs[r] = enc.docs[k]

    batch = _Run.build(h, entry_row, lens[entry_row], caps)
    later, owners = index._pool_pairs(batch)
    pool_edges = _verify(docs, lens, later, index._docs_upto(), index._lens, owners, cfg)
    accepted, score, match = _pool_matches(len(rows), pool_edges)
    q, earlier = batch.pairs(batch, cfg.threshold)
    later = batch.owners[q]
    in_batch = _batch_matches(docs, lens, later, earlier, accepted, score, match, cfg)

    base = len(index._docs)
    keep = enc.lens == 0  # no words: ROUGE-L 0 against everything, always kept
    keep[rows[accepted]] = True
    position = base + np.cumsum(keep) - 1  # pool position of each kept text
    for r in np.flatnonzero(~accepted).tolist():
        if in_batch[r]:
            k = int(rows[match[r]])
            target, text = int(position[k]), texts[k]
        else:
            target = int(match[r])
            text = index._texts[target]
        results[int(rows[r])] = _near_duplicate(float(score[r]), target, text)
        matches[int(rows[r])] = target
    for k, first in copy_of.items():
        results[k] = results[first] or _duplicate(int(position[first]), texts[first])
        matches[k] = matches[first] if results[first] else int(position[first])

    index._append(texts, enc, np.flatnonzero(keep))
    index._add_run(batch.subset(accepted, position[rows]))
    return results, matches


def _exact_copies(
    enc: _Encoded, index: NearDupIndex
) -> tuple[list[Rejection | None], np.ndarray, dict[int, int]]:
    """Texts with the same words as a pool text (rejected now) or an earlier batch text.

    Returns the results so far, which texts remain to check (`live`: not copies, with words),
    and for each copy of an earlier batch text that text's index (it shares its fate).
    """
    results: list[Rejection | None] = [None] * len(enc.docs)
    copy_of: dict[int, int] = {}
    first_seen: dict[str | tuple[int, ...], int] = {}
    live = enc.lens > 0
    for k in np.flatnonzero(live).tolist():
        key = _doc_key(enc.docs[k])
        if (same := index._exact.get(key)) is not None:
            results[k], live[k] = _duplicate(same, index._texts[same]), False
        elif (first := first_seen.setdefault(key, k)) != k:
            copy_of[k], live[k] = first, False
    return results, live, copy_of


_Edges = np.ndarray  # 3 x k float64: row, target, ROUGE-L F (>= threshold)


def _verify(
    docs: np.ndarray,
    lens: np.ndarray,
    rows: np.ndarray,
    target_docs: np.ndarray,
    target_lens: np.ndarray,
    targets: np.ndarray,
    config: DedupConfig,
) -> _Edges:
    """Exact ROUGE-L of the distinct (row, target) pairs; those reaching the threshold."""
    if rows.size == 0:
        return np.empty((3, 0))
    width = len(target_docs)
    pairs = _unique(rows.astype(np.int64) * width + targets)
    rows, targets = pairs // width, pairs % width
    lcs = process.cpdist(
        docs[rows],
        target_docs[targets],
        scorer=LCSseq.similarity,
        dtype=np.int64,
        workers=config.workers,
    )
    scores = 2.0 * lcs / (lens[rows] + target_lens[targets])
    hit = scores >= config.threshold
    return np.stack((rows[hit], targets[hit], scores[hit])).astype(np.float64)


def _pool_matches(n: int, pool_edges: _Edges) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which of `n` batch rows no pool text rejects, and for the others their best match
    (score, pool position)."""
    accepted = np.ones(n, bool)
    score = np.zeros(n)
    match = np.full(n, -1, np.int64)
    if pool_edges.shape[1]:
        rows, targets, scores = pool_edges[:, _best_first(pool_edges)]
        first = np.concatenate(([True], rows[1:] != rows[:-1]))
        best = rows[first].astype(np.int64)
        accepted[best] = False
        score[best], match[best] = scores[first], targets[first].astype(np.int64)
    return accepted, score, match


def _batch_matches(
    docs: np.ndarray,
    lens: np.ndarray,
    later: np.ndarray,
    earlier: np.ndarray,
    accepted: np.ndarray,
    score: np.ndarray,
    match: np.ndarray,
    config: DedupConfig,
) -> np.ndarray:
    """Self-Instruct's sequential rule over the candidate pairs (later, earlier) of the batch.

    A row still `accepted` (no pool match) is rejected by its best exact match among earlier
    rows that were themselves accepted. Rows are decided in blocks, in order, and a pair is only
    verified when its earlier row is still accepted: a cluster of k mutual near duplicates
    costs about k verifications, not k^2. Updates `accepted`, `score` and `match` (a batch row)
    in place; returns which rows a batch row rejected.
    """
    n = len(accepted)
    in_batch = np.zeros(n, bool)
    before = earlier < later
    codes = _unique(later[before].astype(np.int64) * max(n, 1) + earlier[before])
    later, earlier = codes // max(n, 1), codes % max(n, 1)
    live = accepted[later] & accepted[earlier]  # a pool match decided these already
    later, earlier = later[live], earlier[live]
    bounds = np.searchsorted(later, np.arange(0, n + _BLOCK, _BLOCK))
    for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        if lo == hi:
            continue
        rows, targets = later[lo:hi], earlier[lo:hi]
        still = accepted[targets]  # decided (earlier blocks) or undecided (this block)
        edges = _verify(docs, lens, rows[still], docs, lens, targets[still], config)
        if not edges.shape[1]:
            continue
        rows, targets, scores = edges[:, _best_first(edges)]
        rows, targets = rows.astype(np.int64), targets.astype(np.int64)
        starts = np.flatnonzero(np.concatenate(([True], rows[1:] != rows[:-1])))
        ends = np.append(starts[1:], len(rows))
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
            row = int(rows[a])
            ok = accepted[targets[a:b]]  # targets < row: decided by now
            k = int(ok.argmax())
            if ok[k]:
                accepted[row] = False
                score[row], match[row], in_batch[row] = scores[a + k], targets[a + k], True
    return in_batch


def _best_first(edges: _Edges) -> np.ndarray:
    """Order of edges by row, then score descending, then target."""
    return np.lexsort((edges[1], -edges[2], edges[0]))
