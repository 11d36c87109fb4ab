"""White-box capture in the teacher backends: token ids and top-k logprobs at generation,
teacher-forced scoring, and the tokenizer's identity.

The values are checked against the tiny model's own full ``log_softmax`` at the same positions
(|error| <= 1e-3): for the transformers backend directly, for the openai backend through
``tests/hf_server.py`` (vLLM's HTTP shapes over the same real model). The emulator path runs
the same HTTP calls on synthetic distributions; the vllm backend's mapping is checked with
objects shaped like vLLM's outputs (no vllm here).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from bench.emulator import CHAT_TEMPLATE, VOCAB_SIZE, emulator_tokenize, render_chat
from tests.emulator_proc import EmulatorProcess, running_emulator
from tests.hf_server import running_hf_server, serving
from tests.test_teachers_vllm import CompletionOutput, Logprob, RequestOutput
from tests.tiny_model import build_tiny_model
from workers.teachers import vllm as vllm_teacher
from workers.teachers.base import (
    SamplingParams,
    ScoreRequest,
    TeacherRejected,
    TeacherRequest,
    TokenLogprob,
)
from workers.teachers.openai import OpenAITeacher, parse_prompt_logprobs
from workers.teachers.tokenization import completion_ids, local_tokenizer_info, token_logprob
from workers.teachers.transformers import TransformersTeacher
from workers.teachers.vllm import (
    VLLMTeacher,
    from_vllm_prompt_logprobs,
    to_vllm_score_kwargs,
)

TOLERANCE = 1e-3
K = 5
MODEL = "tiny-teacher"
OTHER_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def chat(i: int) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "You write data."},
        {"role": "user", "content": "Explain how a hash table works. " * (i % 3 + 1) + str(i)},
    ]


COMPLETIONS = [
    "The quick brown fox jumps over the lazy dog.",
    "Täglich: 東京 🙂 — prime numbers 2, 3, 5.",
    "",
    '{"answer": 42}',
]


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("whitebox") / "teacher")


@pytest.fixture(scope="module")
def variants(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same checkpoint in another folder, one with a token added to its tokenizer, one
    with another chat template."""
    root = tmp_path_factory.mktemp("variants")
    out = {}
    for name in ("copy", "added_token", "template"):
        out[name] = Path(shutil.copytree(tiny_dir, root / name))
    tokenizer = AutoTokenizer.from_pretrained(out["added_token"])
    tokenizer.add_tokens(["<|extra|>"], special_tokens=True)
    tokenizer.save_pretrained(out["added_token"])
    tokenizer = AutoTokenizer.from_pretrained(out["template"])
    tokenizer.chat_template = OTHER_TEMPLATE
    tokenizer.save_pretrained(out["template"])
    return out


class Reference:
    """The tiny model's own distribution: one unpadded forward pass, full ``log_softmax``."""

    def __init__(self, folder: Path) -> None:
        self.tokenizer: Any = AutoTokenizer.from_pretrained(folder)
        self.model: Any = AutoModelForCausalLM.from_pretrained(folder).eval()

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        encoded = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        return list(encoded["input_ids"])

    def logp(self, ids: list[int]) -> torch.Tensor:
        """[len(ids), vocab]: row t - 1 is the distribution of token t."""
        with torch.inference_mode():
            logits = self.model(torch.tensor([ids])).logits[0]
        return logits.float().log_softmax(-1)

    def assert_matches(self, prompt: list[int], tokens: list[TokenLogprob], k: int) -> None:
        """Every token's logprob and its top-k (ids, values, order) are the model's."""
        assert tokens
        logp = self.logp(prompt + [t.token_id for t in tokens])  # type: ignore[misc]
        for t, token in enumerate(tokens):
            row = logp[len(prompt) + t - 1]
            assert token.token_id is not None
            assert abs(token.logprob - float(row[token.token_id])) <= TOLERANCE
            ids = [alt[1] for alt in token.top]
            values = [alt[2] for alt in token.top]
            assert len(ids) == k and len(set(ids)) == k and None not in ids
            assert values == sorted(values, reverse=True)
            for _, token_id, value in token.top:
                assert abs(value - float(row[token_id])) <= TOLERANCE
            # the k most likely (up to ties within the tolerance)
            assert min(values) >= float(row.topk(k).values[-1]) - TOLERANCE


