"""Benchmark scenario 4: near-duplicate curation of synthetic instructions (Self-Instruct's rule).

Generates N instruction-like strings deterministically, a mix meant to look like a machine-written
pool: sentences from a 30-template grammar (real and made-up words, as Self-Instruct's machine
instructions look: "Write a ...", "Given the following ..."), short templates that many strings
share with a few slots changed (the chance matches at ROUGE-L 0.70-0.80 that an LSH misses),
random word strings, and edits of earlier strings: one word substituted, 1-3 word edits
(substitute, delete, insert, swap), and reorderings (the string rotated at a word). They go
through `workers.curation.dedup.dedupe_batch` in batches, as the runner uses it, and the script
prints the time taken (wall and CPU, with the load average), then checks the result exactly:

- precision: every rejection names its match (pool position); its exact ROUGE-L (the
  `rouge_score`-equivalent reference `dedup.rouge_l`) must be >= the threshold;
- recall on *all* true near duplicates, not only the planted ones: a sample of the kept strings
  is compared (rapidfuzz, exact LCS over word ids) with every kept string; one that reaches the
  threshold with a string kept before it is a miss. Recall = rejections / (rejections + the
  misses extrapolated to all kept strings).

    .venv/bin/python bench/dedup.py                 # 200,000 and 1,000,000
    .venv/bin/python bench/dedup.py --n 20000       # smaller
"""

from __future__ import annotations

import argparse
import os
import random
import re
import resource
import time
from dataclasses import dataclass

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import LCSseq

from workers.curation import dedup


def _words(text: str) -> list[str]:
    return text.split()


SYLLABLES = _words(
    "ba be bi bo bu da de di do du fa fe fi fo ga ge gi go ka ke ki ko ku la le li lo lu ma me "
    "mi mo mu na ne ni no nu pa pe pi po ra re ri ro ru sa se si so ta te ti to tu va ve vi vo "
    "za ze zi zo bran cor del fen gar hol jin kel mor nar pel quin ros sil tor val wen xan yor zel"
)
LEADS = [
    *_words(
        "write explain describe list summarize generate create classify translate rewrite "
        "compare suggest give find identify convert design outline analyze draft propose "
        "evaluate recommend provide compose plan brainstorm name predict estimate review"
    ),
    "tell me",
]
ADJECTIVES = _words(
    "short long simple detailed formal casual funny serious creative practical concise friendly "
    "technical historical modern ancient local global personal public private cheap expensive "
    "healthy quick slow quiet loud bright dark green urban rural digital manual weekly daily "
    "seasonal popular rare common useful risky safe fair honest strange typical basic advanced"
)
FORMS = _words(
    "poem story essay email letter tweet summary list plan recipe guide review speech report "
    "song riddle joke headline slogan outline table dialogue description proposal checklist"
)
ROLES = _words(
    "teacher student doctor nurse farmer engineer manager chef pilot artist writer lawyer parent "
    "child traveler beginner expert scientist programmer designer driver coach"
)
VERBS = _words(
    "improve reduce explain teach measure protect build clean repair choose store share compare "
    "test plan grow cook sell fix sort count paint move study visit avoid support"
)
ASPECTS = _words(
    "main idea tone structure strengths weaknesses causes effects history cost benefits risks "
    "purpose audience style"
)
PREPOSITIONS = _words("about for on regarding with without using from into during")
CONTEXTS = (
    "in under {n} words",
    "for a {adj} {role}",
    "in the style of {adj} {role}s",
    "using {n} bullet points",
    "without using the word {noun}",
    "as a {adj} {form}",
    "for {n} {noun}s",
    "in {n} {adj} steps",
    "before the {noun} {noun}",
    "so that a {adj} {role} understands {noun}",
    "with a {adj} tone",
    "that mentions {noun} and {noun}",
    "and give {n} examples",
    "in one paragraph about {noun}",
    "for a {noun} newsletter",
    "as a numbered list of {noun}s",
    "assuming {role}s know {noun}",
    "in {adj} English for {noun}",
    "and cite {n} {noun}s",
    "using the {noun} method",
    "for the {adj} {noun} season",
    "without {verb}ing",
    "like a {adj} {role} would",
    "in a table of {n} {noun}s",
)
TEMPLATES = (
    "{lead} a {adj} {form} {prep} {topic} {ctx}.",
    "{lead} {n} {adj} ways to {verb} the {topic} {ctx}.",
    "How can a {role} {verb} {topic} {ctx}?",
    "{lead} the difference between {topic} and {topic} {ctx}.",
    "Given the following {form} {prep} {topic}, {lead} its {aspect} {ctx}.",
    "{lead} why {topic} is {adj} for a {role}.",
    "Is it {adj} to {verb} {topic} {prep} {topic}? {lead} your answer {ctx}.",
    "You are a {adj} {role}. {lead} a {form} {prep} {topic}.",
    "{lead} the {aspect} of {topic} and {topic} {ctx}.",
    "Which {noun} would a {role} {verb} first {prep} {topic}, and why?",
    "Generate a list of {n} {adj} {noun}s that a {role} could {verb} {prep} {topic}.",
    "Classify {topic} {prep} {topic} as {adj}, {adj} or {adj}.",
    "Rewrite this sentence {ctx}: {topic} {verb}s {topic}.",
    "What are the {aspect} of {verb}ing {topic} {prep} {topic}?",
    "If a {role} wanted to {verb} {topic}, should they {verb} {topic} first?",
    "Find every {noun} in this text and {verb} it: {topic} {prep} {topic}.",
    "Create a {form} that {verb}s {topic} for {n} {role}s.",
    "Describe a day of a {adj} {role} who {verb}s {topic} {ctx}.",
    "{lead} a {form} explaining how {topic} affects {topic} {ctx}.",
    "Translate {topic} {prep} {topic} into {adj} language.",
    "List {n} questions a {role} might ask about {topic} {prep} {topic}.",
    "Summarize the {aspect} of {topic} {prep} {topic}.",
    "Why do {role}s {verb} {topic} {prep} {topic}?",
    "Suggest a {adj} name for {topic} {prep} {topic}.",
    "Explain to a {role} how to {verb} {topic} {ctx}.",
    "Compare {topic} with {topic}, focusing on {aspect} {ctx}.",
    "{lead} a {form} told by {topic} to {topic}.",
    "What would happen if {topic} could {verb} {topic}?",
    "Give an example of {topic} {prep} {topic} {ctx}.",
    "Plan a {adj} {noun} for {topic} {ctx}.",
)


