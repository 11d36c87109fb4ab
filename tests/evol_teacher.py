"""A teacher double that plays Evol-Instruct, with planted failures, for evol and rationale tests.

Requests are told apart by their prompt, as the real prompts word them:

- an evolution (``#The Given Prompt#`` / ``#Given Prompt#``) gets JSON ``{"instruction",
  "input"}``: the given prompt with a fresh clause of made-up words added (a new, rarer task for
  ``breadth``), so evolutions pass curation and are never near duplicates of one another;
- an equality check (``Your judgement``) gets ``Not Equal``;
- anything else is an answer: ``Here is a careful answer: ...``, or with the rationale schema
  JSON ``{"rationale", "answer"}``.

A marker word in an instruction plants a failure in every evolution of it (the marker is kept,
so each generation of that lineage fails the same way): ``zqcopy`` (the evolution copies
"#Rewritten Prompt#"), ``zqsame`` (the evolution is its parent's words), ``zqequal`` (the
equality check says ``Equal``), ``zqsorry`` (the answer is a short "sorry"), ``zqrefuse`` (the
answer is an AI refusal), ``zqdegenerate`` (the answer is stop words and punctuation),
``zqbroken`` (the first rationale reply for it is not JSON; asked again, it is).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import re
from collections import Counter
from collections.abc import Sequence

import orjson

from tests.selfinstruct_teacher import vocabulary
from workers.teachers.base import Generation, TeacherRequest, TeacherResult, Usage

MARKERS = ("zqcopy", "zqsame", "zqequal", "zqsorry", "zqrefuse", "zqdegenerate", "zqbroken")
_GIVEN = re.compile(r"#(?:The )?Given Prompt#:\n(.*?)\n(?:\nAnswer with JSON|Input:\n)", re.DOTALL)
_INPUT = re.compile(r"\nInput:\n(.*?)\n\nAnswer with JSON", re.DOTALL)
_SECOND = re.compile(r"The Second Prompt:\n(.*?)\n\nYour judgement", re.DOTALL)


class EvolTeacher:
    """Satisfies ``workers.teachers.base.Teacher``; counts requests by kind."""

    backend = "scripted"

    def __init__(self, model: str = "evol-model", *, delay: float = 0.0, seed: int = 0) -> None:
        self.model = model
        self.delay = delay
        self.rng = random.Random(seed)
        self.words = vocabulary(4000, seed=seed + 11)
        self.counter = itertools.count()
        self.seen: Counter[str] = Counter()  # requests by kind
        self.broken: set[str] = set()  # instructions whose first rationale reply was broken
        self.gate: asyncio.Event | None = None  # when set, calls wait for it

    async def generate(self, requests: Sequence[TeacherRequest]) -> list[TeacherResult]:
        if self.gate is not None:
            await self.gate.wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        return [self._reply(r) for r in requests]

    def _clause(self, n: int = 6) -> str:
        return " ".join(self.rng.sample(self.words, n)) + f" {next(self.counter)}"

    def _reply(self, request: TeacherRequest) -> TeacherResult:
        prompt = str(request.messages[-1]["content"])
        if "Given Prompt#" in prompt:
            text = self._evolve(prompt)
        elif "Your judgement" in prompt:
            self.seen["equal"] += 1
            found = _SECOND.search(prompt)
            text = "Equal" if found and "zqequal" in found.group(1) else "Not Equal"
        else:
            text = self._answer(prompt, request.json_schema is not None)
        usage = Usage(prompt_tokens=len(prompt.split()), completion_tokens=len(text.split()))
        return TeacherResult(generations=[Generation(text, "stop")], usage=usage, latency_s=0.01)

    def _evolve(self, prompt: str) -> str:
        self.seen["evolve"] += 1
        found = _GIVEN.search(prompt)
        given = found.group(1).strip() if found else "Describe something"
        inp = _INPUT.search(prompt)
        markers = [m for m in MARKERS if m in given]
        if "zqsame" in markers:
            instruction = given
        elif "Prompt Creator" in prompt:  # breadth: a new task of the domain, markers kept
            instruction = f"Explain the {self._clause(8)} {' '.join(markers)}".strip() + "."
        else:
            instruction = f"{given.rstrip('.')}, and also cover the {self._clause()}."
        if "zqcopy" in markers:
            instruction = f"#Rewritten Prompt#: {instruction}"
        data = {"instruction": instruction, "input": inp.group(1).strip() if inp else ""}
        return orjson.dumps(data).decode()

    def _answer(self, prompt: str, rationale: bool) -> str:
        self.seen["answer"] += 1
        if "zqsorry" in prompt:
            answer = "Sorry, that is beyond what I can do here."
        elif "zqrefuse" in prompt:
            answer = "As an AI language model, I cannot help with that request."
        elif "zqdegenerate" in prompt:
            answer = "The... and of the, to it!"
        else:
            answer = f"Here is a careful answer: {self._clause(12)}. That covers the main points."
        if not rationale:
            return answer
        self.seen["rationale"] += 1
        key = prompt.split("\n", 1)[0]
        if "zqbroken" in prompt and key not in self.broken:
            self.broken.add(key)
            return '{"rationale": "I started to think'
        return orjson.dumps(
            {"rationale": f"First, consider {self._clause(5)}; then conclude.", "answer": answer}
        ).decode()

    async def aclose(self) -> None:
        pass
