"""A random-weight Qwen3 with the real tokenizer: the real architecture for tests, offline.

Its text is gibberish, but it exercises everything a real Qwen3 does in vLLM: the chat
template with `enable_thinking`, the 152k vocabulary, structured outputs and batching.
"""

from pathlib import Path

import torch
from transformers import Qwen3Config, Qwen3ForCausalLM

from pipeline.models.folder import save_pretrained_atomically
from pipeline.models.qwen_tokenizer import QWEN3_ADDED_TOKENS, QWEN_RANKS, build_qwen3_tokenizer

QWEN3_VOCAB_SIZE = 151936  # the reference embedding size (padded past the 151,669 tokens)


def build_tiny_qwen3(
    out: Path, seed: int = 0, layers: int = 2, hidden: int = 128, ranks: int = QWEN_RANKS
) -> Path:
    """Write a seeded random Qwen3ForCausalLM plus tokenizer to `out` and return it.

    `ranks` below Qwen's 151,643 keeps only the tokenizer's first BPE ranks (see
    `build_qwen3_tokenizer`) and sizes the embedding to them: for benches that time the
    pipeline, where sampling over 152k logits on a CPU would be most of the time."""
    torch.manual_seed(seed)
    tokens = ranks + len(QWEN3_ADDED_TOKENS)
    config = Qwen3Config(
        vocab_size=QWEN3_VOCAB_SIZE if ranks == QWEN_RANKS else -(-tokens // 64) * 64,
        hidden_size=hidden,
        intermediate_size=hidden * 3,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=hidden // 4,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        bos_token_id=ranks,  # <|endoftext|>
        eos_token_id=ranks + 2,  # <|im_end|>
        pad_token_id=ranks,
        torch_dtype="bfloat16",
    )
    model = Qwen3ForCausalLM(config).to(torch.bfloat16)
    tokenizer = build_qwen3_tokenizer(ranks)

    return save_pretrained_atomically(out, model, tokenizer)
