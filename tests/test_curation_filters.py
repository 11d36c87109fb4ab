"""Each curation filter: a case it rejects, with its reason, and a near miss it keeps."""

from __future__ import annotations

import pytest

from workers.curation import filters, types
from workers.curation.filters import FilterConfig, apply_filters
from workers.curation.types import Candidate

CONFIG = FilterConfig()
PROPOSAL = Candidate("Write a short story about a lighthouse keeper.")
ANSWER = Candidate("Name three primary colours.", output="Red, yellow and blue.")


def reason(name: str, candidate: Candidate, config: FilterConfig = CONFIG) -> str | None:
    rejection = filters.FILTERS[name](candidate, config)
    return None if rejection is None else rejection.reason


@pytest.mark.parametrize(
    ("name", "rejected", "kept", "expected"),
    [
        ("not_empty", Candidate("  \n"), Candidate("x"), types.EMPTY),
        ("not_empty", Candidate("Say hi.", output=" "), Candidate("Say hi.", output="hi"), "empty"),
        (
            "not_truncated",
            Candidate("Tell a story.", output="Once upon", finish_reason="length"),
            Candidate("Tell a story.", output="Once upon", finish_reason="stop"),
            types.TRUNCATED,
        ),
        ("length", Candidate("Write a poem."), Candidate("Write a short poem."), types.TOO_SHORT),
        (
            "length",
            Candidate(" ".join(["word"] * 151)),
            Candidate(" ".join(["word"] * 150)),
            types.TOO_LONG,
        ),
        (
            "length",
            Candidate("Name three primary colours.", output=""),
            Candidate("Name three primary colours.", output="Red"),
            types.TOO_SHORT,
        ),
        (
            "starts_with_text",
            Candidate('"Write a poem about rain."'),
            Candidate("Write a poem about rain."),
            types.BAD_START,
        ),
        (
            "starts_with_text",
            Candidate("Écrivez un poème sur la pluie."),
            Candidate("Ecrivez un poème sur la pluie."),
            types.BAD_START,
        ),
        (
            "starts_with_text",
            Candidate("12345 67890"),
            Candidate("3 ways to cook rice"),
            types.BAD_START,
        ),
        (
            "blocklist",
            Candidate("Describe the image below in detail."),
            Candidate("Describe the imagery of this poem in detail."),
            types.BLOCKLIST,
        ),
        (
            "blocklist",
            Candidate("Tell me how to go  to the station."),
            Candidate("Tell me where the cargo tour starts."),
            types.BLOCKLIST,
        ),
        (
            "blocklist",
            Candidate("Summarise the attached FILE."),
            Candidate("Summarise the complaint she filed."),
            types.BLOCKLIST,
        ),
        (
            "refusal",
            Candidate("Write a joke.", output="I'm sorry, but I can't write jokes."),
            Candidate("Write a joke.", output="Why did I cannot-sleep? Because I tried."),
            types.REFUSAL,
        ),
        (
            "refusal",
            Candidate("Give advice.", output="Sure. As an AI language model, I think..."),
            Candidate("Give advice.", output="Sure. As a language teacher, I think..."),
            types.REFUSAL,
        ),
        (
            "refusal",
            Candidate("I cannot think of a good instruction here."),
            Candidate("Explain why I cannot sleep after coffee."),
            types.REFUSAL,
        ),
        (
            "refusal",
            Candidate("Say no.", output="I\u2019m unable to help with that."),
            Candidate("Say no.", output="I'm able to help with that."),
            types.REFUSAL,
        ),
        (
            "output_repeats_input",
            Candidate(
                "Translate to French: the cat sleeps.", output="Translate to French: the cat sleeps"
            ),
            Candidate("Translate to French: the cat sleeps.", output="Le chat dort."),
            types.REPEATS_INPUT,
        ),
        (
            "output_repeats_input",
            Candidate("Fix the grammar.", input="She go to school.", output="she go to school"),
            Candidate("Fix the grammar.", input="She go to school.", output="She goes to school."),
            types.REPEATS_INPUT,
        ),
    ],
)
def test_filter_rejects_and_keeps_near_miss(
    name: str, rejected: Candidate, kept: Candidate, expected: str
) -> None:
    assert reason(name, rejected) == expected
    assert reason(name, kept) is None


def test_reasons_are_the_stable_strings() -> None:
    assert types.REASONS == (
        "empty",
        "unparseable",
        "truncated",
        "too_short",
        "too_long",
        "bad_start",
        "blocklist",
        "refusal",
        "repeats_input",
        "duplicate",
        "near_duplicate",
        "contaminated",
    )


def test_registry_and_default_lists() -> None:
    assert set(filters.INSTRUCTION_FILTERS) <= set(filters.FILTERS)
    assert set(filters.ANSWER_FILTERS) <= set(filters.FILTERS)
    assert "blocklist" not in filters.ANSWER_FILTERS  # the user's own prompts are not judged
    assert "output_repeats_input" in filters.ANSWER_FILTERS


def test_apply_filters_returns_first_rejection_in_order() -> None:
    candidate = Candidate("Draw.", finish_reason="length")  # truncated, too short, blocked
    first = apply_filters(candidate, ["blocklist", "length", "not_truncated"])
    assert first is not None and first.reason == types.BLOCKLIST
    first = apply_filters(candidate, ["not_truncated", "blocklist"])
    assert first is not None and first.reason == types.TRUNCATED


def test_apply_filters_keeps_good_candidates_with_default_lists() -> None:
    assert apply_filters(PROPOSAL, filters.INSTRUCTION_FILTERS) is None
    assert apply_filters(ANSWER, filters.ANSWER_FILTERS) is None


def test_apply_filters_names_unknown_filters_before_running() -> None:
    with pytest.raises(KeyError, match="no_such_filter"):
        apply_filters(Candidate(""), ["not_empty", "no_such_filter"])


def test_config_changes_the_decision() -> None:
    french = Candidate("Écrivez un poème sur la pluie, s'il vous plaît.")
    assert reason("starts_with_text", french, FilterConfig(ascii_start=False)) is None
    long_answer = Candidate("Talk.", output="word " * 20)
    assert reason("length", long_answer, FilterConfig(max_output_words=10)) == types.TOO_LONG
    assert reason("blocklist", Candidate("Plot the data."), FilterConfig(blocklist=())) is None
    custom = FilterConfig(blocklist=("spreadsheet",))
    assert reason("blocklist", Candidate("Fill in the spreadsheet."), custom) == types.BLOCKLIST
    assert reason("blocklist", Candidate("Describe the image."), custom) is None
