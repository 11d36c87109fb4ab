"""Seed uploads: JSON and JSONL, all or nothing, duplicates counted, limits, listing."""

from __future__ import annotations

import httpx
import orjson
import pytest

from app.config import Settings
from tests.conftest import LiveServer
from tests.factories import make_dataset, seed_items, upload_seeds
from tests.test_api_datasets import assert_error

NDJSON = {"content-type": "application/x-ndjson"}


def count(client: httpx.Client, dataset_id: str) -> int:
    return client.get(f"/v1/datasets/{dataset_id}").json()["total_examples"]  # type: ignore[no-any-return]


def jsonl(items: list[dict]) -> bytes:
    return b"\n".join(orjson.dumps(i) for i in items) + b"\n"


def test_json_upload_counts_duplicates(client: httpx.Client) -> None:
    ds = make_dataset(client)
    items = seed_items(10)
    # same as item 0 after normalisation (case, spaces): a duplicate, not a new example
    items.append({"instruction": "  TASK number 0:   explain topic 0 ", "output": "answer 0"})
    assert upload_seeds(client, ds["id"], items) == {"inserted": 10, "duplicates": 1}
    assert upload_seeds(client, ds["id"], seed_items(12)) == {"inserted": 2, "duplicates": 10}
    counts = client.get(f"/v1/datasets/{ds['id']}").json()["counts"]
    assert counts["seed"]["accepted"] == 12


def test_jsonl_upload_and_pending_without_output(client: httpx.Client) -> None:
    ds = make_dataset(client)
    convo = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hey"}]
    items = [
        *seed_items(3, with_output=False),
        {"messages": convo},
        {"instruction": "Translate", "input": "bonjour", "output": "hello", "metadata": {"k": 1}},
    ]
    response = client.post(f"/v1/datasets/{ds['id']}/seeds", content=jsonl(items), headers=NDJSON)
    assert response.status_code == 201, response.text
    assert response.json() == {"inserted": 5, "duplicates": 0}
    counts = client.get(f"/v1/datasets/{ds['id']}").json()["counts"]["seed"]
    assert counts == {"accepted": 2, "pending": 3, "rejected": 0, "candidate": 0}
    rows = client.get(f"/v1/datasets/{ds['id']}/examples").json()["data"]
    convo = next(r for r in rows if r["messages"])
    assert convo["instruction"] == "hi" and convo["output"] == "hey"
    assert next(r for r in rows if r["input"] == "bonjour")["metadata"] == {"k": 1}


def test_bad_jsonl_line_stores_nothing(client: httpx.Client) -> None:
    ds = make_dataset(client)
    body = jsonl(seed_items(5)) + b'{"instruction": "ok", "output": 3}\n' + jsonl(seed_items(2))
    err = assert_error(
        client.post(f"/v1/datasets/{ds['id']}/seeds", content=body, headers=NDJSON),
        422,
        "validation_error",
    )
    assert err["message"].startswith("line 6: output")
    assert err["details"][0]["line"] == 6
    body = jsonl(seed_items(2)) + b"{not json\n"
    err = assert_error(
        client.post(f"/v1/datasets/{ds['id']}/seeds", content=body, headers=NDJSON),
        422,
        "validation_error",
    )
    assert err["message"].startswith("line 3: invalid JSON")
    body = jsonl(seed_items(3)) + '{"instruction": "caf\u00e9"}\n'.encode("latin-1")
    err = assert_error(
        client.post(f"/v1/datasets/{ds['id']}/seeds", content=body, headers=NDJSON),
        422,
        "validation_error",
    )
    assert err["message"].startswith("line 4: invalid UTF-8")
    assert count(client, ds["id"]) == 0


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"examples": []}, 422, "validation_error"),
        ({"examples": [{"instruction": "  "}]}, 422, "validation_error"),
        ({"examples": [{"instruction": "x", "bogus": 1}]}, 422, "validation_error"),
        (
            {"examples": [{"messages": [{"role": "assistant", "content": "x"}]}]},
            422,
            "validation_error",
        ),
        ({"examples": "nope"}, 422, "validation_error"),
        ([1, 2], 422, "validation_error"),
    ],
)
def test_bad_json_uploads(client: httpx.Client, body: object, status: int, code: str) -> None:
    ds = make_dataset(client)
    assert_error(client.post(f"/v1/datasets/{ds['id']}/seeds", json=body), status, code)
    assert count(client, ds["id"]) == 0


