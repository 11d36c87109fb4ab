"""examples/kd_train.py trains a student on soft targets the service captured (issue 12, part 5).

A tiny teacher (tests/tiny_model.py, then trained for a few seconds on templated question/answer
pairs so that its distributions are peaked: a random tiny model's are nearly uniform) answers
prompts through the HTTP API: a labeling job with ``top_logprobs`` on a worker running the
transformers backend. Its ``kd`` export trains a smaller, differently initialised student with
the same tokenizer; the student's KL to the teacher on held-out prompts, computed over the full
vocabulary from both models, must go down for every loss. The exported top-k must be the
teacher's own log_softmax at the same positions.
"""

from __future__ import annotations

import importlib.util
import json
import math
import random
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from transformers import (  # noqa: E402
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaForCausalLM,
)

from app.config import Settings  # noqa: E402
from app.main import create_app  # noqa: E402
from tests.conftest import LiveServer  # noqa: E402
from tests.tiny_model import build_tiny_model  # noqa: E402
from workers import runner  # noqa: E402
from workers.methods.common import answer_messages  # noqa: E402
from workers.prompts import skill_system_prompt  # noqa: E402
from workers.teachers.tokenization import render_ids  # noqa: E402
from workers.teachers.transformers import TransformersTeacher  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "kd_train.py"
K = 20
MAX_TOKENS = 24
TOPICS = ["sea", "moon", "fox", "dog", "city", "river", "forest", "train", "garden", "winter"]
ADJECTIVES = ["quick", "lazy", "short", "bright", "quiet", "old"]
HELD_OUT = [  # topics and phrasings the teacher's training and the student's data never had
    "Write a short poem about the orange cat.",
    "Explain how a kettle works, step by step.",
    "List three things about the mountain.",
    "Write a short poem about the dog and the river.",
    "Explain how a bridge works, in short.",
    "List three things about the bright moon.",
]
STEPS, LR, BATCH = 30, 3e-3, 8


def qa_pair(rng: random.Random) -> tuple[str, str]:
    topic, adjective = rng.choice(TOPICS), rng.choice(ADJECTIVES)
    kind = rng.randrange(3)
    if kind == 0:
        return (
            f"Write a short poem about the {topic}.",
            f"The {adjective} {topic} jumps over the lazy dog, and the {topic} is {adjective}.",
        )
    if kind == 1:
        return (
            f"Explain how a {topic} works, step by step.",
            f"First, the {topic} is {adjective}. Then the {topic} works, step by step.",
        )
    return (
        f"List three things about the {topic}.",
        f"One: the {topic}. Two: a {adjective} {topic}. Three: the {topic} is the answer.",
    )


def prompt_messages(instruction: str) -> list[dict[str, str]]:
    """The prompt as a labeling job without a skill sends it."""
    return answer_messages(skill_system_prompt(None), instruction, "")


