"""Plain data shared by the curation steps: a candidate and the reason it was rejected.

A `Candidate` is what a method parsed out of one teacher answer (Self-Instruct, Wang et al. 2022:
an instruction, an optional input, and at the answer stage an output). A `Rejection` is what a
curation step returns instead of `None` when the candidate must not be kept; its `reason` is one
of the stable strings below, stored with the example and counted in the job report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# Stable reason strings (stored in the database; never rename one).
EMPTY: Final = "empty"
UNPARSEABLE: Final = "unparseable"
TRUNCATED: Final = "truncated"
TOO_SHORT: Final = "too_short"
TOO_LONG: Final = "too_long"
BAD_START: Final = "bad_start"
BLOCKLIST: Final = "blocklist"
REFUSAL: Final = "refusal"
REPEATS_INPUT: Final = "repeats_input"
DUPLICATE: Final = "duplicate"
NEAR_DUPLICATE: Final = "near_duplicate"
CONTAMINATED: Final = "contaminated"
NON_TEXT: Final = "non_text"
WRONG_LANGUAGE: Final = "wrong_language"
LOW_SCORE: Final = "low_score"  # the judge scored the answer below the job's `judge.min_score`
# dialogue: a simulated user turn out of character (answers, speaks as the AI, role labels), one
# that copies the turn before, and a conversation cut before `min_turns` good assistant turns
BREAKS_CHARACTER: Final = "breaks_character"
COPIES_TURN: Final = "copies_turn"
TOO_FEW_TURNS: Final = "too_few_turns"

REASONS: Final = (
    EMPTY,
    UNPARSEABLE,
    TRUNCATED,
    TOO_SHORT,
    TOO_LONG,
    BAD_START,
    BLOCKLIST,
    REFUSAL,
    REPEATS_INPUT,
    DUPLICATE,
    NEAR_DUPLICATE,
    CONTAMINATED,
    NON_TEXT,
    WRONG_LANGUAGE,
    LOW_SCORE,
    BREAKS_CHARACTER,
    COPIES_TURN,
    TOO_FEW_TURNS,
)


@dataclass(frozen=True, slots=True)
class Candidate:
    """One proposed example: an instruction, its optional input, and (answer stage) its output.

    `raw` is the teacher text it was parsed from and `finish_reason` the teacher's finish reason
    (`"stop"`, `"length"`, ...); both are kept for provenance and for the truncation check.
    """

    instruction: str
    input: str = ""
    output: str | None = None
    raw: str | None = None
    finish_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a candidate was not kept: a stable `reason` string and a human-readable `detail`."""

    reason: str
    detail: str = ""
