"""A teacher double for curation jobs: taxonomy proposals, task proposals per leaf, answers.

A taxonomy request ("Plan the training data ...") gets the topics and subtopics asked for, with
what real teachers do wrong mixed in: a "/" in a name, a subtopic named twice, one topic more
than asked (the method cleans, drops and trims them); the first `unusable` replies are not JSON.
A leaf's proposal ("Come up with N ... Area: T > S") gets fresh instructions naming the leaf;
every `copy_every`-th candidate (counted over all leaves) is instead an exact copy of one
proposed for another leaf (dataset-wide dedup must catch it); a leaf in `dry` proposes the same
instruction every time (so it accepts one, then runs out of its round budget). Everything else
is answered as :class:`tests.selfinstruct_teacher.SelfInstructTeacher` answers.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

import orjson

from tests.selfinstruct_teacher import SelfInstructTeacher
from workers.teachers.base import Generation, TeacherRequest, TeacherResult, Usage

_AREA = re.compile(r"^Area: (.+)$", re.MULTILINE)
_COUNT = re.compile(r"Come up with (\d+)")
_SHAPE = re.compile(r"(\d+) topics that together cover the skill, each split into (\d+) subtopics")


def topic_name(t: int) -> str:
    return f"Topic {t}"


def subtopic_name(t: int, s: int) -> str:
    # the first subtopic of every topic has a "/" in its name: stored with "-" instead
    return f"In/out {t}.{s}" if s == 0 else f"Subtopic {t}.{s}"


def proposed_paths(topics: int, subtopics: int) -> list[str]:
    """The leaf paths of the taxonomy this teacher proposes, as the method stores them."""
    return [
        f"{topic_name(t)}/{subtopic_name(t, s).replace('/', '-')}"
        for t in range(topics)
        for s in range(subtopics)
    ]


class CurationTeacher(SelfInstructTeacher):
    """Satisfies ``workers.teachers.base.Teacher``."""

    def __init__(
        self,
        model: str = "curation-model",
        *,
        delay: float = 0.0,
        seed: int = 0,
        copy_every: int = 0,
        dry: Iterable[str] = (),
        unusable: int = 0,
    ) -> None:
        super().__init__(model, delay=delay, seed=seed)
        self.copy_every = copy_every
        self.dry = set(dry)  # leaf paths
        self.unusable = unusable
        self.taxonomy_calls = 0
        self.candidates = 0
        self.copies = 0
        self.emitted: list[tuple[str, str]] = []  # (leaf path, instruction)
        self.by_leaf: Counter[str] = Counter()  # proposal calls per leaf path

    def _answer(self, request: TeacherRequest) -> TeacherResult:
        prompt = str(request.messages[-1]["content"])
        if "Plan the training data" in prompt:
            text = self._taxonomy(prompt)
        elif (area := _AREA.search(prompt)) and "Come up with" in prompt:
            text = self._leaf(prompt, area.group(1).strip().replace(" > ", "/"))
        else:
            return super()._answer(request)
        usage = Usage(prompt_tokens=len(prompt.split()), completion_tokens=len(text.split()))
        return TeacherResult(generations=[Generation(text, "stop")], usage=usage, latency_s=0.01)

    def _taxonomy(self, prompt: str) -> str:
        self.taxonomy_calls += 1
        if self.taxonomy_calls <= self.unusable:
            return "Here are some topics: arithmetic, geometry, and more."
        shape = _SHAPE.search(prompt)
        assert shape is not None, prompt
        topics, subtopics = int(shape.group(1)), int(shape.group(2))
        nodes = []
        for t in range(topics + 1):  # one topic too many
            subs = [
                {"name": subtopic_name(t, s), "description": f"tasks about part {s} of {t}"}
                for s in range(subtopics)
            ]
            subs.insert(1, dict(subs[0]))  # named twice
            nodes.append({"name": topic_name(t), "description": f"area {t}", "subtopics": subs})
        return orjson.dumps({"topics": nodes}).decode()

    def _leaf(self, prompt: str, path: str) -> str:
        self.proposals += 1
        self.by_leaf[path] += 1
        match = _COUNT.search(prompt)
        count = int(match.group(1)) if match else 5
        tasks = []
        for _ in range(count):
            self.candidates += 1
            others = [text for leaf, text in self.emitted if leaf != path]
            if path in self.dry:
                instruction = f"Describe the one thing there is to know about {path}."
            elif self.copy_every and self.candidates % self.copy_every == 0 and others:
                instruction = self.rng.choice(others)
                self.copies += 1
            else:
                instruction = f"{self.fresh_instruction()[:-1]} ({path})."
            self.emitted.append((path, instruction))
            tasks.append({"instruction": instruction, "input": ""})
        return orjson.dumps({"tasks": tasks}).decode()
