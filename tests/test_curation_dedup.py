"""Near-duplicate curation: exact ROUGE-L as rouge_score computes it, and candidates (prefix
filtering) that miss no pair at or above the threshold: every test compares with a full scan."""

from __future__ import annotations

import datetime as dt
import pickle
import random
import re
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rapidfuzz import process
from rapidfuzz.distance import LCSseq

from app.config import Settings
from app.db import utcnow
from app.state import Database
from tests import planted
from tests.factories import make_dataset, upload_seeds
from tests.test_expansion import start, wait_for
from tests.test_planted_curation import PlantedTeacher
from tests.test_queue import claim, complete, examples_of, outcome
from tests.worker_proc import add_job, item_payloads
from workers.curation import dedup
from workers.curation.dedup import DedupConfig, NearDupIndex, dedupe_batch, dedupe_batch_matches
from workers.curation.types import DUPLICATE, NEAR_DUPLICATE
from workers.methods import expansion

FULL_SCAN = DedupConfig(scan_max_pool=10**9)  # max_similarity scans the whole pool
INDEXED = DedupConfig(scan_max_pool=0)  # max_similarity uses the candidates only


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
TEMPLATES = (  # many strings share one; two match when enough slots coincide (F 0.70-0.80)
    "Explain to a {} how to {} the {}.",
    "Write a {} poem about the {} {}.",
    "What is the best way to {} a {} {} {}?",
    "Give {} tips for a {} {} who wants to {} the {}.",
)


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


def hard_corpus(n: int, seed: int) -> list[str]:
    """What makes candidate generation miss: shared templates, repeated words, 1-3 word texts,
    long texts, reorderings, single-word edits, texts without words."""
    rng = random.Random(seed)
    vocab = make_vocab(rng, 400)
    slots = [w for w in vocab if w not in COMMON][:60]
    out: list[str] = []
    for _ in range(n):
        k = rng.random()
        if k < 0.35:
            template = rng.choice(TEMPLATES)
            out.append(template.format(*(rng.choice(slots) for _ in range(template.count("{}")))))
        elif k < 0.45:
            out.append(
                " ".join(rng.choice(["the", "a", "b", "x"]) for _ in range(rng.randint(1, 3)))
            )
        elif k < 0.5:
            out.append(sentence(rng, vocab, 60, 200))
        elif k < 0.55:
            out.append(" ".join(rng.choice(["the", "of", "to"]) for _ in range(rng.randint(4, 12))))
        elif k < 0.57:
            out.append(rng.choice(["", "!!", "日本語"]))
        elif out and k < 0.72:
            words = rng.choice(out).split() or ["x"]
            words[rng.randrange(len(words))] = rng.choice(vocab)
            out.append(" ".join(words))
        elif out and k < 0.8:
            words = rng.choice(out).split()
            cut = rng.randint(0, len(words))
            out.append(" ".join(words[cut:] + words[:cut]))
        elif out and k < 0.9:
            out.append(edit(rng, rng.choice(out) or "x", vocab, rng.randint(1, 4)))
        else:
            out.append(sentence(rng, vocab, 4, 25))
    return out


def run(texts: list[str], config: DedupConfig, batch: int) -> list:
    index = NearDupIndex(config)
    results = []
    for lo in range(0, len(texts), batch):
        results += dedupe_batch(texts[lo : lo + batch], index)
    return results


def full_scan(
    texts: list[str], threshold: float, pool: Sequence[str] = ()
) -> list[tuple[float, int] | None]:
    """The rule by brute force: each text against the pool and every earlier kept text, in
    order. None when kept, else (best score, position of its match among pool + kept)."""
    vocab: dict[str, int] = {}

    def encode(text: str) -> str:
        return "".join(chr(vocab.setdefault(w, len(vocab))) for w in dedup.tokenize(text))

    kept = [encode(t) for t in pool]
    out: list[tuple[float, int] | None] = []
    for doc in map(encode, texts):
        if doc and kept:
            lcs = process.cdist([doc], kept, scorer=LCSseq.similarity, dtype=np.int64)[0]
            total = len(doc) + np.array([len(k) for k in kept])
            scores = np.divide(2.0 * lcs, total, out=np.zeros(len(kept)), where=total > len(doc))
            best = int(np.argmax(scores))
            if scores[best] >= threshold:
                out.append((float(scores[best]), best))
                continue
        out.append(None)
        kept.append(doc)
    return out