class Grammar:
    """A seeded template grammar; `sentence()` draws one instruction, `edit()` perturbs one."""

    def __init__(self, seed: int, nouns: int = 20_000) -> None:
        self.rng = random.Random(seed)
        self.nouns = self._made_up(nouns, "")
        self.adjectives = ADJECTIVES + self._made_up(400, "ic")
        self.verbs = VERBS + self._made_up(300, "ize")
        self.forms = FORMS + self._made_up(100, "let")
        self.roles = ROLES + self._made_up(200, "er")
        self.slots = {
            "lead": lambda: self.rng.choice(LEADS),
            "adj": lambda: self.rng.choice(self.adjectives),
            "form": lambda: self.rng.choice(self.forms),
            "role": lambda: self.rng.choice(self.roles),
            "prep": lambda: self.rng.choice(PREPOSITIONS),
            "verb": lambda: self.rng.choice(self.verbs),
            "aspect": lambda: self.rng.choice(ASPECTS),
            "noun": lambda: self.rng.choice(self.nouns),
            "n": lambda: str(self.rng.randint(2, 12)),
            "topic": self.topic,
            "ctx": lambda: self.fill(self.rng.choice(CONTEXTS)),
        }

    def _made_up(self, count: int, suffix: str) -> list[str]:
        words: set[str] = set()
        low, high = (2, 3) if not suffix else (1, 2)
        while len(words) < count:
            syllables = self.rng.randint(low, high)
            words.add("".join(self.rng.choice(SYLLABLES) for _ in range(syllables)) + suffix)
        return sorted(words)

    def topic(self) -> str:
        r, nouns, adjectives = self.rng, self.nouns, self.adjectives
        k = r.random()
        if k < 0.35:
            return f"the {r.choice(adjectives)} {r.choice(nouns)} {r.choice(nouns)}"
        if k < 0.6:
            return f"{r.choice(adjectives)} {r.choice(nouns)} and {r.choice(nouns)}"
        if k < 0.85:
            return f"the {r.choice(nouns)} of {r.choice(adjectives)} {r.choice(nouns)}"
        return f"{r.choice(nouns)} {r.choice(nouns)} {r.choice(self.verbs)}ing"

    def fill(self, template: str) -> str:
        out, i = [], 0
        while (j := template.find("{", i)) >= 0:
            k = template.find("}", j)
            out += [template[i:j], self.slots[template[j + 1 : k]]()]
            i = k + 1
        out.append(template[i:])
        return "".join(out)

    def sentence(self) -> str:
        text = self.fill(self.rng.choice(TEMPLATES))
        return text[0].upper() + text[1:]

    def edit(self, text: str) -> str:
        """1-3 random word edits: substitute, delete, insert or swap neighbours."""
        r, words = self.rng, text.split()
        for _ in range(r.randint(1, 3)):
            op, i = r.random(), r.randrange(len(words))
            if op < 0.5:
                words[i] = r.choice(self.nouns if r.random() < 0.5 else self.adjectives)
            elif op < 0.7 and len(words) > 3:
                del words[i]
            elif op < 0.9:
                words.insert(i, r.choice(self.adjectives + self.verbs))
            elif i + 1 < len(words):
                words[i], words[i + 1] = words[i + 1], words[i]
        return " ".join(words)


