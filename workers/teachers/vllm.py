"""In-process vLLM teacher: ``vllm.v1.engine.async_llm.AsyncLLM`` (alias ``vllm.AsyncLLMEngine``).

The whole batch is submitted at once, one ``engine.generate()`` iterator per request, so vLLM's
continuous batching sees every request; prefix caching is on, so prompts that share a stable
prefix (skill, guidelines, few-shot seeds) reuse its KV cache. Chat messages are rendered with
the tokenizer's chat template and submitted as token ids.

The translation both ways is plain functions over duck-typed objects
(:func:`to_vllm_sampling_kwargs`, :func:`from_vllm_output`, :func:`render_chat_prompt`,
:func:`to_vllm_score_kwargs`, :func:`from_vllm_prompt_logprobs`), tested without vllm
installed; vllm is imported only inside :class:`VLLMTeacher`.

White-box knowledge: ``top_logprobs = k`` becomes ``SamplingParams.logprobs = k`` (the engine
is started with ``max_logprobs`` = :data:`MAX_TOP_LOGPROBS`; vLLM's default is 20), each
position a ``{token_id: Logprob}`` dict, so every token and alternative has its id. vLLM's
default ``logprobs_mode`` is ``raw_logprobs``: the model's distribution before temperature and
top-p, as the transformers backend reports it. :meth:`VLLMTeacher.score` teacher-forces given
text: the prompt and the completion (:func:`~workers.teachers.tokenization.completion_ids`) as
one ``TokensPrompt`` with ``prompt_logprobs = k`` and ``max_tokens = 1``.
Checked against vLLM 0.33: ``SamplingParams.max_tokens`` defaults to 16 and the model's
``generation_config.json`` overrides defaults unless ``generation_config="vllm"``, so every
value is explicit; structured output is ``StructuredOutputsParams(json=schema)`` (the older
``guided_decoding`` is gone).
"""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from workers.teachers.base import (
    Generation,
    ScoreRequest,
    ScoreResult,
    TeacherBadResponse,
    TeacherError,
    TeacherRejected,
    TeacherRequest,
    TeacherResult,
    TeacherUnavailable,
    TokenizerInfo,
    TokenLogprob,
    Usage,
)
from workers.teachers.tokenization import completion_ids, local_tokenizer_info, token_logprob

if TYPE_CHECKING:
    from app.config import TeacherSettings

MAX_TOP_LOGPROBS = 100  # the engine's max_logprobs: the most a job may ask (TeacherSpec)

# --- translation (pure, no vllm needed) --------------------------------------------------------


def engine_args_kwargs(
    *,
    model: str,
    tensor_parallel_size: int = 1,
    gpu_memory_utilization: float = 0.9,
    max_model_len: int | None = None,
    max_num_seqs: int | None = None,
    dtype: str = "auto",
) -> dict[str, Any]:
    """Keyword arguments for ``AsyncEngineArgs``; unset limits keep vLLM's own defaults."""
    kwargs: dict[str, Any] = {
        "model": model,
        "tensor_parallel_size": tensor_parallel_size,
        "gpu_memory_utilization": gpu_memory_utilization,
        "dtype": dtype,
        "enable_prefix_caching": True,
        "generation_config": "vllm",  # our values, not the checkpoint's generation_config.json
        "max_logprobs": MAX_TOP_LOGPROBS,  # vLLM's default is 20
    }
    if max_model_len is not None:
        kwargs["max_model_len"] = max_model_len
    if max_num_seqs is not None:
        kwargs["max_num_seqs"] = max_num_seqs
    return kwargs