@pytest.fixture(scope="module")
def reference(tiny_dir: Path) -> Reference:
    return Reference(tiny_dir)


@pytest.fixture(scope="module")
def local_teacher(tiny_dir: Path) -> Iterator[TransformersTeacher]:
    teacher = TransformersTeacher(model=str(tiny_dir), device="cpu", batch_size=3)
    yield teacher
    asyncio.run(teacher.aclose())


@pytest.fixture(scope="module")
def hf_server(tiny_dir: Path) -> Iterator[EmulatorProcess]:
    with running_hf_server(str(tiny_dir), served_name=MODEL) as server:
        yield server


@pytest.fixture
async def http_teacher() -> AsyncIterator[Any]:
    """Build OpenAI teachers with test-sized retries; closes them all."""
    made: list[OpenAITeacher] = []

    def make(base_url: str, **overrides: Any) -> OpenAITeacher:
        options: dict[str, Any] = {
            "model": MODEL,
            "max_concurrency": 8,
            "request_timeout_s": 30.0,
            "max_retries": 3,
            "backoff_base_s": 0.01,
            "backoff_max_s": 0.05,
        }
        teacher = OpenAITeacher(base_url=base_url, **(options | overrides))
        made.append(teacher)
        return teacher

    yield make
    for teacher in made:
        await teacher.aclose()


def generation_requests(count: int, k: int = K) -> list[TeacherRequest]:
    sampling = SamplingParams(n=2, temperature=0.9, top_p=1.0, max_tokens=10, seed=3)
    return [
        TeacherRequest(messages=chat(i), sampling=sampling, top_logprobs=k, request_id=f"g{i}")
        for i in range(count)
    ]


def score_requests(k: int = K) -> list[ScoreRequest]:
    return [
        ScoreRequest(messages=chat(i), completion=text, top_logprobs=k, request_id=f"s{i}")
        for i, text in enumerate(COMPLETIONS)
    ]


def expected_completion_ids(reference: Reference, text: str) -> list[int]:
    """The tiny template ends the assistant turn with ``<|eos|>``: the completion's ids are
    the text's own and then the end of turn."""
    ids = reference.tokenizer.encode(text, add_special_tokens=False)
    return [*ids, reference.tokenizer.eos_token_id]


# --- transformers -----------------------------------------------------------------------------


async def test_transformers_generation_captures_the_models_top_k(
    local_teacher: TransformersTeacher, reference: Reference
) -> None:
    requests = generation_requests(5)  # two batches, prompts of different lengths (padding)
    results = await local_teacher.generate(requests)
    for request, result in zip(requests, results, strict=True):
        assert result.ok, result.error
        for generation in result.generations:
            assert generation.logprobs is not None
            reference.assert_matches(reference.prompt_ids(request.messages), generation.logprobs, K)


async def test_transformers_score_is_the_models_distribution(
    local_teacher: TransformersTeacher, reference: Reference
) -> None:
    requests = score_requests()
    results = await local_teacher.score(requests)
    assert len(results) == len(requests)
    for request, result in zip(requests, results, strict=True):
        assert result.ok, result.error
        prompt = reference.prompt_ids(request.messages)
        assert result.prompt_tokens == len(prompt)
        assert [t.token_id for t in result.tokens] == expected_completion_ids(
            reference, request.completion
        )
        reference.assert_matches(prompt, result.tokens, K)
    # the same text scored alone gives the same numbers as in a padded batch
    [alone] = await local_teacher.score([requests[1]])
    for a, b in zip(alone.tokens, results[1].tokens, strict=True):
        assert abs(a.logprob - b.logprob) <= TOLERANCE


