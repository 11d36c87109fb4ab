"""A scripted judge for feedback and judge-filter tests: it wraps another teacher double.

Requests carrying the judge's system prompt (``workers/prompts/judge/system``) are judged here by
a rule the test controls; every other request goes to the wrapped teacher. The judge reads the
response(s) out of the judge prompt, as a real judge would, and scores a response by ``score``
(default: the ``[q=N]`` marker in its text). It can be told to answer garbage a number of times
per judged text (``garbage``: text -> how many bad answers before a valid one, ``-1``: always),
to be position-biased (``biased``: (A text, B text) -> True to answer "A" whatever they are), or
to fail a call (``fail_when``).
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from workers.methods import judging
from workers.prompts import render
from workers.teachers.base import (
    Generation,
    TeacherError,
    TeacherRequest,
    TeacherResult,
    Usage,
)

JUDGE_SYSTEM = render(judging.SYSTEM_ID, judging.JUDGE_VERSION)
_MARK = re.compile(r"\[q=(\d+)\]")
# kinds of bad judgments, cycled: prose, a score out of range, a missing field, a string score
GARBAGE = ("prose", "out_of_range", "missing", "string")


def marker_score(text: str, aspect: str) -> int:
    """The score the ``[q=N]`` marker of a response asks for (5 without one)."""
    found = _MARK.search(text)
    return int(found.group(1)) if found else 5


def _between(text: str, start: str, end: str) -> str:
    head = text.index(start) + len(start)
    return text[head : text.index(end, head)].strip("\n")


def is_judge(request: TeacherRequest) -> bool:
    return bool(request.messages) and request.messages[0]["content"] == JUDGE_SYSTEM


class JudgeTeacher:
    """Satisfies ``workers.teachers.base.Teacher``."""

    backend = "scripted"

    def __init__(
        self,
        inner: Any,
        *,
        score: Callable[[str, str], int] = marker_score,
        garbage: Callable[[str], int] | None = None,
        biased: Callable[[str, str], bool] | None = None,
        fail_when: Callable[[TeacherRequest], TeacherError | None] | None = None,
    ) -> None:
        self.inner = inner
        self.model = inner.model
        self.score = score
        self.garbage = garbage
        self.biased = biased
        self.fail_when = fail_when
        self.judge_requests: list[TeacherRequest] = []
        self.asked: Counter[str] = Counter()  # judged text (pairwise: "A||B") -> times asked
        self.garbage_sent = 0
        self._kinds = itertools.cycle(GARBAGE)

    async def generate(self, requests: Sequence[TeacherRequest]) -> list[TeacherResult]:
        judge = [i for i, r in enumerate(requests) if is_judge(r)]
        others = [r for i, r in enumerate(requests) if i not in set(judge)]
        answered = iter(await self.inner.generate(others) if others else [])
        results = []
        for request in requests:
            results.append(self._judge(request) if is_judge(request) else next(answered))
        return results

    def _judge(self, request: TeacherRequest) -> TeacherResult:
        self.judge_requests.append(request)
        error = self.fail_when(request) if self.fail_when else None
        if error is not None:
            return TeacherResult.failed(error)
        prompt = request.messages[-1]["content"]
        schema = request.json_schema or {}
        if "verdict" in schema.get("properties", {}):
            first = _between(prompt, "[The start of answer A]\n", "[The end of answer A]")
            second = _between(prompt, "[The start of answer B]\n", "[The end of answer B]")
            key = f"{first}||{second}"
            if self.biased is not None and self.biased(first, second):
                verdict = "A"
            else:
                a, b = self.score(first, "overall"), self.score(second, "overall")
                verdict = "A" if a > b else "B" if b > a else "tie"
            value: Any = {"rationale": f"judged {key}", "verdict": verdict}
        else:
            key = _between(prompt, "[The start of the answer]\n", "[The end of the answer]")
            value = {
                aspect: {"rationale": f"{aspect} of it", "score": self.score(key, aspect)}
                for aspect in schema["required"]
            }
        self.asked[key] += 1
        bad = self.garbage(key) if self.garbage else 0
        text = orjson.dumps(value).decode()
        if bad < 0 or self.asked[key] <= bad:
            text = self._spoil(value)
            self.garbage_sent += 1
        return TeacherResult(
            generations=[Generation(text=text, finish_reason="stop")],
            usage=Usage(prompt_tokens=len(prompt.split()), completion_tokens=len(text.split())),
        )

    def _spoil(self, value: dict[str, Any]) -> str:
        kind = next(self._kinds)
        if kind == "prose":
            return "This answer is quite good overall, I would say."
        first = next(iter(value))
        spoiled = dict(value)
        if kind == "missing":
            del spoiled[first]
            if not spoiled:
                spoiled = {"unrelated": 1}
        elif "verdict" in value:
            spoiled["verdict"] = "C" if kind == "out_of_range" else 1
        else:
            score = value[first]["score"]
            spoiled[first] = {**value[first], "score": 11 if kind == "out_of_range" else str(score)}
        return f"Here is my judgment:\n```json\n{orjson.dumps(spoiled).decode()}\n```"

    async def aclose(self) -> None:
        await self.inner.aclose()
