"""Versioned prompt templates (Jinja2 files), rendered in a sandbox.

A prompt is ``<id>/<version>.jinja`` under this folder, e.g. ``expansion/propose/v1``. Text that
users supply (skill specs, seeds) only ever enters as *data* in the render context; it is never
compiled as template code, so ``{{ ... }}`` inside a seed renders literally. The environment is
Jinja2's immutable sandbox with strict undefined variables, as transformers renders chat templates.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = Path(__file__).resolve().parent


@cache
def _env() -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(
        loader=FileSystemLoader(str(ROOT)),
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(prompt_id: str, version: str, **context: Any) -> str:
    """The prompt `prompt_id` at `version`, rendered with plain data."""
    return _env().get_template(f"{prompt_id}/{version}.jinja").render(**context).strip()


def skill_system_prompt(skill: dict[str, Any] | None) -> str:
    """The system part of every teacher prompt of a job: the skill spec, or a neutral default."""
    return render("skill", "v1", skill=skill or {})