SHORT_TEMPLATES = (  # shared by many strings: two match by chance when enough slots coincide
    "Explain to a {role} how to {verb} the {noun}.",  # 1 slot of 3 in common: 0.78
    "Write a {adj} {form} about the {noun} {noun}.",  # 2 of 4: 0.75
    "Give {n} tips for a {adj} {role} who wants to {verb} the {noun}.",  # 2 of 5: 0.77
    "What is the best way to {verb} a {adj} {noun} {noun}?",  # 1 of 4: 0.73
    "List {n} {adj} facts about {noun}s for a {role}.",  # 2 of 4: 0.78
)
MIX = (  # kind of string, share
    ("sentence", 0.60),
    ("template", 0.15),
    ("random", 0.05),
    ("one_word", 0.10),
    ("edits", 0.05),
    ("reorder", 0.05),
)


def corpus(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """`n` instruction-like strings and the kind of each (see `MIX`)."""
    grammar = Grammar(seed)
    r = grammar.rng
    words = grammar.nouns + grammar.adjectives + grammar.verbs
    kinds, weights = zip(*MIX, strict=True)
    out: list[str] = []
    made: list[str] = []
    for kind in r.choices(kinds, weights, k=n):
        if kind in ("one_word", "edits", "reorder") and not out:
            kind = "sentence"
        if kind == "sentence":
            text = grammar.sentence()
        elif kind == "template":
            text = grammar.fill(r.choice(SHORT_TEMPLATES))
        elif kind == "random":
            text = " ".join(r.choice(words) for _ in range(r.randint(6, 24))).capitalize() + "."
        else:
            source = out[r.randrange(len(out))].split()
            if kind == "one_word":
                source[r.randrange(len(source))] = r.choice(words)
                text = " ".join(source)
            elif kind == "edits":
                text = grammar.edit(" ".join(source))
            else:
                k = r.randint(1, max(1, len(source) // 3))
                text = " ".join(source[-k:] + source[:-k])
        out.append(text)
        made.append(kind)
    return out, made


@dataclass
class Result:
    n: int
    seconds: float
    cpu_seconds: float
    load: tuple[float, float]  # 1-minute load average before and after the run
    rejected: int
    precision: float  # share of rejections whose named match scores >= threshold
    sampled: int  # kept strings checked against the whole pool
    missed: int  # of those, matched by a string kept before them
    recall: float
    missed_by_kind: dict[str, int]
    check_seconds: float
    peak_rss_mb: float  # of the whole process so far (corpus included), after the dedup


def run(n: int, batch: int, sample: int, seed: int, config: dedup.DedupConfig) -> Result:
    texts, kinds = corpus(n, seed=seed)
    index = dedup.NearDupIndex(config)
    results: list[dedup.Rejection | None] = []
    load_before = os.getloadavg()[0]
    start, cpu = time.perf_counter(), time.process_time()
    for lo in range(0, n, batch):
        results += dedup.dedupe_batch(texts[lo : lo + batch], index)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    load = (load_before, os.getloadavg()[0])
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    kept = np.array([i for i, r in enumerate(results) if r is None])
    precision = check_precision(texts, results, kept, config.threshold)
    missed = check_recall(texts, kept, sample, seed, config.threshold)
    check_seconds = time.perf_counter() - start
    rejected = n - len(kept)
    sampled = min(sample, len(kept))
    estimate = len(missed) * len(kept) / max(sampled, 1)
    true_rejections = precision * rejected
    recall = true_rejections / (true_rejections + estimate) if rejected or estimate else 1.0
    by_kind: dict[str, int] = {}
    for i in missed:
        by_kind[kinds[i]] = by_kind.get(kinds[i], 0) + 1
    return Result(
        n,
        seconds,
        cpu,
        load,
        rejected,
        precision,
        sampled,
        len(missed),
        recall,
        by_kind,
        check_seconds,
        peak_rss_mb,
    )


def check_precision(
    texts: list[str], results: list[dedup.Rejection | None], kept: np.ndarray, threshold: float
) -> float:
    """Share of the rejections whose named match (`#position` among the kept strings) reaches
    the threshold by the reference ROUGE-L (`duplicate`: the same words)."""
    good = total = 0
    for text, rejection in zip(texts, results, strict=True):
        if rejection is None:
            continue
        total += 1
        found = re.search(r"#(\d+)", rejection.detail)
        if found is None:
            continue
        other = texts[int(kept[int(found.group(1))])]
        if rejection.reason == "duplicate":
            good += dedup.tokenize(text) == dedup.tokenize(other)
        else:
            good += dedup.rouge_l(text, other) >= threshold
    return good / total if total else 1.0


def check_recall(
    texts: list[str], kept: np.ndarray, sample: int, seed: int, threshold: float
) -> list[int]:
    """Sampled kept strings that reach `threshold` (exact ROUGE-L) with a string kept before
    them; each is compared with the whole pool of kept strings."""
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(len(kept), size=min(sample, len(kept)), replace=False))
    vocab: dict[str, int] = {}

    def encode(text: str) -> str:
        return "".join(chr(vocab.setdefault(w, len(vocab))) for w in dedup.tokenize(text))

    pool = [encode(texts[i]) for i in kept.tolist()]
    pool_lens = np.array([len(d) for d in pool])
    queries = [pool[i] for i in picked.tolist()]
    missed: list[int] = []
    step = max(1, (1 << 24) // max(1, len(pool)))
    for lo in range(0, len(queries), step):
        hi = min(lo + step, len(queries))
        lcs = process.cdist(
            queries[lo:hi], pool, scorer=LCSseq.similarity, dtype=np.int32, workers=-1
        )
        total = pool_lens[picked[lo:hi], None] + pool_lens[None, :]
        scores = np.divide(2.0 * lcs, total, out=np.zeros(lcs.shape), where=total > 0)
        before = np.arange(len(pool))[None, :] < picked[lo:hi, None]
        hit = ((scores >= threshold) & before).any(axis=1)
        missed += kept[picked[lo:hi][hit]].tolist()
    return missed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[200_000, 1_000_000])
    parser.add_argument("--batch", type=int, default=100_000, help="texts per dedupe_batch call")
    parser.add_argument("--sample", type=int, default=2_000, help="kept strings checked")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", type=float, default=dedup.DedupConfig().threshold)
    args = parser.parse_args()
    config = dedup.DedupConfig(threshold=args.threshold)
    print(
        f"{'n':>10} {'seconds':>8} {'cpu s':>6} {'load':>9} {'texts/s':>8} {'rejected':>9}"
        f" {'precision':>9} {'sampled':>8} {'missed':>7} {'recall':>7} {'peak MB':>8}"
    )
    for n in args.n:
        r = run(n, args.batch, args.sample, args.seed, config)
        print(
            f"{r.n:>10,} {r.seconds:>8.1f} {r.cpu_seconds:>6.1f}"
            f" {r.load[0]:>4.1f}/{r.load[1]:<4.1f} {r.n / r.seconds:>8,.0f}"
            f" {r.rejected / r.n:>9.2%} {r.precision:>9.4f} {r.sampled:>8} {r.missed:>7}"
            f" {r.recall:>7.4f} {r.peak_rss_mb:>8,.0f}",
            flush=True,
        )
        if r.missed_by_kind:
            print(f"{'':>10} missed by kind: {r.missed_by_kind}")
        print(f"{'':>10} (check: {r.check_seconds:.0f} s, not in 'seconds')", flush=True)


if __name__ == "__main__":
    main()