def to_vllm_sampling_kwargs(request: TeacherRequest) -> dict[str, Any]:
    """Keyword arguments for ``vllm.SamplingParams``, every value explicit.

    ``structured_outputs`` is given as the keyword arguments of ``StructuredOutputsParams``
    and ``output_kind`` as the name of a ``RequestOutputKind``; :class:`VLLMTeacher` builds
    the vllm objects from them.
    """
    sampling = request.sampling
    kwargs: dict[str, Any] = {
        "n": sampling.n,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_tokens": sampling.max_tokens,
        "seed": sampling.seed,
        "stop": list(sampling.stop),
        "logprobs": request.top_logprobs,
        "output_kind": "FINAL_ONLY",  # one output per request, also with n > 1
    }
    if request.json_schema is not None:
        kwargs["structured_outputs"] = {"json": request.json_schema}
    return kwargs


def render_chat_prompt(tokenizer: Any, messages: list[dict[str, str]]) -> dict[str, Any]:
    """A ``TokensPrompt`` dict: the chat template rendered as text, then tokenized without
    adding special tokens again (the template already has them)."""
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if isinstance(rendered, str):
        return {"prompt_token_ids": list(tokenizer.encode(rendered, add_special_tokens=False))}
    # some vLLM tokenizers (Mistral's) always return token ids
    ids = rendered["input_ids"] if isinstance(rendered, Mapping) else rendered
    return {"prompt_token_ids": [int(i) for i in ids]}


def from_vllm_output(
    request_output: Any, *, top_logprobs: int | None = None, latency_s: float = 0.0
) -> TeacherResult:
    """A :class:`TeacherResult` from a finished ``vllm.RequestOutput`` (duck-typed)."""
    outputs = sorted(request_output.outputs, key=lambda o: getattr(o, "index", 0))
    generations = [
        Generation(
            text=output.text,
            finish_reason=output.finish_reason,
            logprobs=_logprobs(output, top_logprobs),
        )
        for output in outputs
    ]
    usage = Usage(
        prompt_tokens=len(request_output.prompt_token_ids or ()),
        completion_tokens=sum(len(output.token_ids) for output in outputs),
    )
    return TeacherResult(generations=generations, usage=usage, latency_s=latency_s)


def _logprobs(output: Any, k: int | None) -> list[TokenLogprob] | None:
    """Per position: vLLM gives ``{token_id: Logprob(logprob, rank, decoded_token)}`` holding
    the top-k and the sampled token (which may rank below k)."""
    if output.logprobs is None:
        return None
    return [
        _position(int(token_id), position, k)
        for token_id, position in zip(output.token_ids, output.logprobs, strict=False)
    ]


def _position(token_id: int, position: Mapping[int, Any], k: int | None) -> TokenLogprob:
    entries = [(i, lp.logprob, lp.decoded_token or "") for i, lp in position.items()]
    return token_logprob(token_id, entries, len(entries) if k is None else k)


def to_vllm_score_kwargs(top_logprobs: int) -> dict[str, Any]:
    """Keyword arguments for the ``vllm.SamplingParams`` of teacher-forced scoring: the
    prompt's top-k logprobs, one (greedy, discarded) generated token."""
    return {
        "n": 1,
        "temperature": 0.0,
        "max_tokens": 1,
        "prompt_logprobs": top_logprobs,
        "output_kind": "FINAL_ONLY",
    }


def from_vllm_prompt_logprobs(request_output: Any, start: int, k: int) -> list[TokenLogprob]:
    """The scored positions ``start..`` of a finished ``RequestOutput`` with
    ``prompt_logprobs``: per position ``{token_id: Logprob}`` (the top-k and the prompt's own
    token); position 0 has none (nothing precedes it)."""
    ids = list(request_output.prompt_token_ids or ())
    positions = request_output.prompt_logprobs
    if positions is None or len(positions) < len(ids):
        raise TeacherBadResponse("vLLM returned no prompt logprobs")
    tokens = []
    for t in range(start, len(ids)):
        if positions[t] is None:
            raise TeacherBadResponse(f"vLLM returned no prompt logprobs at position {t}")
        tokens.append(_position(ids[t], positions[t], k))
    return tokens


