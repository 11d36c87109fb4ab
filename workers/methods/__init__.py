"""Elicitation methods, keyed by job kind (the kinds of ``app.kinds``).

Each entry is a module exposing ``async def run(task: TaskInput, ctx: MethodContext) ->
TaskOutcome`` (see :mod:`workers.methods.base`). A worker claims only tasks of the kinds it has a
method for, so the registry is also what a worker can do.

The runner takes a ``methods`` mapping (default: this one) so tests and benchmarks can plug in
their own.
"""

from __future__ import annotations

from types import ModuleType

from workers.methods import curation, dialogue, evol, expansion, feedback, labeling, scoring

METHODS: dict[str, ModuleType] = {
    "labeling": labeling,
    "expansion": expansion,
    "scoring": scoring,
    "feedback": feedback,
    "dialogue": dialogue,
    "evol": evol,
    "curation": curation,
}
