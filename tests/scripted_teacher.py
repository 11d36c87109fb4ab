"""A scripted teacher double for queue and runner tests (the real backends are tested elsewhere).

It answers every request with ``<prefix><last message>`` (``prefix`` "answer to: " unless changed,
so a test can tell a later answer from an earlier one; ``respond``, when set, writes the text
instead), after ``delay`` seconds, and can be
told to fail: a script of per-call errors (``fail_calls``), a rule per request (``fail_when``),
or held at a gate until the test opens it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence

from workers.teachers.base import (
    Generation,
    TeacherError,
    TeacherRequest,
    TeacherResult,
    Usage,
)


class ScriptedTeacher:
    """Satisfies ``workers.teachers.base.Teacher``; counts calls and requests."""

    backend = "scripted"

    def __init__(
        self,
        model: str = "scripted-model",
        *,
        delay: float = 0.0,
        fail_calls: Sequence[TeacherError | None] = (),
        fail_when: Callable[[TeacherRequest], TeacherError | None] | None = None,
    ) -> None:
        self.model = model
        self.delay = delay
        self.fail_calls: deque[TeacherError | None] = deque(fail_calls)
        self.fail_when = fail_when
        self.gate: asyncio.Event | None = None  # when set to an Event, calls wait for it
        self.started = asyncio.Event()  # set at the first call
        self.calls = 0
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.closed = False
        self.prefix = "answer to: "
        self.respond: Callable[[TeacherRequest], str] | None = None

    async def generate(self, requests: Sequence[TeacherRequest]) -> list[TeacherResult]:
        self.calls += 1
        self.requests += len(requests)
        self.started.set()
        failure = self.fail_calls.popleft() if self.fail_calls else None
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.gate is not None:
                await self.gate.wait()
        finally:
            self.in_flight -= 1
        results = []
        for request in requests:
            error = failure or (self.fail_when(request) if self.fail_when else None)
            if error is not None:
                results.append(TeacherResult.failed(error, latency_s=self.delay))
                continue
            prompt = str(request.messages[-1]["content"])
            text = self.respond(request) if self.respond else f"{self.prefix}{prompt}"
            results.append(
                TeacherResult(
                    generations=[Generation(text=text, finish_reason="stop")],
                    usage=Usage(prompt_tokens=len(prompt.split()), completion_tokens=3),
                    latency_s=self.delay,
                )
            )
        return results

    async def aclose(self) -> None:
        self.closed = True
