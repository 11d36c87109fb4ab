"""`distillery jobs watch`: a live display of a job, fed by `GET /v1/jobs/{id}/events`.

The stream is server-sent events (`progress`, `status`, `task`, `finished`; every event has an
id). A dropped connection is reopened with `Last-Event-ID`, so nothing is missed or repeated.
A server without the events route is polled instead (`GET /v1/jobs/{id}` and its report).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from app.client.http import Api, ClientError, error_line

TERMINAL = ("succeeded", "failed", "cancelled")
EXIT_CODES = {"succeeded": 0, "failed": 1, "cancelled": 2}
RECONNECT_GIVE_UP_S = 60.0  # reconnect attempts without one good connection, then fail
READ_TIMEOUT_S = 60.0  # no byte (not even a keep-alive comment) for this long: reconnect
POLL_S = 1.0


@dataclass
class Event:
    event: str
    data: str
    id: str | None


def parse_sse(lines: Iterable[str]) -> Iterator[Event]:
    """Server-sent events from the stream's lines (the WHATWG rules: `field: value`, a blank line
    dispatches, `:` starts a comment, data lines join with newlines, the id persists)."""
    event = ""
    last_id: str | None = None
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield Event(event or "message", "\n".join(data), last_id)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id" and "\x00" not in value:
            last_id = value


@dataclass
class JobView:
    """What the display shows, updated from events."""

    job: dict[str, Any]
    report: dict[str, Any] = field(default_factory=dict)
    eta_seconds: float | None = None
    in_flight: int | None = None
    note: str = ""

    @property
    def status(self) -> str:
        return str(self.job.get("status", "?"))

    def apply(self, event: Event) -> bool:
        """Take one event in; True when the job is finished."""
        try:
            data = json.loads(event.data) if event.data else {}
        except ValueError:
            return False
        if not isinstance(data, dict):
            return False
        if event.event in ("progress", "finished"):
            self.job = data.get("job") or self.job
            self.report = data.get("report") or self.report
            if event.event == "progress":
                self.eta_seconds = data.get("eta_seconds")
            in_flight = data.get("in_flight", self.report.get("in_flight"))
            self.in_flight = in_flight if isinstance(in_flight, int) else self.in_flight
            self.note = ""
        elif event.event == "status" and "to" in data:
            self.job = {**self.job, "status": data["to"]}
        return event.event == "finished"

    def render(self) -> RenderableType:
        progress = self.job.get("progress") or {}
        total = int(progress.get("total") or 0)
        accepted = int(progress.get("accepted") or self.report.get("accepted") or 0)
        bar = Progress(
            TextColumn("accepted"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[s]}"),
        )
        bar.add_task("", total=total or None, completed=accepted, s=self.status)
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        report = self.report
        table.add_row("candidates", str(report.get("candidates", "-")))
        rejected = report.get("rejected_by_reason") or {}
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(rejected.items(), key=lambda kv: -kv[1]))
        table.add_row(
            "rejected",
            f"{report.get('rejected', progress.get('rejected', 0))}"
            + (f" ({reasons})" if reasons else ""),
        )
        tps = report.get("tokens_per_second")
        if tps is None and report.get("wall_seconds"):
            tokens = report.get("tokens")
            total_tokens = tokens.get("total") if isinstance(tokens, dict) else tokens
            if isinstance(total_tokens, int):
                tps = total_tokens / float(report["wall_seconds"])
        table.add_row("tokens/s", f"{tps:.1f}" if isinstance(tps, int | float) else "-")
        if self.in_flight is not None:
            table.add_row("teacher in flight", str(self.in_flight))
        eta = self.eta_seconds
        table.add_row("ETA", f"{eta:.0f} s" if isinstance(eta, int | float) else "-")
        health = self.job.get("health") or {}
        state = health.get("state", "?")
        message = health.get("message") or ""
        colour = "green" if state == "ok" else "yellow"
        table.add_row(
            "health", f"[{colour}]{state}[/{colour}]" + (f": {message}" if message else "")
        )
        if self.note:
            table.add_row("", f"[dim]{self.note}[/dim]")
        return Group(bar, table)

    def summary(self) -> str:
        """The final line: status and counts."""
        p = self.job.get("progress") or {}
        line = (
            f"{self.status}: {p.get('accepted', 0)} of {p.get('total', 0)} accepted, "
            f"{p.get('rejected', 0)} rejected, {p.get('failed', 0)} failed"
        )
        if self.job.get("error"):
            line += f" ({' '.join(str(self.job['error']).split())})"
        return line


def _events(api: Api, job_id: str, view: JobView, live: Live) -> Iterator[Event]:
    """The job's events across reconnects (`Last-Event-ID`), until `finished` or the job ends."""
    last_id: str | None = None
    failing_since: float | None = None
    timeout = httpx.Timeout(10.0, read=READ_TIMEOUT_S)
    while True:
        headers = {"accept": "text/event-stream"}
        if last_id is not None:
            headers["last-event-id"] = last_id
        try:
            with api.http.stream(
                "GET", f"/v1/jobs/{job_id}/events", headers=headers, timeout=timeout
            ) as response:
                if response.is_error:
                    response.read()
                    raise ClientError(error_line(response), status=response.status_code)
                failing_since = None
                for event in parse_sse(response.iter_lines()):
                    if event.id is not None:
                        last_id = event.id
                    yield event
                    if event.event == "finished":
                        return
            reason = "the stream ended"
        except httpx.TransportError as exc:
            reason = type(exc).__name__
        # the job may have ended while we were away: then its final state is all to show
        with contextlib.suppress(ClientError):
            view.job = api.get(f"/v1/jobs/{job_id}")
        if view.status in TERMINAL:
            return
        now = time.monotonic()
        failing_since = failing_since or now
        if now - failing_since > RECONNECT_GIVE_UP_S:
            raise ClientError(f"lost the event stream of job {job_id} ({reason})")
        view.note = f"reconnecting ({reason})"
        live.update(view.render())
        time.sleep(1.0)


def watch(api: Api, job_id: str, console: Console) -> JobView:
    """Show the job live until it ends; the final view."""
    view = JobView(job=api.get(f"/v1/jobs/{job_id}"))
    console.print(f"job {job_id} ({view.job.get('kind')}): Ctrl-C stops watching, not the job")
    if view.status in TERMINAL:
        view.report = api.get(f"/v1/jobs/{job_id}/report")
        return view
    with Live(view.render(), console=console, refresh_per_second=4, transient=False) as live:
        try:
            for event in _events(api, job_id, view, live):
                done = view.apply(event)
                live.update(view.render())
                if done:
                    break
        except ClientError as exc:
            if exc.status not in (404, 405):
                raise
            _poll(api, job_id, view, live)  # a server without the events route
        if view.status not in TERMINAL or not view.report:  # `finished` carried no job
            view.job = api.get(f"/v1/jobs/{job_id}")
            view.report = api.get(f"/v1/jobs/{job_id}/report")
        live.update(view.render())
    return view


def _poll(api: Api, job_id: str, view: JobView, live: Live) -> None:
    while True:
        view.job = api.get(f"/v1/jobs/{job_id}")
        view.report = api.get(f"/v1/jobs/{job_id}/report")
        live.update(view.render())
        if view.status in TERMINAL:
            return
        time.sleep(POLL_S)
