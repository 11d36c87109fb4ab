"""Benchmark scenario 4: near-duplicate curation of synthetic instructions (Self-Instruct's rule).

Generates N instruction-like strings deterministically (a template grammar over a vocabulary of
real and made-up words, as Self-Instruct's machine instructions look: "Write a ...", "Given the
following ..."), of which ~5 % are near duplicates made by 1-3 word edits of an earlier string.
They go through `workers.curation.dedup.dedupe_batch` in batches, exactly as the runner uses
it, and the script prints the seconds taken and the recall against exact ROUGE-L >= 0.7 on a
sample: for each sampled string the LSH run kept, rapidfuzz compares it with every string kept
before it (the full pool); a match >= 0.7 there that the run missed lowers recall. Strings the
run rejected were verified exactly (no false positives by construction).

    .venv/bin/python bench/dedup.py                 # 100,000 and 1,000,000
    .venv/bin/python bench/dedup.py --n 20000       # smaller
"""

from __future__ import annotations

import argparse
import random
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


def corpus(n: int, seed: int = 0, dup_rate: float = 0.05) -> tuple[list[str], np.ndarray]:
    """`n` instruction-like strings, and which of them (about `dup_rate`) edit an earlier one."""
    grammar = Grammar(seed)
    out: list[str] = []
    edited = np.zeros(n, bool)
    for i in range(n):
        if out and grammar.rng.random() < dup_rate:
            out.append(grammar.edit(out[grammar.rng.randrange(len(out))]))
            edited[i] = True
        else:
            out.append(grammar.sentence())
    return out, edited


@dataclass
class Recall:
    """Sampled strings with an exact match >= threshold among the strings kept before them."""

    positives: int = 0
    missed: int = 0

    @property
    def value(self) -> float:
        return 1.0 - self.missed / self.positives if self.positives else 1.0


@dataclass
class Result:
    n: int
    seconds: float
    rejected: int
    recall: Recall  # all sampled positives
    recall_edits: Recall  # those made by word edits (the rest match by chance)
    check_seconds: float
    peak_rss_mb: float  # of the whole process so far (corpus included), after the dedup


def run(n: int, batch: int, sample: int, seed: int, config: dedup.DedupConfig) -> Result:
    texts, edited = corpus(n, seed=seed)
    index = dedup.NearDupIndex(config)
    rejected = np.zeros(n, bool)
    start = time.perf_counter()
    for lo in range(0, n, batch):
        found = dedup.dedupe_batch(texts[lo : lo + batch], index)
        rejected[lo : lo + batch] = [r is not None for r in found]
    seconds = time.perf_counter() - start
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    missed, positive = check_recall(texts, rejected, sample, seed)
    check_seconds = time.perf_counter() - start
    both = Recall(int(positive.sum()), int(missed.sum()))
    edits = Recall(int((positive & edited).sum()), int((missed & edited).sum()))
    return Result(n, seconds, int(rejected.sum()), both, edits, check_seconds, peak_rss_mb)


def check_recall(
    texts: list[str], rejected: np.ndarray, sample: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact ROUGE-L of sampled kept strings against every string kept before them.

    Returns two masks over all strings: the sampled ones the run missed, and the sampled ones
    that are near duplicates (the run's rejections, all verified exactly, plus the missed).
    """
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(len(texts), size=min(sample, len(texts)), replace=False))
    kept = np.flatnonzero(~rejected)
    vocab: dict[str, int] = {}

    def encode(text: str) -> str:
        return "".join(chr(vocab.setdefault(w, len(vocab))) for w in dedup.tokenize(text))

    pool = [encode(texts[i]) for i in kept.tolist()]
    pool_lens = np.array([len(d) for d in pool])
    queries = picked[~rejected[picked]]
    docs = [encode(texts[i]) for i in queries.tolist()]
    lens = np.array([len(d) for d in docs])
    before = np.searchsorted(kept, queries)  # kept strings that precede each query
    missed = np.zeros(len(texts), bool)
    step = max(1, (1 << 24) // max(1, len(pool)))
    for lo in range(0, len(docs), step):
        hi = min(lo + step, len(docs))
        lcs = process.cdist(docs[lo:hi], pool, scorer=LCSseq.similarity, dtype=np.int32, workers=-1)
        total = lens[lo:hi, None] + pool_lens[None, :]
        scores = np.divide(2.0 * lcs, total, out=np.zeros(lcs.shape), where=total > 0)
        scores[np.arange(pool_lens.size)[None, :] >= before[lo:hi, None]] = 0.0
        best = scores.max(axis=1, initial=0.0)
        missed[queries[lo:hi]] = best >= dedup.DedupConfig().threshold
    positive = missed.copy()
    positive[picked[rejected[picked]]] = True
    return missed, positive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--batch", type=int, default=100_000, help="texts per dedupe_batch call")
    parser.add_argument("--sample", type=int, default=5_000, help="strings checked for recall")
    parser.add_argument("--seed", type=int, default=0)
    defaults = dedup.DedupConfig()
    for name in ("num_bands", "band_rows", "ngram", "max_bucket", "lsh_min_pool"):
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, type=int, default=getattr(defaults, name))
    args = parser.parse_args()
    config = dedup.DedupConfig(
        num_bands=args.num_bands,
        band_rows=args.band_rows,
        ngram=args.ngram,
        max_bucket=args.max_bucket,
        lsh_min_pool=args.lsh_min_pool,
    )
    rows = [run(n, args.batch, args.sample, args.seed, config) for n in args.n]
    print(
        f"{'n':>10} {'seconds':>8} {'texts/s':>9} {'rejected':>9}"
        f" {'sample+':>8} {'recall':>7} {'edits+':>7} {'recall':>7} {'peak MB':>8}"
    )
    for r in rows:
        print(
            f"{r.n:>10,} {r.seconds:>8.1f} {r.n / r.seconds:>9,.0f} {r.rejected / r.n:>9.2%}"
            f" {r.recall.positives:>8} {r.recall.value:>7.3f}"
            f" {r.recall_edits.positives:>7} {r.recall_edits.value:>7.3f} {r.peak_rss_mb:>8,.0f}"
        )
    print(f"(recall check: {sum(r.check_seconds for r in rows):.0f} s, not in 'seconds')")


if __name__ == "__main__":
    main()
