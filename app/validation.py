"""Validation errors in the client's words: the field as the client wrote it, a plain sentence.

pydantic's `loc` holds segments the client never wrote (FastAPI's `body`, the tag of a
discriminated union such as `expansion`, validator wrappers such as `function-after[...]`) and
its messages quote regular expressions. The API's message names the field by walking the
client's own input along `loc`; `details` keep the raw `loc` for machines.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

# what each pattern of the schemas means, said to a person (tests/test_error_messages.py checks
# that every pattern of the OpenAPI document is here)
PATTERN_MEANINGS: dict[str, str] = {
    r"\S": "must not be empty or only spaces",
    r"^[A-Za-z0-9_-]{22}$": "must be the `next_cursor` of a previous page",
    r"[^/\s]": "must name a topic (not empty, not only '/')",
    r"^[^/]*[^/\s][^/]*$": "must not be blank and must not contain '/'",
    r"^([0-9]{1,18}(-[0-9]{1,18})?)?$": "must be an event id of this stream, e.g. 42 or 42-7",
    r"^[a-z0-9][a-z0-9.+-]{0,63}$": "must be a Hugging Face license id such as apache-2.0, "
    "mit, cc-by-4.0 or other (lower case letters, digits, '.', '+', '-')",
}
SOURCES = {"query": "query parameter", "path": "path parameter", "header": "header"}
# pydantic-core's names of validators and union members: `function-after[...]`, `list[...]`,
# `json-or-python[...]`, `tagged-union[...]`, `nullable[...]`, `lax-or-strict[...]`
_INTERNAL = re.compile(r"^[a-z][a-z0-9_-]*\[.*\]$|^(?:function|json|lax|tagged|nullable)-")


def plain_message(error: dict[str, Any]) -> str:
    """pydantic's `msg` of `error` without regexes and wrapper prefixes."""
    msg = str(error.get("msg", ""))
    kind = error.get("type", "")
    if kind == "string_pattern_mismatch":
        pattern = str((error.get("ctx") or {}).get("pattern", ""))
        return PATTERN_MEANINGS.get(pattern, "is not in the expected form")
    ctx = error.get("ctx") or {}
    if kind == "union_tag_invalid":
        return f"{ctx.get('tag')!r} is not one of {ctx.get('expected_tags')}"
    if kind == "union_tag_not_found":
        return "Field required"
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    return msg


def _internal(segment: Any) -> bool:
    return isinstance(segment, str) and bool(_INTERNAL.match(segment))


def client_path(loc: Sequence[Any], data: Any) -> list[Any]:
    """The segments of `loc` that the client wrote, found by walking `data` (the parsed body, or
    None when unknown): a segment that is neither a key nor an index of the value reached (a
    union's tag, a validator's name) is left out, unless it is the last one (a missing field)."""
    path: list[Any] = []
    node = data
    for i, segment in enumerate(loc):
        if (isinstance(node, dict) and segment in node) or (
            isinstance(node, list) and isinstance(segment, int) and 0 <= segment < len(node)
        ):
            node = node[segment]
        elif _internal(segment) or (i < len(loc) - 1 and node is not None):
            continue
        else:
            node = None
        path.append(segment)
    return path


def field_name(loc: Sequence[Any], body: Any) -> str:
    """`loc` of a request error as the client would name the field (`params.target`,
    `query parameter limit`); "request body" for the body as a whole."""
    source, rest = (loc[0], list(loc[1:])) if loc else ("body", [])
    if source == "body":
        path = client_path(rest, body)
        return ".".join(str(p) for p in path) if path else "request body"
    named = ".".join(str(p) for p in rest if not _internal(p))
    return f"{SOURCES.get(str(source), str(source))} {named}".strip()


def error_loc(error: dict[str, Any]) -> list[Any]:
    """`loc` of `error`, ending with the discriminator's key when the union's tag is at fault
    (pydantic puts such an error at the union, not at the key the client wrote)."""
    loc = list(error.get("loc", ()))
    if error.get("type") in ("union_tag_invalid", "union_tag_not_found"):
        key = str((error.get("ctx") or {}).get("discriminator", "")).strip("'\"")
        if key:
            loc.append(key)
    return loc


def describe(error: dict[str, Any], body: Any) -> str:
    """One error as a sentence: `<field>: <plain message>`."""
    return f"{field_name(error_loc(error), body)}: {plain_message(error)}"