async def test_a_chat_the_template_refuses_fails_only_its_request(
    local_teacher: TransformersTeacher, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokenizer = local_teacher._tokenizer
    render = tokenizer.apply_chat_template

    def no_tool_role(messages: Any, *args: Any, **kwargs: Any) -> Any:
        if any(m["role"] == "tool" for m in messages):
            raise ValueError("this template has no tool role")
        return render(messages, *args, **kwargs)

    monkeypatch.setattr(tokenizer, "apply_chat_template", no_tool_role)
    bad = ScoreRequest(messages=[{"role": "tool", "content": "x"}], completion="x", top_logprobs=2)
    good = score_requests(k=2)[0]
    results = await local_teacher.score([bad, good])
    assert isinstance(results[0].error, TeacherRejected) and not results[0].tokens
    assert "no tool role" in results[0].error.message
    assert results[1].ok and results[1].tokens


# --- tokenizer identity -----------------------------------------------------------------------


async def test_local_tokenizer_identity_is_stable_and_follows_the_tokenizer(
    local_teacher: TransformersTeacher, tiny_dir: Path, variants: dict[str, Path]
) -> None:
    info = await local_teacher.tokenizer_info()
    assert info["source"] == "local" and info["name"] == str(tiny_dir)
    assert info["vocab_size"] == len(AutoTokenizer.from_pretrained(tiny_dir))
    assert info["chat_template"] == AutoTokenizer.from_pretrained(tiny_dir).chat_template
    assert len(info["sha256"]) == 64 and len(info["chat_template_sha256"]) == 64

    def identity(folder: Path) -> dict[str, Any]:
        return local_tokenizer_info(AutoTokenizer.from_pretrained(folder), str(folder))

    # stable: another load, another folder, and after padded calls (which change the backend's
    # padding settings) it is the same tokenizer
    await local_teacher.generate(generation_requests(3, k=1))
    assert (await local_teacher.tokenizer_info())["sha256"] == info["sha256"]
    assert identity(tiny_dir)["sha256"] == info["sha256"]
    copy = identity(variants["copy"])
    assert copy["sha256"] == info["sha256"] and copy["name"] != info["name"]
    # follows the tokenizer: a token more is another tokenizer; another template is the same
    # tokenizer with another template
    added = identity(variants["added_token"])
    assert added["sha256"] != info["sha256"] and added["vocab_size"] == info["vocab_size"] + 1
    template = identity(variants["template"])
    assert template["sha256"] == info["sha256"]
    assert template["chat_template_sha256"] != info["chat_template_sha256"]


# --- openai against a real model (tests/hf_server.py) -----------------------------------------


async def test_openai_generation_captures_the_models_top_k_with_ids(
    hf_server: EmulatorProcess, http_teacher: Any, reference: Reference
) -> None:
    teacher = http_teacher(hf_server.base_url)
    requests = generation_requests(3)
    results = await teacher.generate(requests)
    for request, result in zip(requests, results, strict=True):
        assert result.ok, result.error
        for generation in result.generations:
            assert generation.logprobs is not None
            reference.assert_matches(reference.prompt_ids(request.messages), generation.logprobs, K)
            texts = "".join(lp.token for lp in generation.logprobs)  # from the "bytes"
            assert generation.text in texts


async def test_openai_score_is_the_models_distribution(
    hf_server: EmulatorProcess,
    http_teacher: Any,
    reference: Reference,
    local_teacher: TransformersTeacher,
) -> None:
    teacher = http_teacher(hf_server.base_url)
    requests = score_requests()
    results = await teacher.score(requests)
    local = await local_teacher.score(requests)
    for request, result, mine in zip(requests, results, local, strict=True):
        assert result.ok, result.error
        prompt = reference.prompt_ids(request.messages)
        assert result.prompt_tokens == len(prompt)
        ids = [t.token_id for t in result.tokens]
        assert ids == expected_completion_ids(reference, request.completion)
        assert ids == [t.token_id for t in mine.tokens]  # the same ids as the local backend
        reference.assert_matches(prompt, result.tokens, K)


async def test_openai_tokenizer_identity_from_the_server(
    hf_server: EmulatorProcess, http_teacher: Any, tiny_dir: Path, variants: dict[str, Path]
) -> None:
    info = await http_teacher(hf_server.base_url).tokenizer_info()
    assert info["source"] == "server" and info["name"] == str(tiny_dir)
    assert info["vocab_size"] is None  # vLLM's /tokenizer_info does not say it
    assert info["chat_template"] == AutoTokenizer.from_pretrained(tiny_dir).chat_template
    again = await http_teacher(hf_server.base_url).tokenizer_info()
    assert again == info
    with serving(hf_server, model=str(variants["added_token"])):
        changed = await http_teacher(hf_server.base_url).tokenizer_info()
    assert changed["sha256"] != info["sha256"]


async def test_openai_local_tokenizer_setting(
    hf_server: EmulatorProcess,
    tiny_dir: Path,
    variants: dict[str, Path],
    http_teacher: Any,
    local_teacher: Any,
) -> None:
    server = hf_server
    with serving(hf_server, tokenizer_info=False):
        # a vLLM without --enable-tokenizer-info-endpoint, and no tokenizer named: refused
        with pytest.raises(TeacherRejected, match="cannot tell its tokenizer"):
            await http_teacher(server.base_url).tokenizer_info()
        # the tokenizer named in the settings: its local identity, as the transformers backend
        info = await http_teacher(server.base_url, tokenizer=str(tiny_dir)).tokenizer_info()
        assert info["source"] == "local" and info["vocab_size"] is not None
        assert info["sha256"] == (await local_teacher.tokenizer_info())["sha256"]
        # a tokenizer that renders chats otherwise than the server is not the teacher's
        wrong = http_teacher(server.base_url, tokenizer=str(variants["template"]))
        with pytest.raises(TeacherRejected, match="does not tokenize a chat as the server"):
            await wrong.tokenizer_info()


async def test_a_server_without_token_ids_is_refused(
    hf_server: EmulatorProcess, tiny_dir: Path, http_teacher: Any, emulator_plain: EmulatorProcess
) -> None:
    with serving(hf_server, token_ids=False):
        for server in (hf_server, emulator_plain):
            teacher = http_teacher(server.base_url, model=server.model)
            [result] = await teacher.generate(generation_requests(1))
            assert isinstance(result.error, TeacherRejected)
            assert "cannot give token ids" in result.error.message
            assert sum(result.attempt_errors.values()) == 1  # final: not retried
            plain_request = TeacherRequest(messages=chat(0), sampling=SamplingParams(max_tokens=4))
            [ok] = await teacher.generate([plain_request])
            assert ok.ok, ok.error  # without logprobs it is a fine teacher
            with pytest.raises(TeacherRejected, match="cannot tell its tokenizer"):
                await teacher.tokenizer_info()
            named = http_teacher(server.base_url, model=server.model, tokenizer=str(tiny_dir))
            with pytest.raises(TeacherRejected, match="cannot give token ids"):
                await named.tokenizer_info()
            [scored] = await teacher.score(score_requests(k=2)[:1])
            assert isinstance(scored.error, TeacherRejected)
            assert "no /tokenize" in scored.error.message


# --- the emulator (load tests and benchmarks run these calls) ----------------------------------


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorProcess]:
    with running_emulator(model="emu-teacher", base_latency=0.0) as emu:
        yield emu


