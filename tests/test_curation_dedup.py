"""Near-duplicate curation: exact ROUGE-L as rouge_score computes it, LSH recall, persistence."""

from __future__ import annotations

import os
import pickle
import random
import re
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.curation import dedup
from workers.curation.dedup import DedupConfig, NearDupIndex, dedupe_batch
from workers.curation.types import DUPLICATE, NEAR_DUPLICATE

EXACT = DedupConfig(lsh_min_pool=10**9)  # never LSH
LSH = DedupConfig(lsh_min_pool=0)  # always LSH
WIDE_LSH = DedupConfig(lsh_min_pool=0, num_bands=32, band_rows=2)  # LSH that misses ~nothing


def sentence(rng: random.Random, vocab: list[str], low: int = 6, high: int = 18) -> str:
    words = [rng.choice(vocab) for _ in range(rng.randint(low, high))]
    return " ".join(words).capitalize() + rng.choice([".", "?", "!"])


def edit(rng: random.Random, text: str, vocab: list[str], edits: int) -> str:
    words = text.split()
    for _ in range(edits):
        i = rng.randrange(len(words))
        op = rng.random()
        if op < 0.5:
            words[i] = rng.choice(vocab)
        elif op < 0.75 and len(words) > 4:
            del words[i]
        else:
            words.insert(i, rng.choice(vocab))
    return " ".join(words)


SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa", "do", "gu", "be", "xan"]
COMMON = ["the", "a", "of", "to", "and", "in", "for", "with", "write", "explain", "list"]


def make_vocab(rng: random.Random, size: int) -> list[str]:
    made = {"".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))) for _ in range(size)}
    return COMMON * 20 + sorted(made)


def make_corpus(n: int, seed: int = 7, dup_rate: float = 0.1) -> list[str]:
    """Instruction-like strings; about `dup_rate` are 1-3 word edits of an earlier one."""
    rng = random.Random(seed)
    vocab = make_vocab(rng, 3000)
    out: list[str] = []
    for _ in range(n):
        if out and rng.random() < dup_rate:
            out.append(edit(rng, rng.choice(out), vocab, rng.randint(1, 3)))
        else:
            out.append(sentence(rng, vocab, 8, 22))
    return out


def run(texts: list[str], config: DedupConfig, batch: int) -> list:
    index = NearDupIndex(config)
    results = []
    for lo in range(0, len(texts), batch):
        results += dedupe_batch(texts[lo : lo + batch], index)
    return results


# ---------------------------------------------------------------------------- exact ROUGE-L


def test_rouge_l_equals_rouge_score_on_random_pairs() -> None:
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    rng = random.Random(3)
    vocab = ["Alpha", "beta,", "gamma", "delta", "the", "a", "of", "x1", "café", "ÉTÉ", "to-do"]
    diffs = []
    for _ in range(3000):
        a, b = sentence(rng, vocab, 0, 25), sentence(rng, vocab, 0, 25)
        expected = scorer.score(a, b)["rougeL"].fmeasure
        diffs.append(abs(dedup.rouge_l(a, b) - expected))
    assert max(diffs) < 1e-12


def test_index_scores_equal_rouge_score() -> None:
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    rng = random.Random(5)
    vocab = [f"w{i}" for i in range(12)] + ["The", "of", "naïve"]
    for config in (EXACT, LSH):
        for _ in range(150):
            a = sentence(rng, vocab, 1, 20)
            b = edit(rng, a, vocab, rng.randint(0, 6))
            index = NearDupIndex(config)
            index.add(b)
            score, match = index.max_similarity(a)
            expected = scorer.score(b, a)["rougeL"].fmeasure
            if match == 0 or config is EXACT:
                assert abs(score - expected) < 1e-12


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=40), min_size=1, max_size=8))
def test_batch_word_splitting_matches_rouge_tokenizer(texts: list[str]) -> None:
    keys, counts = dedup._word_keys(texts)
    words = [w for t in texts for w in dedup.tokenize(t)]
    assert counts.tolist() == [len(dedup.tokenize(t)) for t in texts]
    seen: dict[str, int] = {}
    by_key: dict[int, str] = {}
    for word, key in zip(words, keys.tolist(), strict=True):
        assert seen.setdefault(word, key) == key  # a word always has the same key
        assert by_key.setdefault(key, word) == word  # and no two words share one


def test_rouge_tokenizer_reference() -> None:
    rouge_tokenize = pytest.importorskip("rouge_score.tokenize")
    for text in ["Hello, WORLD! it's 2024", "İstanbul café naïve", "a\x00b", "日本語 ok", ""]:
        assert dedup.tokenize(text) == rouge_tokenize.tokenize(text, None)


# ---------------------------------------------------------------------------- the rule


def ten(words: str) -> str:
    return " ".join(f"w{c}" for c in words)


