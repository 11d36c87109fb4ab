"""format=kd: soft targets stored by app.queue.complete_task come back through the HTTP export,
as JSONL and as Parquet (read with `datasets`), with the export's filters."""

from __future__ import annotations

import math
import uuid
from pathlib import Path
from typing import Any

import datasets
import httpx
import numpy as np
import orjson
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

from app import export_kd
from app.config import Settings
from app.models import Example
from app.soft_targets import SoftTargets, pack
from app.state import Database
from tests.conftest import LiveServer
from tests.factories import make_dataset, upload_seeds
from tests.test_api_datasets import assert_error
from tests.test_queue import claim, complete
from tests.worker_proc import add_job, item_payloads
from workers.methods.base import ExampleOut, TaskOutcome

TOKENIZER_A = {
    "name": "teacher-a",
    "vocab_size": 151_936,
    "sha256": "a" * 64,
    "chat_template": "{{ messages }}",
    "chat_template_sha256": "c" * 64,
    "source": "local",
}
TOKENIZER_B = {**TOKENIZER_A, "name": "teacher-b", "sha256": "b" * 64, "source": "server"}
KD_KEYS = {
    "id",
    "messages",
    "completion",
    "tokenizer",
    "completion_token_ids",
    "token_logprobs",
    "top_ids",
    "top_logprobs",
    "source",
    "k",
}


def targets(seed: int, n: int, k: int, source: str = "generation") -> SoftTargets:
    """n positions of k alternatives: ids past 65535, sorted logprobs, a short last position."""
    rng = np.random.default_rng(seed)
    top_ids = rng.choice(151_936, size=(n, k), replace=False).tolist()
    top_lps = np.sort(-rng.exponential(2.0, size=(n, k)), axis=1)[:, ::-1].tolist()
    top_ids[-1], top_lps[-1] = top_ids[-1][:2], top_lps[-1][:2]  # fewer than k there
    return SoftTargets(
        token_ids=[row[0] for row in top_ids],
        token_logprobs=[row[0] for row in top_lps],
        top_ids=top_ids,
        top_logprobs=top_lps,
        source=source,
    )


def assert_same(row: dict[str, Any], want: SoftTargets) -> None:
    assert row["completion_token_ids"] == want.token_ids  # ids exact
    assert row["top_ids"] == want.top_ids
    assert row["source"] == want.source and row["k"] == want.k
    assert np.allclose(row["token_logprobs"], want.token_logprobs, atol=1e-6, rtol=0)
    for got, expected in zip(row["top_logprobs"], want.top_logprobs, strict=True):
        assert len(got) == len(expected)
        assert max(abs(g - e) for g, e in zip(got, expected, strict=True)) <= 1e-3
        assert list(got) == sorted(got, reverse=True)


async def example_id(database: Database, job_id: uuid.UUID, instruction: str) -> str:
    async with database.reading() as session:
        found = await session.scalar(
            select(Example.id).where(Example.job_id == job_id, Example.instruction == instruction)
        )
    return str(found)