@pytest.fixture(scope="module")
def emulator_plain() -> Iterator[EmulatorProcess]:
    with running_emulator(
        model="emu-plain", base_latency=0.0, extra_args=("--no-token-ids",)
    ) as emu:
        yield emu


async def test_emulator_white_box_path(emulator: EmulatorProcess, http_teacher: Any) -> None:
    emulator.set_faults({})
    teacher = http_teacher(emulator.base_url, model=emulator.model)
    info = await teacher.tokenizer_info()
    assert info["source"] == "server" and info["chat_template"] == CHAT_TEMPLATE
    [result] = await teacher.generate(generation_requests(1, k=20))
    for generation in result.generations:
        assert generation.logprobs
        for lp in generation.logprobs:
            ids = [alt[1] for alt in lp.top]
            values = [alt[2] for alt in lp.top]
            assert len(set(ids)) == 20 and all(0 <= i < VOCAB_SIZE for i in ids)
            assert values == sorted(values, reverse=True)
    # scoring: ids are the emulator's tokenization of the assistant turn; transient faults
    # on the completions route are retried like generation's
    emulator.set_faults({"server_error": {"count": 2}})
    requests = score_requests(k=4)
    results = await teacher.score(requests)
    emulator.set_faults({})
    assert sum(r.attempt_errors.get("http_500", 0) for r in results) == 2
    for request, scored in zip(requests, results, strict=True):
        assert scored.ok, scored.error
        prompt = emulator_tokenize(render_chat(request.messages, add_generation_prompt=True))
        assert scored.prompt_tokens == len(prompt)
        expected = emulator_tokenize(request.completion + "<|eos|>")
        assert [t.token_id for t in scored.tokens] == expected
        for token in scored.tokens:
            assert token.top[0][1] == token.token_id and token.top[0][2] == token.logprob
            assert [alt[2] for alt in token.top] == sorted(
                (alt[2] for alt in token.top), reverse=True
            )
            assert len(token.top) == 4


