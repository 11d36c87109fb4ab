"""The UI's Jinja environment (autoescaping, strict), its filters, and chart geometry.

Charts are plain data (bars with their coordinates) drawn as SVG by `templates/_macros.html`,
so every label goes through autoescaping like any other text.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from app.schemas import JobReport

CHART_WIDTH = 520
BAR_HEIGHT = 22
BAR_GAP = 8
LABEL_WIDTH = 170
VALUE_WIDTH = 80


@dataclass(frozen=True)
class Bar:
    label: str
    value: int | float
    y: int
    width: float
    share: float  # of the total, 0..1


@dataclass(frozen=True)
class BarChart:
    bars: list[Bar]
    width: int
    height: int
    label_width: int
    bar_area: int
    total: float
    title: str


def bar_chart(
    items: Iterable[tuple[str, int | float]], title: str, *, ordered: bool = False
) -> BarChart:
    """Horizontal bars scaled to the largest value: longest first, or in the items' order
    (`ordered`: a histogram's bins)."""
    pairs = [(str(k), v) for k, v in items]
    if not ordered:
        pairs.sort(key=lambda kv: (-kv[1], kv[0]))
    top = max((v for _, v in pairs), default=0) or 1
    total = sum(v for _, v in pairs)
    bar_area = CHART_WIDTH - LABEL_WIDTH - VALUE_WIDTH
    bars = [
        Bar(
            label=label,
            value=value,
            y=i * (BAR_HEIGHT + BAR_GAP),
            width=max(2.0, round(bar_area * value / top, 1)) if value else 0.0,
            share=value / total if total else 0.0,
        )
        for i, (label, value) in enumerate(pairs)
    ]
    height = max(1, len(bars)) * (BAR_HEIGHT + BAR_GAP)
    return BarChart(bars, CHART_WIDTH, height, LABEL_WIDTH, bar_area, total, title)


def kind_charts(report: JobReport) -> dict[str, BarChart]:
    """The charts of the report's kind sections (templates/_kind_sections.html), by name."""
    charts: dict[str, BarChart] = {}
    if report.feedback is not None and report.feedback.pairs:
        bins = [(f"{b.low:g}–{b.high:g}", b.pairs) for b in report.feedback.margin.histogram]
        charts["margins"] = bar_chart(bins, "preference pairs by margin", ordered=True)
    if report.dialogue is not None:
        dialogue = report.dialogue
        if dialogue.turns:
            by_turns = sorted(dialogue.turns.items(), key=lambda kv: int(kv[0]))
            turns = [(f"{n} turn{'' if n == '1' else 's'}", c) for n, c in by_turns]
            charts["turns"] = bar_chart(turns, "conversations by assistant turns", ordered=True)
        if dialogue.cut_by_reason:
            charts["cut"] = bar_chart(dialogue.cut_by_reason.items(), "truncated by reason")
        if dialogue.rejected_by_reason:
            charts["dialogue_rejected"] = bar_chart(
                dialogue.rejected_by_reason.items(), "rejected conversations by reason"
            )
    return charts


def _number(value: int | float | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    if digits:
        return f"{value:,.{digits}f}"
    return f"{value:,.0f}" if isinstance(value, float) else f"{value:,}"


def _when(value: dt.datetime | None) -> str:
    if value is None:
        return "—"
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float | None) -> str:
    """`1 h 02 min`, `3 min 05 s`, `12.4 s`; an em dash when unknown."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def _compact(value: Any) -> Any:
    """A mapping without its unset (None) entries: the choices that were made."""
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if v is not None}
    return value


def _percent(value: float | None, digits: int = 0) -> str:
    """A share (0..1) as a percentage; an em dash when unknown."""
    return "—" if value is None else f"{100 * value:.{digits}f}%"


def _short_id(value: Any) -> str:
    """The last 8 hex digits: the random part (ids are UUIDv7, their first digits are a time)."""
    return str(value)[-8:] if value is not None else "—"


def make_environment() -> Environment:
    env = Environment(
        loader=PackageLoader("app.ui", "templates"),
        autoescape=select_autoescape(["html"], default_for_string=True, default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        number=_number,
        when=_when,
        duration=duration,
        pretty_json=_pretty_json,
        short=_short_id,
        compact=_compact,
        percent=_percent,
    )
    return env


ENV = make_environment()


def page(template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """The template rendered as a response, with headers that keep the page self-contained."""
    html = ENV.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)


# the page loads only its own files: an injected <script> or inline handler would not run
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
