"""Quality filters: named pure checks `(candidate, config) -> Rejection | None`.

The heuristics of Self-Instruct (Wang et al. 2022, `self_instruct/bootstrap_instructions.py`):
instructions of at most 3 or more than 150 words are dropped, so are those naming things a
text-only model cannot handle (images, files, ...), and those starting with punctuation or a
non-ASCII character. Added here for the answer stage: truncated answers, refusals, and answers
that only repeat the instruction or the input.

Stage rule: a candidate whose `output` is None is at the instruction stage (a proposed
instruction, Self-Instruct's expansion), and the filters look at its instruction; otherwise it
is at the answer stage and they look at the output the teacher wrote. `apply_filters` runs named
filters in order and returns the first rejection; a job's params name the filters to run
(`INSTRUCTION_FILTERS` and `ANSWER_FILTERS` are the defaults).
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from workers.curation import types
from workers.curation.dedup import rouge_l
from workers.curation.types import Candidate, Rejection

# Self-Instruct's list of what a text-only model cannot do (bootstrap_instructions.py).
DEFAULT_BLOCKLIST: Final = (
    "image",
    "images",
    "graph",
    "graphs",
    "picture",
    "pictures",
    "file",
    "files",
    "map",
    "maps",
    "draw",
    "plot",
    "go to",
    "video",
    "audio",
    "music",
    "flowchart",
    "diagram",
)

# Refusals and assistant boilerplate that are one anywhere in a text.
DEFAULT_REFUSALS_ANYWHERE: Final = (
    "as an ai language model",
    "as an ai model",
    "as a language model",
    "as an ai assistant",
    "as an artificial intelligence",
    "i'm just an ai",
    "i am just an ai",
    "i cannot fulfill",
    "i can't fulfill",
    "i cannot comply",
    "i can't comply",
    "i can't assist with",
    "i cannot assist with",
    "i'm not able to help with",
    "i am not able to help with",
    "against my programming",
    "violates openai's",
    "my knowledge cutoff",
)

# Phrases that are a refusal only when the text starts with them ("Explain why I cannot sleep"
# is a fine instruction; "I cannot ..." as a whole answer is not).
DEFAULT_REFUSALS_AT_START: Final = (
    "i cannot",
    "i can't",
    "i can not",
    "i won't",
    "i will not",
    "i'm sorry",
    "i am sorry",
    "sorry, but",
    "sorry, i",
    "i apologize",
    "i'm unable",
    "i am unable",
    "i'm not able to",
    "i am not able to",
    "unfortunately, i",
)


@dataclass(frozen=True, slots=True)
class FilterConfig:
    """Parameters of the filters; defaults follow Self-Instruct where it had one."""

    min_instruction_words: int = 4  # Self-Instruct drops instructions of <= 3 words
    max_instruction_words: int = 150  # and of > 150 words
    min_output_words: int = 1
    max_output_words: int | None = None  # truncation is caught by finish_reason instead
    ascii_start: bool = True  # Self-Instruct: the instruction starts with an ASCII character
    blocklist: tuple[str, ...] = DEFAULT_BLOCKLIST
    refusals_anywhere: tuple[str, ...] = DEFAULT_REFUSALS_ANYWHERE
    refusals_at_start: tuple[str, ...] = DEFAULT_REFUSALS_AT_START
    instruction_copy_threshold: float = 0.9  # ROUGE-L(output, instruction) >= this: a copy
    input_copy_threshold: float = 1.0  # vs the input: rewrites stay close, so only identical


Filter = Callable[[Candidate, FilterConfig], Rejection | None]


def _stage_text(candidate: Candidate) -> tuple[str, str]:
    """What the teacher wrote at this stage, and its name."""
    if candidate.output is None:
        return candidate.instruction, "instruction"
    return candidate.output, "output"


def _normalise(text: str) -> str:
    """Lowercase, straight apostrophes, single spaces: the form phrases are matched in."""
    return " ".join(text.replace("\u2019", "'").replace("\u2018", "'").lower().split())


def not_empty(candidate: Candidate, config: FilterConfig) -> Rejection | None:
    """`empty`: a blank instruction, or a blank output at the answer stage."""
    if not candidate.instruction.strip():
        return Rejection(types.EMPTY, "instruction is blank")
    if candidate.output is not None and not candidate.output.strip():
        return Rejection(types.EMPTY, "output is blank")
    return None


def not_truncated(candidate: Candidate, config: FilterConfig) -> Rejection | None:
    """`truncated`: the teacher stopped at its token limit (finish_reason "length")."""
    if candidate.finish_reason == "length":
        return Rejection(types.TRUNCATED, "finish_reason=length")
    return None


def length(candidate: Candidate, config: FilterConfig) -> Rejection | None:
    """`too_short`/`too_long`: words (whitespace-separated) of the instruction or output."""
    text, what = _stage_text(candidate)
    if what == "instruction":
        low, high = config.min_instruction_words, config.max_instruction_words
    else:
        low, high = config.min_output_words, config.max_output_words
    words = len(text.split())
    if words < low:
        return Rejection(types.TOO_SHORT, f"{what} has {words} words < {low}")
    if high is not None and words > high:
        return Rejection(types.TOO_LONG, f"{what} has {words} words > {high}")
    return None


def starts_with_text(candidate: Candidate, config: FilterConfig) -> Rejection | None:
    """`bad_start`: the instruction starts with punctuation, or non-ASCII, or has no letter."""
    text = candidate.instruction.strip()
    if not text:
        return Rejection(types.BAD_START, "no text")
    first = text[0]
    if first in string.punctuation:
        return Rejection(types.BAD_START, f"starts with {first!r}")
    if config.ascii_start and not first.isascii():
        return Rejection(types.BAD_START, f"starts with non-ASCII {first!r}")
    if not any(c.isalpha() for c in text):
        return Rejection(types.BAD_START, "no letters")
    return None


@lru_cache(maxsize=32)
def _word_pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    """Whole words or phrases (inner spaces match any whitespace), case-insensitive."""
    alternatives = "|".join(r"\s+".join(map(re.escape, w.split())) for w in words)
    return re.compile(rf"\b(?:{alternatives})\b", re.IGNORECASE)


def blocklist(candidate: Candidate, config: FilterConfig) -> Rejection | None:
    """`blocklist`: the instruction names a blocked word as a whole word ("filed" is fine)."""
    if not config.blocklist:
        return None
    found = _word_pattern(config.blocklist).search(candidate.instruction)
    if found:
        return Rejection(types.BLOCKLIST, f"mentions {found.group(0).lower()!r}")
    return None


def refusal(candidate: Candidate, config: FilterConfig) -> Rejection | None:
    """`refusal`: the stage's text refuses or talks about being an AI."""
    text, what = _stage_text(candidate)
    normal = _normalise(text)
    for phrase in config.refusals_at_start:
        if normal.startswith(phrase):
            return Rejection(types.REFUSAL, f"{what} starts with {phrase!r}")
    for phrase in config.refusals_anywhere:
        if phrase in normal:
            return Rejection(types.REFUSAL, f"{what} contains {phrase!r}")
    return None


