"""Near-duplicate detection: Self-Instruct's ROUGE-L rule, exact, with a MinHash LSH prefilter.

Self-Instruct (Wang et al. 2022, "Self-Instruct: Aligning Language Models with Self-Generated
Instructions") keeps a machine-written instruction only if its ROUGE-L F-measure against every
instruction already in the pool (the seeds and every accepted example) is below 0.7. Here a
candidate is rejected as `near_duplicate` when that F-measure is >= `DedupConfig.threshold`
(0.7; Self-Instruct's own script rejects only > 0.7), and as `duplicate` when it has exactly the
words of a pool instruction (same text up to case and punctuation).

How:

- Words as `rouge_score`'s default tokenizer makes them: lowercase, every character outside
  ``[a-z0-9]`` separates, no stemming. Texts without such words (e.g. only CJK) have ROUGE-L 0
  against everything, as in `rouge_score`, so they are never near duplicates. Words are split
  for a whole batch at once with numpy; a word of up to 8 bytes is identified by its bytes, a
  longer one by a 63-bit hash. Each distinct word gets an id, and a text becomes a string with
  one code point per word, so rapidfuzz's `LCSseq` computes the longest common subsequence in
  C++: F = 2 * LCS / (m + n), `rouge_score`'s fmeasure (tests compare the two on random pairs).
- Pools up to `lsh_min_pool` texts are compared exhaustively (rapidfuzz `process.cdist`).
- Larger pools use MinHash LSH for candidates and exact ROUGE-L on those only. The MinHash is
  datasketch's "affine32" scheme (fmix32 pre-mix, h -> a*h + b mod 2^32, datasketch's permutation
  parameters for the seed) over word n-gram shingles, computed vectorised with numpy; the LSH
  table is one sorted array per band (numpy `searchsorted`). datasketch's own objects cost
  ~50 us per text each for `MinHash.bulk` and `MinHashLSH.insert` (shared/NOTES-STACK.md,
  section 4), too slow for a million texts a minute. Unigram shingles are the default:
  ROUGE-L >= 0.7 implies that the two word multisets overlap by >= 54 % (LCS <= overlap), while
  such pairs may share almost no bigrams.
- Between the two, a count sketch of the words (32 hashed buckets per text) bounds the LCS from
  above, sum_k min(count_a[k], count_b[k]); candidate pairs that cannot reach the threshold are
  dropped before the LCS.

Persistence: `signatures(texts)` gives each text's LSH band keys (4 + 4 * num_bands bytes), which
the runner stores with the example; `NearDupIndex.from_rows` rebuilds an index from
(text, signature) rows without hashing again (texts are still split into words: the exact check
needs them). A signature made with other LSH parameters has another tag and is recomputed.
Known limit: a candidate pair sharing no band is not compared, so recall against the exhaustive
rule is below 1 on large pools (measured in bench/dedup.py, see docs/curation.md).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import LCSseq

from workers.curation.types import DUPLICATE, NEAR_DUPLICATE, Rejection

__all__ = [
    "DedupConfig",
    "NearDupIndex",
    "dedupe_batch",
    "rouge_l",
    "signature",
    "signatures",
    "tokenize",
]

_NON_ALNUM: Final = re.compile(r"[^a-z0-9]+")
# bytes.translate table: [a-z0-9] and the text separator \x00 stay, every other byte is a space.
_WORD_BYTES: Final = bytes(
    c if (0x30 <= c <= 0x39 or 0x61 <= c <= 0x7A or c == 0) else 0x20 for c in range(256)
)
_BYTE_MASKS: Final = np.array([(1 << (8 * n)) - 1 for n in range(8)] + [(1 << 64) - 1], np.uint64)
_LONG_WORD: Final = np.uint64(1 << 63)
_SIGNATURE_VERSION: Final = 1
_SKETCH_SIZE: Final = 32  # buckets of the word count sketch (a power of two)
_MAX_CODE_POINT: Final = 0x10FFFF  # word ids up to this are one character of a str
_EPS: Final = 1e-9  # slack for float rounding when pruning by an upper bound
_CHUNK: Final = 100_000  # texts per step of dedupe_batch


@dataclass(frozen=True, slots=True)
class DedupConfig:
    """Knobs of the near-duplicate check; defaults from Self-Instruct and bench/dedup.py."""

    threshold: float = 0.7  # reject when ROUGE-L F >= threshold
    lsh_min_pool: int = 20_000  # pool (+ batch) above this: LSH candidates, not a full scan
    num_bands: int = 40  # LSH bands; num_bands * band_rows MinHash permutations
    band_rows: int = 7  # MinHash values per band
    ngram: int = 1  # word n-gram size of the shingles (1 = words)
    seed: int = 1  # permutation seed, as datasketch's `MinHash(seed=...)`
    max_bucket: int = 1_000  # per band, a text meets at most this many earlier bucket members
    workers: int = -1  # rapidfuzz threads (-1: all cores)

    @property
    def num_perm(self) -> int:
        return self.num_bands * self.band_rows


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
    return h ^ (h >> np.uint64(31))


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
        distinct = np.unique(keys)
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
    return ids.tolist()


def _doc_key(doc: str | list[int]) -> str | tuple[int, ...]:
    return doc if isinstance(doc, str) else tuple(doc)


# ---------------------------------------------------------------------------- MinHash


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer (datasketch's pre-mix in the affine32 scheme)."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def _permutations(config: DedupConfig) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's `MinHash(num_perm, seed, scheme="affine32").permutations`."""
    gen = np.random.RandomState(config.seed)
    a = gen.randint(0, 1 << 31, config.num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, config.num_perm, dtype=np.uint32)
    return a, b