def train_teacher(folder: Path, steps: int = 60) -> None:
    """Give the tiny random model peaked distributions: a few Adam steps on the pairs."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    rng = random.Random(0)
    sequences = []
    for _ in range(200):
        instruction, answer = qa_pair(rng)
        chat = [*prompt_messages(instruction), {"role": "assistant", "content": answer}]
        sequences.append(render_ids(tokenizer, chat, add_generation_prompt=False))
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for step in range(steps):
        batch = random.Random(step).sample(sequences, 8)
        width = max(len(s) for s in batch)
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, sequence in enumerate(batch):
            ids[row, : len(sequence)] = torch.tensor(sequence)
            mask[row, : len(sequence)] = 1
        loss = model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100))
        optimizer.zero_grad()
        loss.loss.backward()
        optimizer.step()
    model.save_pretrained(folder)


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kd_train", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["kd_train"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny models gain nothing from threads, and on a busy 2-core machine torch's spinning
    intra-op threads made every step ~20 times slower (measured)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def kd() -> ModuleType:
    return load_script()


@dataclass
class Models:
    teacher: Path
    student: Path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    teacher = build_tiny_model(tmp_path_factory.mktemp("teacher"))
    train_teacher(teacher)
    return Models(teacher, build_student(teacher, tmp_path_factory.mktemp("student")))


def build_student(teacher: Path, folder: Path) -> Path:
    """Half the teacher's width, randomly initialised from another seed, the teacher's own
    tokenizer files."""
    config = AutoConfig.from_pretrained(teacher)
    config.hidden_size, config.intermediate_size = 32, 64
    config.num_attention_heads, config.num_key_value_heads = 2, 1
    torch.manual_seed(1)
    LlamaForCausalLM(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(teacher).save_pretrained(folder)
    return folder


@dataclass
class Export:
    jsonl: Path
    parquet: Path
    rows: list[dict[str, Any]]
    job: dict[str, Any]


def wait_for_job(client: httpx.Client, job_id: str, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"job still {job['status']} after {timeout}s"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def service_export(
    models: Models, sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Export]:
    """Labeling with ``top_logprobs: K`` through the HTTP API, a worker in the app running the
    transformers backend on the tiny teacher; the ``kd`` export as JSONL and as Parquet."""
    folder = tmp_path_factory.mktemp("service")
    shutil.copy(sqlite_template, folder / "kd.db")
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{folder / 'kd.db'}",
        auto_migrate=False,
        poll_interval_seconds=0.05,
    )
    teacher = TransformersTeacher(model=str(models.teacher), device="cpu", batch_size=16)
    worker = runner.embedded_worker(settings, teacher)
    server = LiveServer(settings, create_app(settings, background=[worker])).start()
    rng = random.Random(1)
    instructions = sorted({qa_pair(rng)[0] for _ in range(200)})
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            dataset = client.post("/v1/datasets", json={"name": "kd"}).json()
            seeds = [{"instruction": text} for text in instructions]
            response = client.post(f"/v1/datasets/{dataset['id']}/seeds", json={"examples": seeds})
            assert response.status_code == 201, response.text
            teacher_spec = {
                "temperature": 1.0,
                "top_p": 1.0,
                "max_tokens": MAX_TOKENS,
                "seed": 0,
                "top_logprobs": K,
            }
            response = client.post(
                "/v1/jobs",
                json={
                    "dataset_id": dataset["id"],
                    "kind": "labeling",
                    # the tiny teacher's text is templated corpus speak: keep every answer
                    "params": {"filters": []},
                    "teacher": teacher_spec,
                },
            )
            assert response.status_code == 202, response.text
            job = wait_for_job(client, response.json()["id"])
            assert job["status"] == "succeeded", job
            url = f"/v1/datasets/{dataset['id']}/export"
            jsonl = client.get(url, params={"format": "kd"})
            assert jsonl.status_code == 200, jsonl.text
            parquet = client.get(url, params={"format": "kd", "encoding": "parquet"})
            assert parquet.status_code == 200, parquet.text
    finally:
        server.stop()
    (folder / "kd.jsonl").write_bytes(jsonl.content)
    (folder / "kd.parquet").write_bytes(parquet.content)
    rows = [json.loads(line) for line in jsonl.content.splitlines() if line.strip()]
    assert len(rows) == len(instructions)
    yield Export(folder / "kd.jsonl", folder / "kd.parquet", rows, job)


# --- held-out KL, from both models over the full vocabulary -----------------------------------


@dataclass
class HeldOut:
    sequences: list[tuple[list[int], list[int]]]  # (prompt ids, the teacher's completion ids)
    teacher_logp: list[Any]  # [completion, vocab] per sequence


@pytest.fixture(scope="module")
def held_out(models: Models) -> HeldOut:
    """The teacher's own sampled answers to prompts no training row had, and its log_softmax."""
    tokenizer = AutoTokenizer.from_pretrained(models.teacher)
    teacher = AutoModelForCausalLM.from_pretrained(models.teacher).eval()
    torch.manual_seed(1)
    sequences, logps = [], []
    for instruction in HELD_OUT:
        prompt = render_ids(tokenizer, prompt_messages(instruction), add_generation_prompt=True)
        with torch.inference_mode():
            out = teacher.generate(
                torch.tensor([prompt]),
                max_new_tokens=MAX_TOKENS,
                do_sample=True,
                temperature=1.0,
                top_k=0,
                top_p=1.0,
                pad_token_id=tokenizer.pad_token_id,
            )
        completion = out[0, len(prompt) :].tolist()
        if tokenizer.eos_token_id in completion:
            completion = completion[: completion.index(tokenizer.eos_token_id) + 1]
        sequences.append((prompt, completion))
        logps.append(full_logp(teacher, prompt, completion))
    return HeldOut(sequences, logps)