def map_engine_error(exc: BaseException) -> TeacherError | None:
    """The typed error for an exception out of ``AsyncLLM.generate`` (None: a bug, re-raise)."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    if "EngineDeadError" in names:
        return TeacherUnavailable(f"the vLLM engine died: {exc}")
    if "EngineGenerateError" in names:
        return TeacherUnavailable(f"vLLM failed to generate: {exc!r}")
    if names & {"VLLMClientError", "VLLMValidationError", "ValueError"}:
        return TeacherRejected(f"vLLM rejected the request: {exc}")
    return None


# --- the backend -------------------------------------------------------------------------------


class VLLMTeacher:
    """vLLM ``AsyncLLM`` in this process (its engine core runs in a child process)."""

    backend = "vllm"

    def __init__(
        self,
        *,
        model: str,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        max_num_seqs: int | None = None,
        dtype: str = "auto",
    ) -> None:
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        self.model = model
        args = AsyncEngineArgs(
            **engine_args_kwargs(
                model=model,
                tensor_parallel_size=tensor_parallel_size,
                gpu_memory_utilization=gpu_memory_utilization,
                max_model_len=max_model_len,
                max_num_seqs=max_num_seqs,
                dtype=dtype,
            )
        )
        self._engine: Any = AsyncLLM.from_engine_args(args)
        self._tokenizer_info: TokenizerInfo | None = None

    @classmethod
    def from_settings(cls, settings: TeacherSettings) -> VLLMTeacher:
        """Build from the worker's teacher settings."""
        if not settings.model:
            raise ValueError("the vllm teacher needs DISTILLERY_TEACHER__MODEL")
        return cls(
            model=settings.model,
            tensor_parallel_size=settings.tensor_parallel_size,
            gpu_memory_utilization=settings.gpu_memory_utilization,
            max_model_len=settings.max_model_len,
            max_num_seqs=settings.max_num_seqs,
            dtype=settings.dtype,
        )

    async def generate(self, requests: Sequence[TeacherRequest]) -> list[TeacherResult]:
        """Submit the whole batch at once; results in request order."""
        if not requests:
            return []
        tokenizer = await self._tokenizer()
        prompts = await asyncio.to_thread(_render_all, tokenizer, requests)
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(self._run(prompt, request))
                for prompt, request in zip(prompts, requests, strict=True)
            ]
        return [task.result() for task in tasks]

    async def tokenizer_info(self) -> TokenizerInfo:
        """The engine's tokenizer identity (``source: "local"``), computed once."""
        if getattr(self, "_tokenizer_info", None) is None:
            tokenizer = await self._tokenizer()
            self._tokenizer_info = await asyncio.to_thread(
                local_tokenizer_info, tokenizer, self.model
            )
        assert self._tokenizer_info is not None
        return dict(self._tokenizer_info)

    async def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        """Teacher-force every request's completion after its prompt, the whole batch at
        once; results in request order."""
        if not requests:
            return []
        tokenizer = await self._tokenizer()
        prepared = await asyncio.to_thread(_prepare_scores, tokenizer, requests)
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(self._score(ids, request))
                for ids, request in zip(prepared, requests, strict=True)
            ]
        return [task.result() for task in tasks]

    async def aclose(self) -> None:
        """Shut the engine down (frees the GPU)."""
        self._engine.shutdown()

    async def _tokenizer(self) -> Any:
        tokenizer = self._engine.get_tokenizer()
        if inspect.isawaitable(tokenizer):  # async in older vLLM releases
            tokenizer = await tokenizer
        return tokenizer

    async def _score(
        self, ids: tuple[list[int], list[int]] | TeacherError, request: ScoreRequest
    ) -> ScoreResult:
        started = time.perf_counter()
        if isinstance(ids, TeacherError):
            return ScoreResult(tokens=[], error=ids)
        prompt, completion = ids
        if not prompt:
            empty = TeacherRejected("the chat template rendered an empty prompt")
            return ScoreResult(tokens=[], error=empty)
        if not completion:
            return ScoreResult(tokens=[], prompt_tokens=len(prompt))
        request_id = f"{request.request_id or 'score'}-{uuid.uuid4().hex[:12]}"
        final = None
        try:
            params = build_score_params(request.top_logprobs)
            tokens_prompt = {"prompt_token_ids": prompt + completion}
            async for output in self._engine.generate(tokens_prompt, params, request_id):
                final = output
            if final is None:
                raise TeacherBadResponse("vLLM returned no output")
            tokens = from_vllm_prompt_logprobs(final, len(prompt), request.top_logprobs)
        except TeacherError as exc:
            return ScoreResult(tokens=[], latency_s=time.perf_counter() - started, error=exc)
        except Exception as exc:
            error = map_engine_error(exc)
            if error is None:
                raise
            return ScoreResult(tokens=[], latency_s=time.perf_counter() - started, error=error)
        return ScoreResult(
            tokens=tokens, prompt_tokens=len(prompt), latency_s=time.perf_counter() - started
        )

    async def _run(
        self, prompt: Mapping[str, Any] | TeacherError, request: TeacherRequest
    ) -> TeacherResult:
        started = time.perf_counter()
        if isinstance(prompt, TeacherError):
            return TeacherResult.failed(prompt)
        request_id = f"{request.request_id or 'req'}-{uuid.uuid4().hex[:12]}"
        final = None
        try:
            params = build_sampling_params(request)
            async for output in self._engine.generate(dict(prompt), params, request_id):
                final = output
        except Exception as exc:
            error = map_engine_error(exc)
            if error is None:
                raise
            return TeacherResult.failed(error, time.perf_counter() - started)
        if final is None:
            error = TeacherBadResponse("vLLM returned no output")
            return TeacherResult.failed(error, time.perf_counter() - started)
        return from_vllm_output(
            final, top_logprobs=request.top_logprobs, latency_s=time.perf_counter() - started
        )


