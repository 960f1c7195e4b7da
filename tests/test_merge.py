"""Slerp merging: endpoints, the arc, and `embsynth merge` on two trained checkpoints."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.embedding.inference import Embedder
from pipeline.embedding.merge import slerp
from pipeline.embedding.model import EmbeddingModel
from pipeline.embedding.save import export_model
from tests.conftest import cli

TEXTS = ["merging checkpoints", "spherical interpolation of weights"]


def test_slerp_follows_the_arc() -> None:
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    torch.testing.assert_close(slerp(a, b, 0.0), a)
    torch.testing.assert_close(slerp(a, b, 1.0), b)
    # The angle between a and b is 90 degrees: weights sin(45)/sin(90) each (as mergekit).
    weight = math.sin(math.pi / 4)
    torch.testing.assert_close(slerp(a, b, 0.5), weight * a + weight * b)
    expected = math.sin(math.pi / 3) * a + math.sin(math.pi / 6) * b
    torch.testing.assert_close(slerp(a, b, 1 / 3), expected)
    same = torch.tensor([3.0, 4.0])
    torch.testing.assert_close(slerp(same, same * 2, 0.5), same * 1.5)  # parallel: lerp
    ids = torch.tensor([1, 2, 3])
    assert torch.equal(slerp(ids, ids + 5, 0.5), ids)  # integer buffers are copied


@pytest.fixture(scope="module")
def two_models(tiny_encoder: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("merge")
    paths = []
    for seed in (0, 1, 2):
        model = EmbeddingModel(tiny_encoder).eval()
        torch.manual_seed(seed)
        with torch.no_grad():
            for param in model.parameters():
                param.add_(0.05 * torch.randn_like(param))
        paths.append(export_model(model, root / f"m{seed}", "Find passages"))
    return paths


def test_merge_command(two_models: list[Path], tmp_path: Path) -> None:
    first, second, _ = two_models
    done = cli("merge", tmp_path / "start", str(first), str(second), "--t", "0")
    assert done.exit_code == 0, done.stderr
    np.testing.assert_allclose(
        Embedder(tmp_path / "start").encode_documents(TEXTS),
        Embedder(first).encode_documents(TEXTS),
        atol=1e-6,
    )
    done = cli("merge", tmp_path / "mid", str(first), str(second))
    assert done.exit_code == 0, done.stderr
    mid = Embedder(tmp_path / "mid")
    assert mid.query_prompt == "Instruct: Find passages\nQuery:"  # the folder is complete
    vectors = mid.encode_documents(TEXTS)
    for path in two_models[:2]:
        assert not np.allclose(vectors, Embedder(path).encode_documents(TEXTS), atol=1e-4)


def test_merge_of_three_is_a_fold(two_models: list[Path], tmp_path: Path) -> None:
    done = cli("merge", tmp_path / "ab", two_models[0], two_models[1])
    assert done.exit_code == 0, done.output
    done = cli("merge", tmp_path / "abc", *two_models)
    assert done.exit_code == 0, done.output
    done = cli("merge", tmp_path / "fold", tmp_path / "ab", two_models[2], "--t", str(1 / 3))
    assert done.exit_code == 0, done.output
    np.testing.assert_allclose(
        Embedder(tmp_path / "abc").encode_documents(TEXTS),
        Embedder(tmp_path / "fold").encode_documents(TEXTS),
        atol=1e-6,
    )
    done = cli("merge", tmp_path / "x", *two_models, "--t", "0.5")
    assert done.exit_code == 2 and "exactly two models" in done.stderr


def test_merge_bad_input(two_models: list[Path], tmp_path: Path) -> None:
    done = cli("merge", tmp_path / "x", str(two_models[0]))
    assert done.exit_code == 2 and "at least two models" in done.stderr
    done = cli("merge", tmp_path / "x", str(two_models[0]), str(tmp_path))
    assert done.exit_code == 2 and "not a saved model folder" in done.stderr
    assert not (tmp_path / "x").exists()
