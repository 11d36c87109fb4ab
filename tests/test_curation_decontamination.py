"""Decontamination: verbatim 13-grams, and light edits of benchmark items (app.contamination)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from app import contamination
from tests.contamination_cases import BENCHMARK as BENCHMARK_CASES
from tests.contamination_cases import (
    CLEAN,
    HELDOUT_BENCHMARK,
    HELDOUT_CLEAN,
    HELDOUT_LEAKS,
    LEAKS,
)
from workers.curation import decontamination as dc
from workers.curation.types import CONTAMINATED, Candidate

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


# --- light edits: the index of app.contamination (the labeled set in contamination_cases) ----

LABELED = dc.build_index(("b", "labeled", i, text) for i, text in enumerate(BENCHMARK_CASES))


def labeled_scores(
    benchmark: list[str], leaks: list[tuple[int, str, str]], clean: list[str]
) -> tuple[float, float, list[str], list[str]]:
    """Recall on `leaks` (caught and pointing at their own item), precision over leaks + clean,
    the missed leaks and the clean texts caught."""
    index = dc.build_index(("b", "labeled", i, text) for i, text in enumerate(benchmark))
    misses = []
    caught = 0
    for item, kind, text in leaks:
        found = dc.match(text, index)
        if found is not None and found.item.idx == item:
            caught += 1
        else:
            misses.append(f"{item} {kind}: {text}")
    false_positives = [text for text in clean if dc.match(text, index) is not None]
    return caught / len(leaks), caught / (caught + len(false_positives)), misses, false_positives


def test_labeled_set_precision_and_recall() -> None:
    recall, precision, misses, caught_clean = labeled_scores(BENCHMARK_CASES, LEAKS, CLEAN)
    # measured: recall 44/45 = 0.978 (the miss: a paraphrased question about the passage),
    # precision 1.0 (no clean text of 44 caught)
    assert precision == 1.0, caught_clean
    assert recall >= 0.97, misses


def test_held_out_set_precision_and_recall() -> None:
    """The set written without reading the method (tests/contamination_cases.py, HELDOUT)."""
    recall, precision, misses, caught_clean = labeled_scores(
        HELDOUT_BENCHMARK, HELDOUT_LEAKS, HELDOUT_CLEAN
    )
    # measured: recall 84/85 = 0.988 (the miss: "What is the value of x if 3x + 7 = 2x - 5?"
    # without its options: with numbers folded an equation is a template, so its question is
    # not matched alone), precision 84/85 = 0.988 (caught: the atmosphere question with 21
    # percent for 78, one token of six; first sight, before the clause rule: 84/86 = 0.977)
    assert precision >= 0.98, caught_clean
    assert recall >= 0.98, misses


@pytest.mark.parametrize(
    ("item", "kind", "text"), [leak for leak in LEAKS if leak[1] in ("number", "name")]
)
def test_a_changed_number_or_name_is_caught(item: int, kind: str, text: str) -> None:
    found = dc.match(text, LABELED)
    assert found is not None and found.item.idx == item


def test_fuzzy_rule_alone_catches_edits_the_ngram_rule_misses() -> None:
    item = "Which organ of the human body produces insulin and glucagon?"  # 11 words
    index = dc.build_index([("b", "bio", 0, item)])
    edit = "Which organ in the human body makes insulin and glucagon?"
    assert dc.contaminated(edit, dc.build_ngram_set([item])) is None  # 13-grams: missed
    found = dc.match(edit, index)
    assert found is not None and found.rule == "fuzzy" and 0.75 <= found.score < 1.0
    assert found.detail() == (f"benchmark bio item 0 (fuzzy {found.score:.2f}): {item}")


def test_scattered_words_in_a_long_text_are_not_a_match() -> None:
    item = "A farmer plants 12 rows of corn with 30 seeds in each row. How many seeds?"
    index = dc.build_index([("b", "m", 0, item)])
    # every content word of the item, spread over a long answer, out of the 1.5x window
    spread = (
        "A farmer in the valley talked for an hour about the weather and prices. He said he "
        "plants early. Last year he had 12 problems with pests and lost many rows to the rain. "
        "Corn prices fell by 30 percent, and the seeds he bought were bad. In each field he "
        "checked every row twice. How many hours he worked nobody knows. His seeds sprouted."
    )
    assert dc.match(spread, index) is None
    assert dc.match("Solve: " + item.replace("12", "14") + " Explain.", index) is not None


def test_short_items_need_an_exact_repeat() -> None:
    index = dc.build_index([("b", "t", 0, "Who wrote Hamlet?"), ("b", "t", 1, "Is it?")])
    assert dc.match("Quiz: WHO wrote hamlet -- in one word", index).rule == "exact"
    assert dc.match("Who wrote Macbeth?", index) is None
    assert dc.match("Who wrote the play Hamlet?", index) is None
    assert dc.match("Is it", index).item.idx == 1  # function words only: the whole text
    assert dc.match("Is it raining?", index) is None


def test_a_short_item_must_end_its_clause() -> None:
    index = dc.build_index([("b", "t", 0, "Who wrote Hamlet?"), ("b", "t", 1, "Capital of Peru?")])
    assert dc.match("Who wrote Hamlet's sequel?", index) is None  # another question
    assert dc.match("Who wrote Hamlet\u2019s sequel?", index) is None
    assert dc.match("Who wrote Hamlet in Danish?", index) is None
    assert dc.match("What is the capital of Peru's neighbour Chile?", index) is None
    for text, item in [
        ("Who wrote Hamlet?\nShakespeare wrote it.", 0),
        ("who wrote hamlet", 0),
        ("Tell me: who wrote Hamlet (the play)?", 0),
        ("Name the capital of Peru . Lima.", 1),
    ]:
        found = dc.match(text, index)
        assert found is not None and found.item.idx == item, text


MCQ = (
    "Which of the following statements about enzymes is correct?\n"
    "A. They are consumed by the reactions they catalyse\n"
    "B. They lower the activation energy of a reaction\n"
    "C. They work equally well at every temperature\n"
    "D. They change the equilibrium constant of a reaction"
)


def test_mcq_parts_split_question_and_options() -> None:
    parts = contamination.mcq_parts(MCQ)
    assert parts is not None
    question, options = parts
    assert question == "Which of the following statements about enzymes is correct?"
    assert options[1] == "They lower the activation energy of a reaction"
    inline = "Pick one: (A) red (B) blue (C) green"
    assert contamination.mcq_parts(inline) == ("Pick one:", ["red", "blue", "green"])
    assert contamination.mcq_parts("A. first\nB. second") is None  # no question
    assert contamination.mcq_parts("Plan A: rest. Then B.") is None
    assert contamination.mcq_parts("What is 2 + 2?\nA. 3\nC. 4") is None  # no "B"


def test_mcq_with_its_options_reordered_is_caught() -> None:
    index = dc.build_index([("b", "mmlu", 0, MCQ)])
    question, *options = MCQ.split("\n")
    bodies = [o[3:] for o in options]
    for order in ((3, 2, 1, 0), (1, 3, 0, 2), (2, 0, 3, 1)):
        text = "\n".join(
            [f"Quiz: {question}", *(f"({'abcd'[i]}) {bodies[j]}" for i, j in enumerate(order))]
        )
        found = dc.match(text + "\nAnswer: (b)", index)
        assert found is not None and found.rule == "fuzzy", order
    # the frame alone, or the frame with other options, is another question
    assert dc.match(question, index) is None
    assert dc.match(question.replace("enzymes", "hormones"), index) is None
    other = (
        f"{question}\nA. They are proteins that speed up reactions\nB. They are used up in "
        "each reaction\nC. They only work outside cells\nD. They raise the activation energy"
    )
    assert dc.match(other, index) is None


def test_distinctive_mcq_question_is_caught_without_its_options() -> None:
    item = "Which hormone lowers blood glucose levels after a meal?\nA. Glucagon\nB. Insulin"
    item += "\nC. Cortisol\nD. Adrenaline"
    equation = "What is the value of x if 3x + 7 = 2x - 5?\nA. -12\nB. -2\nC. 2\nD. 12"
    index = dc.build_index([("b", "mmlu", 0, item), ("b", "mmlu", 1, equation)])
    found = dc.match("Which hormone lowers blood sugar levels after a meal?", index)
    assert found is not None and found.item.idx == 0 and found.rule == "fuzzy"
    assert dc.match("Explain: which hormone lowers blood glucose after a meal?", index)
    assert dc.match("Which hormone raises blood glucose levels between meals?", index) is None
    # an equation's question is a template once numbers fold: not matched alone
    assert dc.match("What is the value of x if 5x - 3 = 2x + 9?", index) is None


def test_long_item_quoted_in_part_hits_the_13_gram_rule() -> None:
    passage = BENCHMARK_CASES[31]
    index = dc.build_index([("b", "reading", 0, passage)])
    quote = "the island was abandoned in 1962, the logbooks were moved to the county archive"
    found = dc.match(f"Summarise this: {quote}.", index)
    assert found is not None and found.rule == "13-gram"


def test_check_candidate_checks_task_input_and_answer() -> None:
    index = dc.build_index(("b", "labeled", i, t) for i, t in enumerate(BENCHMARK_CASES[:12]))
    clean = "Explain how to compute the area of a circle."
    assert dc.check_candidate(Candidate(clean, "", "Use pi r squared."), index) is None
    in_input = dc.check_candidate(Candidate("Solve the problem below.", LEAKS[3][2]), index)
    assert in_input is not None and in_input.reason == CONTAMINATED
    assert in_input.detail.startswith("instruction matches benchmark labeled item 1 (")
    in_answer = dc.check_candidate(Candidate(clean, "", f"Like this: {LEAKS[7][2]}"), index)
    assert in_answer is not None and in_answer.detail.startswith("output matches")
    assert dc.check_candidate(Candidate(LEAKS[3][2]), None) is None
    assert dc.check_candidate(Candidate(LEAKS[3][2]), dc.build_index([])) is None


def test_index_ignores_empty_items_and_is_deterministic() -> None:
    index = dc.build_index([("b", "x", 0, ""), ("b", "x", 1, "!!!"), ("b", "x", 2, BENCHMARK[0])])
    assert len(index) == 1
    assert dc.match("", index) is None and dc.match("???", index) is None
    found = dc.match(BENCHMARK[0], index)
    assert found is not None and found.item.idx == 2