def assert_same_as_full_scan(
    texts: list[str], threshold: float, batches: list[int], pool: Sequence[str] = ()
) -> None:
    """Same decisions as the full scan, in batches of each size; each near-duplicate rejection
    names a match that really scores what the detail says (pool matches are named first, so
    it need not be the best one)."""
    expected = full_scan(texts, threshold, list(pool))
    for batch in batches:
        index = NearDupIndex.from_rows(pool, DedupConfig(threshold=threshold))
        got: list = []
        where: list[int] = []
        for lo in range(0, len(texts), batch):
            results, matches = dedupe_batch_matches(texts[lo : lo + batch], index)
            got += results
            where += matches
        assert [g is not None for g in got] == [e is not None for e in expected], (
            threshold,
            batch,
        )
        for text, g, position in zip(texts, got, where, strict=True):
            if g is not None and g.reason == NEAR_DUPLICATE:
                score = float(re.search(r"rouge_l=([\d.]+)", g.detail).group(1))
                exact = dedup.rouge_l(text, index.text(position))
                assert exact >= threshold and round(exact, 3) == score
    assert any(e is not None for e in expected)


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
    for config in (FULL_SCAN, INDEXED):
        for _ in range(150):
            a = sentence(rng, vocab, 1, 20)
            b = edit(rng, a, vocab, rng.randint(0, 6))
            index = NearDupIndex(config)
            index.add(b)
            score, match = index.max_similarity(a)
            expected = scorer.score(b, a)["rougeL"].fmeasure
            if expected == 0.0:
                assert (score, match) == (0.0, -1)
            elif config is FULL_SCAN or expected >= config.threshold:
                assert match == 0 and abs(score - expected) < 1e-12


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


@pytest.mark.parametrize("config", [FULL_SCAN, INDEXED], ids=["scan", "indexed"])
def test_threshold_boundary_exactly_07_is_rejected_below_is_kept(config: DedupConfig) -> None:
    pool = [(ten("0123456789"), None)]
    at = ten("0123456xyz")  # LCS 7 of 10 + 10 words: F = 0.7
    below = ten("0123456xyzv")  # LCS 7 of 10 + 11 words: F = 0.667
    index = NearDupIndex.from_rows(pool, config)
    assert index.max_similarity(at) == (0.7, 0)
    rejection = index.check(at)
    assert rejection is not None and rejection.reason == NEAR_DUPLICATE
    assert rejection.detail == 'rouge_l=0.700 with #0: "w0 w1 w2 w3 w4 w5 w6 w7 w8 w9"'
    assert index.check(below) is None
    assert dedupe_batch([at, below], NearDupIndex.from_rows(pool, config)) == [rejection, None]
    stricter = NearDupIndex.from_rows(pool, replace(config, threshold=0.71))
    assert stricter.check(at) is None
    assert dedupe_batch([at], stricter) == [None]


def test_same_words_are_a_duplicate_whatever_the_case_and_punctuation() -> None:
    index = NearDupIndex()
    index.add_many(["Write a poem about the sea.", "Name three colours."])
    rejection = index.check("write a POEM about -- the sea!")
    assert rejection is not None and rejection.reason == DUPLICATE
    assert rejection.detail == 'same words as #0: "Write a poem about the sea."'
    assert index.check("Write a poem about the blue sea.") is not None
    assert index.check("Write a limerick on cheese.") is None


def test_batch_internal_duplicates_and_sequential_rule() -> None:
    index = NearDupIndex()
    index.add(ten("0123456789"))
    batch = [
        "Tell me a joke about cats.",  # new -> kept as #1
        "tell me a joke about cats!",  # same words as batch text 0
        ten("01234567ab"),  # 0.8 with the pool text: rejected
        ten("cd234567ab"),  # 0.8 with the rejected one only (0.6 with #0): kept as #2
        ten("cd234567ab"),  # same words as a kept batch text
        "Tell me a joke about dogs.",  # 0.833 with batch text 0
    ]
    results, matches = dedupe_batch_matches(batch, index)
    reasons = [r and (r.reason, r.detail) for r in results]
    assert reasons == [
        None,
        (DUPLICATE, 'same words as #1: "Tell me a joke about cats."'),
        (NEAR_DUPLICATE, 'rouge_l=0.800 with #0: "w0 w1 w2 w3 w4 w5 w6 w7 w8 w9"'),
        None,
        (DUPLICATE, 'same words as #2: "wc wd w2 w3 w4 w5 w6 w7 wa wb"'),
        (NEAR_DUPLICATE, 'rouge_l=0.833 with #1: "Tell me a joke about cats."'),
    ]
    assert matches == [-1, 1, 0, -1, 2, 1]  # >= 1 (the pool's size before): a batch text
    assert len(index) == 3
    assert index.max_similarity(ten("cd234567ab")) == (1.0, 2)


