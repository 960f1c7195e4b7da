"""Encode queries and documents with a saved model.

`Embedder` reads the sentence-transformers files our exporter writes (pooling, max length,
query prompt) and runs the backbone itself, so its vectors are the ones a user gets from
`SentenceTransformer(path)`. The vLLM pooling backend serves the same folder at scale.
"""

import json
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.embedding.model import EmbeddingModel, Pooling, query_prompt
from pipeline.errors import UserError


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def saved_settings(path: Path) -> tuple[Pooling | None, int, str]:
    """(pooling, max_length, query prompt) from a sentence-transformers folder."""
    pooling_config = _read_json(path / "1_Pooling" / "config.json")
    mode = pooling_config.get("pooling_mode")
    if mode is None and pooling_config:
        mode = "lasttoken" if pooling_config.get("pooling_mode_lasttoken") else "mean"
    max_length = _read_json(path / "sentence_bert_config.json").get("max_seq_length", 512)
    prompts = _read_json(path / "config_sentence_transformers.json").get("prompts", {})
    return mode, int(max_length), prompts.get("query", "")


class Embedder:
    """Unit vectors for queries and documents, as numpy float32 arrays."""

    def __init__(
        self,
        path: str | Path,
        batch_size: int = 64,
        backend: Literal["torch", "vllm"] = "torch",
    ) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise UserError(f"model not found: {self.path}")
        pooling, max_length, self.query_prompt = saved_settings(self.path)
        self.batch_size = batch_size
        self.backend = backend
        if backend == "vllm":
            from vllm import LLM

            self.llm = LLM(model=str(self.path), runner="pooling", enforce_eager=True)
        else:
            self.model = EmbeddingModel(self.path, pooling, max_length).eval()

    def prompt(self, instruction: str | None) -> str:
        """The query prefix: the given instruction's, else the one saved with the model."""
        return self.query_prompt if instruction is None else query_prompt(instruction)

    def encode_queries(
        self, texts: list[str], instruction: str | None = None, dim: int | None = None
    ) -> np.ndarray:
        """Query vectors; `instruction` overrides the saved query prompt ('' for none)."""
        prefix = self.prompt(instruction)
        return self.encode([prefix + t for t in texts], dim)

    def encode_documents(self, texts: list[str], dim: int | None = None) -> np.ndarray:
        """Document vectors (documents carry no instruction)."""
        return self.encode(texts, dim)

    def encode(self, texts: list[str], dim: int | None = None) -> np.ndarray:
        """Vectors for raw texts, truncated to `dim` (Matryoshka) and renormalized."""
        if self.backend == "vllm":
            outputs = self.llm.embed(texts, use_tqdm=False)
            vectors = torch.tensor([o.outputs.embedding for o in outputs])
        else:
            parts = []
            with torch.inference_mode():
                for start in range(0, len(texts), self.batch_size):
                    parts.append(self.model.embed(texts[start : start + self.batch_size]))
            vectors = torch.cat(parts) if parts else torch.empty(0, self.model.dimension)
        if dim is not None:
            vectors = vectors[:, :dim]
        return F.normalize(vectors.float(), dim=-1).numpy()
