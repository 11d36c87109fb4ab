"""Soft targets over HTTP end to end (issue 12's "Done when"): a labeling job and a scoring job
with ``top_logprobs: 20`` go through the HTTP API to a worker whose teacher is the ``openai``
backend, talking to ``tests/hf_server.py`` (vLLM's response shapes over a REAL tiny transformers
model). The ``kd`` export must then carry, for every completion token of every row, its id, its
logprob and the 20 most likely ids and logprobs, sorted, with the job's tokenizer identity; the
values are the model's own full ``log_softmax`` at those positions (|error| <= 1e-3, ids exact up
to ties at the k-th place). ``encoding=parquet`` reads back as the same rows.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pyarrow.parquet as pq
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from app.config import Settings  # noqa: E402
from app.state import Database  # noqa: E402
from tests.emulator_proc import EmulatorProcess  # noqa: E402
from tests.factories import make_dataset, upload_seeds  # noqa: E402
from tests.hf_server import running_hf_server  # noqa: E402
from tests.test_scoring import post_job, run_jobs  # noqa: E402
from tests.tiny_model import build_tiny_model  # noqa: E402
from workers.teachers.openai import OpenAITeacher  # noqa: E402
from workers.teachers.tokenization import render_ids  # noqa: E402

K = 20
TOLERANCE = 1e-3  # the bar: the teacher's values to fp16 precision
TIE = 1e-4  # k-th and (k+1)-th within this: either id may be the k-th
MODEL = "tiny-teacher"
PROMPTS = [f"Write a short poem about the sea, number {i}." for i in range(4)]
STUDENT_SAMPLES: list[dict[str, Any]] = [  # a student's own answers, uploaded to be scored
    {"instruction": "Explain how a hash table works.", "output": "A table of buckets, hashed."},
    {"instruction": "Translate into French:", "input": "good morning", "output": "bonjour"},
    {"instruction": "Say something odd.", "output": "Täglich: 東京 🙂 — primes 2, 3, 5."},
    {
        "messages": [
            {"role": "user", "content": "List three prime numbers."},
            {"role": "assistant", "content": "2, 3 and 5."},
            {"role": "user", "content": "Why are they prime?"},
            {"role": "assistant", "content": "Each has no divisor but 1 and itself."},
        ]
    },
]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny models gain nothing from threads (tests/test_kd_training.py measured why)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("kd-http") / "teacher")


@pytest.fixture(scope="module")
def hf_server(tiny_dir: Path) -> Iterator[EmulatorProcess]:
    """One server process for the module, its torch on one thread too (inherited env)."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("OMP_NUM_THREADS", "1")
        env.setenv("MKL_NUM_THREADS", "1")
        with running_hf_server(str(tiny_dir), served_name=MODEL) as server:
            env.undo()  # the variables were for the child only
            yield server


@pytest.fixture
async def teacher(hf_server: EmulatorProcess, tiny_dir: Path) -> AsyncIterator[OpenAITeacher]:
    """The worker's teacher: the openai backend with the teacher's tokenizer named (as
    DISTILLERY_TEACHER__TOKENIZER), so the job records a vocabulary size (vLLM's
    /tokenizer_info does not say it; docs/kd.md)."""
    made = OpenAITeacher(
        base_url=hf_server.base_url,
        model=MODEL,
        max_concurrency=4,
        request_timeout_s=60.0,
        max_retries=2,
        backoff_base_s=0.01,
        backoff_max_s=0.05,
        tokenizer=str(tiny_dir),
    )
    yield made
    await made.aclose()


class Reference:
    """The tiny model's full distribution, one unpadded forward pass per row."""

    def __init__(self, folder: Path) -> None:
        self.tokenizer: Any = AutoTokenizer.from_pretrained(folder)
        self.model: Any = AutoModelForCausalLM.from_pretrained(folder).eval()

    def logp(self, prompt: list[int], completion: list[int]) -> Any:
        """[len(completion), vocab]: log_softmax of the next-token logits at each position."""
        with torch.inference_mode():
            logits = self.model(torch.tensor([prompt + completion])).logits[0].float()
        return logits[len(prompt) - 1 : len(prompt) + len(completion) - 1].log_softmax(-1)


