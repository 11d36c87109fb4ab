"""A teacher double that plays an instruction-following LLM for labeling and expansion tests.

Proposals (requests with a JSON schema, or asking to "Come up with" tasks) get JSON task lists
of fresh, mutually dissimilar instructions built from a synthetic vocabulary; every other request
gets an answer. `hostile=True` mixes in what real teachers do wrong, one kind per proposal slot:
exact duplicates of seeds, near duplicates, blocklisted tasks, refusals, malformed JSON and
truncated output, so curation has something to catch.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import re
from collections.abc import Sequence

import orjson

from workers.teachers.base import Generation, TeacherRequest, TeacherResult, Usage

SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa", "do", "gu", "be", "fi"]
VERBS = [
    "Explain",
    "Describe",
    "Summarize",
    "Compare",
    "List",
    "Outline",
    "Classify",
    "Rewrite",
    "Evaluate",
    "Suggest",
    "Estimate",
    "Translate",
    "Define",
    "Critique",
    "Plan",
    "Name",
]
HOSTILE_KINDS = ("duplicate", "near_duplicate", "blocklist", "refusal", "malformed", "truncated")


def vocabulary(size: int = 3000, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(words)


class SelfInstructTeacher:
    """Satisfies ``workers.teachers.base.Teacher``."""

    backend = "scripted"

    def __init__(
        self,
        model: str = "selfinstruct-model",
        *,
        hostile: bool = False,
        delay: float = 0.0,
        seed: int = 0,
        seeds: Sequence[str] = (),
    ) -> None:
        self.model = model
        self.hostile = hostile
        self.delay = delay
        self.rng = random.Random(seed)
        self.words = vocabulary()
        self.seeds = list(seeds)  # seed instructions the hostile teacher copies
        self.counter = itertools.count()
        self.calls = 0
        self.proposals = 0
        self.injected: dict[str, int] = dict.fromkeys(HOSTILE_KINDS, 0)

    def fresh_instruction(self) -> str:
        words = " ".join(self.rng.sample(self.words, 9))
        return f"{self.rng.choice(VERBS)} the {words} for case {next(self.counter)}."

    async def generate(self, requests: Sequence[TeacherRequest]) -> list[TeacherResult]:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        return [self._answer(r) for r in requests]

    def _answer(self, request: TeacherRequest) -> TeacherResult:
        prompt = str(request.messages[-1]["content"])
        if request.json_schema is not None or "Come up with" in prompt:
            text, finish = self._propose(prompt)
        elif self.hostile and self.rng.random() < 0.1:
            text, finish = "As an AI language model, I cannot help with that request.", "stop"
            self.injected["refusal"] += 1
        else:
            topic = " ".join(self.rng.sample(self.words, 12))
            text, finish = (
                f"Here is a careful answer: {topic}. That covers the main points.",
                "stop",
            )
        usage = Usage(prompt_tokens=len(prompt.split()), completion_tokens=len(text.split()))
        return TeacherResult(generations=[Generation(text, finish)], usage=usage, latency_s=0.01)

    def _propose(self, prompt: str) -> tuple[str, str]:
        self.proposals += 1
        match = re.search(r"Come up with (\d+)", prompt)
        count = int(match.group(1)) if match else 5
        with_output = '"output"' in prompt
        tasks = []
        for _ in range(count):
            kind = (
                self.rng.choice(HOSTILE_KINDS) if self.hostile and self.rng.random() < 0.4 else None
            )
            if kind == "malformed":
                self.injected[kind] += 1
                return '{"tasks": [{"instruction": "Broken', "stop"
            if kind == "truncated":
                self.injected[kind] += 1
                return '{"tasks": [{"instruction": "' + " ".join(self.words[:50]), "length"
            instruction = self.fresh_instruction()
            if kind == "duplicate" and self.seeds:
                instruction = self.rng.choice(self.seeds)
            elif kind == "near_duplicate" and self.seeds:
                words = self.rng.choice(self.seeds).split()
                words[-1] = "indeed"
                instruction = " ".join(words)
            elif kind == "blocklist":
                instruction = f"Draw a picture of the {self.rng.choice(self.words)} garden."
            if kind in ("duplicate", "near_duplicate", "blocklist"):
                self.injected[kind] += 1
            task = {"instruction": instruction, "input": ""}
            if with_output:
                task["output"] = f"Answer: {' '.join(self.rng.sample(self.words, 10))}."
            tasks.append(task)
        return orjson.dumps({"tasks": tasks}).decode(), "stop"

    async def aclose(self) -> None:
        pass