def build_sampling_params(request: TeacherRequest) -> Any:
    """``vllm.SamplingParams`` for a request (needs vllm)."""
    from vllm.sampling_params import RequestOutputKind, SamplingParams, StructuredOutputsParams

    kwargs = to_vllm_sampling_kwargs(request)
    kwargs["output_kind"] = RequestOutputKind[kwargs["output_kind"]]
    if "structured_outputs" in kwargs:
        kwargs["structured_outputs"] = StructuredOutputsParams(**kwargs["structured_outputs"])
    return SamplingParams(**kwargs)


def build_score_params(top_logprobs: int) -> Any:
    """``vllm.SamplingParams`` for teacher-forced scoring (needs vllm)."""
    from vllm.sampling_params import RequestOutputKind, SamplingParams

    kwargs = to_vllm_score_kwargs(top_logprobs)
    kwargs["output_kind"] = RequestOutputKind[kwargs["output_kind"]]
    return SamplingParams(**kwargs)


def _prepare_scores(
    tokenizer: Any, requests: Sequence[ScoreRequest]
) -> list[tuple[list[int], list[int]] | TeacherError]:
    """(prompt ids, completion ids) per request (off the event loop); a chat the template
    refuses fails only its request."""
    prepared: list[tuple[list[int], list[int]] | TeacherError] = []
    for request in requests:
        try:
            prompt, completion, _ = completion_ids(tokenizer, request.messages, request.completion)
        except Exception as exc:  # jinja errors, templates refusing a role order, ...
            prepared.append(TeacherRejected(f"cannot render the chat template: {exc}"))
        else:
            prepared.append((prompt, completion))
    return prepared


def _render_all(
    tokenizer: Any, requests: Sequence[TeacherRequest]
) -> list[dict[str, Any] | TeacherError]:
    """Render every request's chat (off the event loop); a bad chat fails only its request."""
    prompts: list[dict[str, Any] | TeacherError] = []
    for request in requests:
        try:
            prompts.append(render_chat_prompt(tokenizer, request.messages))
        except Exception as exc:  # jinja errors, templates refusing a role order, ...
            prompts.append(TeacherRejected(f"cannot render the chat template: {exc}"))
    return prompts
