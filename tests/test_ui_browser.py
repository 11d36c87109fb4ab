"""The web page in a real headless Chromium (Debian's `chromium`, driven by Playwright).

`distillery serve` runs as a subprocess (auth on, SQLite file, the loopback emulator as the
teacher). The browser enters the key once, sees the datasets, watches a labeling job progress
live on its page (the event stream) until it shows finished, opens the report, an accepted
example and one the curation rejected (a seed planted to match a benchmark: `contaminated`).
Screenshots go to tests/artifacts/ui/ (or $DISTILLERY_UI_ARTIFACTS); their paths are printed.

scripts/test installs Debian's chromium when it is missing; `playwright install` is never used.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.emulator_proc import running_emulator
from tests.test_auth import create_key
from tests.test_readme import ROOT, free_port

ARTIFACTS = Path(os.environ.get("DISTILLERY_UI_ARTIFACTS", ROOT / "tests" / "artifacts" / "ui"))
PROMPTS = 24
HOSTILE = "<script>window.__owned = true</script> Describe what this tag would do."
CONTAMINATED = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips "
    "in May. How many clips did Natalia sell altogether?"
)
# the values the live page showed for "completed", recorded as they change
RECORD_PROGRESS = """
window.__seen = [];
document.addEventListener("DOMContentLoaded", () => {
  const el = document.querySelector('[data-field="completed"]');
  if (!el) return;
  window.__seen.push(el.textContent);
  new MutationObserver(() => window.__seen.push(el.textContent))
    .observe(el, {childList: true, characterData: true, subtree: true});
});
"""


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail(
            "Debian's chromium is not installed: apt-get install -y chromium (scripts/test)"
        )
    return found


@pytest.fixture
def browser() -> Iterator[Browser]:
    args = ["--no-sandbox"] if os.geteuid() == 0 else []  # root in CI containers
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=args
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """`distillery serve` with auth on and the emulator as teacher; a tenant's key."""
    port = free_port()
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'distillery.db'}"
    # slow enough answers, few at once: the job runs for seconds and the page sees it move
    with running_emulator(model="teacher", base_latency=0.25) as emulator:
        env = {
            **os.environ,
            "DISTILLERY_DATABASE_URL": database_url,
            "DISTILLERY_TEACHER__BASE_URL": emulator.base_url,
            "DISTILLERY_POLL_INTERVAL_SECONDS": "0.1",
            "DISTILLERY_WORKER_CONCURRENCY": "2",
            "DISTILLERY_AUTH": "true",
        }
        log = (tmp_path / "serve.log").open("w")
        server = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
            env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"
            wait_ready(base, server, tmp_path / "serve.log")
            yield {"url": base, "key": create_key(database_url, "alice")}
        finally:
            os.kill(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
            log.close()


def wait_ready(base: str, server: subprocess.Popen[bytes], log: Path) -> None:
    for _ in range(600):
        if server.poll() is not None:
            pytest.fail(f"serve exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        server_wait(server)
    pytest.fail(f"serve never became ready: {log.read_text()[-2000:]}")


def server_wait(server: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.wait(timeout=0.1)


def prepare(api: httpx.Client) -> tuple[str, str]:
    """A dataset of prompts (one hostile, one copied from a benchmark) and that benchmark."""
    body = {"name": "support-answers", "description": "Short answers to everyday questions"}
    ds = api.post("/v1/datasets", json=body)
    assert ds.status_code == 201, ds.text
    prompts = [{"instruction": f"Explain in two sentences why topic {i} matters to beginners."}
               for i in range(PROMPTS - 2)]  # fmt: skip
    prompts += [{"instruction": HOSTILE}, {"instruction": CONTAMINATED}]
    seeds = api.post(f"/v1/datasets/{ds.json()['id']}/seeds", json={"examples": prompts})
    assert seeds.status_code == 201 and seeds.json()["inserted"] == PROMPTS, seeds.text
    bench = api.post("/v1/benchmarks", json={"name": "gsm8k-sample", "items": [{"text": (
        "Natalia sold clips to 48 of her friends in April, and then she sold half as many "
        "clips in May."
    )}]})  # fmt: skip
    assert bench.status_code == 201, bench.text
    return ds.json()["id"], bench.json()["id"]


def shot(page: Page, name: str, saved: list[Path]) -> None:
    path = ARTIFACTS / f"{len(saved) + 1:02d}-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    saved.append(path)


def test_browser_watches_a_job_and_browses_examples(
    browser: Browser, served: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []
    base, key = served["url"], served["key"]
    api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    dataset_id, bench_id = prepare(api)

    context = browser.new_context(viewport={"width": 1360, "height": 900})
    context.add_init_script(RECORD_PROGRESS)
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.set_default_timeout(60_000)
    try:
        # the key, entered once
        page.goto(f"{base}/ui")
        expect(page).to_have_url(f"{base}/ui/login?next=%2Fui")
        page.fill("#key", "dk_not-a-key")
        page.click("#login-form button[type=submit]")
        expect(page.locator("#login-error")).to_contain_text("not valid")
        page.fill("#key", key)
        shot(page, "login", saved)
        page.click("#login-form button[type=submit]")
        expect(page).to_have_url(f"{base}/ui")
        table = page.locator("#datasets")
        expect(table).to_contain_text("support-answers")
        expect(table.locator("tbody tr").first).to_contain_text(str(PROMPTS))
        shot(page, "datasets", saved)

        # a job started through the API, watched live on its page
        job = api.post("/v1/jobs", json={
            "dataset_id": dataset_id, "kind": "labeling",
            "params": {"chunk_size": 1, "decontaminate": [bench_id]},
        })  # fmt: skip
        assert job.status_code == 202, job.text
        job_id = job.json()["id"]
        page.goto(f"{base}/ui/datasets/{dataset_id}")
        page.click(f"a[href='/ui/jobs/{job_id}']")
        expect(page).to_have_url(f"{base}/ui/jobs/{job_id}")
        live = page.locator("#job-live")
        expect(live).to_have_attribute("data-state", "live")
        page.wait_for_function(
            "() => Number(document.querySelector('[data-field=completed]').textContent) > 0"
        )
        shot(page, "job-running", saved)
        expect(live).to_have_attribute("data-state", "finished", timeout=120_000)
        expect(page.locator("#live-state")).to_have_text("finished · succeeded")
        expect(page.locator("h1 [data-field=status]")).to_have_text("succeeded")
        expect(page.locator("[data-field=completed]")).to_have_text(str(PROMPTS))
        expect(page.locator("[data-field=accepted]")).to_have_text(str(PROMPTS - 1))
        expect(page.locator("[data-field=rejected]")).to_have_text("1")
        expect(page.locator("#rejections svg")).to_contain_text("contaminated")
        assert page.locator("#task-log tbody tr").count() > PROMPTS  # claimed, succeeded, ...
        seen = [int(v.replace(",", "")) for v in page.evaluate("window.__seen")]
        assert any(0 < v < PROMPTS for v in seen), f"no progress seen between 0 and the end: {seen}"
        assert seen == sorted(seen), seen
        shot(page, "job-finished", saved)
        page.click("header nav a[href='/ui/jobs']")
        expect(page.locator("table.jobs tbody tr").first).to_contain_text("succeeded")
        shot(page, "jobs", saved)
        page.goto(f"{base}/ui/jobs/{job_id}")

        # the report
        page.click("#report-link")
        expect(page).to_have_url(f"{base}/ui/jobs/{job_id}/report")
        summary = page.locator("#report-summary")
        expect(summary.locator("dd").first).to_have_text(str(PROMPTS))
        expect(page.locator("svg[aria-label='rejections by reason']")).to_contain_text(
            "contaminated"
        )
        expect(page.locator("main")).to_contain_text("total tokens")
        shot(page, "report", saved)

        # the dataset's counts, then the examples of the job: the hostile prompt shows as text
        page.click(f"main .crumbs a[href='/ui/datasets/{dataset_id}']")
        expect(page.locator("table.counts")).to_contain_text("generated")
        shot(page, "dataset", saved)
        page.goto(f"{base}/ui/jobs/{job_id}")
        page.click("text=examples of this job")
        expect(page.locator("#examples tbody tr")).to_have_count(PROMPTS)
        shot(page, "examples", saved)
        page.locator("#examples a", has_text="<script>").click()
        conversation = page.locator("#conversation")
        expect(conversation.locator(".role-user .content")).to_have_text(HOSTILE)
        expect(conversation.locator(".role-assistant .content")).to_contain_text("[")
        provenance = page.locator("#provenance")
        expect(provenance).to_contain_text("labeling")
        expect(provenance).to_contain_text("teacher")
        expect(provenance).to_contain_text(job_id[-8:])
        assert page.evaluate("window.__owned === undefined")
        shot(page, "example", saved)

        # the rejected one, found with the filters: it says why
        page.go_back()
        page.select_option("#example-filters select[name=status]", "rejected")
        page.click("#example-filters button[type=submit]")
        rows = page.locator("#examples tbody tr")
        expect(rows).to_have_count(1)
        expect(rows).to_contain_text("contaminated")
        rows.locator("a").first.click()
        rejection = page.locator("#rejection")
        expect(rejection).to_contain_text("Rejected: contaminated")
        expect(rejection).to_contain_text("gsm8k-sample")
        expect(page.locator("#conversation")).to_contain_text("Natalia sold clips")
        shot(page, "example-rejected", saved)

        # sign out: the key is forgotten
        page.click("header form.logout button")
        expect(page).to_have_url(f"{base}/ui/login")
        page.goto(f"{base}/ui/jobs")
        expect(page).to_have_url(f"{base}/ui/login?next=%2Fui%2Fjobs")
        assert dialogs == []
    finally:
        with capsys.disabled():
            print(f"\nUI screenshots ({ARTIFACTS}):")
            for path in saved:
                print(f"  {path}")
        context.close()
        api.close()
