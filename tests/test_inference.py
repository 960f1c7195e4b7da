"""The Embedder: Matryoshka truncation, instruction override, and the vLLM pooling backend
serving the same saved folder with the same vectors."""

from pathlib import Path

import numpy as np
import pytest

from pipeline.embedding.export import export_model
from pipeline.embedding.inference import Embedder
from pipeline.embedding.model import EmbeddingModel

TEXTS = ["how do wings make lift", "Lift comes from the pressure difference across a wing."]


@pytest.fixture(scope="module")
def saved_decoder(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = EmbeddingModel(tiny_model).eval()
    return export_model(model, tmp_path_factory.mktemp("saved") / "qwen3-emb", "Find passages")


def test_dimension_truncation_and_instruction_override(saved_decoder: Path) -> None:
    embedder = Embedder(saved_decoder, batch_size=1)
    full = embedder.encode_documents(TEXTS)
    short = embedder.encode_documents(TEXTS, dim=32)
    assert full.shape == (2, 128) and short.shape == (2, 32)
    prefix = full[:, :32] / np.linalg.norm(full[:, :32], axis=1, keepdims=True)
    np.testing.assert_allclose(short, prefix, atol=1e-6)
    saved = embedder.encode_queries(TEXTS[:1])
    explicit = embedder.encode(["Instruct: Find passages\nQuery:" + TEXTS[0]])
    np.testing.assert_allclose(saved, explicit, atol=1e-6)
    bare = embedder.encode_queries(TEXTS[:1], instruction="")
    np.testing.assert_allclose(bare, embedder.encode_documents(TEXTS[:1]), atol=1e-6)


def test_vllm_pooling_backend_gives_the_same_vectors(saved_decoder: Path) -> None:
    ours = Embedder(saved_decoder)
    served = Embedder(saved_decoder, backend="vllm", dtype="float32")
    np.testing.assert_allclose(served.encode_queries(TEXTS), ours.encode_queries(TEXTS), atol=2e-3)
    np.testing.assert_allclose(
        served.encode_documents(TEXTS), ours.encode_documents(TEXTS), atol=2e-3
    )
