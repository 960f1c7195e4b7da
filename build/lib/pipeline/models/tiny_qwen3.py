"""A random-weight Qwen3 with the real tokenizer: the real architecture for tests, offline.

Its text is gibberish, but it exercises everything a real Qwen3 does in vLLM: the chat
template with `enable_thinking`, the 152k vocabulary, structured outputs and batching.
"""

from pathlib import Path

import torch
from transformers import Qwen3Config, Qwen3ForCausalLM

from pipeline.models.folder import save_pretrained_atomically
from pipeline.models.qwen_tokenizer import build_qwen3_tokenizer

QWEN3_VOCAB_SIZE = 151936  # the reference embedding size (padded past the 151,669 tokens)


def build_tiny_qwen3(out: Path, seed: int = 0, layers: int = 2, hidden: int = 128) -> Path:
    """Write a seeded random Qwen3ForCausalLM plus tokenizer to `out` and return it."""
    torch.manual_seed(seed)
    config = Qwen3Config(
        vocab_size=QWEN3_VOCAB_SIZE,
        hidden_size=hidden,
        intermediate_size=hidden * 3,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=hidden // 4,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        bos_token_id=151643,
        eos_token_id=151645,
        pad_token_id=151643,
        torch_dtype="bfloat16",
    )
    model = Qwen3ForCausalLM(config).to(torch.bfloat16)
    tokenizer = build_qwen3_tokenizer()

    return save_pretrained_atomically(out, model, tokenizer)
