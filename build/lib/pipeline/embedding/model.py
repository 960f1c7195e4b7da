"""The embedding model wrapper: a Hugging Face backbone, pooling, the folder's Dense layers
if it has any (pipeline.embedding.dense) and L2 normalization.

Encoders (BERT, MiniLM, ...) are mean-pooled over real tokens. Decoders such as Qwen3 are
pooled on the last real token, found through the attention mask so left and right padding
both work, with EOS appended by the tokenizer itself: the tokenizer is saved that way, so
sentence-transformers and vLLM loading the saved folder append it too and agree with us.
Queries carry their instruction as Qwen3-Embedding does; documents carry none.
"""

from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from tokenizers.processors import TemplateProcessing
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedTokenizerBase
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
    MODEL_FOR_MASKED_LM_MAPPING_NAMES,
)

from pipeline.config.errors import UserError
from pipeline.embedding.dense import load_dense

Pooling = Literal["mean", "lasttoken"]
POOLINGS: tuple[str, ...] = ("mean", "lasttoken")


def query_text(query: str, instruction: str | None) -> str:
    """A query as the model sees it: `Instruct: {instruction}\\nQuery:{query}`."""
    return f"{query_prompt(instruction)}{query}"


def query_prompt(instruction: str | None) -> str:
    """The text put before a query; empty when there is no instruction."""
    return f"Instruct: {instruction}\nQuery:" if instruction else ""


def is_decoder(path: str) -> bool:
    """Whether a model is a decoder-only LM (pooled on its last token)."""
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load a model from {path}: {str(exc).splitlines()[0]}") from exc
    # A model type with a causal-LM head and no masked-LM head is a decoder (BERT has both).
    kind = config.model_type
    return (
        kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and kind not in MODEL_FOR_MASKED_LM_MAPPING_NAMES
    )


def append_eos(tokenizer: PreTrainedTokenizerBase) -> None:
    """Make a fast tokenizer end every text with EOS, as last-token pooling expects."""
    eos = tokenizer.eos_token
    if eos is None:
        raise UserError("a decoder model for last-token pooling needs a tokenizer with an EOS")
    ids = tokenizer("x")["input_ids"]
    if ids and ids[-1] == tokenizer.eos_token_id:
        return
    # Keep a BOS the tokenizer already adds (Llama, Mistral): the template replaces it all.
    bos = tokenizer.bos_token
    keeps_bos = bool(ids) and bos is not None and ids[0] == tokenizer.bos_token_id
    head = f"{bos} " if keeps_bos else ""
    special = [(eos, tokenizer.eos_token_id)]
    if keeps_bos:
        special.append((bos, tokenizer.bos_token_id))
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"{head}$A {eos}",
        pair=f"{head}$A {eos} $B:1 {eos}:1",
        special_tokens=special,
    )


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """Pool token states (batch, seq, dim) to one vector per text, ignoring padding."""
    if pooling == "mean":
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
    # The last position whose mask is 1, whichever side the padding is on.
    last = mask.shape[1] - 1 - mask.flip(1).int().argmax(1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


class EmbeddingModel(nn.Module):
    """Backbone + pooling + normalization, with the tokenizer that feeds it."""

    def __init__(
        self,
        path: str | Path,
        pooling: Pooling | None = None,
        max_length: int = 256,
    ) -> None:
        super().__init__()
        path = str(path)
        if pooling not in (None, *POOLINGS):
            raise UserError(f"{path}: pooling '{pooling}' is not supported ({', '.join(POOLINGS)})")
        decoder = is_decoder(path)
        self.pooling: Pooling = pooling or ("lasttoken" if decoder else "mean")
        self.max_length = max_length
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        if self.pooling == "lasttoken":
            append_eos(self.tokenizer)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.backbone = AutoModel.from_pretrained(path, dtype=torch.float32)
        self.head = load_dense(Path(path))

    @property
    def dimension(self) -> int:
        if self.head is not None:
            return self.head.dimension
        return int(self.backbone.config.hidden_size)

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Padded, truncated model inputs; a truncated decoder text still ends with EOS."""
        batch = self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}

    def token_counts(self, texts: list[str]) -> list[int]:
        """Each text's length in tokens after truncation (what it costs in a pass)."""
        ids = self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]
        return [len(i) for i in ids]

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Unit-length embeddings of a tokenized batch."""
        hidden = self.backbone(**batch).last_hidden_state
        pooled = pool(hidden, batch["attention_mask"], self.pooling).float()
        return F.normalize(pooled if self.head is None else self.head(pooled), dim=-1)

    def embed(self, texts: list[str]) -> torch.Tensor:
        """Tokenize and embed in one call (with gradients if enabled)."""
        return self(self.tokenize(texts))
