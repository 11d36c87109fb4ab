"""Decontamination speed: build an index of a synthetic benchmark, time checks per candidate.

    .venv/bin/python bench/contamination.py [--items 10000] [--candidates 2000]

The benchmark is generated here (word-problem-like sentences from a made-up vocabulary, English
function words in between, numbers): no public benchmark data. Candidates: short instructions
and 200-word answers on the same vocabulary (clean), plus light edits of items (one word
changed: must be caught). Prints the index build time and microseconds per checked text.
"""

from __future__ import annotations

import argparse
import random
import time

from app import contamination

FUNCTION = ("the", "a", "of", "to", "in", "and", "is", "how", "many", "what", "if", "each", "more",
            "than", "for", "with", "her", "his")  # fmt: skip


def vocabulary(rng: random.Random, size: int) -> list[str]:
    syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa", "do", "gu", "be"]
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def sentence(rng: random.Random, vocab: list[str], n: int) -> str:
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.35:
            out.append(rng.choice(FUNCTION))
        elif r < 0.45:
            out.append(str(rng.randint(2, 500)))
        elif r < 0.6:  # a topic's common words (200 of them), in many items
            out.append(vocab[rng.randrange(200)])
        else:
            out.append(rng.choice(vocab))
    return " ".join(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--candidates", type=int, default=2_000)
    args = parser.parse_args()
    rng = random.Random(1)
    vocab = vocabulary(rng, 20_000)
    rng.shuffle(vocab)
    items = [sentence(rng, vocab, rng.randint(8, 60)) for _ in range(args.items)]
    start = time.perf_counter()
    index = contamination.build_index(("b", "synthetic", i, t) for i, t in enumerate(items))
    built = time.perf_counter() - start
    print(f"index of {args.items} items: {built:.2f} s, {len(index.vocab)} content words")

    def edit(text: str) -> str:
        words = text.split()
        words[rng.randrange(len(words))] = rng.choice(vocab)
        return " ".join(words)

    cases = {
        "short instruction (clean, 20 words)": [
            sentence(rng, vocab, 20) for _ in range(args.candidates)
        ],
        "long answer (clean, 200 words)": [
            sentence(rng, vocab, 200) for _ in range(args.candidates // 4)
        ],
        "light edit of an item (leak)": [
            edit(rng.choice(items)) for _ in range(args.candidates // 4)
        ],
    }
    for name, texts in cases.items():
        start = time.perf_counter()
        hits = sum(contamination.check(t, index) is not None for t in texts)
        per = (time.perf_counter() - start) / len(texts) * 1e6
        print(f"{name}: {per:.0f} us per text, {hits}/{len(texts)} caught")


if __name__ == "__main__":
    main()