@pytest.mark.parametrize("config", [EXACT, WIDE_LSH], ids=["exact", "lsh"])
def test_threshold_boundary_exactly_07_is_rejected_below_is_kept(config: DedupConfig) -> None:
    pool = [(ten("0123456789"), None)]
    at = ten("0123456xyz")  # LCS 7 of 10 + 10 words: F = 0.7
    below = ten("0123456xyzv")  # LCS 7 of 10 + 11 words: F = 0.667
    index = NearDupIndex.from_rows(pool, config)
    assert index.max_similarity(at) == (0.7, 0)
    rejection = index.check(at)
    assert rejection is not None and rejection.reason == NEAR_DUPLICATE
    assert "rouge_l=0.700 with #0" in rejection.detail
    assert index.check(below) is None
    assert dedupe_batch([at, below], NearDupIndex.from_rows(pool, config)) == [rejection, None]
    stricter = NearDupIndex.from_rows(pool, replace(config, threshold=0.71))
    assert stricter.check(at) is None
    assert dedupe_batch([at], stricter) == [None]


def test_same_words_are_a_duplicate_whatever_the_case_and_punctuation() -> None:
    index = NearDupIndex(EXACT)
    index.add_many(["Write a poem about the sea.", "Name three colours."])
    rejection = index.check("write a POEM about -- the sea!")
    assert rejection is not None and rejection.reason == DUPLICATE
    assert rejection.detail == "same words as #0"
    assert index.check("Write a poem about the blue sea.") is not None
    assert index.check("Write a limerick on cheese.") is None


def test_batch_internal_duplicates_and_sequential_rule() -> None:
    for config in (EXACT, LSH):
        index = NearDupIndex(config)
        index.add(ten("0123456789"))
        batch = [
            "Tell me a joke about cats.",  # new -> kept as #1
            "tell me a joke about cats!",  # same words as batch text 0
            ten("01234567ab"),  # 0.8 with the pool text: rejected
            ten("cd234567ab"),  # 0.8 with the rejected one only (0.6 with #0): kept as #2
            ten("cd234567ab"),  # same words as a kept batch text
            "Tell me a joke about dogs.",  # 0.833 with batch text 0
        ]
        results = dedupe_batch(batch, index)
        reasons = [r and (r.reason, r.detail) for r in results]
        assert reasons == [
            None,
            (DUPLICATE, "same words as #1"),
            (NEAR_DUPLICATE, "rouge_l=0.800 with #0"),
            None,
            (DUPLICATE, "same words as #2"),
            (NEAR_DUPLICATE, "rouge_l=0.833 with #1"),
        ], config
        assert len(index) == 3
        assert index.max_similarity(ten("cd234567ab")) == (1.0, 2)


def test_copy_of_a_rejected_batch_text_gets_its_rejection() -> None:
    index = NearDupIndex(EXACT)
    index.add(ten("0123456789"))
    results = dedupe_batch([ten("01234567ab"), ten("01234567ab")], index)
    assert results[0] == results[1] and results[0].reason == NEAR_DUPLICATE
    assert len(index) == 1


def test_texts_without_words_are_always_kept() -> None:
    index = NearDupIndex(EXACT)
    results = dedupe_batch(["日本語のテキスト", "日本語のテキスト", "!!!", "Hello there"], index)
    assert results == [None, None, None, None]
    assert len(index) == 4 and index.max_similarity("日本語のテキスト") == (0.0, -1)
    assert index.max_similarity("hello there") == (1.0, 3)


def test_empty_pool_and_empty_batch() -> None:
    index = NearDupIndex()
    assert index.max_similarity("anything at all") == (0.0, -1)
    assert index.check("anything at all") is None
    assert dedupe_batch([], index) == []
    with pytest.raises(ValueError):
        dedupe_batch(["a b"], index, signatures=[])


# ---------------------------------------------------------------------------- the LSH path


def test_lsh_path_finds_what_the_exact_path_finds() -> None:
    texts = make_corpus(4000)
    exact = run(texts, EXACT, batch=500)
    lsh = run(texts, DedupConfig(lsh_min_pool=1000), batch=500)  # exact first, then the pool
    exact_rejected = {i for i, r in enumerate(exact) if r}
    lsh_rejected = {i for i, r in enumerate(lsh) if r}
    assert len(exact_rejected) > 300
    recall = len(exact_rejected & lsh_rejected) / len(exact_rejected)
    assert recall >= 0.95, recall
    # Every LSH rejection is true: its match was kept earlier and scores >= 0.7.
    kept = [texts[i] for i, r in enumerate(lsh) if r is None]
    for i in sorted(lsh_rejected):
        score, position = re.search(r"=([\d.]+) with #(\d+)|#(\d+)", lsh[i].detail).group(1, 2)
        if score is not None:
            assert dedup.rouge_l(texts[i], kept[int(position)]) >= 0.7


def test_lsh_max_similarity_and_check_use_candidates() -> None:
    texts = make_corpus(3000, seed=11, dup_rate=0.0)
    index = NearDupIndex(DedupConfig(lsh_min_pool=100))
    index.add_many(texts)
    probe = edit(random.Random(1), texts[1234], ["zzz"], 1)
    score, match = index.max_similarity(probe)
    assert match == 1234 and score == pytest.approx(dedup.rouge_l(probe, texts[1234]))
    assert index.check(probe).reason == NEAR_DUPLICATE