def _shingle_hashes(
    word_hashes: np.ndarray, lens: np.ndarray, ngram: int
) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes of the word n-grams of texts with `lens` words (all > 0), and shingle counts.

    The hash of a word is the top half of its 64-bit hash; of an n-gram, the top half of a
    splitmix64 of the words' hashes combined. A text shorter than `ngram` has one shingle.
    """
    if ngram == 1:
        return (word_hashes >> np.uint64(32)).astype(np.uint32), lens
    counts = np.maximum(lens - ngram + 1, 1)
    offsets = np.concatenate(([0], np.cumsum(lens)))
    doc = np.repeat(np.arange(len(lens)), counts)
    pos = offsets[:-1][doc] + _offsets_within(counts)
    end = offsets[1:][doc]
    h = np.zeros(len(pos), np.uint64)
    for k in range(ngram):
        inside = pos + k < end
        word = word_hashes[np.minimum(pos + k, len(word_hashes) - 1)]
        h = np.where(inside, h * np.uint64(0x9E3779B97F4A7C15) + word, h)
    return (_splitmix64(h) >> np.uint64(32)).astype(np.uint32), counts


def _minhash(h32: np.ndarray, counts: np.ndarray, config: DedupConfig) -> np.ndarray:
    """MinHash values (texts x num_perm, uint32) of texts with `counts` shingles in `h32`.

    Equal to datasketch's `MinHash(num_perm, seed, hashfunc=<those hashes>, scheme="affine32")`
    hashvalues. Texts are grouped by shingle count so that the minimum is a reduction over a
    regular axis (numpy's `reduceat` along rows is several times slower).
    """
    a, b = _permutations(config)
    out = np.empty((len(counts), len(a)), np.uint32)
    mixed = _fmix32(h32)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    for count in np.unique(counts).tolist():
        docs = np.flatnonzero(counts == count)
        step = max(1, (1 << 20) // (count * len(a)))  # ~4 MB of values per block
        for lo in range(0, len(docs), step):
            block = docs[lo : lo + step]
            values = mixed[starts[block, None] + np.arange(count)][:, :, None] * a
            values += b  # wraps mod 2^32, as in datasketch
            out[block] = values.min(axis=1)
    return out


def _band_keys(values: np.ndarray, config: DedupConfig) -> np.ndarray:
    """One 32-bit key per band: a hash of the band's `band_rows` MinHash values."""
    rows = values.reshape(len(values), config.num_bands, config.band_rows)
    key = np.full(rows.shape[:2], config.band_rows, np.uint32)
    for r in range(config.band_rows):
        key = key * np.uint32(0x9E3779B1) + rows[:, :, r]
    return _fmix32(key)


def _keys_of(
    vocab: _Vocabulary, enc: _Encoded, rows: np.ndarray, config: DedupConfig
) -> np.ndarray:
    """Band keys (len(rows) x num_bands) of the texts `rows` of `enc`, which all have words."""
    lens = enc.lens[rows]
    ids = enc.ids[_ranges(enc.offsets[rows], lens)]
    h32, counts = _shingle_hashes(vocab.hashes[ids], lens, config.ngram)
    return _band_keys(_minhash(h32, counts, config), config)


def _signature_tag(config: DedupConfig) -> bytes:
    params = f"{_SIGNATURE_VERSION}:{config.seed}:{config.num_bands}:{config.band_rows}"
    return zlib.crc32(f"{params}:{config.ngram}".encode()).to_bytes(4, "little")


def signatures(texts: Sequence[str], config: DedupConfig | None = None) -> list[bytes]:
    """What the runner stores per example: a tag of the LSH parameters, then the band keys.

    4 + 4 * num_bands bytes (164 by default); only the tag for a text without words. The same
    in every process and version of Python (words are hashed from their bytes).
    """
    config = config or DedupConfig()
    vocab = _Vocabulary()
    tag, size = _signature_tag(config), 4 * config.num_bands
    out: list[bytes] = []
    for lo in range(0, len(texts), _CHUNK):
        enc = vocab.encode(texts[lo : lo + _CHUNK])
        rows = np.flatnonzero(enc.lens > 0)
        raw = _keys_of(vocab, enc, rows, config).astype("<u4").tobytes()
        chunk = [tag] * len(enc.docs)
        for row, k in enumerate(rows.tolist()):
            chunk[k] = tag + raw[row * size : (row + 1) * size]
        out += chunk
    return out


def signature(text: str, config: DedupConfig | None = None) -> bytes:
    """`signatures` of one text."""
    return signatures([text], config)[0]


def _stored_keys(
    sigs: Sequence[bytes | None], config: DedupConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Band keys parsed from signatures, and which of them were usable (right tag and size)."""
    tag, size = _signature_tag(config), 4 + 4 * config.num_bands
    usable = np.array([s is not None and len(s) == size and s[:4] == tag for s in sigs], bool)
    keys = np.empty((len(sigs), config.num_bands), np.uint32)
    if usable.any():
        raw = b"".join(s[4:] for s, ok in zip(sigs, usable, strict=True) if ok and s)
        keys[usable] = np.frombuffer(raw, "<u4").reshape(-1, config.num_bands)
    return keys, usable


# ---------------------------------------------------------------------------- LSH table


class _Bands:
    """The pool's LSH table: per band, its keys sorted, with the pool position of each."""

    def __init__(self, num_bands: int) -> None:
        self.keys = [np.empty(0, np.uint32) for _ in range(num_bands)]
        self.ids = [np.empty(0, np.int32) for _ in range(num_bands)]

    @staticmethod
    def sort(keys: np.ndarray) -> list[np.ndarray]:
        """Per band, the order of `keys` rows by key (stable: ties keep row order).

        Sorting key << 32 | row as one uint64 is twice as fast as a stable argsort.
        """
        rows = np.arange(len(keys), dtype=np.uint64)
        orders = []
        for band in range(keys.shape[1]):
            combined = (keys[:, band].astype(np.uint64) << np.uint64(32)) | rows
            combined.sort()
            orders.append((combined & np.uint64(0xFFFFFFFF)).astype(np.int64))
        return orders

    def pool_pairs(
        self, keys: np.ndarray, orders: list[np.ndarray], cap: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(row, pool position) pairs sharing a band key, at most `cap` newest per bucket."""
        rows, pool = [], []
        for band, order in enumerate(orders):
            queries = keys[order, band]  # sorted: searchsorted walks the table in order
            lo = np.searchsorted(self.keys[band], queries, side="left")
            hi = np.searchsorted(self.keys[band], queries, side="right")
            count = np.minimum(hi - lo, cap)
            rows.append(np.repeat(order, count))
            pool.append(self.ids[band][np.repeat(hi - count, count) + _offsets_within(count)])
        return _concat(rows), _concat(pool)

    @staticmethod
    def batch_pairs(
        keys: np.ndarray, orders: list[np.ndarray], cap: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(row, earlier row) pairs of one batch sharing a band key, <= `cap` per row and band."""
        later, earlier = [], []
        n = len(keys)
        for band, order in enumerate(orders):
            sorted_keys = keys[order, band]
            first = np.flatnonzero(np.concatenate(([True], sorted_keys[1:] != sorted_keys[:-1])))
            before = np.arange(n) - np.repeat(first, np.diff(np.append(first, n)))
            count = np.minimum(before, cap)
            at = np.repeat(np.arange(n), count)
            later.append(order[at])
            earlier.append(order[at - 1 - _offsets_within(count)])
        return _concat(later), _concat(earlier)

    def insert(self, keys: np.ndarray, orders: list[np.ndarray], ids: np.ndarray) -> None:
        """Merge rows of `keys` with pool positions `ids` (>= every current one; -1: skip)."""
        for band, order in enumerate(orders):
            order = order[ids[order] >= 0]
            new_keys = keys[order, band]
            at = np.searchsorted(self.keys[band], new_keys, side="right") + np.arange(len(order))
            size = len(self.keys[band]) + len(order)
            old = np.ones(size, bool)
            old[at] = False
            merged_keys = np.empty(size, np.uint32)
            merged_ids = np.empty(size, np.int32)
            merged_keys[at], merged_ids[at] = new_keys, ids[order]
            merged_keys[old], merged_ids[old] = self.keys[band], self.ids[band]
            self.keys[band], self.ids[band] = merged_keys, merged_ids


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.empty(0, np.int64)


def _ranges(starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + n) for each (s, n)."""
    return np.repeat(starts, lens) + _offsets_within(lens)


def _offsets_within(count: np.ndarray) -> np.ndarray:
    """Concatenation of arange(c) for each c in `count`."""
    return np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)


# ---------------------------------------------------------------------------- the index


class NearDupIndex:
    """The pool of one dataset (seeds and accepted instructions), for the ROUGE-L check.

    Plain in-memory state (lists, dicts, numpy arrays): picklable, and rebuilt after a restart
    with `from_rows`. Pool positions (`matched_index`, `#n` in rejection details) follow
    insertion order. Adding is lazy: `add`/`add_many` queue texts, the next query indexes them
    in one vectorised step.
    """

    def __init__(self, config: DedupConfig | None = None) -> None:
        self.config = config or DedupConfig()
        self._vocab = _Vocabulary()
        self._docs: list[str | list[int]] = []
        self._lens = np.empty(0, np.int64)
        self._sketch = np.empty((0, _SKETCH_SIZE), np.uint8)
        self._saturated = np.empty(0, bool)  # a sketch count reached 255: never pruned
        self._exact: dict[str | tuple[int, ...], int] = {}
        self._bands = _Bands(self.config.num_bands)
        self._pending: list[tuple[str, bytes | None]] = []

    @classmethod
    def from_rows(
        cls, rows: Iterable[tuple[str, bytes | None]], config: DedupConfig | None = None
    ) -> NearDupIndex:
        """Rebuild from stored (text, signature) rows; stale or missing signatures are redone."""
        index = cls(config)
        index._pending.extend(rows)
        index._flush()
        return index

    def __len__(self) -> int:
        return len(self._docs) + len(self._pending)

    def add(self, text: str, signature: bytes | None = None) -> None:
        """Put `text` in the pool unchecked (seeds, or examples accepted elsewhere)."""
        self._pending.append((text, signature))

    def add_many(
        self, texts: Iterable[str], signatures: Iterable[bytes | None] | None = None
    ) -> None:
        """Put `texts` in the pool unchecked; `signatures`, if given, align with `texts`."""
        texts = list(texts)
        sigs = [None] * len(texts) if signatures is None else list(signatures)
        if len(sigs) != len(texts):
            raise ValueError("signatures must align with texts")
        self._pending.extend(zip(texts, sigs, strict=True))

    def max_similarity(self, text: str) -> tuple[float, int]:
        """Highest ROUGE-L F of `text` against the pool, and the pool position reaching it.

        (0.0, -1) for an empty pool or a text without words. Beyond `lsh_min_pool` texts only
        LSH candidates are compared, so a match the LSH misses is not seen.
        """
        self._flush()
        enc = self._vocab.encode([text])
        doc, m = enc.docs[0], int(enc.lens[0])
        if m == 0 or not self._docs:
            return 0.0, -1
        if (same := self._exact.get(_doc_key(doc))) is not None:
            return 1.0, same
        if len(self._docs) <= self.config.lsh_min_pool:
            pool = np.arange(len(self._docs))
        else:
            keys = _keys_of(self._vocab, enc, np.array([0]), self.config)
            found = self._bands.pool_pairs(keys, _Bands.sort(keys), self.config.max_bucket)[1]
            pool = np.unique(found)
        if pool.size == 0:
            return 0.0, -1
        choices = [self._docs[j] for j in pool.tolist()]
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
            return _duplicate(match)
        return _near_duplicate(score, match)

    # -- internals ----------------------------------------------------------------------

    def _keys(self, enc: _Encoded, rows: np.ndarray, sigs: Sequence[bytes | None]) -> np.ndarray:
        """Band keys of texts `rows` (which have words): stored signatures, else computed."""
        keys, usable = _stored_keys([sigs[k] for k in rows.tolist()], self.config)
        if not usable.all():
            keys[~usable] = _keys_of(self._vocab, enc, rows[~usable], self.config)
        return keys

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        for lo in range(0, len(pending), _CHUNK):
            texts = [t for t, _ in pending[lo : lo + _CHUNK]]
            sigs = [s for _, s in pending[lo : lo + _CHUNK]]
            enc = self._vocab.encode(texts)
            rows = np.flatnonzero(enc.lens > 0)
            keys = self._keys(enc, rows, sigs)
            self._append(enc, np.arange(len(texts)), rows, keys, _Bands.sort(keys))

    def _append(
        self,
        enc: _Encoded,
        take: np.ndarray,
        rows: np.ndarray,
        keys: np.ndarray,
        orders: list[np.ndarray],
    ) -> None:
        """Append texts `take` of `enc` to the pool, in order.

        `keys` (sorted per band by `orders`) belong to texts `rows` of `enc`; those not in `take`
        are left out of the LSH table.
        """
        base = len(self._docs)
        position = np.full(len(enc.docs), -1, np.int64)
        position[take] = base + np.arange(len(take))
        for k in take.tolist():
            if enc.lens[k]:
                self._exact.setdefault(_doc_key(enc.docs[k]), int(position[k]))
            self._docs.append(enc.docs[k])
        sketch, saturated = _sketches(self._vocab, enc, take)
        self._lens = np.concatenate((self._lens, enc.lens[take]))
        self._sketch = np.concatenate((self._sketch, sketch))
        self._saturated = np.concatenate((self._saturated, saturated))
        self._bands.insert(keys, orders, position[rows])


def _sketches(vocab: _Vocabulary, enc: _Encoded, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per text of `rows`: its word counts in `_SKETCH_SIZE` hashed buckets, and saturation."""
    lens = enc.lens[rows]
    ids = enc.ids[_ranges(enc.offsets[rows], lens)]
    bucket = (vocab.hashes[ids] & np.uint64(_SKETCH_SIZE - 1)).astype(np.int64)
    cell = np.repeat(np.arange(len(rows)), lens) * _SKETCH_SIZE + bucket
    counts = np.bincount(cell, minlength=len(rows) * _SKETCH_SIZE).reshape(-1, _SKETCH_SIZE)
    return np.minimum(counts, 255).astype(np.uint8), (counts > 255).any(axis=1)


def _duplicate(match: int) -> Rejection:
    return Rejection(DUPLICATE, f"same words as #{match}")


def _near_duplicate(score: float, match: int) -> Rejection:
    return Rejection(NEAR_DUPLICATE, f"rouge_l={score:.3f} with #{match}")


# ---------------------------------------------------------------------------- batches


def dedupe_batch(
    texts: Sequence[str],
    index: NearDupIndex,
    signatures: Sequence[bytes | None] | None = None,
) -> list[Rejection | None]:
    """Check `texts` in order against the pool and the earlier accepted texts of the batch.

    Accepted texts (result None) join `index` in order; a rejected one does not, so it cannot
    reject later texts (Self-Instruct's sequential rule). `signatures`, if given (from
    `signatures(texts)`, which the runner stores anyway), spare computing the MinHash. Large
    batches are processed in chunks of `_CHUNK` texts, which bounds memory and changes nothing.
    """
    n = len(texts)
    sigs: Sequence[bytes | None] = [None] * n if signatures is None else signatures
    if len(sigs) != n:
        raise ValueError("signatures must align with texts")
    results: list[Rejection | None] = []
    for lo in range(0, n, _CHUNK):
        results += _dedupe_chunk(texts[lo : lo + _CHUNK], index, sigs[lo : lo + _CHUNK])
    return results


def _dedupe_chunk(
    texts: Sequence[str], index: NearDupIndex, sigs: Sequence[bytes | None]
) -> list[Rejection | None]:
    index._flush()
    enc = index._vocab.encode(texts)
    results, live, copy_of = _exact_copies(enc, index)
    rows = np.flatnonzero(live)
    keys = index._keys(enc, rows, sigs)
    orders = _Bands.sort(keys)
    base = len(index._docs)
    if base + len(rows) > index.config.lsh_min_pool:
        pool_edges, batch_edges = _lsh_edges(index, enc, rows, keys, orders)
    else:
        pool_edges, batch_edges = _exhaustive_edges(index, enc, rows)
    accepted, score, match, in_batch = _resolve(len(rows), pool_edges, batch_edges)

    keep = enc.lens == 0  # no words: ROUGE-L 0 against everything, always kept
    keep[rows[accepted]] = True
    position = base + np.cumsum(keep) - 1  # pool position of each kept text
    for r in np.flatnonzero(~accepted).tolist():
        target = int(position[rows[match[r]]]) if in_batch[r] else int(match[r])
        results[int(rows[r])] = _near_duplicate(float(score[r]), target)
    for k, first in copy_of.items():
        results[k] = results[first] or _duplicate(int(position[first]))

    remap = np.full(len(rows), -1, np.int64)
    remap[accepted] = np.arange(int(accepted.sum()))
    kept_orders = [remap[order[accepted[order]]] for order in orders]
    index._append(enc, np.flatnonzero(keep), rows[accepted], keys[accepted], kept_orders)
    return results


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
            results[k], live[k] = _duplicate(same), False
        elif (first := first_seen.setdefault(key, k)) != k:
            copy_of[k], live[k] = first, False
    return results, live, copy_of


_Edges = np.ndarray  # 3 x k float64: row, target, ROUGE-L F (>= threshold)


def _exhaustive_edges(
    index: NearDupIndex, enc: _Encoded, rows: np.ndarray
) -> tuple[_Edges, _Edges]:
    """Matches of the batch rows against the whole pool and against earlier rows (cdist)."""
    docs = [enc.docs[k] for k in rows.tolist()]
    lens = enc.lens[rows]
    step = max(1, (1 << 23) // max(1, len(index._docs) + len(docs)))
    pool_parts, batch_parts = [], []
    for lo in range(0, len(docs), step):
        hi = min(lo + step, len(docs))
        if index._docs:
            pool_parts.append(
                _matches(docs[lo:hi], lens[lo:hi], index._docs, index._lens, index.config, lo)
            )
        found = _matches(docs[lo:hi], lens[lo:hi], docs[:hi], lens[:hi], index.config, lo)
        batch_parts.append(found[:, found[1] < found[0]])
    return _stack(pool_parts), _stack(batch_parts)


def _matches(
    queries: Sequence[str | list[int]],
    qlens: np.ndarray,
    choices: Sequence[str | list[int]],
    clens: np.ndarray,
    config: DedupConfig,
    first_row: int,
) -> _Edges:
    lcs = process.cdist(
        queries, choices, scorer=LCSseq.similarity, dtype=np.int32, workers=config.workers
    )
    total = qlens[:, None] + clens[None, :]
    scores = 2.0 * lcs / total  # every text here has words: total > 0
    row, col = np.nonzero(scores >= config.threshold)
    return np.stack((row + first_row, col, scores[row, col])).astype(np.float64)


def _stack(parts: list[_Edges]) -> _Edges:
    return np.concatenate(parts, axis=1) if parts else np.empty((3, 0))


def _lsh_edges(
    index: NearDupIndex,
    enc: _Encoded,
    rows: np.ndarray,
    keys: np.ndarray,
    orders: list[np.ndarray],
) -> tuple[_Edges, _Edges]:
    """Like `_exhaustive_edges`, for pairs that share an LSH band and pass the sketch bound."""
    cfg = index.config
    sketch, saturated = _sketches(index._vocab, enc, rows)
    lens = enc.lens[rows]
    docs = [enc.docs[k] for k in rows.tolist()]

    pool_rows, pool = index._bands.pool_pairs(keys, orders, cfg.max_bucket)
    later, earlier = _Bands.batch_pairs(keys, orders, cfg.max_bucket)
    own = (sketch, saturated, lens)
    pooled = (index._sketch, index._saturated, index._lens)
    keep = _may_match(own, pool_rows, pooled, pool, cfg.threshold)
    keep_batch = _may_match(own, later, own, earlier, cfg.threshold)
    pool_edges = _verify(docs, lens, pool_rows[keep], index._docs, index._lens, pool[keep], cfg)
    batch_edges = _verify(docs, lens, later[keep_batch], docs, lens, earlier[keep_batch], cfg)
    return pool_edges, batch_edges


def _may_match(
    a: tuple[np.ndarray, np.ndarray, np.ndarray],
    a_rows: np.ndarray,
    b: tuple[np.ndarray, np.ndarray, np.ndarray],
    b_rows: np.ndarray,
    threshold: float,
) -> np.ndarray:
    """Pairs whose sketch bound on the LCS can reach `threshold` (a, b: sketch, saturated, lens)."""
    keep = np.empty(len(a_rows), bool)
    step = 1 << 20
    for lo in range(0, len(a_rows), step):
        x, y = a_rows[lo : lo + step], b_rows[lo : lo + step]
        bound = np.minimum(a[0][x], b[0][y]).sum(axis=1, dtype=np.int64)
        reach = 2.0 * bound >= threshold * (a[2][x] + b[2][y]) - _EPS
        keep[lo : lo + step] = reach | a[1][x] | b[1][y]
    return keep


def _verify(
    docs: Sequence[str | list[int]],
    lens: np.ndarray,
    rows: np.ndarray,
    target_docs: Sequence[str | list[int]],
    target_lens: np.ndarray,
    targets: np.ndarray,
    config: DedupConfig,
) -> _Edges:
    """Exact ROUGE-L of the distinct (row, target) pairs; those reaching the threshold."""
    if rows.size == 0:
        return np.empty((3, 0))
    width = len(target_docs)
    pairs = np.unique(rows * width + targets)
    rows, targets = pairs // width, pairs % width
    lcs = process.cpdist(
        [docs[r] for r in rows.tolist()],
        [target_docs[t] for t in targets.tolist()],
        scorer=LCSseq.similarity,
        dtype=np.int64,
        workers=config.workers,
    )
    scores = 2.0 * lcs / (lens[rows] + target_lens[targets])
    hit = scores >= config.threshold
    return np.stack((rows[hit], targets[hit], scores[hit])).astype(np.float64)


def _resolve(
    n: int, pool_edges: _Edges, batch_edges: _Edges
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Self-Instruct's sequential rule over the matches of `n` batch rows.

    Pool edges target pool positions, batch edges earlier rows. A row is rejected by any pool
    match, or by a match with an earlier row that was itself accepted. Returns `accepted`, and
    for rejected rows the best such match: its score, its target, whether it is a batch row.
    """
    accepted = np.ones(n, bool)
    score = np.zeros(n)
    match = np.full(n, -1, np.int64)
    in_batch = np.zeros(n, bool)
    if pool_edges.shape[1]:
        rows, targets, scores = pool_edges[:, _best_first(pool_edges)]
        first = np.concatenate(([True], rows[1:] != rows[:-1]))
        best = rows[first].astype(np.int64)
        accepted[best] = False
        score[best], match[best] = scores[first], targets[first].astype(np.int64)
    rows, targets, scores = batch_edges[:, _best_first(batch_edges)]
    for row, target, value in zip(
        rows.astype(np.int64).tolist(),
        targets.astype(np.int64).tolist(),
        scores.tolist(),
        strict=True,
    ):
        if accepted[row] and accepted[target]:  # target < row: decided already
            accepted[row] = False
            score[row], match[row], in_batch[row] = value, target, True
    return accepted, score, match, in_batch


def _best_first(edges: _Edges) -> np.ndarray:
    """Order of edges by row, then score descending, then target."""
    return np.lexsort((edges[1], -edges[2], edges[0]))