def full_logp(model: Any, prompt: list[int], completion: list[int]) -> Any:
    """log_softmax over the vocabulary at each completion position: [completion, vocab]."""
    with torch.inference_mode():
        logits = model(torch.tensor([prompt + completion])).logits[0].float()
    return logits[len(prompt) - 1 : len(prompt) + len(completion) - 1].log_softmax(-1)


def held_out_kl(student_dir: Path, held: HeldOut) -> tuple[float, float]:
    """Per-token (KL(teacher || student), KL(student || teacher)) on the held-out answers."""
    student = AutoModelForCausalLM.from_pretrained(student_dir).eval()
    forward = reverse = tokens = 0.0
    for (prompt, completion), p in zip(held.sequences, held.teacher_logp, strict=True):
        q = full_logp(student, prompt, completion)
        forward += float((p.exp() * (p - q)).sum())
        reverse += float((q.exp() * (q - p)).sum())
        tokens += len(completion)
    return forward / tokens, reverse / tokens


# --- the tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("loss", "encoding"),
    [("forward_kl", "jsonl"), ("reverse_kl", "jsonl"), ("mix", "parquet")],
)
def test_training_on_the_export_lowers_the_students_held_out_kl(
    kd: ModuleType,
    models: Models,
    service_export: Export,
    held_out: HeldOut,
    tmp_path: Path,
    loss: str,
    encoding: str,
) -> None:
    data = service_export.jsonl if encoding == "jsonl" else service_export.parquet
    before = held_out_kl(models.student, held_out)
    history = kd.main(
        [
            "--student", str(models.student),
            "--data", str(data),
            "--loss", loss,
            "--alpha", "0.5",
            "--steps", str(STEPS),
            "--lr", str(LR),
            "--batch-size", str(BATCH),
            "--out", str(tmp_path / "student"),
        ]
    )  # fmt: skip
    after = held_out_kl(tmp_path / "student", held_out)
    print(f"{loss}: held-out KL(p||q) {before[0]:.3f} -> {after[0]:.3f}, "
          f"KL(q||p) {before[1]:.3f} -> {after[1]:.3f}")  # fmt: skip
    direction = 1 if loss == "reverse_kl" else 0  # the KL this loss minimises
    assert after[direction] < 0.7 * before[direction]
    assert after[1 - direction] < before[1 - direction]
    losses = [step["loss"] for step in history.steps]
    assert len(losses) == STEPS and sum(losses[-5:]) < sum(losses[:5])
    if loss == "mix":
        assert all("ce" in step and "kd" in step for step in history.steps)
    saved = json.loads((tmp_path / "student" / "kd_train.json").read_text())
    assert saved["config"]["loss"] == loss and len(saved["steps"]) == STEPS
    assert saved["rows"] == len(service_export.rows)


