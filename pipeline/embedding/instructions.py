"""Whether training queries carry the task instruction (`Instruct: ...\nQuery:`).

An instruction prefix is part of the Qwen3-Embedding recipe for LLM backbones, but a base
model that never saw one reads it as noise (all-MiniLM-L6-v2 fine-tuned with the prefix
ranked worse than without it: docs/experiments.md). So `auto` follows the base
model: a sentence-transformers model keeps instructions only if it was saved with a query
prompt; a plain decoder (an LLM becoming an embedder) gets them; a plain encoder does not.
The choice is saved with the trained model (its query prompt), so evaluation and
inference apply the same prefix the model was trained with.
"""

import json
from pathlib import Path
from typing import Literal

from pipeline.embedding.model import is_decoder


def base_uses_instructions(model: str) -> bool:
    """`auto`: what the base model at `model` was trained with."""
    st_config = Path(model) / "config_sentence_transformers.json"
    if st_config.is_file():
        prompts = json.loads(st_config.read_text(encoding="utf-8")).get("prompts") or {}
        return bool(prompts.get("query"))
    return is_decoder(model)


def use_instructions(setting: Literal["auto", "task", "none"], model: str) -> bool:
    """Resolve a training config's `instructions` setting for its base model."""
    if setting == "auto":
        return base_uses_instructions(model)
    return setting == "task"