def test_rejection_detail_names_the_match_shortened() -> None:
    long = "Write a detailed essay about " + " ".join(f"topic{i}" for i in range(40))
    index = NearDupIndex.from_rows([long])
    rejection = index.check(long.replace("topic7", "subject7"))
    assert rejection is not None and rejection.reason == NEAR_DUPLICATE
    detail = rejection.detail
    assert detail.startswith('rouge_l=0.978 with #0: "Write a detailed essay about topic0 topic1')
    assert detail.endswith('…"') and len(detail) < 120
    twice = dedupe_batch(
        ["Name three colours\nof the\trainbow.", "name three colours of the rainbow"],
        NearDupIndex(),
    )
    assert twice[1].detail == 'same words as #0: "Name three colours of the rainbow."'


def test_copy_of_a_rejected_batch_text_gets_its_rejection() -> None:
    index = NearDupIndex()
    index.add(ten("0123456789"))
    results = dedupe_batch([ten("01234567ab"), ten("01234567ab")], index)
    assert results[0] == results[1] and results[0].reason == NEAR_DUPLICATE
    assert len(index) == 1


def test_texts_without_words_are_always_kept() -> None:
    index = NearDupIndex()
    results = dedupe_batch(["日本語のテキスト", "日本語のテキスト", "!!!", "Hello there"], index)
    assert results == [None, None, None, None]
    assert len(index) == 4 and index.max_similarity("日本語のテキスト") == (0.0, -1)
    assert index.max_similarity("hello there") == (1.0, 3)


def test_empty_pool_and_empty_batch() -> None:
    index = NearDupIndex()
    assert index.max_similarity("anything at all") == (0.0, -1)
    assert index.check("anything at all") is None
    assert dedupe_batch([], index) == []
    assert dedupe_batch_matches([], index) == ([], [])


# ---------------------------------------------------------------------------- no misses


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7, 0.85, 1.0])
def test_candidates_miss_nothing_the_full_scan_finds(
    threshold: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dedup, "_BLOCK", 64)  # many blocks of the in-batch rule
    texts = hard_corpus(1500, seed=int(threshold * 100))
    assert_same_as_full_scan(texts, threshold, batches=[1500, 97, 1])


def test_template_matches_at_070_to_080_against_a_large_pool() -> None:
    """What the MinHash LSH missed (~40 % at 200k): a large pool, and new texts that share a
    template with pooled ones and one or two slots, so their word sets are only ~55 % alike."""
    rng = random.Random(12)
    vocab = make_vocab(rng, 2000)
    slots = [w for w in vocab if w not in COMMON]
    pool = [sentence(rng, vocab, 6, 20) for _ in range(21_000)]
    pool += [t.format(*(rng.choice(slots) for _ in range(t.count("{}")))) for t in TEMPLATES * 500]
    small = slots[:40]  # few slot values: coincidences are common
    texts = [t.format(*(rng.choice(small) for _ in range(t.count("{}")))) for t in TEMPLATES * 150]
    expected = full_scan(texts, 0.7, pool)
    scores = [e[0] for e in expected if e is not None]
    assert sum(0.7 <= s < 0.8 for s in scores) > 100
    assert_same_as_full_scan(texts, 0.7, batches=[len(texts), 50], pool=pool)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.lists(st.sampled_from("abcde"), max_size=14).map(" ".join), max_size=30),
    st.sampled_from([0.2, 0.4, 0.5, 0.6, 0.7, 0.75, 0.9, 1.0]),
    st.integers(1, 30),
)
def test_candidates_equal_the_full_scan_on_small_random_texts(
    texts: list[str], threshold: float, batch: int
) -> None:
    expected = full_scan(texts, threshold)
    index = NearDupIndex(DedupConfig(threshold=threshold))
    got: list = []
    for lo in range(0, len(texts), batch):
        got += dedupe_batch(texts[lo : lo + batch], index)
    assert [g is not None for g in got] == [e is not None for e in expected]


