"""The teacher's tokenizer as white-box knowledge needs it: its identity, and the token ids of
a completion as the teacher sees it after its prompt.

Pure functions over duck-typed Hugging Face tokenizers (``apply_chat_template``, ``encode``,
``backend_tokenizer``); no torch, no transformers import. Used by the ``transformers`` and
``vllm`` backends (their own tokenizer) and by ``openai`` (a local tokenizer named in the
settings, or the lists of ids the server's ``/tokenize`` gave).

Identity (:data:`~workers.teachers.base.TokenizerInfo`): ``sha256`` is the SHA-256 of the
canonical JSON (sorted keys, no spaces) of the tokenizer's definition, the chat template left
out (it has its own ``chat_template_sha256``):

* a local tokenizer: ``{"tokenizer": <backend_tokenizer.to_str() as JSON, without its
  "padding" and "truncation" settings>, "special_tokens": <special_tokens_map>}``; a slow
  tokenizer without a backend: its vocabulary as ``[[token, id], ...]`` in id order instead.
  The padding and truncation settings are dropped because transformers changes them on the
  backend with every padded call; they are not part of what the ids mean.
* a server's ``GET /tokenizer_info`` (vLLM): the served object without ``chat_template``.

The two are different hashes for the same tokenizer; ``source`` says which one a job has.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from workers.teachers.base import TokenizerInfo, TokenLogprob

_VOLATILE_BACKEND_KEYS = ("padding", "truncation")


def sha256_json(value: Any) -> str:
    """SHA-256 (hex) of the canonical JSON of ``value`` (sorted keys, compact, UTF-8)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_text(text: str | None) -> str | None:
    """SHA-256 (hex) of ``text`` as UTF-8, or None."""
    return None if text is None else hashlib.sha256(text.encode("utf-8")).hexdigest()


def chat_template_of(tokenizer: Any) -> str | None:
    """The template ``apply_chat_template`` uses by default (a dict of named templates: its
    ``default``), or None."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, Mapping):
        template = template.get("default")
    return template if isinstance(template, str) else None


def tokenizer_definition(tokenizer: Any) -> dict[str, Any]:
    """What :func:`local_tokenizer_info` hashes (see the module docstring)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    core: Any
    if backend is not None and hasattr(backend, "to_str"):
        core = json.loads(backend.to_str())
        for key in _VOLATILE_BACKEND_KEYS:
            core.pop(key, None)
    else:
        vocab = tokenizer.get_vocab()
        core = [[token, int(i)] for token, i in sorted(vocab.items(), key=lambda item: item[1])]
    special = getattr(tokenizer, "special_tokens_map", None) or {}
    return {"tokenizer": core, "special_tokens": _plain(special)}


def _plain(value: Any) -> Any:
    """``value`` with AddedToken-like objects as their text, for JSON."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(getattr(value, "content", value))


def local_tokenizer_info(
    tokenizer: Any, name: str, *, chat_template: str | None = None
) -> TokenizerInfo:
    """The identity of a tokenizer loaded in this process (``source: "local"``).

    ``chat_template`` overrides the tokenizer's own (a server started with another one)."""
    template = chat_template if chat_template is not None else chat_template_of(tokenizer)
    return {
        "name": name,
        "vocab_size": len(tokenizer),
        "sha256": sha256_json(tokenizer_definition(tokenizer)),
        "chat_template": template,
        "chat_template_sha256": sha256_text(template),
        "source": "local",
    }


def served_tokenizer_info(served: Mapping[str, Any], model: str) -> TokenizerInfo:
    """The identity from a server's ``GET /tokenizer_info`` body (``source: "server"``).

    vLLM serves the tokenizer's ``tokenizer_config.json`` settings (``name_or_path``,
    special tokens, ``added_tokens_decoder``, ``chat_template`` ...) and ``tokenizer_class``;
    it does not say the vocabulary size, so ``vocab_size`` is None unless the body has one.
    """
    body = dict(served)
    template = body.pop("chat_template", None)
    if isinstance(template, Mapping):
        template = template.get("default")
    if not isinstance(template, str):
        template = None
    vocab_size = body.get("vocab_size")
    return {
        "name": str(body.get("name_or_path") or model),
        "vocab_size": int(vocab_size) if isinstance(vocab_size, int) else None,
        "sha256": sha256_json(body),
        "chat_template": template,
        "chat_template_sha256": sha256_text(template),
        "source": "server",
    }


