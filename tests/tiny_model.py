"""A tiny random Llama and a byte-level BPE tokenizer with a chat template, built offline.

The folder is a normal Hugging Face checkpoint (``config.json``, ``model.safetensors``,
``tokenizer.json``, ``chat_template.jinja``), so the transformers backend and, on a GPU, vLLM
can load it. Its text is garbage: tests assert shapes, finiteness and determinism.
"""

from __future__ import annotations

from pathlib import Path

SPECIAL_TOKENS = ["<|pad|>", "<|bos|>", "<|eos|>", "<|user|>", "<|assistant|>", "<|system|>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{{ eos_token }}"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
CORPUS = [
    "Write a short poem about the sea.",
    "Explain how a hash table works, step by step.",
    "The quick brown fox jumps over the lazy dog.",
    "Translate into French: good morning, how are you today?",
    "List three prime numbers and explain why they are prime.",
    '{"answer": 42, "reason": "it is the answer", "items": [1, 2, 3]}',
] * 20


def build_tiny_model(
    folder: Path,
    *,
    vocab_size: int = 512,
    hidden_size: int = 64,
    num_attention_heads: int = 4,
    seed: int = 0,
) -> Path:
    """Write a tiny random causal LM and its tokenizer to ``folder``; returns ``folder``.

    The defaults give ~100k parameters (head size 16); GPU kernels (vLLM) want head sizes of
    64 or more, e.g. ``hidden_size=256, num_attention_heads=4``.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # byte-level: no unknown tokens
    )
    tokenizer.train_from_iterator(CORPUS, trainer)
    hf_tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<|bos|>", eos_token="<|eos|>", pad_token="<|pad|>"
    )
    hf_tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(hf_tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=max(1, num_attention_heads // 2),
        max_position_embeddings=512,
        bos_token_id=hf_tokenizer.bos_token_id,
        eos_token_id=hf_tokenizer.eos_token_id,
        pad_token_id=hf_tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    LlamaForCausalLM(config).save_pretrained(folder)
    hf_tokenizer.save_pretrained(folder)
    return folder
