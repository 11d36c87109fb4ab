"""A small OpenAI-compatible loopback server over a REAL tiny transformers model, with vLLM's
response shapes for what white-box capture uses (tests only).

Routes (vLLM 0.33's shapes)::

    POST /v1/chat/completions   logprobs + top_logprobs (+ return_tokens_as_token_ids: tokens
                                as "token_id:N", with "bytes"), n, temperature, top_p, seed
    POST /v1/completions        a token-id prompt with echo, max_tokens 0 and prompt_logprobs k:
                                choices[0].prompt_logprobs = [null, {"<id>": {"logprob", "rank",
                                "decoded_token"}}, ...] (the top-k and the prompt's own token)
    POST /tokenize              {messages, add_generation_prompt} or {prompt, add_special_tokens}
                                -> {count, max_model_len, tokens, token_strs}
    GET  /tokenizer_info        the tokenizer's settings (init_kwargs without file paths,
                                AddedTokens as their text) and tokenizer_class
    GET  /v1/models
    POST /control               {model?: DIR, token_ids?: bool, tokenizer_info?: bool}: serve
                                another checkpoint, or behave otherwise, from now on (tests)

Logprobs are the model's raw ``log_softmax`` (vLLM's default ``raw_logprobs``), so a test can
check what a client captured against the model's own distribution. ``--no-token-ids`` makes it
a server that is not vLLM (tokens as text, no ``/tokenize``, ``/tokenizer_info`` or
``prompt_logprobs``); ``--no-tokenizer-info`` a vLLM started without
``--enable-tokenizer-info-endpoint``; ``POST /control`` switches these (and the checkpoint) at
run time, so one process (torch takes seconds to import) serves a whole test module.

``python -m tests.hf_server --model DIR [--served-model-name NAME] --port 0`` prints
``READY <port>``; :func:`running_hf_server` runs it as a subprocess, stopped by pid.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from aiohttp import web

from tests.emulator_proc import EmulatorProcess, spawn_server

MAX_MODEL_LEN = 512


class HFServer:
    """The model, its tokenizer and the route handlers."""

    def __init__(
        self, model_dir: str, served_name: str, *, token_ids: bool, tokenizer_info: bool
    ) -> None:
        import torch

        self.torch = torch
        self.load(model_dir)
        self.served_name = served_name
        self.token_ids = token_ids
        self.with_tokenizer_info = tokenizer_info
        self.counter = 0

    def load(self, model_dir: str) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_dir = model_dir
        self.tokenizer: Any = AutoTokenizer.from_pretrained(model_dir)
        self.model: Any = AutoModelForCausalLM.from_pretrained(model_dir).eval()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/tokenize", self.tokenize)
        app.router.add_get("/tokenizer_info", self.tokenizer_info)
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/control", self.control)
        return app

    async def control(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("model") and body["model"] != self.model_dir:
            self.load(body["model"])
        self.token_ids = bool(body.get("token_ids", self.token_ids))
        self.with_tokenizer_info = bool(body.get("tokenizer_info", self.with_tokenizer_info))
        return self._json(
            {
                "model": self.model_dir,
                "token_ids": self.token_ids,
                "tokenizer_info": self.with_tokenizer_info,
            }
        )

    # -- helpers --

    def _chat_ids(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> list[int]:
        # as vLLM: render the template as text, tokenize it without adding special tokens again
        text = self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt
        )
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def _token(self, token_id: int, as_ids: bool) -> dict[str, Any]:
        text = self.tokenizer.decode([token_id])
        return {
            "token": f"token_id:{token_id}" if as_ids else text,
            "bytes": list(text.encode("utf-8")),
        }

    def _check_model(self, body: dict[str, Any]) -> web.Response | None:
        model = body.get("model")
        if model not in (None, self.served_name):
            return error(404, f"The model `{model}` does not exist.")
        return None

    # -- routes --

    async def chat(self, request: web.Request) -> web.Response:
        torch = self.torch
        body = await request.json()
        if (refused := self._check_model(body)) is not None:
            return refused
        prompt = self._chat_ids(body["messages"], add_generation_prompt=True)
        temperature = float(body.get("temperature", 1.0))
        k = int(body.get("top_logprobs") or 0) if body.get("logprobs") else None
        as_ids = bool(body.get("return_tokens_as_token_ids")) and self.token_ids
        seed = body.get("seed")
        choices = []
        completion_tokens = 0
        for index in range(int(body.get("n") or 1)):
            if seed is not None:
                torch.manual_seed(int(seed) + index)
            kwargs: dict[str, Any] = {"do_sample": temperature > 0}
            if temperature > 0:
                kwargs.update(temperature=temperature, top_p=float(body.get("top_p", 1.0)), top_k=0)
            with torch.inference_mode():
                out = self.model.generate(
                    torch.tensor([prompt]),
                    attention_mask=torch.ones((1, len(prompt)), dtype=torch.long),
                    max_new_tokens=int(body.get("max_tokens") or 16),
                    pad_token_id=self.tokenizer.pad_token_id,
                    return_dict_in_generate=True,
                    output_logits=True,
                    **kwargs,
                )
            generated = out.sequences[0, len(prompt) :].tolist()
            finish = "length"
            if self.tokenizer.eos_token_id in generated:
                generated = generated[: generated.index(self.tokenizer.eos_token_id) + 1]
                finish = "stop"
            completion_tokens += len(generated)
            logprobs = None
            if k is not None:
                logp = torch.stack(list(out.logits), dim=1)[0].float().log_softmax(-1)
                content = []
                for t, token_id in enumerate(generated):
                    values, ids = logp[t].topk(k)
                    content.append(
                        {
                            **self._token(token_id, as_ids),
                            "logprob": float(logp[t, token_id]),
                            "top_logprobs": [
                                {**self._token(i, as_ids), "logprob": v}
                                for i, v in zip(ids.tolist(), values.tolist(), strict=True)
                            ],
                        }
                    )
                logprobs = {"content": content}
            choices.append(
                {
                    "index": index,
                    "message": {
                        "role": "assistant",
                        "content": self.tokenizer.decode(generated, skip_special_tokens=True),
                    },
                    "logprobs": logprobs,
                    "finish_reason": finish,
                }
            )
        return self._json(
            {
                "id": f"chatcmpl-{self._next()}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": self.served_name,
                "choices": choices,
                "usage": {
                    "prompt_tokens": len(prompt),
                    "completion_tokens": completion_tokens,
                    "total_tokens": len(prompt) + completion_tokens,
                },
            }
        )

    async def completions(self, request: web.Request) -> web.Response:
        torch = self.torch
        body = await request.json()
        if (refused := self._check_model(body)) is not None:
            return refused
        ids = [int(i) for i in body["prompt"]]
        if body.get("max_tokens") != 0 or not body.get("echo"):
            return error(400, "this test server only echoes prompts (echo, max_tokens 0)")
        k = body.get("prompt_logprobs")
        positions: list[Any] | None = None
        if k is not None and self.token_ids:
            with torch.inference_mode():
                logits = self.model(torch.tensor([ids])).logits[0]
            logp = logits.float().log_softmax(-1)  # row t - 1: the distribution of token t
            positions = [None]
            for t in range(1, len(ids)):
                row = logp[t - 1]
                values, top = row.topk(int(k))
                entries = dict(zip(top.tolist(), values.tolist(), strict=True))
                own = ids[t]
                entries.setdefault(own, float(row[own]))
                positions.append(
                    {
                        str(i): {
                            "logprob": v,
                            "rank": int((row > v).sum()) + 1,
                            "decoded_token": self.tokenizer.decode([i]),
                        }
                        for i, v in entries.items()
                    }
                )
        choice: dict[str, Any] = {
            "index": 0,
            "text": "",
            "logprobs": None,
            "finish_reason": "length",
            "stop_reason": None,
            "prompt_logprobs": positions,
        }
        if body.get("return_token_ids") and self.token_ids:
            choice["prompt_token_ids"] = ids
            choice["token_ids"] = []
        return self._json(
            {
                "id": f"cmpl-{self._next()}",
                "object": "text_completion",
                "created": int(time.time()),
                "model": self.served_name,
                "choices": [choice],
                "usage": {
                    "prompt_tokens": len(ids),
                    "completion_tokens": 0,
                    "total_tokens": len(ids),
                },
            }
        )

    async def tokenize(self, request: web.Request) -> web.Response:
        if not self.token_ids:
            return error(404, "Not Found")
        body = await request.json()
        if "messages" in body:
            text = self.tokenizer.apply_chat_template(
                body["messages"],
                tokenize=False,
                add_generation_prompt=bool(body.get("add_generation_prompt", True)),
            )
            ids = self.tokenizer.encode(
                text, add_special_tokens=bool(body.get("add_special_tokens"))
            )
        else:
            ids = self.tokenizer.encode(
                body["prompt"], add_special_tokens=bool(body.get("add_special_tokens", True))
            )
        return self._json(
            {"count": len(ids), "max_model_len": MAX_MODEL_LEN, "tokens": ids, "token_strs": None}
        )

    async def tokenizer_info(self, request: web.Request) -> web.Response:
        if not (self.token_ids and self.with_tokenizer_info):
            return error(404, "Not Found")
        config = {
            key: plain(value)
            for key, value in self.tokenizer.init_kwargs.items()
            if key not in ("vocab_file", "merges_file")
        }
        config["tokenizer_class"] = type(self.tokenizer).__name__
        return self._json(config)

    async def models(self, request: web.Request) -> web.Response:
        model = {"id": self.served_name, "object": "model", "max_model_len": MAX_MODEL_LEN}
        return self._json({"object": "list", "data": [model]})

    def _next(self) -> int:
        self.counter += 1
        return self.counter

    @staticmethod
    def _json(data: Any) -> web.Response:
        # the stdlib encoder: tokenizer settings hold ints beyond 64 bits (model_max_length)
        return web.Response(text=json.dumps(data), content_type="application/json")


def plain(value: Any) -> Any:
    """JSON-able like vLLM's ``_make_json_serializable``: objects with ``content`` (AddedToken)
    become it."""
    if hasattr(value, "content"):
        return value.content
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def error(status: int, message: str) -> web.Response:
    body = {"error": {"message": message, "type": "BadRequestError", "code": status}}
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


# --- process ----------------------------------------------------------------------------------


async def serve(args: argparse.Namespace) -> None:
    server = HFServer(
        args.model,
        args.served_model_name or args.model,
        token_ids=args.token_ids,
        tokenizer_info=args.tokenizer_info,
    )
    runner = web.AppRunner(server.app(), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sys.stdout.write(f"READY {runner.addresses[0][1]}\n")
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.hf_server")
    parser.add_argument("--model", required=True, help="a transformers model folder")
    parser.add_argument("--served-model-name", default=None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--no-token-ids", dest="token_ids", action="store_false")
    parser.add_argument("--no-tokenizer-info", dest="tokenizer_info", action="store_false")
    asyncio.run(serve(parser.parse_args(argv)))


@contextmanager
def running_hf_server(
    model_dir: str,
    *,
    served_name: str = "tiny-teacher",
    token_ids: bool = True,
    tokenizer_info: bool = True,
    ready_timeout_s: float = 120.0,
) -> Iterator[EmulatorProcess]:
    """The server in a subprocess on a free loopback port; stopped (by pid) on exit."""
    args = [
        sys.executable,
        "-m",
        "tests.hf_server",
        "--model",
        model_dir,
        "--served-model-name",
        served_name,
    ]
    if not token_ids:
        args.append("--no-token-ids")
    if not tokenizer_info:
        args.append("--no-tokenizer-info")
    handle = spawn_server(args, model=served_name, ready_timeout_s=ready_timeout_s)
    try:
        yield handle
    finally:
        handle.stop()


@contextmanager
def serving(server: EmulatorProcess, **control: Any) -> Iterator[dict[str, Any]]:
    """``POST /control`` with ``control`` (model, token_ids, tokenizer_info), put back on
    exit."""
    before = httpx.post(f"{server.root_url}/control", json={}).raise_for_status().json()
    try:
        yield httpx.post(f"{server.root_url}/control", json=control).raise_for_status().json()
    finally:
        httpx.post(f"{server.root_url}/control", json=before, timeout=60).raise_for_status()


if __name__ == "__main__":
    main()
