"""distillery: a synthetic-data service for knowledge distillation of LLMs."""

from __future__ import annotations

__version__ = "0.1.0"
