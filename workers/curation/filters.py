"""Quality filters: named pure checks `(candidate, config) -> Rejection | None`.

The heuristics of Self-Instruct (Wang et al. 2022, `self_instruct/bootstrap_instructions.py`):
instructions of at most 3 or more than 150 words are dropped, and those starting with
punctuation. Self-Instruct's word list for tasks a text-only model cannot do and its
ASCII-first-letter rule (a proxy for English) are kept as options (`blocklist`, `ascii_start`);
the defaults use checks that generalise: `non_text` (stems and phrases about supplied material,
`workers.curation.patterns`), `language` (language identification, `workers.curation.language`)
and `refusal` (refusal, disclaimer and non-answer patterns over normalised text). Added for the
answer stage: truncated answers and answers that only repeat the instruction or the input.

Stage rule: a candidate whose `output` is None is at the instruction stage (a proposed
instruction, Self-Instruct's expansion), and the filters look at its instruction; otherwise it
is at the answer stage and they look at the output the teacher wrote. `apply_filters` runs named
filters in order and returns the first rejection; a job's params name the filters to run
(`INSTRUCTION_FILTERS` and `ANSWER_FILTERS` are the defaults).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from workers.curation import language, patterns, types
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


@dataclass(frozen=True, slots=True)
class FilterConfig:
    """Parameters of the filters; defaults follow Self-Instruct where it had one."""

    min_instruction_words: int = 4  # Self-Instruct drops instructions of <= 3 words
    max_instruction_words: int = 150  # and of > 150 words
    min_output_words: int = 1
    max_output_words: int | None = None  # truncation is caught by finish_reason instead
    ascii_start: bool = False  # Self-Instruct's English proxy; `language` checks that now
    blocklist: tuple[str, ...] = DEFAULT_BLOCKLIST  # the `blocklist` filter (not a default)
    languages: tuple[str, ...] | None = None  # ISO 639-1 codes accepted; None: any language
    instruction_copy_threshold: float = 0.9  # ROUGE-L(output, instruction) >= this: a copy
    input_copy_threshold: float = 1.0  # vs the input: rewrites stay close, so only identical


Filter = Callable[[Candidate, FilterConfig], Rejection | None]


def _stage_text(candidate: Candidate) -> tuple[str, str]:
    """What the teacher wrote at this stage, and its name."""
    if candidate.output is None:
        return candidate.instruction, "instruction"
    return candidate.output, "output"


def _has_text(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


_ASCII_ALNUM = re.compile(r"[A-Za-z0-9]")  # str.isalnum on ASCII characters


def _word_count(text: str) -> int:
    """Whitespace-separated tokens with a letter or digit; in scripts written without spaces
    (Chinese, Japanese, Thai, ...) two characters count as a word."""
    if text.isascii():  # no letters of NO_SPACES scripts: a word per token with a letter/digit
        return sum(1 for token in text.split() if _ASCII_ALNUM.search(token))
    count = 0.0
    for token in text.split():
        if _has_text(token):
            unspaced = len(language.NO_SPACES.findall(token))
            count += max(1, unspaced / 2)
    return int(count)


def not_empty(candidate: Candidate, config: FilterConfig) -> Rejection | None:
    """`empty`: no letter or digit in the instruction, or in the output at the answer stage.

    An answer of only punctuation, symbols, emoji or whitespace is empty.
    """
    if not _has_text(candidate.instruction):
        return Rejection(types.EMPTY, "instruction has no letter or digit")
    if candidate.output is not None and not _has_text(candidate.output):
        return Rejection(types.EMPTY, "output has no letter or digit")
    return None


def not_truncated(candidate: Candidate, config: FilterConfig) -> Rejection | None:
    """`truncated`: the teacher stopped at its token limit (finish_reason "length")."""
    if candidate.finish_reason == "length":
        return Rejection(types.TRUNCATED, "finish_reason=length")
    return None


def length(candidate: Candidate, config: FilterConfig) -> Rejection | None:
    """`too_short`/`too_long`: words of the instruction or output.

    A word is a whitespace-separated token with a letter or digit ("-" and "..." are none;
    see `_word_count` for scripts without spaces).
    """
    text, what = _stage_text(candidate)
    high: int | None
    if what == "instruction":
        low, high = config.min_instruction_words, config.max_instruction_words
    else:
        low, high = config.min_output_words, config.max_output_words
    words = _word_count(text)
    if words < low:
        return Rejection(types.TOO_SHORT, f"{what} has {words} words < {low}")
    if high is not None and words > high:
        return Rejection(types.TOO_LONG, f"{what} has {words} words > {high}")
    return None


def starts_with_text(candidate: Candidate, config: FilterConfig) -> Rejection | None:
    """`bad_start`: the instruction starts with punctuation or a symbol (any script), or has no
    letter; with `ascii_start`, also a non-ASCII first character (Self-Instruct)."""
    text = candidate.instruction.strip()
    if not text:
        return Rejection(types.BAD_START, "no text")
    first = text[0]
    if unicodedata.category(first)[0] in "PS" and first not in "¿¡":  # Spanish opens with them
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


def non_text(candidate: Candidate, config: FilterConfig) -> Rejection | None:
    """`non_text`: the task needs input or output a text model has not got (an image to draw,
    a photo to look at, an attached file, a URL); word forms, see `patterns.non_text`."""
    found = patterns.non_text(candidate.instruction)
    # the input in the form the instruction is matched in (NON_TEXT_WORDS expects it)
    if found is None and patterns.NON_TEXT_WORDS.search(patterns.normalise(candidate.input)):
        found = "a URL or an attachment in the input"
    if found is None:
        return None
    return Rejection(types.NON_TEXT, f"instruction: {found!r}")


def refusal(candidate: Candidate, config: FilterConfig) -> Rejection | None:
    """`refusal`: the stage's text refuses, disclaims being an AI, or is a non-answer
    (`patterns.refusal`: only where the refusal dominates the text)."""
    text, what = _stage_text(candidate)
    found = patterns.refusal(text)
    if found is None:
        return None
    return Rejection(types.REFUSAL, f"{what}: {found}")


_ASKS_FOR_LANGUAGE = re.compile(
    r"\b(?:translat\w*|interpret\w*|in (?:another|a foreign|other) languages?|"
    + "|".join(language.LANGUAGE_NAMES)
    + r")\b",
    re.IGNORECASE,
)


def language_filter(candidate: Candidate, config: FilterConfig) -> Rejection | None:
    """`wrong_language`: the stage's text is confidently in none of `config.languages`.

    None accepts every language. Texts under `language.MIN_WORDS` words, code and URLs are not
    judged. An answer may also be in its instruction's (or input's) language, and in any
    language when the instruction asks for a translation or names a language.
    """
    if not config.languages:
        return None
    text, what = _stage_text(candidate)
    accepted = language.expand(config.languages)
    found = language.foreign(text, accepted)
    # an instruction asking for a language is looked at only for a foreign answer (most are not)
    if found is not None and what == "output" and _ASKS_FOR_LANGUAGE.search(candidate.instruction):
        return None
    if found is not None and what == "output":
        # only now place the instruction and input (most answers are in an accepted language,
        # and a larger accepted set never makes a text foreign: the same verdict, half the work)
        for source in (candidate.instruction, candidate.input):
            placed = language.detect(source) if source else None
            if placed is not None:
                accepted = accepted | language.expand([placed[0]])
        found = language.foreign(text, accepted)
    if found is None:
        return None
    label, probability = found
    return Rejection(
        types.WRONG_LANGUAGE,
        f"{what} detected as {label!r} (p={probability:.2f}); accepted: "
        f"{', '.join(config.languages)}",
    )


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
    "non_text": non_text,
    "language": language_filter,
    "refusal": refusal,
    "output_repeats_input": output_repeats_input,
}

INSTRUCTION_FILTERS: Final = (
    "not_empty",
    "not_truncated",
    "length",
    "starts_with_text",
    "non_text",
    "refusal",
    "language",
)
ANSWER_FILTERS: Final = (
    "not_empty",
    "not_truncated",
    "length",
    "refusal",
    "language",
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