# --- tokenization and wire parsing -------------------------------------------------------------


class ShiftingTemplate:
    """A template that renders earlier turns otherwise once an answer follows (as templates
    that drop reasoning from past turns do): the completion cannot be cut off the chat."""

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):  # type: ignore[no-untyped-def]
        answered = messages[-1]["role"] == "assistant"
        head = "[done]" if answered else "[open]"
        body = "".join(f"{m['role']}:{m['content']};" for m in messages)
        return head + body + ("assistant:" if add_generation_prompt else "")

    def encode(self, text: str, add_special_tokens: bool) -> list[int]:
        return [ord(c) for c in text]


def test_completion_ids_fall_back_when_the_template_shifts() -> None:
    messages = [{"role": "user", "content": "hi"}]
    prompt, completion, templated = completion_ids(ShiftingTemplate(), messages, "ok")
    assert prompt == [ord(c) for c in "[open]user:hi;assistant:"]
    assert completion == [ord("o"), ord("k")] and templated is False


def test_completion_ids_cut_the_answer_and_its_end_of_turn(reference: Reference) -> None:
    messages = chat(0)
    prompt, completion, templated = completion_ids(reference.tokenizer, messages, "Hello sea.")
    assert templated is True and prompt == reference.prompt_ids(messages)
    assert completion == expected_completion_ids(reference, "Hello sea.")


def test_token_logprob_ranks_and_floors() -> None:
    entries = [(9, -3.0, "c"), (4, -0.5, "a"), (5, None, "z"), (6, -1.5, "b")]
    token = token_logprob(9, entries, 2)
    assert (token.token_id, token.logprob, token.token) == (9, -3.0, "c")
    assert token.top == [("a", 4, -0.5), ("b", 6, -1.5)]
    assert token_logprob(5, entries, 4).logprob == -9999.0  # null: vLLM's -inf
    with pytest.raises(KeyError):
        token_logprob(7, entries, 2)


def test_parse_prompt_logprobs_checks_the_shape() -> None:
    ids = [1, 7, 9]
    body = {
        "choices": [
            {
                "prompt_logprobs": [
                    None,
                    {"7": {"logprob": -0.2, "rank": 1, "decoded_token": "a"}},
                    {
                        "9": {"logprob": -2.0, "rank": 3, "decoded_token": "b"},
                        "3": {"logprob": -0.1, "rank": 1, "decoded_token": "c"},
                        "4": {"logprob": -0.9, "rank": 2, "decoded_token": "d"},
                    },
                ],
                "prompt_token_ids": ids,
            }
        ]
    }
    [second, third] = parse_prompt_logprobs(body, ids, 1, 2, "u")
    assert (second.token_id, second.logprob, second.top) == (7, -0.2, [("a", 7, -0.2)])
    assert third.top == [("c", 3, -0.1), ("d", 4, -0.9)] and third.logprob == -2.0
    with pytest.raises(TeacherRejected, match="no prompt_logprobs"):
        parse_prompt_logprobs({"choices": [{"text": ""}]}, ids, 1, 2, "u")
    body["choices"][0]["prompt_token_ids"] = [1, 7, 8]
    with pytest.raises(Exception, match="differ"):
        parse_prompt_logprobs(body, ids, 1, 2, "u")