@pytest.fixture(scope="module")
def reference(tiny_dir: Path) -> Reference:
    return Reference(tiny_dir)


def all_examples(client: httpx.Client, dataset_id: str) -> list[dict[str, Any]]:
    page = client.get(f"/v1/datasets/{dataset_id}/examples", params={"limit": 100})
    assert page.status_code == 200, page.text
    body = page.json()
    assert body.get("next_cursor") is None
    return body["data"]  # type: ignore[no-any-return]


def assert_row_is_the_models(row: dict[str, Any], reference: Reference) -> tuple[int, int]:
    """Every position of one kd row against the model's log_softmax; (positions, ties)."""
    ids = row["completion_token_ids"]
    assert row["k"] == K and ids, row["id"]
    positions = len(ids)
    assert len(row["token_logprobs"]) == len(row["top_ids"]) == len(row["top_logprobs"])
    assert len(row["top_ids"]) == positions
    prompt = render_ids(reference.tokenizer, row["messages"], add_generation_prompt=True)
    logp = reference.logp(prompt, ids)
    chosen = logp.gather(-1, torch.tensor(ids)[:, None])[:, 0]
    errors = (torch.tensor(row["token_logprobs"]) - chosen).abs()
    assert float(errors.max()) <= TOLERANCE, (row["id"], float(errors.max()))
    best_values, best_ids = logp.topk(K + 1, dim=-1)
    ties = 0
    for t in range(positions):
        top_ids, top_lps = row["top_ids"][t], row["top_logprobs"][t]
        assert len(top_ids) == len(set(top_ids)) == K
        assert top_lps == sorted(top_lps, reverse=True)
        assert float((torch.tensor(top_lps) - logp[t, top_ids]).abs().max()) <= TOLERANCE
        values = best_values[t]
        if float(values[K - 1] - values[K]) < TIE:  # a tie at the k-th place: either id
            ties += 1
            assert set(top_ids[: K - 1]) == set(best_ids[t, : K - 1].tolist())
        else:
            assert set(top_ids) == set(best_ids[t, :K].tolist())
        assert abs(top_lps[0] - float(values[0])) <= TOLERANCE
    return positions, ties


def assert_parquet_equals_jsonl(parquet: bytes, rows: list[dict[str, Any]]) -> None:
    """The Parquet encoding of the export: the same rows, ids exact, floats the same float32."""
    table = pq.read_table(io.BytesIO(parquet))
    back = {r["id"]: r for r in table.to_pylist()}
    assert sorted(back) == sorted(r["id"] for r in rows)
    for row in rows:
        other = back[row["id"]]
        for key in ("messages", "completion", "completion_token_ids", "top_ids", "source", "k"):
            assert other[key] == row[key], key
        tokenizer = {k: v for k, v in other["tokenizer"].items() if v is not None}
        assert tokenizer == {k: v for k, v in row["tokenizer"].items() if v is not None}
        f32 = np.float32
        assert np.array_equal(f32(other["token_logprobs"]), f32(row["token_logprobs"])), row["id"]
        for mine, theirs in zip(row["top_logprobs"], other["top_logprobs"], strict=True):
            assert np.array_equal(f32(mine), f32(theirs)), row["id"]


