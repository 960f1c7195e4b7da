"""The Embedder: Matryoshka truncation, instruction override, and the vLLM pooling backend
serving the same saved folder (a Dense layer after pooling included) with the same vectors."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.embedding.dense import with_dense
from pipeline.embedding.inference import Embedder
from pipeline.embedding.model import EmbeddingModel
from pipeline.embedding.save import export_model

TEXTS = ["how do wings make lift", "Lift comes from the pressure difference across a wing."]


@pytest.fixture(scope="module")
def saved_decoder(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Qwen3 saved as an embedder, with a Dense layer after pooling (as the adapter
    stage writes one), which every loader must apply."""
    model = EmbeddingModel(tiny_model).eval()
    folder = tmp_path_factory.mktemp("saved")
    plain = export_model(model, folder / "qwen3-emb-plain", "Find passages")
    size = model.dimension
    noise = torch.randn(size, size, generator=torch.Generator().manual_seed(0))
    return with_dense(plain, torch.eye(size) + 0.3 * noise, folder / "qwen3-emb")


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


SERVED = """
import sys, numpy as np
from pipeline.embedding import inference
inference.VLLM_CALL = 1  # a call per text: the vectors come back in order all the same
texts, calls = sys.argv[3:], []
served = inference.Embedder(sys.argv[1], backend="vllm", dtype="float32")
documents = served.encode_documents(texts, on_done=calls.append)
assert calls == [1] * len(texts), calls  # progress after each call
np.save(sys.argv[2], np.stack([served.encode_queries(texts), documents]))
"""


def test_vllm_pooling_backend_gives_the_same_vectors(saved_decoder: Path, tmp_path: Path) -> None:
    # In its own process: a second in-process vLLM engine tears down the distributed
    # state of the session's generator engine when it is freed.
    out = tmp_path / "served.npy"
    subprocess.run(
        [sys.executable, "-c", SERVED, str(saved_decoder), str(out), *TEXTS],
        check=True,
        timeout=300,
        env={**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0"},
    )
    queries, documents = np.load(out)
    ours = Embedder(saved_decoder)
    np.testing.assert_allclose(queries, ours.encode_queries(TEXTS), atol=2e-3)
    np.testing.assert_allclose(documents, ours.encode_documents(TEXTS), atol=2e-3)
