"""Teacher backends behind one protocol (:mod:`workers.teachers.base`), chosen by config.

``make_teacher(settings)`` builds the backend named by ``settings.backend``; the heavy libraries
(vllm, torch + transformers) are imported only inside the branch that needs them. ``auto``
picks, in order: ``vllm`` when vllm is installed and a CUDA GPU is present, ``transformers``
when a model is set and transformers is installed, ``openai`` when a base URL is set.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import TYPE_CHECKING

from workers.teachers.base import (
    Generation,
    SamplingParams,
    Teacher,
    TeacherBadResponse,
    TeacherError,
    TeacherMissingExtra,
    TeacherRateLimited,
    TeacherRejected,
    TeacherRequest,
    TeacherResult,
    TeacherTimeout,
    TeacherUnavailable,
    TokenLogprob,
    Usage,
)

if TYPE_CHECKING:
    from app.config import TeacherSettings

__all__ = [
    "Generation",
    "SamplingParams",
    "Teacher",
    "TeacherBadResponse",
    "TeacherError",
    "TeacherMissingExtra",
    "TeacherRateLimited",
    "TeacherRejected",
    "TeacherRequest",
    "TeacherResult",
    "TeacherTimeout",
    "TeacherUnavailable",
    "TokenLogprob",
    "Usage",
    "make_teacher",
    "resolve_backend",
]

logger = logging.getLogger(__name__)
# a library's loggers stay silent unless the application configures logging
logger.addHandler(logging.NullHandler())

INSTALL_HINT = {
    "vllm": "pip install 'distillery[vllm]' (needs a CUDA GPU)",
    "transformers": "pip install 'distillery[hf]' torch",
}


def installed(module: str) -> bool:
    """True when ``module`` can be imported (checked without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def cuda_available() -> bool:
    """True when torch is installed and sees a CUDA GPU (imports torch only if installed)."""
    if not installed("torch"):
        return False
    import torch

    return bool(torch.cuda.is_available())


def resolve_backend(settings: TeacherSettings) -> str:
    """The backend ``settings`` ask for, with ``auto`` resolved; ValueError if nothing fits."""
    if settings.backend != "auto":
        return settings.backend
    if installed("vllm") and cuda_available():
        if settings.model:
            return "vllm"
        logger.info("vllm and a GPU are present but no teacher model is set")
    if settings.model and installed("transformers") and installed("torch"):
        return "transformers"
    if settings.base_url:
        return "openai"
    raise ValueError(
        "no teacher configured: set DISTILLERY_TEACHER__BASE_URL (an OpenAI-compatible server, "
        "e.g. http://host:8000/v1) or DISTILLERY_TEACHER__MODEL (a local model; needs "
        f"{INSTALL_HINT['transformers']}, or vllm on a GPU)"
    )


def require(module: str, backend: str) -> None:
    """Raise :class:`TeacherMissingExtra` when ``backend``'s library is not installed."""
    if not installed(module):
        hint = INSTALL_HINT.get(backend, f"pip install {module}")
        raise TeacherMissingExtra(f"the {backend} teacher needs {module}: {hint}")


def make_teacher(settings: TeacherSettings) -> Teacher:
    """Build the teacher backend ``settings`` describe."""
    backend = resolve_backend(settings)
    teacher: Teacher
    match backend:
        case "openai":
            from workers.teachers.openai import OpenAITeacher

            teacher = OpenAITeacher.from_settings(settings)
        case "vllm":
            require("vllm", "vllm")
            from workers.teachers.vllm import VLLMTeacher

            teacher = VLLMTeacher.from_settings(settings)
        case "transformers":
            require("torch", "transformers")
            require("transformers", "transformers")
            from workers.teachers.transformers import TransformersTeacher

            teacher = TransformersTeacher.from_settings(settings)
        case _:
            raise ValueError(f"unknown teacher backend {backend!r}")
    logger.info(
        "teacher selected: %s %s",
        backend,
        teacher.model or "(model from server)",
        extra={
            "action": "teacher_selected",
            "backend": backend,
            "requested": settings.backend,
            "model": teacher.model,
            "base_url": settings.base_url if backend == "openai" else None,
        },
    )
    return teacher