def test_the_exported_top_k_is_the_teachers_log_softmax(
    models: Models, service_export: Export
) -> None:
    """Ids exact, logprobs within 1e-3 of the teacher's full log_softmax at the same
    positions (the prompt rendered from the exported messages, then the completion's ids)."""
    tokenizer = AutoTokenizer.from_pretrained(models.teacher)
    teacher = AutoModelForCausalLM.from_pretrained(models.teacher).eval()
    job_tokenizer = service_export.job["tokenizer"]
    positions = ties = 0
    worst = 0.0
    for row in service_export.rows:
        assert row["k"] == K and row["source"] == "generation"
        assert row["tokenizer"]["sha256"] == job_tokenizer["sha256"]
        assert row["tokenizer"]["vocab_size"] == len(tokenizer)
        ids = row["completion_token_ids"]
        assert tokenizer.decode(ids, skip_special_tokens=True) == row["completion"]
        prompt = render_ids(tokenizer, row["messages"], add_generation_prompt=True)
        logp = full_logp(teacher, prompt, ids)
        reference_values, reference_ids = logp.topk(K + 1, dim=-1)
        chosen = logp.gather(-1, torch.tensor(ids)[:, None])[:, 0]
        assert torch.allclose(torch.tensor(row["token_logprobs"]), chosen, atol=1e-3)
        for t in range(len(ids)):
            top_ids, top_lps = row["top_ids"][t], row["top_logprobs"][t]
            assert len(top_ids) == K and top_lps == sorted(top_lps, reverse=True)
            errors = (torch.tensor(top_lps) - logp[t, top_ids]).abs()
            worst = max(worst, float(errors.max()))
            values = reference_values[t]
            if float(values[K - 1] - values[K]) < 1e-4:  # a tie at the k-th place: either id
                ties += 1
                assert set(top_ids[: K - 1]) == set(reference_ids[t, : K - 1].tolist())
            else:
                assert set(top_ids) == set(reference_ids[t, :K].tolist())
            positions += 1
    assert worst <= 1e-3, worst
    assert positions > 100 and ties <= positions // 50


# --- refusals and the loss functions ------------------------------------------------------------


