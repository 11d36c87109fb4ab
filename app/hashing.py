"""Normalised content hashes: the key that makes an exact duplicate a duplicate.

Two examples are the same when their instruction, input, output and messages match after
Unicode NFKC normalisation, case folding and whitespace collapsing. The hash is unique per
dataset in the database, so the same text is never stored twice in one dataset.
"""

from __future__ import annotations

import hashlib
import unicodedata
from typing import Any

import orjson


def normalize_text(text: str | None) -> str:
    """NFKC, casefold, collapse whitespace, strip."""
    if not text:
        return ""
    # str.split() splits at what regex \s matches (str.isspace), and drops the ends: the same
    # as collapsing runs of whitespace and stripping, ~4x faster than a regex substitution
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def content_hash(
    instruction: str | None,
    input: str | None = None,
    output: str | None = None,
    messages: list[dict[str, Any]] | None = None,
) -> str:
    """sha256 hex of the normalised fields; field boundaries are kept, so ("ab","") != ("a","b")."""
    norm_messages = (
        [[m.get("role", ""), normalize_text(str(m.get("content", "")))] for m in messages]
        if messages
        else None
    )
    payload = orjson.dumps(
        [normalize_text(instruction), normalize_text(input), normalize_text(output), norm_messages]
    )
    return hashlib.sha256(payload).hexdigest()


def instruction_hash(instruction: str | None, input: str | None = None) -> str:
    """Hash of the task alone (instruction + input): two answers to one task collide here."""
    return content_hash(instruction, input)
