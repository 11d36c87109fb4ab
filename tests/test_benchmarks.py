"""Benchmarks as a resource, jobs that decontaminate against them, and dataset re-checks."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import httpx
import orjson
import pytest

from app import benchmarks as benchmarks_module
from app import contamination
from app.config import Settings
from tests.contamination_cases import BENCHMARK, CLEAN, LEAKS
from tests.factories import make_dataset, upload_seeds
from tests.selfinstruct_teacher import SelfInstructTeacher
from tests.test_api_datasets import assert_error
from tests.test_auth import auth_server, create_key  # noqa: F401 (fixture)
from tests.test_expansion import export, seeds, start, wait_for
from workers.teachers.base import Generation, TeacherRequest, TeacherResult, Usage

NDJSON = {"content-type": "application/x-ndjson"}
MATH = BENCHMARK[:12]  # the word problems of the labeled set


def create(client: httpx.Client, name: str = "mini", items: Sequence[str] = MATH, **extra: Any
           ) -> dict[str, Any]:  # fmt: skip
    body = {"name": name, "items": [{"text": t} for t in items], **extra}
    response = client.post("/v1/benchmarks", json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def leaks_of(items: range) -> list[tuple[int, str, str]]:
    return [leak for leak in LEAKS if leak[0] in items]


# --- the resource --------------------------------------------------------------------------


def test_benchmark_crud_json_and_jsonl(client: httpx.Client) -> None:
    made = create(client, default=True)
    assert made["name"] == "mini" and made["items"] == 12 and made["default"] is True
    assert set(made) == {"id", "name", "items", "default", "created_at"}
    lines = b"\n".join(orjson.dumps({"text": t}) for t in BENCHMARK[12:20]) + b"\n\n"
    jsonl = client.post("/v1/benchmarks", params={"name": "trivia"}, content=lines, headers=NDJSON)
    assert jsonl.status_code == 201, jsonl.text
    assert jsonl.json()["items"] == 8 and jsonl.json()["default"] is False
    assert client.get(f"/v1/benchmarks/{made['id']}").json() == made
    page = client.get("/v1/benchmarks", params={"limit": 1}).json()
    assert [b["id"] for b in page["data"]] == [made["id"]] and page["next_cursor"]
    rest = client.get("/v1/benchmarks", params={"limit": 1, "cursor": page["next_cursor"]}).json()
    assert [b["name"] for b in rest["data"]] == ["trivia"] and rest["next_cursor"] is None
    patched = client.patch(f"/v1/benchmarks/{made['id']}", json={"default": False})
    assert patched.status_code == 200 and patched.json()["default"] is False
    assert client.delete(f"/v1/benchmarks/{made['id']}").status_code == 204
    assert_error(client.get(f"/v1/benchmarks/{made['id']}"), 404, "not_found")
    assert_error(client.delete(f"/v1/benchmarks/{made['id']}"), 404, "not_found")
    assert [b["name"] for b in client.get("/v1/benchmarks").json()["data"]] == ["trivia"]


def test_bad_uploads_name_the_fault_and_store_nothing(settings: Settings) -> None:
    from tests.conftest import LiveServer

    small = settings.model_copy(update={"max_examples_per_upload": 3, "max_field_chars": 50})
    server = LiveServer(small).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            post = client.post
            blank = {"name": "b", "items": [{"text": "fine"}, {"text": "  "}]}
            error = assert_error(post("/v1/benchmarks", json=blank), 422, "validation_error")
            assert error["details"][0]["loc"] == ["body", "items", 1, "text"]
            extra = {"name": "b", "items": [{"text": "x", "answer": "y"}]}
            error = assert_error(post("/v1/benchmarks", json=extra), 422, "validation_error")
            assert "items.0.answer" in error["message"]
            for body in ({"name": "b", "items": []}, {"items": [{"text": "x"}]}, [1]):
                assert_error(post("/v1/benchmarks", json=body), 422, "validation_error")
            long = {"name": "b", "items": [{"text": "x" * 51}]}
            error = assert_error(post("/v1/benchmarks", json=long), 422, "validation_error")
            assert "items.0.text" in error["message"]
            many = {"name": "b", "items": [{"text": "x"}] * 4}
            assert_error(post("/v1/benchmarks", json=many), 413, "payload_too_large")
            lines = b'{"text": "ok"}\n{"text": 5}\nnot json\n'
            response = post("/v1/benchmarks", params={"name": "b"}, content=lines, headers=NDJSON)
            error = assert_error(response, 422, "validation_error")
            assert error["message"].startswith("line 2: text:")
            assert [d["line"] for d in error["details"]] == [2, 3]
            nameless = post("/v1/benchmarks", content=b'{"text": "ok"}\n', headers=NDJSON)
            error = assert_error(nameless, 422, "validation_error")
            assert error["details"][0]["loc"] == ["query", "name"]
            assert_error(post("/v1/benchmarks", content=b"{", headers={"content-type":
                         "application/json"}), 400, "bad_request")  # fmt: skip
            assert_error(
                post("/v1/benchmarks", content=b"x", headers={"content-type": "text/csv"}),
                415,
                "unsupported_media_type",
            )
            assert client.get("/v1/benchmarks").json()["data"] == []
    finally:
        server.stop()


def test_jobs_validate_and_store_their_benchmarks(client: httpx.Client) -> None:
    ds = make_dataset(client)["id"]
    upload_seeds(client, ds, [{"instruction": "What is two plus two?"}])
    named = create(client, "named")
    default = create(client, "default", default=True)
    create(client, "not default")
    body: dict[str, Any] = {"dataset_id": ds, "kind": "labeling"}
    unknown = "0190d2a0-0000-7000-8000-000000000000"
    response = client.post(
        "/v1/jobs", json={**body, "params": {"decontaminate": [named["id"], unknown]}}
    )
    error = assert_error(response, 422, "validation_error")
    assert error["details"] == [
        {"loc": ["body", "params", "decontaminate", 1], "msg": f"benchmark {unknown} not found"}
    ]
    assert "decontaminate" in error["message"]
    for wrong in (["not-a-uuid"], named["id"]):
        response = client.post("/v1/jobs", json={**body, "params": {"decontaminate": wrong}})
        error = assert_error(response, 422, "validation_error")
        assert "decontaminate" in error["details"][0]["loc"]
    job = client.post("/v1/jobs", json={**body, "params": {"decontaminate": [named["id"]]}})
    assert job.status_code == 202, job.text
    assert job.json()["params"]["decontaminate"] == [named["id"], default["id"]]
    expansion = {"dataset_id": ds, "kind": "expansion", "params": {"target": 1}}
    job = client.post("/v1/jobs", json=expansion)
    assert job.status_code == 202, job.text
    assert job.json()["params"]["decontaminate"] == [default["id"]]


def test_benchmarks_belong_to_their_tenant(auth_server, database_url: str) -> None:  # noqa: F811
    alice, bob = create_key(database_url, "alice"), create_key(database_url, "bob")
    a = httpx.Client(base_url=auth_server.url, headers={"Authorization": f"Bearer {alice}"})
    b = httpx.Client(base_url=auth_server.url, headers={"Authorization": f"Bearer {bob}"})
    with a, b:
        mine = create(a, "alice's", default=True)
        for method, path, body in (
            ("GET", f"/v1/benchmarks/{mine['id']}", None),
            ("PATCH", f"/v1/benchmarks/{mine['id']}", {"default": False}),
            ("DELETE", f"/v1/benchmarks/{mine['id']}", None),
        ):
            assert_error(b.request(method, path, json=body), 404, "not_found")
        assert b.get("/v1/benchmarks").json()["data"] == []
        ds = b.post("/v1/datasets", json={"name": "bobs"}).json()["id"]
        b.post(f"/v1/datasets/{ds}/seeds", json={"examples": [{"instruction": "a question"}]})
        job = {"dataset_id": ds, "kind": "labeling", "params": {"decontaminate": [mine["id"]]}}
        error = assert_error(b.post("/v1/jobs", json=job), 422, "validation_error")
        assert error["details"][0]["loc"] == ["body", "params", "decontaminate", 0]
        # alice's default is not bob's
        plain = b.post("/v1/jobs", json={"dataset_id": ds, "kind": "labeling"}).json()
        assert plain["params"]["decontaminate"] == []
        check = b.post(f"/v1/datasets/{ds}/decontaminate", json={"benchmarks": [mine["id"]]})
        assert_error(check, 422, "validation_error")
        assert a.get(f"/v1/benchmarks/{mine['id']}").json()["default"] is True


# --- jobs reject leaks -----------------------------------------------------------------------


class AnswerScript:
    """A teacher double: answers a prompt containing a key with its scripted text, any other
    prompt with a clean sentence."""

    backend = "scripted"
    model = "answer-script"

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers

    async def generate(self, requests: Sequence[TeacherRequest]) -> list[TeacherResult]:
        results = []
        for request in requests:
            prompt = str(request.messages[-1]["content"])
            text = next(
                (a for key, a in self.answers.items() if key in prompt),
                "A short and careful answer that sticks to the question asked.",
            )
            results.append(
                TeacherResult(
                    generations=[Generation(text=text, finish_reason="stop")],
                    usage=Usage(prompt_tokens=5, completion_tokens=5),
                    latency_s=0.0,
                )
            )
        return results

    async def aclose(self) -> None:
        pass


def test_labeling_job_rejects_leaks_in_prompts_and_answers(fast: Settings) -> None:
    leaked_prompts = [text for _, _, text in leaks_of(range(12))][:8]  # exact and light edits
    clean_prompts = CLEAN[:10]
    answer_leak = CLEAN[10]  # a clean prompt whose answer quotes a benchmark problem
    teacher = AnswerScript({answer_leak: f"This is the classic one: {LEAKS[2][2]} Answer: 7."})
    for client in start(fast, teacher):
        bench = create(client, "school-math")
        ds = make_dataset(client)["id"]
        prompts = [*leaked_prompts, *clean_prompts, answer_leak]
        upload_seeds(client, ds, [{"instruction": p} for p in prompts])
        body = {"dataset_id": ds, "kind": "labeling", "params": {"decontaminate": [bench["id"]]}}
        job = wait_for(client, client.post("/v1/jobs", json=body).json()["id"])
        assert job["status"] == "succeeded", job
        generated = client.get(
            f"/v1/datasets/{ds}/examples", params={"origin": "generated", "limit": 1000}
        ).json()["data"]
        by_prompt = {r["instruction"]: r for r in generated}
        assert set(by_prompt) == set(prompts)
        for text in leaked_prompts:
            row = by_prompt[text]
            assert row["status"] == "rejected" and row["reject_reason"] == "contaminated"
            assert row["reject_detail"].startswith("instruction matches benchmark school-math item")
        for text in clean_prompts:
            assert by_prompt[text]["status"] == "accepted", by_prompt[text]
        row = by_prompt[answer_leak]
        assert row["reject_reason"] == "contaminated"
        assert row["reject_detail"].startswith("output matches benchmark school-math item 0 (")
        report = client.get(f"/v1/jobs/{job['id']}/report").json()
        assert report["rejected_by_reason"]["contaminated"] == len(leaked_prompts) + 1


class LeakingTeacher(SelfInstructTeacher):
    """Proposes benchmark items (exact and lightly edited) among fresh tasks, and quotes one in
    some answers."""

    def __init__(self, leaks: Sequence[str], answer_leak: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.leaks = list(leaks)
        self.answer_leak = answer_leak
        self.answers = 0
        self.leaky_answers = 0
        self.proposed_leaks = 0

    def fresh_instruction(self) -> str:
        if self.rng.random() < 0.3:
            self.proposed_leaks += 1
            return self.rng.choice(self.leaks)
        return super().fresh_instruction()

    def _answer(self, request: TeacherRequest) -> TeacherResult:
        prompt = str(request.messages[-1]["content"])
        if request.json_schema is not None or "Come up with" in prompt:
            return super()._answer(request)
        self.answers += 1
        if self.answers % 5 == 0:
            self.leaky_answers += 1
            text = f"Consider the well-known exercise: {self.answer_leak} The answer follows."
            return TeacherResult(
                generations=[Generation(text, "stop")], usage=Usage(5, 5), latency_s=0.0
            )
        return super()._answer(request)


def test_expansion_job_rejects_proposed_and_answered_leaks(fast: Settings) -> None:
    planted = [text for _, _, text in leaks_of(range(12))]
    teacher = LeakingTeacher(planted, answer_leak=LEAKS[9][2], seed=5)
    for client in start(fast, teacher):
        bench = create(client, "school-math", default=True)  # applied without being named
        ds = make_dataset(client)["id"]
        upload_seeds(client, ds, seeds())
        body = {
            "dataset_id": ds,
            "kind": "expansion",
            "params": {"target": 80, "calls_per_round": 4, "candidates_per_call": 10},
        }
        job = wait_for(client, client.post("/v1/jobs", json=body).json()["id"])
        assert job["status"] == "succeeded", job["error"]
        assert job["params"]["decontaminate"] == [bench["id"]]
        assert teacher.proposed_leaks >= 10
        accepted = export(client, ds, origin="generated")
        assert len(accepted) == 80
        index = contamination.build_index(("b", "m", i, t) for i, t in enumerate(MATH))
        for row in accepted:
            assert contamination.check(row["instruction"], index) is None, row
            assert contamination.check(row["output"], index) is None, row
        stored = client.get(f"/v1/datasets/{ds}/examples", params={"limit": 1000}).json()["data"]
        leaked = [r for r in stored if r["instruction"] in planted]
        # every proposed leak that a stored round kept (a round's results can be discarded:
        # a retried task, the target reached) is rejected, before answering (an earlier filter
        # may have rejected it first)
        assert all(r["status"] == "rejected" and r["output"] is None for r in leaked), leaked
        hits = {r["instruction"] for r in leaked if r["reject_reason"] == "contaminated"}
        assert len(hits) >= 5
        contaminated = [r for r in stored if r["reject_reason"] == "contaminated"]
        proposed = [r for r in contaminated if r["reject_detail"].startswith("instruction")]
        assert all(r["output"] is None for r in proposed)  # not answered
        answered = [r for r in contaminated if r["reject_detail"].startswith("output")]
        assert answered and all("school-math item 4 " in r["reject_detail"] for r in answered)


# --- re-checking a dataset -------------------------------------------------------------------


def test_dataset_recheck_rejects_held_leaks_in_batches(
    client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(benchmarks_module, "RECHECK_BATCH", 4)  # several batches
    math = create(client, "math", MATH)
    trivia = create(client, "trivia", BENCHMARK[12:20])
    ds = make_dataset(client)["id"]
    leaks = leaks_of(range(20))
    rows = [{"instruction": text, "output": "an answer"} for _, _, text in leaks]
    rows += [{"instruction": text, "output": "an answer"} for text in CLEAN[:15]]
    rows.append({"instruction": "A clean task with a leaky answer.", "output": MATH[4]})
    rows.append({"instruction": "A pending task quoting " + MATH[5]})  # no output: pending
    upload_seeds(client, ds, rows)
    path = f"/v1/datasets/{ds}/decontaminate"
    assert_error(client.post(path), 422, "validation_error")  # no defaults yet
    result = client.post(path, json={"benchmarks": [math["id"], trivia["id"]]})
    assert result.status_code == 200, result.text
    math_hits = sum(1 for item, _, _ in leaks if item < 12) + 2  # and the last two rows
    assert result.json() == {
        "checked": len(rows),
        "contaminated": len(leaks) + 2,
        "by_benchmark": {math["id"]: math_hits, trivia["id"]: len(leaks) + 2 - math_hits},
    }
    rejected = client.get(
        f"/v1/datasets/{ds}/examples", params={"status": "rejected", "limit": 1000}
    ).json()["data"]
    assert len(rejected) == len(leaks) + 2
    assert all(r["reject_reason"] == "contaminated" for r in rejected)
    detail = next(r["reject_detail"] for r in rejected if r["instruction"] == LEAKS[1][2])
    assert detail.startswith("instruction matches benchmark math item 0 (")
    assert detail.endswith(": " + MATH[0][:80] + "…")
    detail = next(r["reject_detail"] for r in rejected if r["output"] == MATH[4])
    assert detail.startswith("output matches benchmark math item 4 (")
    kept = client.get(f"/v1/datasets/{ds}/examples", params={"status": "accepted"}).json()
    assert {r["instruction"] for r in kept["data"]} == set(CLEAN[:15])
    # idempotent, and the defaults are used when no list is given
    client.patch(f"/v1/benchmarks/{math['id']}", json={"default": True})
    again = client.post(path).json()
    assert again == {"checked": 15, "contaminated": 0, "by_benchmark": {math["id"]: 0}}
    # a rejected row leaves the dataset's uniqueness key (dedup_key is NULL): re-uploadable
    assert upload_seeds(client, ds, [rows[0]])["inserted"] == 1
    other = make_dataset(client)["id"]
    unknown = "0190d2a0-0000-7000-8000-000000000000"
    error = assert_error(
        client.post(f"/v1/datasets/{other}/decontaminate", json={"benchmarks": [unknown]}),
        422,
        "validation_error",
    )
    assert error["details"][0]["loc"] == ["body", "benchmarks", 0]
    assert_error(client.post(f"/v1/datasets/{unknown}/decontaminate"), 404, "not_found")


def test_load_items_orders_by_benchmark_and_idx(client: httpx.Client, settings: Settings) -> None:
    from app.state import Database

    made = create(client, "order", ["first item text", "second item text", "third item text"])

    async def load() -> list[tuple[str, str, int, str]]:
        db = Database.from_url(settings.database_url)
        try:
            async with db.reading() as session:
                return await benchmarks_module.load_items(session, [made["id"]])
        finally:
            await db.engine.dispose()

    items = asyncio.run(load())
    assert [(i[1], i[2], i[3]) for i in items] == [
        ("order", 0, "first item text"),
        ("order", 1, "second item text"),
        ("order", 2, "third item text"),
    ]


@pytest.fixture
def fast(settings: Settings) -> Settings:
    return settings.model_copy(update={"poll_interval_seconds": 0.05})
