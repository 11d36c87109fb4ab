"""``distillery teacher check``: send one small probe to the configured teacher and report.

Prints backend, model, latency and tokens/s, or one line saying what is wrong (no server at
the URL, unknown model, a missing extra, nothing configured). Exit code 0 when the teacher
answered, 1 otherwise.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from workers.teachers import make_teacher
from workers.teachers.base import (
    SamplingParams,
    TeacherError,
    TeacherMissingExtra,
    TeacherRejected,
    TeacherRequest,
)

if TYPE_CHECKING:
    from app.config import TeacherSettings

PROBE = TeacherRequest(
    messages=[{"role": "user", "content": "Say hello in one short sentence."}],
    sampling=SamplingParams(n=1, temperature=0.0, top_p=1.0, max_tokens=16, seed=0, stop=()),
    request_id="teacher-check",
)


@dataclass(frozen=True, slots=True)
class CheckReport:
    """What the probe measured."""

    backend: str
    model: str
    latency_s: float
    completion_tokens: int
    tokens_per_s: float
    text: str


async def check_teacher(settings: TeacherSettings) -> CheckReport:
    """Build the teacher, send the probe (one retry at most), close; raise what failed."""
    settings = settings.model_copy(update={"max_retries": min(settings.max_retries, 1)})
    teacher = make_teacher(settings)
    try:
        [result] = await teacher.generate([PROBE])
    finally:
        await teacher.aclose()
    if result.error is not None:
        raise result.error
    tokens = result.usage.completion_tokens
    return CheckReport(
        backend=teacher.backend,
        model=teacher.model,
        latency_s=result.latency_s,
        completion_tokens=tokens,
        tokens_per_s=tokens / result.latency_s if result.latency_s > 0 else 0.0,
        text=result.generations[0].text if result.generations else "",
    )


def describe_error(exc: Exception, settings: TeacherSettings) -> str:
    """One line naming what is wrong and what to configure."""
    if isinstance(exc, TeacherRejected) and exc.status in (400, 404):
        return (
            f"unknown model {settings.model!r} (or wrong URL) at {settings.base_url}: {exc} "
            "(set DISTILLERY_TEACHER__MODEL / --model to a model the server serves)"
        )
    if isinstance(exc, TeacherMissingExtra):
        return f"missing extra: {exc}"
    if isinstance(exc, TeacherError):
        return f"{type(exc).__name__}: {exc}"
    return str(exc)  # ValueError: nothing (or something incomplete) configured


def main(settings: TeacherSettings) -> int:
    """Run the check and print the report; 0 if the teacher answered, else 1."""
    try:
        report = asyncio.run(check_teacher(settings))
    except (TeacherError, ValueError) as exc:
        Console(stderr=True).print(
            f"teacher check failed: {describe_error(exc, settings)}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        return 1
    table = Table("teacher", "", show_header=False)
    table.add_row("backend", report.backend)
    table.add_row("model", report.model)
    table.add_row("latency", f"{report.latency_s:.3f} s")
    table.add_row("completion tokens", str(report.completion_tokens))
    table.add_row("tokens/s", f"{report.tokens_per_s:.1f}")
    console = Console()
    console.print(table)
    console.print(f"sample: {report.text[:120]!r}", markup=False, highlight=False, soft_wrap=True)
    return 0
