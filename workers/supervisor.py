"""`distillery worker --processes N`: N worker processes on one machine, under one parent.

One worker process is one event loop on one core: with a fast remote teacher its CPU (HTTP
client, curation, storing results) is what limits how many requests it keeps in flight. The
parent starts N children, each the ordinary single-process worker (``distillery worker
--processes 1``) with its own worker id (``<hostname>-<pid>``, or ``<DISTILLERY_WORKER_ID>-<i>``
when that is set) and ``ceil(max_concurrency / N)`` of the teacher's requests, so together they
never ask the teacher for more than the setting allows.

The parent forwards SIGTERM and SIGINT to every child (a second signal is forwarded too: the
children then release what they hold at once), waits for them, and exits non-zero when one
failed. A child that dies by a signal it was not sent by the parent (``kill -9``, the OOM
killer) is started again; its tasks come back through their leases, like any dead worker's.
Children run in their own process group (a terminal's Ctrl-C reaches the parent alone, which
forwards it once) and get SIGTERM should the parent die (Linux).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType

log = logging.getLogger(__name__)

IN_PROCESS_BACKENDS = frozenset({"vllm", "transformers"})  # each process would load the model
RESTARTS_PER_MINUTE = 5  # a child dying faster than this is a crash loop: give up
POLL_S = 0.2
PR_SET_PDEATHSIG = 1


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def default_processes(backend: str) -> int:
    """What keeps the teacher full: one process per usable core for a remote teacher (the
    workers' CPU is the limit), one for an in-process model (a second would load it again)."""
    return 1 if backend in IN_PROCESS_BACKENDS else usable_cores()


def share(max_concurrency: int, processes: int) -> int:
    """Each child's share of the teacher's requests in flight."""
    return max(1, math.ceil(max_concurrency / processes))


def child_environments(
    base: Mapping[str, str],
    processes: int,
    *,
    overrides: Mapping[str, str],
    worker_id: str | None,
) -> list[dict[str, str]]:
    """The environment of each child: `base` with `overrides`, one process each, no metrics
    server of their own (the parent serves their sum), and a worker id of their own."""
    envs = []
    for i in range(processes):
        env = {k: v for k, v in base.items() if k != "DISTILLERY_WORKER_METRICS_PORT"}
        env.update(overrides)
        env["DISTILLERY_WORKER_PROCESSES"] = "1"
        if worker_id is not None:  # set explicitly: the default (hostname-pid) is unique already
            env["DISTILLERY_WORKER_ID"] = f"{worker_id}-{i + 1}"
        envs.append(env)
    return envs


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """In the child before exec: SIGTERM when the parent dies (Linux prctl), best effort."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class _Child:
    index: int
    env: dict[str, str]
    popen: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    deaths: list[float] = field(default_factory=list)


class Supervisor:
    """Runs `argv` once per environment in `envs`, restarts children killed by a signal, and
    forwards SIGTERM/SIGINT; :meth:`run` returns the exit status for the parent."""

    def __init__(self, argv: Sequence[str], envs: Sequence[dict[str, str]]) -> None:
        self.argv = list(argv)
        self.children = [_Child(i, dict(env)) for i, env in enumerate(envs)]
        self.stopping = False
        self.status = 0

    def _spawn(self, child: _Child) -> None:
        preexec = _die_with_parent if sys.platform.startswith("linux") else None
        child.popen = subprocess.Popen(
            self.argv, env=child.env, process_group=0, preexec_fn=preexec
        )
        child.started_at = time.monotonic()
        log.info(
            "worker process %d started (pid %d)",
            child.index + 1,
            child.popen.pid,
            extra={"action": "worker_process_started", "pid": child.popen.pid},
        )

    def _forward(self, signum: int, _frame: FrameType | None) -> None:
        first = not self.stopping
        self.stopping = True
        log.info(
            "%s: %s the worker processes",
            signal.Signals(signum).name,
            "stopping" if first else "releasing at once in",
            extra={"action": "worker_processes_stopping"},
        )
        for child in self.children:
            if child.popen is not None and child.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.popen.send_signal(signum)

    def run(self) -> int:
        previous = {s: signal.signal(s, self._forward) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            for child in self.children:
                self._spawn(child)
            while any(c.popen is not None for c in self.children):
                time.sleep(POLL_S)
                for child in self.children:
                    self._check(child)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return self.status

    def _check(self, child: _Child) -> None:
        popen = child.popen
        if popen is None or (code := popen.poll()) is None:
            return
        child.popen = None
        pid = popen.pid
        extra = {"action": "worker_process_exited", "pid": pid, "returncode": code}
        if code < 0 and not self.stopping:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            now = time.monotonic()
            child.deaths = [t for t in child.deaths if now - t < 60] + [now]
            if len(child.deaths) > RESTARTS_PER_MINUTE:
                log.error("worker process %d (pid %d) killed by %s %d times in a minute: "
                          "stopping", child.index + 1, pid, name, len(child.deaths),
                          extra=extra)  # fmt: skip
                self._fail(1)
                return
            log.warning("worker process %d (pid %d) killed by %s: starting it again (its "
                        "tasks come back when their leases lapse)", child.index + 1, pid, name,
                        extra=extra)  # fmt: skip
            self._spawn(child)
            return
        if code == 0:
            log.info("worker process %d (pid %d) stopped", child.index + 1, pid, extra=extra)
            return
        log.error("worker process %d (pid %d) exited with %d", child.index + 1, pid, code,
                  extra=extra)  # fmt: skip
        self._fail(code if code > 0 else 1)

    def _fail(self, code: int) -> None:
        """A child failed: the parent exits non-zero once the others have stopped."""
        self.status = self.status or code
        if not self.stopping:
            self._forward(signal.SIGTERM, None)