# --- vllm (stand-ins shaped like vLLM's outputs) -----------------------------------------------


def test_vllm_score_params_and_prompt_logprobs() -> None:
    assert to_vllm_score_kwargs(20) == {
        "n": 1,
        "temperature": 0.0,
        "max_tokens": 1,
        "prompt_logprobs": 20,
        "output_kind": "FINAL_ONLY",
    }
    output = RequestOutput(
        request_id="r",
        prompt_token_ids=[1, 2, 3, 4],
        outputs=[CompletionOutput(0, "x", [5])],
    )
    output.prompt_logprobs = [  # type: ignore[attr-defined]
        None,
        {2: Logprob(-0.3, 1, "b")},
        {3: Logprob(-4.0, 7, "c"), 8: Logprob(-0.2, 1, "h"), 6: Logprob(-1.0, 2, "f")},
        {4: Logprob(-0.1, 1, "d"), 9: Logprob(-3.0, 2, "i")},
    ]
    tokens = from_vllm_prompt_logprobs(output, 2, 2)
    assert [(t.token_id, t.token, t.logprob) for t in tokens] == [(3, "c", -4.0), (4, "d", -0.1)]
    assert tokens[0].top == [("h", 8, -0.2), ("f", 6, -1.0)]
    assert tokens[1].top == [("d", 4, -0.1), ("i", 9, -3.0)]


class ScoringEngine:
    """A stand-in AsyncLLM that answers prompt_logprobs from the tiny model (the real one)."""

    def __init__(self, reference: Reference) -> None:
        self.reference = reference
        self.params: list[Any] = []

    def get_tokenizer(self) -> Any:
        return self.reference.tokenizer

    async def generate(self, prompt: dict[str, Any], params: Any, request_id: str) -> Any:
        self.params.append(params)
        ids = prompt["prompt_token_ids"]
        logp = self.reference.logp(ids)
        k = params["prompt_logprobs"]
        positions: list[Any] = [None]
        for t in range(1, len(ids)):
            values, top = logp[t - 1].topk(k)
            entry = {
                i: Logprob(v, None, "") for i, v in zip(top.tolist(), values.tolist(), strict=True)
            }
            entry.setdefault(ids[t], Logprob(float(logp[t - 1, ids[t]]), None, ""))
            positions.append(entry)
        output = RequestOutput(request_id, ids, [CompletionOutput(0, "", [0])])
        output.prompt_logprobs = positions  # type: ignore[attr-defined]
        yield output

    def shutdown(self) -> None:
        pass


async def test_vllm_score_and_tokenizer_info_with_a_stand_in_engine(
    monkeypatch: pytest.MonkeyPatch,
    reference: Reference,
    local_teacher: TransformersTeacher,
    tiny_dir: Path,
) -> None:
    monkeypatch.setattr(vllm_teacher, "build_score_params", to_vllm_score_kwargs)
    teacher = VLLMTeacher.__new__(VLLMTeacher)
    engine = ScoringEngine(reference)
    teacher.model, teacher._engine = str(tiny_dir), engine
    requests = score_requests()
    results = await teacher.score(requests)
    for request, result in zip(requests, results, strict=True):
        assert result.ok, result.error
        prompt = reference.prompt_ids(request.messages)
        assert result.prompt_tokens == len(prompt)
        assert [t.token_id for t in result.tokens] == expected_completion_ids(
            reference, request.completion
        )
        reference.assert_matches(prompt, result.tokens, K)
    assert all(p["max_tokens"] == 1 and p["prompt_logprobs"] == K for p in engine.params)
    info = await teacher.tokenizer_info()
    assert info == await local_teacher.tokenizer_info()
