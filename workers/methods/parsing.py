"""Tolerant parsers for what a teacher writes: JSON task lists, or numbered lists as a fallback.

Structured output (a JSON schema) is requested where the backend supports it, but it is
validated here anyway: servers silently ignore unknown constraint fields, and local backends do
not enforce schemas at all.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

TASKS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "tasks": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "properties": {"instruction": {"type": "string"}, "input": {"type": "string"}},
                "required": ["instruction", "input"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["tasks"],
    "additionalProperties": False,
}


def tasks_schema(with_output: bool) -> dict[str, Any]:
    """The JSON schema of a proposal: tasks with instruction and input (and output if asked)."""
    if not with_output:
        return TASKS_SCHEMA
    item = TASKS_SCHEMA["properties"]["tasks"]["items"]
    properties = {**item["properties"], "output": {"type": "string"}}
    items = {**item, "properties": properties, "required": ["instruction", "input", "output"]}
    return {
        **TASKS_SCHEMA,
        "properties": {"tasks": {**TASKS_SCHEMA["properties"]["tasks"], "items": items}},
    }


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)
_NUMBERED = re.compile(r"^\s*(?:\d+[.)]|[-*•]|Task\s*\d+\s*:)\s*(.+)$", re.IGNORECASE)
_LABEL = re.compile(r"^\s*(instruction|input|output)\s*:\s*(.*)$", re.IGNORECASE)


def parse_tasks(text: str) -> list[dict[str, str]] | None:
    """The tasks of a proposal, or None when nothing usable can be read from `text`."""
    data = load_json(text)
    if data is not None:
        items = data.get("tasks") if isinstance(data, dict) else data
        if isinstance(items, list):
            tasks = [_task(item) for item in items]
            found = [t for t in tasks if t is not None]
            return found or None
        return None
    return _parse_labelled(text) or _parse_numbered(text)


def load_json(text: str) -> Any:
    """The JSON value in `text`: the whole text, a fenced block, or the outermost braces; None
    when none of them parses."""
    candidates = [text.strip(), *(m.strip() for m in _FENCE.findall(text))]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            return orjson.loads(candidate)
        except orjson.JSONDecodeError:
            continue
    return None


def _task(item: Any) -> dict[str, str] | None:
    if isinstance(item, str):
        return {"instruction": item, "input": ""}
    if not isinstance(item, dict) or not isinstance(item.get("instruction"), str):
        return None
    task = {"instruction": item["instruction"], "input": item.get("input") or ""}
    if not isinstance(task["input"], str):
        task["input"] = orjson.dumps(task["input"]).decode()
    if isinstance(item.get("output"), str):
        task["output"] = item["output"]
    return task


def _parse_labelled(text: str) -> list[dict[str, str]]:
    """Blocks of `Instruction: ... / Input: ... / Output: ...` lines (Self-Instruct's format)."""
    tasks: list[dict[str, str]] = []
    for line in text.splitlines():
        match = _LABEL.match(line)
        if not match:
            if tasks and line.strip():
                last = tasks[-1]
                key = next(reversed(last))
                last[key] = f"{last[key]}\n{line.strip()}"
            continue
        label, value = match.group(1).lower(), match.group(2).strip()
        if label == "instruction":
            tasks.append({"instruction": value, "input": ""})
        elif tasks:
            tasks[-1][label] = value
    return [t for t in tasks if t["instruction"]]


def _parse_numbered(text: str) -> list[dict[str, str]] | None:
    items = [m.group(1).strip() for line in text.splitlines() if (m := _NUMBERED.match(line))]
    return [{"instruction": i, "input": ""} for i in items if i] or None
