"""Local Hugging Face transformers teacher, on CPU or GPU.

Requests with the same sampling parameters are batched (``batch_size`` at a time, left padding,
the tokenizer's chat template) into one ``model.generate`` call, run in a worker thread so the
event loop stays free. Sampling is seeded with ``torch.manual_seed(seed)`` per call when the
request has a seed; ``temperature == 0`` is greedy. ``n`` maps to ``num_return_sequences``
(greedy repeats its one answer). Top-k logprobs come from the raw logits (``out.logits``, before
temperature and top-p), with token ids, as vLLM reports them.

White-box knowledge: :meth:`TransformersTeacher.tokenizer_info` is the loaded tokenizer's
identity (:mod:`workers.teachers.tokenization`); :meth:`TransformersTeacher.score`
teacher-forces given completions: one forward pass per batch (right padding), ``log_softmax``
of the logits in float32, at every completion position the chosen id's logprob and the top-k.

``json_schema`` is NOT enforced by this backend: the caller validates structured output.
Good for tests, small models and CPU laptops; use vllm for throughput.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from workers.teachers.base import (
    Generation,
    SamplingParams,
    ScoreRequest,
    ScoreResult,
    TeacherRejected,
    TeacherRequest,
    TeacherResult,
    TeacherUnavailable,
    TokenizerInfo,
    TokenLogprob,
    Usage,
)
from workers.teachers.tokenization import completion_ids, local_tokenizer_info

if TYPE_CHECKING:
    from app.config import TeacherSettings

BatchKey = tuple[SamplingParams, int | None]
Scoring = tuple[int, list[int], list[int], int]  # request index, prompt ids, completion ids, k


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; anything else unchanged."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: str) -> Any:
    """``auto`` (the checkpoint's dtype) or a torch dtype name such as ``bfloat16``."""
    if dtype == "auto":
        return "auto"
    value = getattr(torch, dtype, None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"unknown torch dtype {dtype!r}")
    return value


def group_requests(requests: Sequence[TeacherRequest], batch_size: int) -> list[list[int]]:
    """Indices of requests that can share one ``generate`` call, ``batch_size`` at most each."""
    groups: dict[BatchKey, list[int]] = {}
    for index, request in enumerate(requests):
        groups.setdefault((request.sampling, request.top_logprobs), []).append(index)
    return [
        indices[start : start + batch_size]
        for indices in groups.values()
        for start in range(0, len(indices), batch_size)
    ]


class TransformersTeacher:
    """A causal LM loaded with transformers; one ``generate`` call per batch."""

    backend = "transformers"

    def __init__(
        self, *, model: str, device: str = "auto", dtype: str = "auto", batch_size: int = 8
    ) -> None:
        self.model = model
        self.device = resolve_device(device)
        self.batch_size = batch_size
        # typed Any: transformers' own annotations are unions mypy cannot narrow here
        self._tokenizer: Any = AutoTokenizer.from_pretrained(model)
        self._tokenizer.padding_side = "left"  # decoder-only batching
        if self._tokenizer.pad_token_id is None:
            self._tokenizer.pad_token = self._tokenizer.eos_token
        loaded: Any = AutoModelForCausalLM.from_pretrained(model, dtype=resolve_dtype(dtype))
        self._model: Any = loaded.to(self.device).eval()
        self._eos_ids = self._stop_token_ids()
        self._token_text: dict[int, str] = {}
        self._tokenizer_info: TokenizerInfo | None = None
        # one generate at a time, also when a cancelled caller's thread is still running
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: TeacherSettings) -> TransformersTeacher:
        """Build from the worker's teacher settings."""
        if not settings.model:
            raise ValueError("the transformers teacher needs DISTILLERY_TEACHER__MODEL")
        return cls(
            model=settings.model,
            device=settings.device,
            dtype=settings.dtype,
            batch_size=settings.batch_size,
        )

    async def generate(self, requests: Sequence[TeacherRequest]) -> list[TeacherResult]:
        """Generate in a worker thread; results in request order."""
        if not requests:
            return []
        return await asyncio.to_thread(self._generate_all, list(requests))

    async def tokenizer_info(self) -> TokenizerInfo:
        """The loaded tokenizer's identity (``source: "local"``), computed once."""
        if self._tokenizer_info is None:
            self._tokenizer_info = await asyncio.to_thread(
                local_tokenizer_info, self._tokenizer, self.model
            )
        return dict(self._tokenizer_info)

    async def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        """Teacher-force each completion after its prompt, in a worker thread; results in
        request order."""
        if not requests:
            return []
        return await asyncio.to_thread(self._score_all, list(requests))

    async def aclose(self) -> None:
        """Free the model (and GPU memory)."""
        self._model = None
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()

    # -- internals (run in the worker thread) --

    def _generate_all(self, requests: list[TeacherRequest]) -> list[TeacherResult]:
        results: list[TeacherResult | None] = [None] * len(requests)
        with self._lock:
            for indices in group_requests(requests, self.batch_size):
                batch = [requests[i] for i in indices]
                started = time.perf_counter()
                try:
                    batch_results = self._generate_batch(batch)
                except torch.OutOfMemoryError as exc:
                    error = TeacherUnavailable(f"out of memory on {self.device}: {exc}")
                    latency = time.perf_counter() - started
                    batch_results = [TeacherResult.failed(error, latency) for _ in batch]
                for index, result in zip(indices, batch_results, strict=True):
                    results[index] = result
        return [r for r in results if r is not None]

    def _generate_batch(self, batch: list[TeacherRequest]) -> list[TeacherResult]:
        sampling, top_k = batch[0].sampling, batch[0].top_logprobs
        started = time.perf_counter()
        encoded = self._tokenizer.apply_chat_template(
            [request.messages for request in batch],
            add_generation_prompt=True,
            return_tensors="pt",
            padding=True,
            return_dict=True,
        ).to(self.device)
        greedy = sampling.temperature == 0
        per_request = 1 if greedy else sampling.n
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        with torch.inference_mode():
            out = self._model.generate(
                **encoded, **self._generate_kwargs(sampling, greedy, top_k is not None)
            )
        sequences = out.sequences[:, encoded["input_ids"].shape[1] :]
        rows = sequences.tolist()
        ends = [self._length(ids) for ids in rows]
        logprobs = None
        if top_k is not None:
            logprobs = self._logprobs(out.logits, sequences, top_k, [n for n, _ in ends])
        generations = [
            self._generation(
                ids, length, finish, sampling.stop, None if logprobs is None else logprobs[row]
            )
            for row, (ids, (length, finish)) in enumerate(zip(rows, ends, strict=True))
        ]
        latency = time.perf_counter() - started
        results = []
        for i in range(len(batch)):
            mine = slice(i * per_request, (i + 1) * per_request)
            gens, lengths = generations[mine], [n for n, _ in ends[mine]]
            if greedy and sampling.n > 1:  # greedy is deterministic: one answer, n times
                gens, lengths = gens * sampling.n, lengths * sampling.n
            usage = Usage(
                prompt_tokens=int(encoded["attention_mask"][i].sum()),
                completion_tokens=sum(lengths),
            )
            results.append(TeacherResult(gens, usage, latency))
        return results

    def _score_all(self, requests: list[ScoreRequest]) -> list[ScoreResult]:
        results: list[ScoreResult | None] = [None] * len(requests)
        work: list[Scoring] = []
        for index, request in enumerate(requests):
            try:
                prompt, completion, _ = completion_ids(
                    self._tokenizer, request.messages, request.completion
                )
            except Exception as exc:  # jinja errors, templates refusing a role order, ...
                error = TeacherRejected(f"cannot render the chat template: {exc}")
                results[index] = ScoreResult(tokens=[], error=error)
                continue
            if not prompt:
                error = TeacherRejected("the chat template rendered an empty prompt")
                results[index] = ScoreResult(tokens=[], error=error)
                continue
            if not completion:
                results[index] = ScoreResult(tokens=[], prompt_tokens=len(prompt))
                continue
            work.append((index, prompt, completion, request.top_logprobs))
        work.sort(key=lambda item: len(item[1]) + len(item[2]))  # similar lengths share a batch
        with self._lock:
            for start in range(0, len(work), self.batch_size):
                batch = work[start : start + self.batch_size]
                started = time.perf_counter()
                try:
                    scored = self._score_batch(batch)
                except torch.OutOfMemoryError as exc:
                    oom = TeacherUnavailable(f"out of memory on {self.device}: {exc}")
                    latency = time.perf_counter() - started
                    for index, *_ in batch:
                        results[index] = ScoreResult(tokens=[], latency_s=latency, error=oom)
                    continue
                latency = time.perf_counter() - started
                for (index, prompt, _, _), tokens in zip(batch, scored, strict=True):
                    results[index] = ScoreResult(tokens, len(prompt), latency)
        return [r for r in results if r is not None]

    def _score_batch(self, batch: list[Scoring]) -> list[list[TokenLogprob]]:
        """One forward pass over prompt + completion rows (right padding: a causal model's
        positions before the padding do not see it)."""
        rows = [prompt + completion for _, prompt, completion, _ in batch]
        width = max(len(row) for row in rows)
        input_ids = torch.full((len(rows), width), self._tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for row, ids in enumerate(rows):
            input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, : len(ids)] = 1
        with torch.inference_mode():
            logits = self._model(
                input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device)
            ).logits
            scored = []
            for row, (_, prompt, completion, k) in enumerate(batch):
                # the logits at position t - 1 are the distribution of token t
                span = logits[row, len(prompt) - 1 : len(prompt) + len(completion) - 1]
                logp = span.float().log_softmax(dim=-1)  # [completion, vocab]
                target = torch.tensor(completion, dtype=torch.long, device=logp.device)
                chosen = logp.gather(-1, target[:, None]).squeeze(-1).tolist()
                values, ids = (t.tolist() for t in logp.topk(min(k, logp.shape[-1]), dim=-1))
                scored.append(
                    [
                        TokenLogprob(
                            token=self._text(token_id),
                            token_id=token_id,
                            logprob=chosen[t],
                            top=[
                                (self._text(i), i, v)
                                for i, v in zip(ids[t], values[t], strict=True)
                            ],
                        )
                        for t, token_id in enumerate(completion)
                    ]
                )
        return scored

    def _generate_kwargs(
        self, sampling: SamplingParams, greedy: bool, want_logits: bool
    ) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": sampling.max_tokens,
            "do_sample": not greedy,
            "num_return_sequences": 1 if greedy else sampling.n,
            "pad_token_id": self._tokenizer.pad_token_id,
            "return_dict_in_generate": True,
            "output_logits": want_logits,
        }
        if not greedy:  # every sampling value explicit: the model's generation_config differs
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        if sampling.stop:
            kwargs.update(stop_strings=list(sampling.stop), tokenizer=self._tokenizer)
        return kwargs

    def _generation(
        self,
        ids: list[int],
        length: int,
        finish: str,
        stop: tuple[str, ...],
        logprobs: list[TokenLogprob] | None,
    ) -> Generation:
        """One completion from a row of generated ids."""
        text = self._tokenizer.decode(ids[:length], skip_special_tokens=True)
        cut = min((p for p in (text.find(s) for s in stop) if p >= 0), default=-1)
        if cut >= 0:  # like vLLM: the stop string ends the text and is not part of it
            text, finish = text[:cut], "stop"
        return Generation(text=text, finish_reason=finish, logprobs=logprobs)

    def _length(self, ids: list[int]) -> tuple[int, str]:
        """Tokens generated (EOS included, padding excluded) and the finish reason."""
        pad = self._tokenizer.pad_token_id
        for position, token in enumerate(ids):
            if token in self._eos_ids:
                return position + 1, "stop"
            if token == pad:  # a row that stopped on a stop string is padded afterwards
                return position, "stop"
        return len(ids), "length"

    def _logprobs(
        self, logits: Sequence[torch.Tensor], sequences: torch.Tensor, k: int, lengths: list[int]
    ) -> list[list[TokenLogprob]]:
        """Per row, per generated position: the chosen token's logprob and the top-k, from the
        raw logits (before temperature and top-p)."""
        logp = torch.stack(list(logits), dim=1).float().log_softmax(dim=-1)  # [rows, T, V]
        k = min(k, logp.shape[-1])
        chosen = logp.gather(-1, sequences[:, : logp.shape[1], None]).squeeze(-1).tolist()
        top_values, top_ids = (t.tolist() for t in logp.topk(k, dim=-1))
        ids = sequences.tolist()
        return [
            [
                TokenLogprob(
                    token=self._text(ids[row][t]),
                    token_id=ids[row][t],
                    logprob=chosen[row][t],
                    top=[
                        (self._text(i), i, v)
                        for i, v in zip(top_ids[row][t], top_values[row][t], strict=True)
                    ],
                )
                for t in range(length)
            ]
            for row, length in enumerate(lengths)
        ]

    def _text(self, token_id: int) -> str:
        text = self._token_text.get(token_id)
        if text is None:
            text = self._token_text[token_id] = self._tokenizer.decode([token_id])
        return text

    def _stop_token_ids(self) -> set[int]:
        ids = {self._tokenizer.eos_token_id}
        configured = getattr(self._model.generation_config, "eos_token_id", None)
        if isinstance(configured, int):
            ids.add(configured)
        elif configured:
            ids.update(configured)
        return {i for i in ids if i is not None}