def test_max_similarity_beyond_the_scan_uses_candidates() -> None:
    texts = make_corpus(3000, seed=11, dup_rate=0.0)
    index = NearDupIndex(DedupConfig(scan_max_pool=100))
    index.add_many(texts)
    probe = edit(random.Random(1), texts[1234], ["zzz"], 1)
    score, match = index.max_similarity(probe)
    assert match == 1234 and score == pytest.approx(dedup.rouge_l(probe, texts[1234]))
    assert index.check(probe).reason == NEAR_DUPLICATE
    assert index.max_similarity("zzz qqq www") == (0.0, -1)  # no candidate at all


# ---------------------------------------------------------------------------- persistence


def test_from_rows_equals_adding_and_takes_pool_rows() -> None:
    texts = [*make_corpus(1500, seed=2), "", "日本語"]
    added = NearDupIndex()
    added.add_many(texts)
    rebuilt = NearDupIndex.from_rows([(t, b"stored signature, unused") for t in texts])
    assert len(rebuilt) == len(texts)
    probes = [*make_corpus(300, seed=9, dup_rate=0.0), edit(random.Random(4), texts[10], ["q"], 1)]
    results = dedupe_batch(probes, rebuilt)
    assert results == dedupe_batch(probes, added)
    assert results[-1] is not None and "#10:" in results[-1].detail


def test_index_pickles_and_keeps_working() -> None:
    texts = make_corpus(800, seed=6)
    index = NearDupIndex()
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


# ---------------------------------------------------------------------------- in the service


def test_twin_of_a_rejected_answer_is_answered_instead(settings: Settings) -> None:
    """A candidate rejected as a near duplicate of a same-round twin gets another chance when
    the twin's answer is rejected; the next twin in the chain is then checked against it."""
    twin = "Write a short poem about the quiet autumn sea at night."
    second = "Write a short poem about the quiet autumn seas at night."  # 0.91 with twin
    third = "Write a short poem about the quiet autumn sea at midnight."  # 0.91 with both
    other = "Name three rivers that flow through more than two countries."
    assert dedup.rouge_l(second, third) >= 0.7
    teacher = PlantedTeacher(
        [twin, other, second, third], {twin: "I'm sorry, but I can't help with that request."}
    )
    for client in start(settings.model_copy(update={"poll_interval_seconds": 0.05}), teacher):
        ds = make_dataset(client)["id"]
        upload_seeds(client, ds, [{"instruction": q, "output": a} for q, a in planted.SEEDS])
        body = {
            "dataset_id": ds,
            "kind": "expansion",
            "params": {"target": 10, "calls_per_round": 1, "max_rounds": 1},
        }
        job = wait_for(client, client.post("/v1/jobs", json=body).json()["id"])
        assert job["status"] == "succeeded", job
        rows = client.get(f"/v1/datasets/{ds}/examples", params={"origin": "generated"}).json()
    by_text = {r["instruction"]: r for r in rows["data"]}
    assert sorted(by_text) == sorted([twin, other, second, third])  # each stored once
    assert by_text[twin]["reject_reason"] == "refusal"
    assert by_text[second]["status"] == "accepted" and by_text[other]["status"] == "accepted"
    assert by_text[third]["reject_reason"] == NEAR_DUPLICATE
    assert second in by_text[third]["reject_detail"]  # the new match, not the refused twin


async def test_commit_recheck_labels_copies_duplicate_and_names_near_matches(
    database: Database,
) -> None:
    job_id = await add_job(database, item_payloads(4, 2))
    since = utcnow() - dt.timedelta(seconds=10)
    (first,) = await claim(database, "w1")
    stored = ["Write a poem about the sea.", "Name three colours of the rainbow."]
    await complete(database, first, "w1", outcome(*stored))
    (second,) = await claim(database, "w2")
    texts = [
        "write a POEM -- about the sea!",  # same words (another output: not the content hash)
        "Name three colours of a rainbow.",  # 0.833
        "Explain how tides work.",
    ]
    mine = outcome(*texts, recheck_since=since)
    mine.recheck = expansion.recheck_against(list(enumerate(texts)), DedupConfig())
    await complete(database, second, "w2", mine)
    rows = {r.instruction: r for r in await examples_of(database, job_id)}
    copy, near, fresh = (rows[t] for t in texts)
    assert (copy.status, copy.reject_reason) == ("rejected", DUPLICATE)
    assert copy.reject_detail == (
        'same words as an example stored by a parallel round: "Write a poem about the sea."'
    )
    assert (near.status, near.reject_reason) == ("rejected", NEAR_DUPLICATE)
    assert near.reject_detail == (
        "rouge_l=0.833 with an example stored by a parallel round: "
        '"Name three colours of the rainbow."'
    )
    assert fresh.status == "accepted"
