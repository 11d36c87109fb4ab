"""The web page at /ui over plain HTTP: every page answers, hostile text shows as text, a
missing key leads to the login page, the cookie is HttpOnly and SameSite=Strict, and another
tenant's data stays invisible. (tests/test_ui_browser.py drives the same pages in Chromium.)"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from app.config import Settings
from app.hashing import content_hash
from app.ids import uuid7
from app.models import Example
from app.schemas import JobReport
from app.state import Database
from app.ui import render
from tests.conftest import LiveServer
from tests.factories import make_dataset, upload_seeds
from tests.test_api_datasets import assert_error
from tests.test_auth import cli, create_key

HOSTILE = "<script>alert('owned')</script><img src=x onerror=alert(1)>"


def plant_rejected(database_url: str, dataset_id: str, instruction: str) -> str:
    """A generated example the curation rejected, as a worker would have stored it."""

    async def insert() -> str:
        db = Database.from_url(database_url)
        try:
            async with db.transaction() as session:
                example = Example(
                    id=uuid7(), dataset_id=uuid.UUID(dataset_id), origin="generated",
                    status="rejected", instruction=instruction, input="",
                    output="I'm sorry, I can't help with that.",
                    content_hash=content_hash(instruction, "", "refused", None),
                    reject_reason="refusal", reject_detail="output: i'm sorry, i can't",
                    method="labeling", teacher_backend="openai", teacher_model="teacher-7b",
                    prompt_id="labeling", prompt_version="v1", scores={"overall": 2},
                )  # fmt: skip
                session.add(example)
                return str(example.id)
        finally:
            await db.engine.dispose()

    return asyncio.run(insert())


@pytest.fixture
def auth_server(settings: Settings) -> Iterator[LiveServer]:
    server = LiveServer(settings.model_copy(update={"auth": True})).start()
    yield server
    server.stop()


@contextmanager
def sign_in(server: LiveServer, key: str) -> Iterator[httpx.Client]:
    """A client holding the UI's cookie, got through the login form."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        response = client.post("/ui/login", data={"key": key, "next": "/ui"})
        assert response.status_code == 303, response.text
        assert response.headers["location"] == "/ui"
        yield client


def test_pages_answer_and_escape_hostile_text(client: httpx.Client, database_url: str) -> None:
    ds = make_dataset(client, name=f"ds {HOSTILE}", description=f"about {HOSTILE}")
    upload_seeds(client, ds["id"], [{"instruction": f"Explain {HOSTILE}", "output": "ok"}])
    upload_seeds(client, ds["id"], [{"messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi there"},
        {"role": "assistant", "content": f"hello {HOSTILE}"},
    ]}])  # fmt: skip
    rejected = plant_rejected(database_url, ds["id"], f"Refuse {HOSTILE}")
    job = client.post("/v1/jobs", json={"dataset_id": ds["id"], "kind": "labeling"})
    assert job.status_code == 202, job.text
    job_id = job.json()["id"]
    seeds = client.get(f"/v1/datasets/{ds['id']}/examples", params={"origin": "seed"}).json()
    pages = [
        "/ui", "/ui/jobs", "/ui/jobs?status=queued", f"/ui/datasets/{ds['id']}",
        f"/ui/datasets/{ds['id']}/examples", f"/ui/jobs/{job_id}", f"/ui/jobs/{job_id}/report",
        f"/ui/datasets/{ds['id']}/examples?status=rejected&reason=refusal&origin=generated",
        f"/ui/examples/{rejected}", *(f"/ui/examples/{e['id']}" for e in seeds["data"]),
    ]  # fmt: skip
    for path in pages:
        response = client.get(path)
        assert response.status_code == 200, (path, response.text[:500])
        assert response.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in response.headers["content-security-policy"]
        html = response.text
        assert "<script>alert" not in html and "<img src=x" not in html, path
        assert re.search(r"<script\b(?![^>]*src=\"/ui/static/ui\.js\")", html) is None, path
    # the hostile text is shown, as text
    assert "ds &lt;script&gt;alert(&#39;owned&#39;)&lt;/script&gt;" in client.get("/ui").text
    detail = client.get(f"/ui/examples/{rejected}").text
    assert "Refuse &lt;script&gt;" in detail
    assert 'Rejected: <span class="reason">refusal</span>' in detail
    assert "output: i&#39;m sorry, i can&#39;t" in detail  # why
    assert "teacher-7b" in detail and "labeling" in detail and "overall" in detail
    conversation = client.get(f"/ui/examples/{seeds['data'][1]['id']}").text
    for turn in ("be brief", "hi there", "hello &lt;script&gt;"):
        assert turn in conversation
    # the browser's filters narrow the list
    listing = client.get(f"/ui/datasets/{ds['id']}/examples", params={"reason": "refusal"}).text
    assert listing.count('href="/ui/examples/') == 1 and rejected in listing
    listing = client.get(f"/ui/datasets/{ds['id']}/examples", params={"origin": "seed"}).text
    assert listing.count('href="/ui/examples/') == 2 and rejected not in listing
    assert "refusal" in client.get(f"/ui/datasets/{ds['id']}").text  # chart of reasons