def test_a_student_with_another_tokenizer_is_refused(
    kd: ModuleType,
    models: Models,
    service_export: Export,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def run(student: Path, data: Path, *extra: str) -> str:
        out = tmp_path / "out"
        with pytest.raises(SystemExit) as exit_info:
            kd.main(["--student", str(student), "--data", str(data), "--out", str(out), *extra])
        assert exit_info.value.code == 2
        assert not out.exists()  # nothing trained, nothing written
        return capsys.readouterr().err

    other = build_tiny_model(tmp_path / "other", vocab_size=300)
    assert "vocab_size" in run(other, service_export.jsonl)

    # same vocabulary size, another chat template
    templated = tmp_path / "templated"
    shutil.copytree(models.student, templated)
    tokenizer = AutoTokenizer.from_pretrained(templated)
    tokenizer.chat_template = tokenizer.chat_template.replace("<|assistant|>", "<|user|>")
    tokenizer.save_pretrained(templated)
    assert "chat_template_sha256" in run(templated, service_export.jsonl)

    def rewrite(name: str, change: dict[str, Any]) -> Path:
        path = tmp_path / name
        rows = [{**r, "tokenizer": {**r["tokenizer"], **change}} for r in service_export.rows]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return path

    assert "sha256" in run(models.student, rewrite("sha.jsonl", {"sha256": "0" * 64}))
    served = rewrite("served.jsonl", {"sha256": "f" * 64, "source": "server"})
    assert "--trust-server-tokenizer" in run(models.student, served)
    # trusted: the template and vocabulary are still compared
    assert "chat_template_sha256" in run(templated, served, "--trust-server-tokenizer")


def toy_batch(kd: ModuleType, teacher_logp: Any, k: int) -> Any:
    """A batch whose teacher top-k is the k most likely ids of ``teacher_logp`` [N, V]."""
    values, ids = teacher_logp.topk(k, dim=-1)
    n = teacher_logp.shape[0]
    return kd.Batch(
        input_ids=torch.zeros((1, n), dtype=torch.long),
        attention_mask=torch.ones((1, n), dtype=torch.long),
        rows=torch.zeros(n, dtype=torch.long),
        positions=torch.arange(n),
        targets=ids[:, 0],
        top_ids=ids,
        top_logprobs=values,
        valid=torch.ones_like(values, dtype=torch.bool),
    )


def test_the_tail_bucket_charges_a_student_that_leaks_mass(kd: ModuleType) -> None:
    """A student equal to the teacher has zero loss either way; one that keeps the teacher's
    top-k proportions but moves mass to the tail pays only with the tail bucket, as much as the
    (k + 1)-bucket KL says."""
    torch.manual_seed(0)
    teacher = (torch.randn(6, 50) * 3).log_softmax(-1)
    batch = toy_batch(kd, teacher, 5)
    for direction in ("forward", "reverse"):
        for tail in ("bucket", "renorm"):
            loss = kd.kd_loss(teacher.clone(), batch, direction=direction, tail=tail)
            assert abs(float(loss)) < 1e-5, (direction, tail)
    leaky = teacher.clone()
    outside = torch.ones_like(leaky, dtype=torch.bool).scatter(-1, batch.top_ids, False)
    leaky[outside] += 2.0  # the tail gets e^2 times its mass; the top-k keeps its proportions
    leaky = leaky.log_softmax(-1)
    assert abs(float(kd.kd_loss(leaky, batch, direction="forward", tail="renorm"))) < 1e-5
    p_top, q_top = teacher.gather(-1, batch.top_ids).exp(), leaky.gather(-1, batch.top_ids).exp()
    p_rest, q_rest = 1 - p_top.sum(-1), 1 - q_top.sum(-1)
    expected = (p_top * (p_top / q_top).log()).sum(-1) + p_rest * (p_rest / q_rest).log()
    got = kd.kd_loss(leaky, batch, direction="forward", tail="bucket")
    assert float(got) == pytest.approx(float(expected.mean()), rel=1e-4) and float(got) > 0.01
    reverse = (q_top * (q_top / p_top).log()).sum(-1) + q_rest * (q_rest / p_rest).log()
    got = kd.kd_loss(leaky, batch, direction="reverse", tail="bucket")
    assert float(got) == pytest.approx(float(reverse.mean()), rel=1e-4)


def test_rounded_top_k_summing_past_one_leaves_no_tail(kd: ModuleType) -> None:
    """Stored logprobs are rounded: a top-k that sums to a hair over 1 is scaled to 1 (no
    negative tail), and reverse KL's log of the tail stays finite (floored)."""
    top = torch.tensor([[-0.0001, -9.0]])  # exp sums to 1.00002: just over
    p, p_rest = kd.teacher_buckets(top, torch.ones_like(top, dtype=torch.bool))
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-6) and float(p_rest) == 0.0
    logits = torch.zeros((1, 10))
    batch = kd.Batch(
        input_ids=torch.zeros((1, 1), dtype=torch.long),
        attention_mask=torch.ones((1, 1), dtype=torch.long),
        rows=torch.zeros(1, dtype=torch.long),
        positions=torch.zeros(1, dtype=torch.long),
        targets=torch.tensor([0]),
        top_ids=torch.tensor([[0, 1]]),
        top_logprobs=top,
        valid=torch.ones((1, 2), dtype=torch.bool),
    )
    loss = kd.kd_loss(logits, batch, direction="reverse", tail="bucket", tail_floor=1e-4)
    # the student: 10 equally likely ids, 8 of them outside the top 2
    expected = sum(0.1 * math.log(0.1 / float(p[0, i])) for i in range(2))
    expected += 0.8 * math.log(0.8 / 1e-4)
    assert float(loss) == pytest.approx(expected, rel=1e-4)


def test_a_position_without_alternatives_is_left_out(kd: ModuleType) -> None:
    torch.manual_seed(0)
    teacher = (torch.randn(2, 30) * 3).log_softmax(-1)
    batch = toy_batch(kd, teacher, 4)
    batch.valid[1] = False
    batch.top_logprobs[1] = -math.inf
    first = toy_batch(kd, teacher[:1], 4)
    for direction in ("forward", "reverse"):
        for tail in ("bucket", "renorm"):
            logits = torch.randn(2, 30, requires_grad=True)
            loss = kd.kd_loss(logits, batch, direction=direction, tail=tail)
            alone = kd.kd_loss(logits[:1], first, direction=direction, tail=tail)
            assert float(loss.detach()) == pytest.approx(float(alone.detach()), rel=1e-5)
            loss.backward()
            assert logits.grad is not None and torch.isfinite(logits.grad).all()
            assert float(logits.grad[1].abs().max()) == 0.0