def output_repeats_input(candidate: Candidate, config: FilterConfig) -> Rejection | None:
    """`repeats_input`: the output copies the instruction or the input (ROUGE-L on words)."""
    if candidate.output is None:
        return None
    score = rouge_l(candidate.output, candidate.instruction)
    if score >= config.instruction_copy_threshold:
        return Rejection(types.REPEATS_INPUT, f"rouge_l={score:.3f} with the instruction")
    if candidate.input.strip():
        score = rouge_l(candidate.output, candidate.input)
        if score >= config.input_copy_threshold:
            return Rejection(types.REPEATS_INPUT, f"rouge_l={score:.3f} with the input")
    return None


FILTERS: Final[dict[str, Filter]] = {
    "not_empty": not_empty,
    "not_truncated": not_truncated,
    "length": length,
    "starts_with_text": starts_with_text,
    "blocklist": blocklist,
    "refusal": refusal,
    "output_repeats_input": output_repeats_input,
}

INSTRUCTION_FILTERS: Final = (
    "not_empty",
    "not_truncated",
    "length",
    "starts_with_text",
    "blocklist",
    "refusal",
)
ANSWER_FILTERS: Final = (
    "not_empty",
    "not_truncated",
    "length",
    "refusal",
    "output_repeats_input",
)


def apply_filters(
    candidate: Candidate, names: Sequence[str], config: FilterConfig | None = None
) -> Rejection | None:
    """Run the filters `names` in order; the first rejection, or None if all pass.

    Raises KeyError naming an unknown filter before running any.
    """
    unknown = [name for name in names if name not in FILTERS]
    if unknown:
        raise KeyError(f"unknown filters: {', '.join(unknown)}")
    config = config or FilterConfig()
    for name in names:
        if (rejection := FILTERS[name](candidate, config)) is not None:
            return rejection
    return None
