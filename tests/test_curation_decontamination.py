"""Decontamination: 13-gram overlap of normalised words with benchmark texts."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from workers.curation import decontamination as dc
from workers.curation.types import CONTAMINATED

BENCHMARK = [
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips "
    "in May. How many clips did Natalia sell altogether in April and May?",
    "Which gas do plants absorb?",  # shorter than 13 words
]
GRAMS = dc.build_ngram_set(BENCHMARK)


def test_shared_13_gram_is_contaminated_despite_case_and_punctuation() -> None:
    text = "Solve: NATALIA sold clips to 48 of her friends in April -- and then she sold half!"
    rejection = dc.contaminated(text, GRAMS)
    assert rejection is not None and rejection.reason == CONTAMINATED
    assert "natalia sold clips" in rejection.detail


def test_twelve_shared_words_are_not_enough() -> None:
    text = "Natalia sold clips to 48 of her friends in April, and later bought pencils."
    assert dc.contaminated(text, GRAMS) is None  # shares only a 12-word run


def test_short_benchmark_item_is_caught_only_when_repeated_whole() -> None:
    assert dc.contaminated("which gas do plants ABSORB", GRAMS) is not None
    assert dc.contaminated("Which gas do plants absorb at night?", GRAMS) is None


def test_smaller_n_catches_shorter_overlaps() -> None:
    grams = dc.build_ngram_set(BENCHMARK, n=5)
    assert dc.contaminated("They sold half as many clips yesterday.", grams, n=5) is not None
    assert dc.contaminated("They sold half as many pens yesterday.", grams, n=5) is None


def test_normalisation_is_unicode_aware() -> None:
    assert dc.words("Ｃafé, ÉTÉ!") == ["café", "été"]
    grams = dc.build_ngram_set(["Le café est très chaud ce matin"], n=3)
    assert dc.contaminated("LE CAFÉ EST froid", grams, n=3) is not None


def test_empty_texts_and_bad_n() -> None:
    assert dc.build_ngram_set(["", "!!!"]) == set()
    assert dc.contaminated("", GRAMS) is None
    with pytest.raises(ValueError):
        dc.build_ngram_set(["a b c"], n=0)


def test_hashes_are_stable_across_processes() -> None:
    code = (
        "from workers.curation import decontamination as dc;"
        "print(sorted(dc.build_ngram_set(['one two three four five six'], n=3)))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    here = sorted(dc.build_ngram_set(["one two three four five six"], n=3))
    assert other.stdout.strip() == str(here)
    assert len(here) == 4