def test_static_files_and_bad_input(client: httpx.Client) -> None:
    for name, media in (("ui.css", "text/css"), ("ui.js", "text/javascript"),
                        ("favicon.svg", "image/svg+xml")):  # fmt: skip
        response = client.get(f"/ui/static/{name}")
        assert response.status_code == 200 and response.headers["content-type"].startswith(media)
        assert response.content
    for name in ("nope.css", "..%2Froutes.py", "__init__.py", ".hidden.css"):
        assert client.get(f"/ui/static/{name}").status_code == 404, name
    ds = make_dataset(client)["id"]
    page = client.get(f"/ui/datasets/{ds}/examples", params={"origin": "martian"})
    assert page.status_code == 422 and "origin: must be one of seed, generated" in page.text
    page = client.get(f"/ui/datasets/{ds}/examples", params={"job": "x"})
    assert page.status_code == 422 and "job: not a job id" in page.text
    assert client.get("/ui/jobs", params={"status": "done"}).status_code == 422
    cursor = client.get(f"/ui/datasets/{ds}/examples", params={"cursor": "!!"})
    assert cursor.status_code == 422 and "cursor" in cursor.text
    for path in (f"/ui/datasets/{uuid.uuid4()}", "/ui/datasets/not-an-id",
                 f"/ui/jobs/{uuid.uuid4()}", f"/ui/examples/{uuid.uuid4()}"):  # fmt: skip
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"].startswith("text/html")
        assert "not found" in response.text
    assert_error(client.get(f"/ui/jobs/{uuid.uuid4()}/events"), 404, "not_found")
    # without auth the login page has nothing to ask
    assert client.get("/ui/login").status_code == 303


