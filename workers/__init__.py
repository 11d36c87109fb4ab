"""The GPU side of distillery: claims tasks, runs methods against a teacher, curates results."""

from __future__ import annotations