# --- the completion's token ids ---------------------------------------------------------------


def assistant_turn(messages: Sequence[Mapping[str, str]], completion: str) -> list[dict[str, str]]:
    """``messages`` with ``completion`` appended as the assistant's turn."""
    return [*(dict(m) for m in messages), {"role": "assistant", "content": completion}]


def split_completion(prompt_ids: Sequence[int], full_ids: Sequence[int]) -> list[int] | None:
    """The completion's ids: ``full_ids`` (the chat with the assistant turn) after
    ``prompt_ids`` (the chat with the generation prompt), or None when the first does not
    start with the second (a template that renders earlier turns differently once an answer
    follows, or tokens that merge across the boundary)."""
    n = len(prompt_ids)
    if len(full_ids) <= n or list(full_ids[:n]) != list(prompt_ids):
        return None
    return list(full_ids[n:])


def render_ids(
    tokenizer: Any, messages: Sequence[Mapping[str, str]], *, add_generation_prompt: bool
) -> list[int]:
    """The chat template rendered as text, then tokenized without adding special tokens again
    (the template has them), as vLLM does."""
    rendered = tokenizer.apply_chat_template(
        [dict(m) for m in messages], tokenize=False, add_generation_prompt=add_generation_prompt
    )
    if isinstance(rendered, str):
        return [int(i) for i in tokenizer.encode(rendered, add_special_tokens=False)]
    ids = rendered["input_ids"] if isinstance(rendered, Mapping) else rendered
    return [int(i) for i in ids]


def completion_ids(
    tokenizer: Any, messages: Sequence[Mapping[str, str]], completion: str
) -> tuple[list[int], list[int], bool]:
    """``(prompt_ids, completion_ids, templated)`` of a text to score, with ``tokenizer``.

    The completion's ids are the chat template of ``messages`` plus the assistant turn, minus
    the template of ``messages`` with the generation prompt: exactly what the teacher reads
    after its prompt, end-of-turn tokens included (``templated`` True). When the first does
    not start with the second (see :func:`split_completion`), they fall back to the prompt's
    ids followed by ``encode(completion, add_special_tokens=False)``: the text without the
    template's end-of-turn tokens (``templated`` False).
    """
    prompt = render_ids(tokenizer, messages, add_generation_prompt=True)
    full = render_ids(tokenizer, assistant_turn(messages, completion), add_generation_prompt=False)
    tail = split_completion(prompt, full)
    if tail is not None:
        return prompt, tail, True
    plain = [int(i) for i in tokenizer.encode(completion, add_special_tokens=False)]
    return prompt, plain, False


# --- one position's distribution ---------------------------------------------------------------

LOGPROB_FLOOR = -9999.0  # what vLLM sends for -inf (JSON has no infinity)


def token_logprob(
    token_id: int, entries: Iterable[tuple[int, float | None, str]], k: int
) -> TokenLogprob:
    """The chosen token and the ``k`` most likely alternatives at one position, best first,
    from the position's ``(id, logprob, text)`` entries (vLLM gives the top-k plus the chosen
    token when it ranks lower). A missing or infinite logprob becomes :data:`LOGPROB_FLOOR`.

    Raises KeyError when the chosen token is not among the entries."""
    ranked = sorted(
        ((int(i), _finite(lp), text) for i, lp, text in entries), key=lambda entry: -entry[1]
    )
    for i, lp, text in ranked:
        if i == token_id:
            return TokenLogprob(
                token=text,
                token_id=token_id,
                logprob=lp,
                top=[(t, j, v) for j, v, t in ranked[:k]],
            )
    raise KeyError(f"token {token_id} is not among the logprobs of its position")


def _finite(value: float | None) -> float:
    if value is None or value != value or value == float("-inf"):
        return LOGPROB_FLOOR
    return max(float(value), LOGPROB_FLOOR)