def test_second_bad_item_names_its_index(client: httpx.Client) -> None:
    ds = make_dataset(client)
    items = [*seed_items(3), {"instruction": 7}]
    err = assert_error(
        client.post(f"/v1/datasets/{ds['id']}/seeds", json={"examples": items}),
        422,
        "validation_error",
    )
    assert err["details"][0]["loc"][:3] == ["body", "examples", 3]
    assert count(client, ds["id"]) == 0


def test_unreadable_bodies(client: httpx.Client) -> None:
    ds = make_dataset(client)
    url = f"/v1/datasets/{ds['id']}/seeds"
    assert_error(client.post(url, content=b"", headers=NDJSON), 400, "bad_request")
    assert_error(
        client.post(url, content=b"{", headers={"content-type": "application/json"}),
        400,
        "bad_request",
    )
    assert_error(
        client.post(url, content=b"a,b", headers={"content-type": "text/csv"}),
        415,
        "unsupported_media_type",
    )
    assert_error(
        client.post(
            f"/v1/datasets/{'0' * 8}-0000-7000-8000-{'0' * 12}/seeds", json={"examples": []}
        ),
        404,
        "not_found",
    )
    assert count(client, ds["id"]) == 0


@pytest.fixture
def small_limits(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"max_body_bytes": 64 * 1024, "max_examples_per_upload": 50, "max_field_chars": 1000}
    )


def test_limits(small_limits: Settings) -> None:
    server = LiveServer(small_limits).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            ds = make_dataset(client)
            url = f"/v1/datasets/{ds['id']}/seeds"
            big = [{"instruction": "x" * 900, "output": str(i)} for i in range(100)]
            assert_error(client.post(url, json={"examples": big}), 413, "payload_too_large")

            def chunks():  # no Content-Length: the limit applies while reading
                for _ in range(100):
                    yield b'{"instruction": "' + b"y" * 1000 + b'"}\n'

            assert_error(
                client.post(url, content=chunks(), headers=NDJSON), 413, "payload_too_large"
            )
            err = assert_error(
                client.post(url, json={"examples": seed_items(51)}), 413, "payload_too_large"
            )
            assert "50" in err["message"]
            assert_error(
                client.post(url, content=jsonl(seed_items(51)), headers=NDJSON),
                413,
                "payload_too_large",
            )
            err = assert_error(
                client.post(url, json={"examples": [{"instruction": "z" * 1001}]}),
                422,
                "validation_error",
            )
            assert "instruction" in err["message"]
            assert count(client, ds["id"]) == 0
            assert upload_seeds(client, ds["id"], seed_items(50))["inserted"] == 50
    finally:
        server.stop()


def test_100k_upload_is_all_or_nothing(client: httpx.Client) -> None:
    ds = make_dataset(client)
    items = [{"instruction": f"question {i}", "output": f"answer {i}"} for i in range(100_000)]
    body = jsonl(items[:-1]) + b'{"instruction": ""}\n'
    response = client.post(f"/v1/datasets/{ds['id']}/seeds", content=body, headers=NDJSON)
    err = assert_error(response, 422, "validation_error")
    assert err["details"][0]["line"] == 100_000
    assert count(client, ds["id"]) == 0
    response = client.post(f"/v1/datasets/{ds['id']}/seeds", content=jsonl(items), headers=NDJSON)
    assert response.json() == {"inserted": 100_000, "duplicates": 0}
    assert count(client, ds["id"]) == 100_000


def test_examples_listing_filters_and_pages(client: httpx.Client) -> None:
    ds = make_dataset(client)
    upload_seeds(client, ds["id"], seed_items(5) + seed_items(3, with_output=False, prefix="Q"))
    url = f"/v1/datasets/{ds['id']}/examples"
    pending = client.get(url, params={"status": "pending"}).json()["data"]
    assert len(pending) == 3 and all(e["output"] is None for e in pending)
    seen, cursor = [], None
    while True:
        page = client.get(url, params={"limit": 3, **({"cursor": cursor} if cursor else {})}).json()
        seen += [e["id"] for e in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 8
    assert client.get(url, params={"origin": "generated"}).json()["data"] == []
    assert_error(client.get(url, params={"status": "bogus"}), 422, "validation_error")
