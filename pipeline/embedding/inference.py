"""Encode queries and documents with a saved model.

`Embedder` reads the sentence-transformers files our exporter writes (pooling, max length,
query prompt) and runs the backbone itself, so its vectors are the ones a user gets from
`SentenceTransformer(path)`, Dense layers after pooling included. The vLLM pooling backend
serves the same folder at scale.
"""

import json
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.config.errors import UserError
from pipeline.embedding.dense import load_dense
from pipeline.embedding.model import EmbeddingModel, Pooling, query_prompt
from pipeline.generation.backends.base import OnDone

DEFAULT_MAX_LENGTH = 512
# Texts a vLLM call embeds: its outputs are Python lists of floats (32 bytes a float) until
# turned into an array, so a corpus chunk of 65,536 documents in one call held 0.8 GB of
# them, and the progress bar moved once a chunk.
VLLM_CALL = 1024
LEGACY_POOLING = {"pooling_mode_mean_tokens": "mean", "pooling_mode_lasttoken": "lasttoken"}


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def saved_settings(path: Path) -> tuple[Pooling | None, int, str]:
    """(pooling, max_length, query prompt) from a sentence-transformers folder."""
    pooling_config = _read_json(path / "1_Pooling" / "config.json")
    mode = pooling_config.get("pooling_mode")
    if mode is None and pooling_config:  # the older one-flag-per-mode layout
        flags = [key for key, on in pooling_config.items() if key.startswith("pooling_mode") and on]
        mode = LEGACY_POOLING.get(flags[0], flags[0]) if flags else "mean"
    prompts = _read_json(path / "config_sentence_transformers.json").get("prompts", {})
    return mode, saved_max_length(path), prompts.get("query", "")


def saved_max_length(path: Path) -> int:
    """The input length `SentenceTransformer(path)` truncates at, read the way it reads it:
    `max_seq_length` in sentence_bert_config.json (older exports), else the tokenizer's
    `model_max_length` capped at the model's `max_position_embeddings`. sentence-transformers
    6 no longer writes the first, so reading only that gave 512 for a model trained at 256."""
    given = _read_json(path / "sentence_bert_config.json").get("max_seq_length")
    if given is not None:
        return int(given)
    tokenizer_max = _read_json(path / "tokenizer_config.json").get("model_max_length")
    positions = _read_json(path / "config.json").get("max_position_embeddings")
    limits = [int(v) for v in (tokenizer_max, positions) if isinstance(v, int | float) and v > 0]
    return min(limits) if limits else DEFAULT_MAX_LENGTH


class Embedder:
    """Unit vectors for queries and documents, as numpy float32 arrays."""

    def __init__(
        self,
        path: str | Path,
        batch_size: int = 64,
        backend: Literal["torch", "vllm"] = "torch",
        dtype: str | None = None,
    ) -> None:
        """`dtype` pins the vLLM backend's dtype; unset, it follows the machine (bf16 only
        on CPUs with native bf16, see `engine_settings`)."""
        self.path = Path(path)
        if not self.path.exists():
            raise UserError(f"model not found: {self.path}")
        pooling, max_length, self.query_prompt = saved_settings(self.path)
        self.batch_size = batch_size
        self.backend = backend
        if backend == "vllm":
            from transformers import AutoTokenizer
            from vllm import LLM

            from pipeline.generation.backends.engine_settings import apply_settings, choose_settings

            # Our tokenizer truncates as the torch backend does (keeping a decoder's EOS);
            # vLLM gets token ids and a context no longer than the model was saved for.
            self.tokenizer = AutoTokenizer.from_pretrained(self.path)
            self.max_length = max_length
            engine = {"dtype": dtype} if dtype else {}
            self.settings = choose_settings(engine)
            self.llm = LLM(
                model=str(self.path),
                runner="pooling",
                enforce_eager=True,
                max_model_len=max_length,
                **apply_settings(self.settings, engine),
            )
            # vLLM applies the folder's Dense layers itself (as sentence-transformers does).
            dense = load_dense(self.path)
            config = _read_json(self.path / "config.json")
            self.dimension = dense.dimension if dense else int(config.get("hidden_size", 0))
        else:
            self.model = EmbeddingModel(self.path, pooling, max_length).eval()
            self.dimension = self.model.dimension

    def prompt(self, instruction: str | None) -> str:
        """The query prefix: the given instruction's, else the one saved with the model."""
        return self.query_prompt if instruction is None else query_prompt(instruction)

    def encode_queries(
        self,
        texts: list[str],
        instruction: str | None = None,
        dim: int | None = None,
        on_done: OnDone | None = None,
    ) -> np.ndarray:
        """Query vectors; `instruction` overrides the saved query prompt ('' for none)."""
        prefix = self.prompt(instruction)
        return self.encode([prefix + t for t in texts], dim, on_done)

    def encode_documents(
        self, texts: list[str], dim: int | None = None, on_done: OnDone | None = None
    ) -> np.ndarray:
        """Document vectors (documents carry no instruction)."""
        return self.encode(texts, dim, on_done)

    def encode(
        self, texts: list[str], dim: int | None = None, on_done: OnDone | None = None
    ) -> np.ndarray:
        """Vectors for raw texts, truncated to `dim` (Matryoshka) and renormalized;
        `on_done` hears how many texts each finished batch held (progress bars)."""
        report = on_done or (lambda n: None)
        if dim is not None and not 0 < dim <= self.dimension:
            raise UserError(f"dim {dim} is outside 1..{self.dimension}, the model's dimension")
        if not texts:
            return np.zeros((0, dim or self.dimension), dtype=np.float32)
        if self.backend == "vllm":
            parts = []
            for start in range(0, len(texts), VLLM_CALL):
                chunk = texts[start : start + VLLM_CALL]
                ids = self.tokenizer(chunk, truncation=True, max_length=self.max_length)
                prompts = [{"prompt_token_ids": i} for i in ids["input_ids"]]
                outputs = self.llm.embed(prompts, use_tqdm=False)
                rows = [o.outputs.embedding for o in outputs]
                parts.append(torch.from_numpy(np.array(rows, dtype=np.float32)))
                report(len(chunk))
            vectors = torch.cat(parts)
        else:
            # Longest first, so each batch pads to texts of about its own length (a corpus
            # of abstracts in file order pads every batch to its longest: far more work).
            order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
            parts = []
            with torch.inference_mode():
                for start in range(0, len(texts), self.batch_size):
                    chunk = [texts[i] for i in order[start : start + self.batch_size]]
                    parts.append(self.model.embed(chunk))
                    report(len(parts[-1]))
            stacked = torch.cat(parts)
            vectors = torch.empty_like(stacked)
            vectors[torch.tensor(order)] = stacked
        if dim is not None:
            vectors = vectors[:, :dim]
        return F.normalize(vectors.float(), dim=-1).numpy()
