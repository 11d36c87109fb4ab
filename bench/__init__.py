"""Benchmarks for distillery, and the loopback teacher emulator they (and the tests) run against."""

from __future__ import annotations