def test_minhash_is_datasketchs_affine32_scheme() -> None:
    datasketch = pytest.importorskip("datasketch", minversion="2.0")  # the affine32 scheme
    config = DedupConfig(num_bands=4, band_rows=8, seed=42)
    reference = datasketch.MinHash(num_perm=config.num_perm, seed=42, scheme="affine32")
    a, b = dedup._permutations(config)
    assert np.array_equal(reference.permutations[0], a)
    assert np.array_equal(reference.permutations[1], b)

    texts = ["The quick brown fox jumps over the lazy dog", "a", "x y x y z"]
    vocab = dedup._Vocabulary()
    enc = vocab.encode(texts)
    h32, counts = dedup._shingle_hashes(vocab.hashes[enc.ids], enc.lens, 1)
    mine = dedup._minhash(h32, counts, config)
    word_hash = {w: int(h) for w, h in zip(vocab.encode([" ".join(texts)]).ids, h32, strict=False)}
    for row, text in enumerate(texts):
        ids = vocab.encode([text]).ids.tolist()
        theirs = datasketch.MinHash(
            num_perm=config.num_perm, seed=42, scheme="affine32", hashfunc=lambda i: word_hash[i]
        )
        theirs.update_batch(ids)
        assert np.array_equal(theirs.hashvalues, mine[row]), text


# ---------------------------------------------------------------------------- persistence


def test_from_rows_with_stored_signatures_equals_a_fresh_index(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    texts = [*make_corpus(1500, seed=2), "", "日本語"]
    config = DedupConfig(lsh_min_pool=200)
    sigs = dedup.signatures(texts, config)
    assert {len(s) for s in sigs} == {4 + 4 * config.num_bands, 4}

    fresh = NearDupIndex(config)
    fresh.add_many(texts)
    fresh._flush()
    computed: list[int] = []
    real = dedup._keys_of
    monkeypatch.setattr(
        dedup, "_keys_of", lambda v, e, rows, c: computed.append(len(rows)) or real(v, e, rows, c)
    )
    rebuilt = NearDupIndex.from_rows(zip(texts, sigs, strict=True), config)
    assert computed == []  # nothing hashed again
    for band in range(config.num_bands):
        assert np.array_equal(fresh._bands.keys[band], rebuilt._bands.keys[band])
        assert np.array_equal(fresh._bands.ids[band], rebuilt._bands.ids[band])
    assert fresh._docs == rebuilt._docs and len(rebuilt) == len(texts)

    probes = [*make_corpus(300, seed=9, dup_rate=0.0), edit(random.Random(4), texts[10], ["q"], 1)]
    assert dedupe_batch(probes, fresh) == dedupe_batch(probes, rebuilt)


def test_signatures_from_other_parameters_are_recomputed() -> None:
    texts = make_corpus(400, seed=4)
    stale = dedup.signatures(texts, DedupConfig(seed=2))
    config = DedupConfig(lsh_min_pool=50)
    rebuilt = NearDupIndex.from_rows([*zip(texts, stale, strict=True), ("x y", b"junk")], config)
    fresh = NearDupIndex.from_rows([(t, None) for t in [*texts, "x y"]], config)
    for band in range(config.num_bands):
        assert np.array_equal(fresh._bands.keys[band], rebuilt._bands.keys[band])


def test_dedupe_batch_uses_given_signatures() -> None:
    texts = make_corpus(600, seed=8)
    config = DedupConfig(lsh_min_pool=100)
    with_sigs = dedupe_batch(texts, NearDupIndex(config), dedup.signatures(texts, config))
    assert with_sigs == dedupe_batch(texts, NearDupIndex(config))
    wrong = [dedup.signature("a completely different text", config)] * len(texts)
    assert dedupe_batch(texts, NearDupIndex(config), wrong) != with_sigs


def test_signature_is_stable_across_processes() -> None:
    text = "Explain the water cycle to a ten-year-old."
    code = f"from workers.curation import dedup; print(dedup.signature({text!r}).hex())"
    env = {**os.environ, "PYTHONHASHSEED": "77"}
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert other.stdout.strip() == dedup.signature(text).hex()


def test_index_pickles_and_keeps_working() -> None:
    texts = make_corpus(800, seed=6)
    index = NearDupIndex(DedupConfig(lsh_min_pool=100))
    dedupe_batch(texts[:600], index)
    index.add("pending text here")
    copy = pickle.loads(pickle.dumps(index))
    assert dedupe_batch(texts[600:], copy) == dedupe_batch(texts[600:], index)
    assert len(copy) == len(index)


def test_word_ids_beyond_unicode_become_int_lists() -> None:
    ids = np.array([5, 0x10FFFF, 0x110000, 7, 8])
    docs = dedup._as_docs(ids, np.array([0, 2, 4, 5]))
    assert docs[0] == "\x05\U0010ffff" and docs[1] == [0x110000, 7] and docs[2] == "\x08"
    assert dedup.LCSseq.similarity(docs[1], "\x07") == 1  # str and list compare alike
