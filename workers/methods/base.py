"""The method interface: what the runner hands a method, and what a method hands back.

A method module exposes one coroutine::

    async def run(task: TaskInput, ctx: MethodContext) -> TaskOutcome

It builds teacher requests from ``task`` (and what it reads through ``ctx``), calls
``ctx.teacher.generate``, and turns the results into :class:`ExampleOut` rows (accepted,
rejected with a reason, or pending). Methods stay free of SQL: everything they read comes through
``ctx``; everything they write goes back in the :class:`TaskOutcome`, which the runner stores
with the task's completion in one transaction (``app.queue.complete_task``).

Errors a method may raise, and what the runner does with them::

    JobCancelled            the job was cancelled (raised by ``ctx.check_cancel``): the task is
                            cancelled, nothing of it is written
    TaskFailed              final: the task fails at once, and with it the job
    TeacherError            retried with backoff when ``retryable``, else final
    any other exception     retried with backoff up to the task's max attempts, then final

A teacher result that came back with ``error`` set is the method's to judge: raise the error to
retry the whole task, or keep going and report the item as failed or rejected.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

# the plain data a method hands back is defined once, in app (the queue stores it)
from app.outcomes import ExampleOut, ExampleStatus, PairOut, TaskOutcome

if TYPE_CHECKING:
    from app.contamination import Index
    from workers.teachers.base import Teacher


class JobCancelled(Exception):
    """The job was cancelled; the task stops between teacher calls and writes nothing."""

    retryable: ClassVar[bool] = False


class TaskFailed(Exception):
    """The task cannot succeed however often it is retried (the job fails with this message)."""

    retryable: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class TaskInput:
    """One claimed task, as plain data."""

    job_id: str
    task_id: str
    dataset_id: str
    seq: int
    attempt: int  # 1 on the first try
    kind: str
    params: dict[str, Any]  # the job's validated params (app.kinds)
    teacher: dict[str, Any]  # the job's TeacherSpec: model, temperature, top_p, max_tokens ...
    skill: dict[str, Any] | None  # the Skill row's fields, or None
    payload: dict[str, Any]  # what this task is about (chunk of example ids, round number ...)


class MethodContext(Protocol):
    """What the runner gives a method: the teacher and read-only views of the database."""

    @property
    def teacher(self) -> Teacher:
        """The teacher this worker serves."""
        ...

    async def check_cancel(self) -> None:
        """Raise :class:`JobCancelled` when the job was cancelled (or has ended); call it
        between teacher calls."""
        ...

    async def fetch_examples(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        """The dataset's examples with these ids (id, instruction, input, output, messages,
        metadata, status, origin), in the order given; unknown ids are left out."""
        ...

    async def dataset_pool(self) -> list[str]:
        """The instruction of every non-rejected example of the dataset (for dedup)."""
        ...

    async def dataset_pool_rows(self, since: dt.datetime | None) -> list[tuple[Any, str, Any]]:
        """(id, instruction, created_at) of the dataset's non-rejected examples created at or
        after `since` (every one for None): what feeds the worker's index of the pool."""
        ...

    async def lane_accepted(self, lanes: int, lane: int) -> int:
        """This job's accepted examples, as committed now, stored by tasks whose payload
        ``round`` is `lane` modulo `lanes` (one lane of parallel expansion rounds)."""
        ...

    async def job_progress(self) -> dict[str, Any]:
        """The job's counters now: total, completed, accepted, rejected, failed, tokens ..."""
        ...

    async def sample_demos(self, n_seed: int, n_generated: int) -> list[dict[str, Any]]:
        """Up to `n_seed` accepted seed examples and up to `n_generated` accepted generated
        ones of the dataset, drawn at random (same fields as :meth:`fetch_examples`)."""
        ...

    async def topic_demos(self, topic: str, n: int) -> list[dict[str, Any]]:
        """Up to `n` accepted examples of the dataset generated for the taxonomy leaf `topic`
        (by any job), drawn at random (same fields as :meth:`fetch_examples`)."""
        ...

    async def topic_accepted(self, topic: str) -> int:
        """This job's accepted examples of the taxonomy leaf `topic`, as committed now."""
        ...

    async def benchmark_index(self, ids: Sequence[str]) -> Index | None:
        """The contamination index of these benchmarks (the job's ``params.decontaminate``),
        None for no ids; built once per worker and set of ids."""
        ...


__all__ = [
    "ExampleOut", "ExampleStatus", "JobCancelled", "Method", "MethodContext", "PairOut",
    "TaskFailed", "TaskInput", "TaskOutcome",
]  # fmt: skip


class Method(Protocol):
    """A method module (or any object) with a ``run`` coroutine."""

    async def run(self, task: TaskInput, ctx: MethodContext) -> TaskOutcome: ...
