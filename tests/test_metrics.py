"""/metrics scraped over HTTP: a `distillery worker --metrics-port` subprocess runs a labeling job
with rejections against the loopback emulator (two 429s injected); its counters must equal the
job's report, and the API's gauges must equal the database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from app import workers
from app.config import Settings
from app.models import Example, Job, Task
from app.state import Database
from tests.conftest import LiveServer
from tests.emulator_proc import running_emulator
from tests.factories import make_dataset, upload_seeds
from tests.test_api_datasets import assert_error
from tests.test_readme import free_port

ROOT = Path(__file__).resolve().parent.parent
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str, **kwargs: object) -> Samples:
    response = httpx.get(url, timeout=30, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    return {dict(k)[label]: v for (n, k), v in samples.items() if n == name and v}


@pytest.fixture
def worker_and_api(settings: Settings) -> Iterator[tuple[str, LiveServer]]:
    api = LiveServer(settings.model_copy(update={"metrics_cache_seconds": 0})).start()
    faults = {"rate_limit": {"count": 2, "retry_after_s": 0.05}}
    with running_emulator(model="teacher", base_latency=0.01, faults=faults) as emulator:
        port = free_port()
        env = {
            **os.environ,
            "DISTILLERY_TEACHER__BASE_URL": emulator.base_url,
            "DISTILLERY_TEACHER__BACKEND": "openai",
            "DISTILLERY_TEACHER__MODEL": "teacher",
            "DISTILLERY_POLL_INTERVAL_SECONDS": "0.1",
        }
        worker = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker", "--database-url", settings.database_url,
             "--metrics-port", str(port)],
            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}/metrics"
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                assert worker.poll() is None, worker.communicate()[1][-3000:]
                try:
                    if httpx.get(url).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            yield url, api
        finally:
            os.kill(worker.pid, signal.SIGTERM)
            try:
                _, log = worker.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(worker.pid, signal.SIGKILL)
                _, log = worker.communicate()
            api.stop()
            print(log[-4000:])  # shown when the test fails


async def test_counters_match_the_report_and_gauges_the_database(
    worker_and_api: tuple[str, LiveServer], database: Database
) -> None:
    worker_url, api = worker_and_api
    with httpx.Client(base_url=api.url, timeout=60) as client:
        ds = make_dataset(client)
        seeds = [{"instruction": f"Explain topic number {i} in one line"} for i in range(10)]
        seeds += [{"instruction": f"Describe the image number {i} in detail"} for i in range(3)]
        upload_seeds(client, ds["id"], seeds)
        body = {"dataset_id": ds["id"], "kind": "labeling",
                "params": {"chunk_size": 4, "filters": ["not_empty", "blocklist"]}}  # fmt: skip
        job = client.post("/v1/jobs", json=body).json()
        deadline = time.monotonic() + 60
        while client.get(f"/v1/jobs/{job['id']}").json()["status"] in ("queued", "running"):
            assert time.monotonic() < deadline, client.get(f"/v1/jobs/{job['id']}").json()
            time.sleep(0.2)
        report = client.get(f"/v1/jobs/{job['id']}/report").json()
    assert report["status"] == "succeeded"
    assert report["accepted"] == 10 and report["rejected_by_reason"] == {"blocklist": 3}

    worker = scrape(worker_url)
    kind = (("kind", "labeling"),)
    assert worker[("distillery_worker_examples_accepted_total", kind)] == report["accepted"]
    rejected = by_label(worker, "distillery_worker_examples_rejected_total", "reason")
    assert rejected == report["rejected_by_reason"]
    tokens = by_label(worker, "distillery_teacher_tokens_total", "type")
    assert tokens == {"prompt": report["tokens"]["prompt"],
                      "completion": report["tokens"]["completion"]}  # fmt: skip
    async with database.reading() as session:
        succeeded = await session.scalar(
            select(func.count()).where(
                Task.job_id == uuid.UUID(job["id"]), Task.status == "succeeded"
            )
        )
        task_counts = dict(
            (await session.execute(select(Task.status, func.count()).group_by(Task.status)))
            .tuples()
            .all()
        )
        job_counts = dict(
            (await session.execute(select(Job.status, func.count()).group_by(Job.status)))
            .tuples()
            .all()
        )
        example_counts: Counter[tuple[str, str]] = Counter()
        rows = await session.execute(
            select(Example.status, Example.reject_reason, func.count()).group_by(
                Example.status, Example.reject_reason
            )
        )
        for status, reason, n in rows.tuples():
            example_counts[
                (status, reason or "unknown") if status == "rejected" else (status, "")
            ] += n
    assert worker[("distillery_worker_tasks_succeeded_total", kind)] == succeeded == 4
    assert worker[("distillery_worker_tasks_claimed_total", kind)] == succeeded
    outcomes = by_label(worker, "distillery_teacher_requests_total", "outcome")
    assert outcomes == {"ok": 13, "http_429": 2}
    assert worker[("distillery_teacher_request_seconds_count", ())] == 13
    assert worker[("distillery_teacher_requests_in_flight", ())] == 0

    api_samples = scrape(f"{api.url}/metrics")
    assert by_label(api_samples, "distillery_jobs", "status") == job_counts
    assert by_label(api_samples, "distillery_tasks", "status") == task_counts
    examples = {
        (dict(k)["status"], dict(k)["reason"]): v
        for (n, k), v in api_samples.items()
        if n == "distillery_examples"
    }
    assert examples == dict(example_counts)
    assert api_samples[("distillery_queue_depth", ())] == task_counts.get("queued", 0)
    async with database.reading() as session:  # the worker's processes, all heartbeating
        window = workers.live_window(Settings().heartbeat_seconds)
        alive = len(await workers.live_workers(session=session, window_seconds=window))
    assert api_samples[("distillery_workers_alive", ())] == alive >= 1
    assert api_samples[("distillery_oldest_queued_task_age_seconds", ())] == 0


def test_metrics_need_a_key_when_not_public(settings: Settings) -> None:
    closed = settings.model_copy(update={"auth": True, "metrics_public": False})
    live = LiveServer(closed).start()
    try:
        assert_error(httpx.get(f"{live.url}/metrics"), 401, "unauthorized")
    finally:
        live.stop()
    live = LiveServer(settings.model_copy(update={"auth": True})).start()
    try:
        samples = scrape(f"{live.url}/metrics")  # public by default, keys or not
        assert ("distillery_queue_depth", ()) in samples
    finally:
        live.stop()