def test_auth_login_cookie_and_tenants(auth_server: LiveServer, database_url: str) -> None:
    alice, bob = create_key(database_url, "alice"), create_key(database_url, "bob")
    api = httpx.Client(base_url=auth_server.url, headers={"Authorization": f"Bearer {alice}"})
    anon = httpx.Client(base_url=auth_server.url)
    with api, anon:
        ds = make_dataset(api, name="alice-private")
        upload_seeds(api, ds["id"], [{"instruction": "alice's secret prompt"}])
        job = api.post("/v1/jobs", json={"dataset_id": ds["id"], "kind": "labeling"}).json()
        example = api.get(f"/v1/datasets/{ds['id']}/examples").json()["data"][0]
        pages = [f"/ui/datasets/{ds['id']}", f"/ui/jobs/{job['id']}",
                 f"/ui/jobs/{job['id']}/report", f"/ui/datasets/{ds['id']}/examples",
                 f"/ui/examples/{example['id']}"]  # fmt: skip

        # no key: pages send the browser to the login page; the stream and fragment say 401
        for path in ["/ui", "/ui/jobs", *pages]:
            response = anon.get(path)
            assert response.status_code == 303, path
            assert response.headers["location"].startswith("/ui/login?next=%2Fui")
        assert_error(anon.get(f"/ui/jobs/{job['id']}/events"), 401, "unauthorized")
        assert_error(anon.get(f"/ui/jobs/{job['id']}/rejections"), 401, "unauthorized")
        form = anon.get("/ui/login", params={"next": f"/ui/jobs/{job['id']}"})
        assert form.status_code == 200 and 'type="password"' in form.text
        assert f'value="/ui/jobs/{job["id"]}"' in form.text
        # a key is not a bearer header here, nor a query parameter
        assert anon.get("/ui", headers={"Authorization": f"Bearer {alice}"}).status_code == 303

        wrong = anon.post("/ui/login", data={"key": "dk_wrong", "next": "/ui"})
        assert wrong.status_code == 401 and "not valid" in wrong.text
        assert "set-cookie" not in wrong.headers
        assert anon.post("/ui/login", data={"key": ""}).status_code == 401
        # only our own pages may post the form; the next page is always ours
        cross = anon.post(
            "/ui/login", data={"key": alice}, headers={"Origin": "https://evil.example"}
        )
        assert cross.status_code == 403 and "set-cookie" not in cross.headers
        elsewhere = anon.post("/ui/login", data={"key": alice, "next": "https://evil.example/"})
        assert elsewhere.headers["location"] == "/ui"
        assert (
            anon.post("/ui/login", data={"key": alice, "next": "//evil.example/ui"}).headers[
                "location"
            ]
            == "/ui"
        )

        response = anon.post("/ui/login", data={"key": alice, "next": f"/ui/jobs/{job['id']}"})
        assert response.status_code == 303
        assert response.headers["location"] == f"/ui/jobs/{job['id']}"
        cookie = response.headers["set-cookie"]
        assert cookie.startswith("distillery_key=dk_")
        for attribute in ("HttpOnly", "SameSite=strict", "Path=/ui"):
            assert attribute.lower() in cookie.lower(), cookie

    with sign_in(auth_server, alice) as a, sign_in(auth_server, bob) as b:
        listing = a.get("/ui")
        assert listing.status_code == 200 and "alice-private" in listing.text
        assert 'action="/ui/logout"' in listing.text
        for path in pages:
            assert a.get(path).status_code == 200, path
            response = b.get(path)
            assert response.status_code == 404, path
            assert "alice" not in response.text
        assert "alice-private" not in b.get("/ui").text
        assert job["id"] not in b.get("/ui/jobs").text
        assert_error(b.get(f"/ui/jobs/{job['id']}/events"), 404, "not_found")
        assert_error(b.get(f"/ui/jobs/{job['id']}/rejections"), 404, "not_found")

        # the stream under the cookie: a cancelled job sends its progress, then finished
        assert a.get(f"/ui/jobs/{job['id']}/events?last_event_id=x").status_code == 422
        api = httpx.Client(base_url=auth_server.url, headers={"Authorization": f"Bearer {alice}"})
        with api:
            assert api.post(f"/v1/jobs/{job['id']}/cancel").status_code == 202
        with a.stream("GET", f"/ui/jobs/{job['id']}/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            text = "".join(stream.iter_text())
        names = re.findall(r"^event: (\w+)$", text, re.MULTILINE)
        assert "progress" in names and names[-1] == "finished", names

        # no state changes on GET; logout is a POST that clears the cookie
        assert a.get("/ui/logout").status_code == 405
        out = a.post("/ui/logout")
        assert out.status_code == 303 and out.headers["location"] == "/ui/login"
        assert (
            'distillery_key=""' in out.headers["set-cookie"]
            or "Max-Age=0" in out.headers["set-cookie"]
        )
        assert a.get("/ui").status_code == 303

        # a revoked key stops working at once
        listing = cli(database_url, "keys", "list")
        bob_line = next(line for line in listing.splitlines() if " bob " in line)
        key_id = re.search(r"[0-9a-f]{8}-[0-9a-f-]{27}", bob_line).group(0)  # type: ignore[union-attr]
        cli(database_url, "keys", "revoke", key_id)
        assert b.get("/ui").status_code == 303


def test_report_kind_sections_are_tables_and_charts_of_escaped_text() -> None:
    """Every kind section of the report rendered from a JobReport: figures as text, charts as
    SVG, reasons and leaf paths escaped, no raw JSON."""
    sections = JobReport.model_validate({
        "job_id": str(uuid.uuid4()), "kind": "evol", "status": "succeeded", "stop_reason": None,
        "candidates": 0, "accepted": 0, "rejected": 0, "pending": 0, "rejected_by_reason": {},
        "duplicates": 0, "failed": 0, "tokens": {"prompt": 0, "completion": 0, "total": 0},
        "teacher_seconds": 0, "teacher_errors": {}, "last_teacher_error": None,
        "teacher_wait_seconds": 0, "wall_seconds": None, "examples_per_minute": None,
        "diversity": {"instructions": 0, "distinct_1": 0, "distinct_2": 0, "leading_words": []},
        "feedback": {
            "prompts_judged": 12, "prompts_with_pair": 9, "pairs": 1234,
            "margin": {"min": 1.5, "median": 3.25, "max": 8.0, "histogram": [
                {"low": b, "high": b + 1, "pairs": 1234 if b == 3 else 0} for b in range(10)]},
            "comparisons": 40, "disagreements": 5, "disagreement_rate": 0.125, "judge_failed": 2,
            "aspects": {"helpfulness": 6.5, HOSTILE: 7.0},
        },
        "soft_targets": {"examples": 3, "positions": 4567, "k": 20, "stored_bytes": 98765,
                         "bytes_per_token": 21.63},
        "dialogue": {"conversations": 7, "turns": {"2": 3, "10": 1, "1": 3}, "mean_turns": 2.71,
                     "full": 4, "truncated": 3, "cut_by_reason": {HOSTILE: 3},
                     "rejected_by_reason": {"too_few_turns": 2}},
        "evol": {"generations": [{"generation": 1, "evolved": 30, "accepted": 25, "pending": 0,
                                  "eliminated": {"evol_refusal": 4}, "rejected": {"near_dup": 1}}],
                 "operations": {"add_constraints": {"evolved": 30, "kept": 25}}},
        "curation": {"proposed": True, "leaves": 2, "leaves_met": 1, "quota": 20, "accepted": 13,
                     "coverage": [{"path": f"T/{HOSTILE}", "quota": 10, "accepted": 10,
                                   "rejected": 2, "rejected_by_reason": {"refusal": 2},
                                   "rounds": 3, "done": "quota met"},
                                  {"path": "T/b", "quota": 10, "accepted": 3, "rejected": 0,
                                   "rejected_by_reason": {}, "rounds": 1, "done": None}]},
    })  # fmt: skip
    html = render.ENV.get_template("_kind_sections.html").render(
        report=sections, kind_charts=render.kind_charts(sections)
    )
    assert "<script>alert" not in html and "&lt;script&gt;" in html
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    for figure in ("prompts judged 12", "preference pairs 1,234", "1.50 / 3.25 / 8.00",
                   "orders disagreed 5 (12.5%)", "helpfulness 6.50", "positions 4,567",
                   "bytes / token 21.63", "accepted conversations 7", "truncated 3",
                   "1 30 25 0 evol_refusal 4 near_dup 1", "add constraints 30 25 83%",
                   "leaves met 1 / 2", "accepted / quota 13 / 20", "3 / 10", "running",
                   "quota met"):  # fmt: skip
        assert figure in text, figure
    # the margin histogram keeps its bins' order; the turns chart orders by number of turns
    assert text.index("0–1") < text.index("3–4") < text.index("9–10")
    assert text.index("1 turn ") < text.index("2 turns") < text.index("10 turns")
    assert html.count('<figure class="chart">') == 4  # margins, turns, cut, rejected
    assert '"pairs":' not in html and "{" not in text  # no JSON left
