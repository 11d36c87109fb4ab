"""Elicitation methods, keyed by job kind (the kinds of ``app.kinds``).

Each entry is a module exposing ``async def run(task: TaskInput, ctx: MethodContext) ->
TaskOutcome`` (see :mod:`workers.methods.base`). A worker claims only tasks of the kinds it has a
method for, so the registry is also what a worker can do.

Empty until the labeling and expansion methods land; the runner takes a ``methods`` mapping so
tests and benchmarks plug in their own.
"""

from __future__ import annotations

from types import ModuleType

METHODS: dict[str, ModuleType] = {}