async def test_labeling_and_scoring_over_http_export_the_models_distribution(
    client: httpx.Client,
    database: Database,
    quick: Settings,
    teacher: OpenAITeacher,
    reference: Reference,
) -> None:
    ds = make_dataset(client, "kd over http")["id"]
    upload_seeds(client, ds, [{"instruction": text} for text in PROMPTS] + STUDENT_SAMPLES)
    sample_ids = {e["id"] for e in all_examples(client, ds) if e["output"] is not None}
    assert len(sample_ids) == len(STUDENT_SAMPLES)

    # the teacher answers the open prompts, keeping its top-20 at every generated token
    labeling = post_job(
        client,
        ds,
        "labeling",
        params={"filters": [], "chunk_size": 2},  # random text: keep every answer
        teacher={
            "model": MODEL,
            "temperature": 1.0,
            "top_p": 1.0,
            "max_tokens": 12,
            "seed": 7,
            "top_logprobs": K,
        },
    )
    assert labeling["progress"]["total"] == len(PROMPTS)
    await run_jobs(database, quick, teacher, labeling)
    labeling = client.get(f"/v1/jobs/{labeling['id']}").json()
    assert labeling["status"] == "succeeded", labeling
    examples = all_examples(client, ds)
    answers = {e["id"] for e in examples if e["id"] not in sample_ids and e["output"] is not None}
    assert len(answers) == len(PROMPTS)

    # the teacher scores the student's samples only (the answers have soft targets already)
    scoring = post_job(client, ds, "scoring", params={"top_logprobs": K, "chunk_size": 3})
    assert scoring["progress"]["total"] == len(STUDENT_SAMPLES)
    await run_jobs(database, quick, teacher, scoring)
    scoring = client.get(f"/v1/jobs/{scoring['id']}").json()
    assert scoring["status"] == "succeeded", scoring
    after = all_examples(client, ds)
    assert sorted(e["id"] for e in after) == sorted(e["id"] for e in examples)  # no new rows
    assert {e["id"]: e["output"] for e in after} == {e["id"]: e["output"] for e in examples}

    # both jobs recorded the teacher's tokenizer: the local files' identity, checked against
    # the server's /tokenize
    identity = {"name", "vocab_size", "sha256"}
    for job in (labeling, scoring):
        assert job["tokenizer"]["source"] == "local"
        assert job["tokenizer"]["name"] == str(reference.tokenizer.name_or_path)
        assert job["tokenizer"]["vocab_size"] == len(reference.tokenizer)
        assert len(job["tokenizer"]["sha256"]) == 64
    assert {k: labeling["tokenizer"][k] for k in identity} == {
        k: scoring["tokenizer"][k] for k in identity
    }

    url = f"/v1/datasets/{ds}/export"
    jsonl = client.get(url, params={"format": "kd"})
    assert jsonl.status_code == 200, jsonl.text
    rows = [orjson.loads(line) for line in jsonl.content.splitlines() if line.strip()]
    by_source = {r["id"]: r["source"] for r in rows}
    assert by_source == {
        **{i: "generation" for i in answers},
        **{i: "scoring" for i in sample_ids},
    }
    positions = ties = 0
    for row in rows:
        job = labeling if row["source"] == "generation" else scoring
        assert row["tokenizer"] is not None, row["id"]
        assert {k: row["tokenizer"][k] for k in identity} == {
            k: job["tokenizer"][k] for k in identity
        }
        ids = row["completion_token_ids"]
        if row["source"] == "scoring":  # the student's text, tokenized as the teacher's template
            full = render_ids(
                reference.tokenizer,
                [*row["messages"], {"role": "assistant", "content": row["completion"]}],
                add_generation_prompt=False,
            )
            prompt = render_ids(reference.tokenizer, row["messages"], add_generation_prompt=True)
            assert full[: len(prompt)] == prompt and ids == full[len(prompt) :]
        else:  # the teacher's own generated tokens (end of turn included when it stopped)
            text = reference.tokenizer.decode(ids, skip_special_tokens=True)
            assert text == row["completion"]
        assert row["messages"][0]["role"] == "system"  # the prompt as the teacher saw it
        seen, tied = assert_row_is_the_models(row, reference)
        positions += seen
        ties += tied
    assert positions >= 60 and ties <= positions // 10, (positions, ties)

    parquet = client.get(url, params={"format": "kd", "encoding": "parquet"})
    assert parquet.status_code == 200, parquet.text
    assert_parquet_equals_jsonl(parquet.content, rows)
    print(f"kd over http: {len(rows)} rows, {positions} positions, {ties} ties at k")
