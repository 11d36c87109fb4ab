"""Dataset cards: GET /v1/datasets/{id}/card, a Hugging Face README.md for the dataset."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from app import cards
from app.config import Settings
from tests.contamination_cases import CLEAN
from tests.factories import make_dataset, upload_seeds
from tests.selfinstruct_teacher import SelfInstructTeacher
from tests.test_api_datasets import assert_error
from tests.test_auth import auth_server, create_key  # noqa: F401 (fixture)
from tests.test_benchmarks import create, leaks_of
from tests.test_expansion import fast, seeds, start, wait_for  # noqa: F401 (fixture)

HOSTILE = 'evil" name\n---\nlicense: mit\n...\n# {{ 7*7 }} | `x` <b>\u2028\ufeff'


def header_and_body(text: str) -> tuple[dict[str, Any], str]:
    assert text.startswith("---\n"), text[:80]
    header, body = text[4:].split("\n---\n", 1)
    data = yaml.safe_load(header)
    assert isinstance(data, dict)
    return data, body


def job_section(body: str, job_id: str) -> str:
    start = body.index(f"### Job `{job_id}`")
    ends = [i for i in (body.find("\n### ", start + 1), body.find("\n## ", start)) if i > 0]
    return body[start : min(ends)]


def test_size_categories_follow_hugging_face_buckets() -> None:
    assert cards.size_category(0) == "n<1K"
    assert cards.size_category(999) == "n<1K"
    assert cards.size_category(1_000) == "1K<n<10K"
    assert cards.size_category(99_999) == "10K<n<100K"
    assert cards.size_category(2_000_000) == "1M<n<10M"
    assert cards.size_category(10**13) == "n>1T"


def test_languages_detected_from_the_text() -> None:
    english = [f"Explain step by step how bicycle gear {i} changes the effort" for i in range(8)]
    german = ["Erkläre bitte Schritt für Schritt, wie eine Gangschaltung funktioniert"] * 3
    assert cards.detect_languages(english + german) == ["en", "de"]
    assert cards.detect_languages(english) == ["en"]
    assert cards.detect_languages(["ok", ""]) == []


def test_fenced_outlasts_backticks_inside() -> None:
    text = "a ```` b"
    assert cards.fenced(text).startswith("`````\n")
    assert cards.one_line("a\nb | `c`") == "a b \\| 'c'"


def test_card_of_a_dataset_with_jobs_rejections_and_decontamination(
    fast: Settings,  # noqa: F811
    tmp_path: Path,
) -> None:
    teacher = SelfInstructTeacher(seed=4, hostile=True)
    for client in start(fast, teacher):
        bench = create(client, "school-math")
        ds = make_dataset(client, name="card test", description="short trivia tasks")["id"]
        upload_seeds(client, ds, seeds())
        leaked = [text for _, _, text in leaks_of(range(12))][:4]
        upload_seeds(client, ds, [{"instruction": p} for p in [*leaked, *CLEAN[:6]]])
        skill = client.post("/v1/skills", json={"name": "trivia-skill", "domain": "words"}).json()
        labeling = {
            "dataset_id": ds,
            "kind": "labeling",
            "params": {"decontaminate": [bench["id"]]},
        }
        label_job = wait_for(client, client.post("/v1/jobs", json=labeling).json()["id"])
        assert label_job["status"] == "succeeded", label_job
        expansion = {
            "dataset_id": ds,
            "kind": "expansion",
            "skill_id": skill["id"],
            "params": {"target": 30, "calls_per_round": 4, "candidates_per_call": 10},
            "teacher": {"temperature": 0.9, "seed": 3},
        }
        grow_job = wait_for(client, client.post("/v1/jobs", json=expansion).json()["id"])
        assert grow_job["status"] == "succeeded", grow_job

        response = client.get(f"/v1/datasets/{ds}/card")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/markdown")
        text = response.text
        header, body = header_and_body(text)
        dataset = client.get(f"/v1/datasets/{ds}").json()
        accepted = sum(by_status["accepted"] for by_status in dataset["counts"].values())
        assert accepted > 30
        assert header["pretty_name"] == "card test"
        assert header["size_categories"] == ["n<1K"]
        assert header["task_categories"] == ["text-generation"]
        assert "en" in header["language"]  # the scripted teacher writes invented words too
        assert header["license"] == "unknown"
        assert "short trivia tasks" in body
        assert f"{teacher.model} | scripted |" in body
        assert "trivia-skill" in body and "expansion/answer@v1" in body

        totals: dict[str, int] = {}
        for job in (label_job, grow_job):
            section = job_section(body, job["id"])
            assert job["kind"] in section.splitlines()[0]
            report = client.get(f"/v1/jobs/{job['id']}/report").json()
            assert report["rejected"] > 0, report
            assert (
                f"{report['candidates']} candidates, {report['accepted']} kept, "
                f"{report['rejected']} rejected" in section
            ), section
            for reason, n in report["rejected_by_reason"].items():
                assert f"| {reason} | {n} |" in section
                totals[reason] = totals.get(reason, 0) + n
            assert f"{teacher.model} (scripted)" in section
        label_section = job_section(body, label_job["id"])
        assert "decontaminated against: school-math" in label_section
        assert "decontaminated against: no benchmark" in job_section(body, grow_job["id"])
        curation = body[body.index("## Curation") : body.index("## Decontamination")]
        for reason, n in totals.items():
            assert f"| {reason} | {n} |" in curation
        assert totals["contaminated"] >= len(leaked)
        decontamination = body[body.index("## Decontamination") : body.index("## Loading")]
        assert f"({totals['contaminated']} examples in all)" in decontamination

        # every export the card names downloads, and loads as its snippet says
        urls = re.findall(r'curl -o (\S+) "([^"]+)"', body)
        assert [f for f, _ in urls] == [f"{f}.jsonl" for f in cards.EXAMPLE_FORMATS]
        for name, url in urls:
            download = client.get(url)
            assert download.status_code == 200, (url, download.text)
            (tmp_path / name).write_bytes(download.content)
        datasets = pytest.importorskip("datasets")
        loaded = datasets.load_dataset(
            "json", data_files=str(tmp_path / "alpaca.jsonl"), split="train"
        )
        assert len(loaded) == accepted
        assert 'load_dataset("json", data_files="alpaca.jsonl", split="train")' in body

        hub = pytest.importorskip("huggingface_hub")
        card = hub.DatasetCard(text)
        assert card.data.pretty_name == "card test"
        assert card.data.size_categories == ["n<1K"]


def test_hostile_names_keep_the_header_intact(client: httpx.Client) -> None:
    ds = make_dataset(client, name=HOSTILE, description="---\nlicense: mit\n---")["id"]
    response = client.get(f"/v1/datasets/{ds}/card")
    assert response.status_code == 200, response.text
    header, body = header_and_body(response.text)
    assert header["pretty_name"] == HOSTILE
    assert header["license"] == "unknown"
    assert "language" not in header  # nothing accepted: nothing to detect
    assert header["size_categories"] == ["n<1K"]
    title = body.strip().splitlines()[0]
    assert title.startswith("# evil\" name --- license: mit ... # {{ 7*7 }} \\| 'x' &lt;b>")
    assert "49" not in body
    assert "No job has run on this dataset yet." in body
    assert "Nothing to export yet" in body
    hub = pytest.importorskip("huggingface_hub")
    assert hub.DatasetCard(response.text).data.pretty_name == HOSTILE


def test_the_declared_license_reaches_the_card(client: httpx.Client) -> None:
    created = client.post("/v1/datasets", json={"name": "licensed", "license": "cc-by-4.0"})
    assert created.status_code == 201, created.text
    assert created.json()["license"] == "cc-by-4.0"
    ds = created.json()["id"]
    header, _ = header_and_body(client.get(f"/v1/datasets/{ds}/card").text)
    assert header["license"] == "cc-by-4.0"

    changed = client.patch(f"/v1/datasets/{ds}", json={"license": "apache-2.0"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["license"] == "apache-2.0"
    assert changed.json()["description"] == ""  # left out: unchanged
    header, _ = header_and_body(client.get(f"/v1/datasets/{ds}/card").text)
    assert header["license"] == "apache-2.0"

    for bad in ["Apache 2.0", "mit\nlicense: x", "", "x" * 65]:
        refused = client.patch(f"/v1/datasets/{ds}", json={"license": bad})
        error = assert_error(refused, 422, "validation_error")
        assert error["message"].startswith("license: must be a Hugging Face license id"), error
    refused = client.patch(f"/v1/datasets/{ds}", json={"description": None})
    assert_error(refused, 422, "validation_error")
    assert client.get(f"/v1/datasets/{ds}").json()["license"] == "apache-2.0"  # nothing stored

    cleared = client.patch(f"/v1/datasets/{ds}", json={"license": None, "description": "d"})
    assert cleared.json()["license"] is None and cleared.json()["description"] == "d"
    header, _ = header_and_body(client.get(f"/v1/datasets/{ds}/card").text)
    assert header["license"] == "unknown"
    other = client.patch(f"/v1/datasets/{uuid.uuid4()}", json={"license": "mit"})
    assert_error(other, 404, "not_found")


def test_card_is_another_tenants_404(
    auth_server: Any,  # noqa: F811
    database_url: str,
) -> None:
    alice, bob = create_key(database_url, "alice"), create_key(database_url, "bob")
    with httpx.Client(base_url=auth_server.url, timeout=30) as client:
        as_alice = {"authorization": f"Bearer {alice}"}
        as_bob = {"authorization": f"Bearer {bob}"}
        made = client.post("/v1/datasets", json={"name": "mine"}, headers=as_alice)
        assert made.status_code == 201
        card = f"/v1/datasets/{made.json()['id']}/card"
        assert client.get(card, headers=as_alice).status_code == 200
        assert_error(client.get(card, headers=as_bob), 404, "not_found")
        assert client.get(card).status_code == 401