def kd_lines(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-ndjson"
    return [orjson.loads(line) for line in response.content.splitlines()]


async def fill(client: httpx.Client, database: Database) -> dict[str, Any]:
    """A labeling-like job (examples with soft targets, one without, a rejected one with) and a
    scoring-like job over a seed example, both stored through complete_task."""
    ds = make_dataset(client, "KD set")
    upload_seeds(client, ds["id"], [{"instruction": "seed prompt", "output": "seed answer"}])
    seed_id = client.get(f"/v1/datasets/{ds['id']}/examples").json()["data"][0]["id"]
    dataset_id = uuid.UUID(ds["id"])
    want = {"a0": targets(0, 6, 5), "a2": targets(2, 4, 5), "bad": targets(3, 3, 5)}
    gen_job = await add_job(database, item_payloads(5, 5), dataset_id=dataset_id)
    [task] = await claim(database, "w1")
    await complete(
        database,
        task,
        "w1",
        TaskOutcome(
            examples=[
                ExampleOut(0, "q0", output="a0", soft_targets=want["a0"]),
                ExampleOut(1, "q1", output="a1"),  # scored below, by the other job
                ExampleOut(4, "q4", output="a4"),  # no soft targets: not in kd
                ExampleOut(2, "q2", output="a2", soft_targets=want["a2"]),
                ExampleOut(
                    3,
                    "q3",
                    output="bad",
                    status="rejected",
                    reject_reason="refusal",
                    soft_targets=want["bad"],
                ),
            ],
            completed=5,
            system_prompt="You are the teacher.",
            tokenizer=TOKENIZER_A,
        ),
    )
    want["seed"] = targets(4, 5, 3, source="scoring")
    want["seed"].token_logprobs[1] = -math.inf  # a token the teacher gives no mass
    want["a1"] = targets(5, 4, 3, source="scoring")
    scored = {seed_id: want["seed"], await example_id(database, gen_job, "q1"): want["a1"]}
    score_job = await add_job(database, item_payloads(2, 2), dataset_id=dataset_id, kind="scoring")
    [task] = await claim(database, "w2")
    await complete(
        database,
        task,
        "w2",
        TaskOutcome(completed=2, tokenizer=TOKENIZER_B, soft_targets=scored),
    )
    return {"ds": ds, "want": want, "gen_job": str(gen_job), "score_job": str(score_job)}


async def test_kd_rows_come_back_exactly_and_filters_apply(
    client: httpx.Client, database: Database, tmp_path: Path
) -> None:
    made = await fill(client, database)
    want, url = made["want"], f"/v1/datasets/{made['ds']['id']}/export"

    response = client.get(url, params={"format": "kd"})
    assert response.headers["content-disposition"] == 'attachment; filename="KD-set-kd.jsonl"'
    rows = {r["completion"]: r for r in kd_lines(response)}
    # q4 has none; the rejected candidate's were not stored
    assert set(rows) == {"a0", "a1", "a2", "seed answer"}
    for row in rows.values():
        assert set(row) == KD_KEYS
    assert_same(rows["a0"], want["a0"])
    assert_same(rows["a2"], want["a2"])
    assert rows["a0"]["messages"] == [
        {"role": "system", "content": "You are the teacher."},
        {"role": "user", "content": "q0"},
    ]
    assert rows["a0"]["tokenizer"] == {
        k: TOKENIZER_A[k]
        for k in ("name", "vocab_size", "sha256", "chat_template_sha256", "source")
    }
    assert len(rows["a0"]["top_logprobs"][-1]) == 2 and len(rows["a0"]["top_ids"][0]) == 5
    seed = rows["seed answer"]
    assert seed["messages"] == [{"role": "user", "content": "seed prompt"}]  # no system recorded
    assert seed["tokenizer"]["name"] == "teacher-b"
    # scored by the other job: its tokenizer and (no) system prompt, not the writer's
    assert_same(rows["a1"], want["a1"])
    assert rows["a1"]["tokenizer"]["name"] == "teacher-b"
    assert rows["a1"]["messages"] == [{"role": "user", "content": "q1"}]
    assert seed["token_logprobs"][1] is None  # -inf has no JSON number
    want["seed"].token_logprobs[1] = 0.0  # compared apart from the null
    seed["token_logprobs"][1] = 0.0
    assert_same(seed, want["seed"])

    def completions(**params: Any) -> list[str]:
        return [
            r["completion"] for r in kd_lines(client.get(url, params={"format": "kd", **params}))
        ]

    assert completions(job_id=made["gen_job"]) == ["a0", "a1", "a2"]  # the example's job
    assert completions(min_score=0) == []  # never judged
    assert completions(origin="seed") == ["seed answer"]
    assert completions(status="rejected") == []  # a rejected candidate's targets are not stored
    ids = [r["id"] for r in kd_lines(client.get(url, params={"format": "kd", "status": "all"}))]
    assert len(ids) == 4 and ids == sorted(ids)  # in example id order
    with_meta = kd_lines(
        client.get(url, params={"format": "kd", "metadata": True, "origin": "seed"})
    )
    assert (
        with_meta[0]["metadata"]["origin"] == "seed"
        and with_meta[0]["metadata"]["id"] == seed["id"]
    )

    report = client.get(f"/v1/jobs/{made['gen_job']}/report").json()["soft_targets"]
    assert report["examples"] == 2 and report["positions"] == 6 + 4 and report["k"] == 5
    assert 0 < report["stored_bytes"] < 10 * (8 + 6 * 5)  # packed, and compressed
    assert report["bytes_per_token"] == round(report["stored_bytes"] / 10, 2)
    assert client.get(f"/v1/jobs/{made['score_job']}/report").json()["soft_targets"]["k"] == 3

    # parquet: the same rows, read by `datasets`
    response = client.get(url, params={"format": "kd", "encoding": "parquet"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/vnd.apache.parquet"
    assert response.headers["content-disposition"] == 'attachment; filename="KD-set-kd.parquet"'
    path = tmp_path / "kd.parquet"
    path.write_bytes(response.content)
    loaded = datasets.load_dataset(
        "parquet", data_files=str(path), split="train", cache_dir=str(tmp_path / "cache")
    )
    assert loaded.num_rows == 4
    by_completion = {r["completion"]: r for r in loaded}
    for name in ("a0", "a1", "a2"):
        assert set(by_completion[name]) == KD_KEYS
        assert_same(by_completion[name], want[name])
        json_row = rows[name]
        assert by_completion[name]["messages"] == json_row["messages"]
        assert by_completion[name]["tokenizer"] == json_row["tokenizer"]
        assert by_completion[name]["id"] == json_row["id"]
    assert by_completion["seed answer"]["token_logprobs"][1] is None
    assert [r["completion"] for r in loaded] == [r["completion"] for r in kd_lines(
        client.get(url, params={"format": "kd"}))]  # fmt: skip
    filtered = client.get(url, params={"format": "kd", "encoding": "parquet", "origin": "seed"})
    path.write_bytes(filtered.content)
    assert pq.read_table(path).column("completion").to_pylist() == ["seed answer"]


async def test_kd_without_soft_targets_and_bad_requests(
    client: httpx.Client, database: Database, tmp_path: Path
) -> None:
    ds = make_dataset(client)
    upload_seeds(client, ds["id"], [{"instruction": "q", "output": "a"}])
    url = f"/v1/datasets/{ds['id']}/export"
    response = client.get(url, params={"format": "kd"})
    assert response.status_code == 200 and response.content == b""
    empty = client.get(url, params={"format": "kd", "encoding": "parquet"})
    assert empty.status_code == 200
    path = tmp_path / "empty.parquet"
    path.write_bytes(empty.content)
    table = pq.read_table(path)
    assert table.num_rows == 0 and "top_logprobs" in table.column_names

    for params, field in (
        ({"format": "kd", "encoding": "csv"}, "encoding"),
        ({"format": "alpaca", "encoding": "parquet"}, "encoding"),
        ({"format": "kd", "encoding": "parquet", "metadata": True}, "metadata"),
    ):
        body = assert_error(client.get(url, params=params), 422, "validation_error")
        assert field in orjson.dumps(body).decode(), (params, body)


@pytest.fixture
def tiny_batches(settings: Settings) -> Settings:
    return settings.model_copy(update={"export_batch_rows": 3})


async def test_many_rows_stream_in_batches_and_row_groups(
    tiny_batches: Settings, database: Database, tmp_path: Path
) -> None:
    server = LiveServer(tiny_batches).start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            ds = make_dataset(client)
            job_id = await add_job(database, item_payloads(10, 10), dataset_id=uuid.UUID(ds["id"]))
            [task] = await claim(database, "w")
            want = [targets(i, 3 + i, 4) for i in range(10)]
            await complete(
                database,
                task,
                "w",
                TaskOutcome(
                    examples=[
                        ExampleOut(i, f"q{i}", output=f"a{i}", soft_targets=want[i])
                        for i in range(10)
                    ],
                    completed=10,
                    tokenizer=TOKENIZER_A,
                ),
            )
            url = f"/v1/datasets/{ds['id']}/export"
            with client.stream("GET", url, params={"format": "kd"}) as response:
                chunks = list(response.iter_raw())
            rows = [orjson.loads(x) for x in b"".join(chunks).splitlines()]
            assert len(rows) == 10 and rows == sorted(rows, key=lambda r: r["id"])
            for row in rows:
                assert_same(row, want[int(row["completion"][1:])])
            response = client.get(url, params={"format": "kd", "encoding": "parquet"})
            path = tmp_path / "many.parquet"
            path.write_bytes(response.content)
            meta = pq.ParquetFile(path).metadata
            assert meta.num_rows == 10 and meta.num_row_groups == 4  # 3 + 3 + 3 + 1
            assert job_id is not None
    finally:
        server.stop()


def test_kd_row_edges() -> None:
    """No positions, k = 0 and padded positions come out as plain (ragged) lists."""
    info = export_kd._JobInfo({})
    base = {"id": uuid.uuid4(), "job_id": None, "targets_job_id": None, "instruction": "q",
            "input": "", "output": "a", "messages": None, "source": "generation"}  # fmt: skip

    def row(t: SoftTargets) -> dict[str, Any]:
        data = {**base, "data": pack(t), "positions": t.positions, "k": t.k, "encoding": "z2"}
        return orjson.loads(orjson.dumps(export_kd.kd_row(data, info), option=export_kd._OPTS))

    empty = row(SoftTargets([], [], [], []))
    assert empty["completion_token_ids"] == empty["top_ids"] == empty["top_logprobs"] == []
    no_alternatives = row(SoftTargets([1, 2], [-0.5, -1.0], [[], []], [[], []]))
    assert no_alternatives["top_ids"] == [[], []] and no_alternatives["k"] == 0
    ragged = row(
        SoftTargets([7, 8], [-0.1, -2.0], [[7, 9, 70_000], [8]], [[-0.1, -2.3, -5.0], [-2.0]])
    )
    assert ragged["top_ids"] == [[7, 9, 70_000], [8]]
    assert ragged["top_logprobs"] == [[-0.0996, -2.2998, -5.0], [-2.0]]  # 1/1024 grid, 4 decimals
    assert ragged["messages"] == [{"role": "user", "content": "q"}] and ragged["tokenizer"] is None
