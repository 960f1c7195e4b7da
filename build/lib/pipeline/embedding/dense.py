"""Dense layers after pooling, in the sentence-transformers layout (`2_Dense/`, listed in
modules.json before Normalize), which `SentenceTransformer(path)` and vLLM's pooling runner
both apply. The adapter stage (pipeline.adapt) writes one; models such as LaBSE ship one.

Our Embedder has to apply them too, or it would silently disagree with both: `load_dense`
reads them with sentence-transformers' own loader, `with_dense` writes a linear map into a
copy of a saved model.
"""

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from pipeline.config.errors import UserError
from pipeline.models.folder import save_atomically

if TYPE_CHECKING:  # imported where used: it costs seconds, and most folders have no Dense
    from sentence_transformers.base.modules.dense import Dense

MODULES = "modules.json"
DENSE_TYPES = (
    "sentence_transformers.base.modules.dense.Dense",
    "sentence_transformers.models.Dense",
)
DENSE_TYPE = DENSE_TYPES[0]  # the name sentence-transformers 6 writes; vLLM reads both


class DenseHead(nn.Module):
    """The folder's Dense layers in order, on pooled vectors (before normalization)."""

    def __init__(self, layers: list["Dense"]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.dimension = int(layers[-1].get_embedding_dimension())

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        features = {"sentence_embedding": pooled}
        for layer in self.layers:
            features = layer(features)
        return features["sentence_embedding"]


def _modules(path: Path) -> list[dict]:
    file = path / MODULES
    return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else []


def load_dense(path: Path) -> DenseHead | None:
    """The Dense layers of a saved model folder, or None when it has none."""
    found = [m for m in _modules(path) if m.get("type") in DENSE_TYPES]
    if not found:
        return None
    from sentence_transformers.base.modules.dense import Dense

    try:
        layers = [Dense.load(str(path / m["path"])) for m in found]
    except (OSError, KeyError, ValueError) as exc:
        raise UserError(f"{path}: cannot load its Dense layer: {str(exc).splitlines()[0]}") from exc
    return DenseHead(layers).eval()


def with_dense(model: Path, weight: torch.Tensor, out: Path) -> Path:
    """A copy of the saved model `model` in `out` with a bias-free linear map `weight`
    (out x in) after pooling, before Normalize; written whole or not at all."""
    modules = _modules(model)
    if not modules or any(m.get("type") in DENSE_TYPES for m in modules):
        raise UserError(f"{model}: not a sentence-transformers folder without Dense layers")
    from sentence_transformers.base.modules.dense import Dense

    layer = Dense(weight.shape[1], weight.shape[0], bias=False, activation_function=nn.Identity())
    with torch.no_grad():
        layer.linear.weight.copy_(weight)
    # After the last module that is not Normalize (pooling), so the map sees pooled vectors.
    at = max(i for i, m in enumerate(modules) if not m["type"].endswith("Normalize")) + 1
    folder = f"{at}_Dense"

    def save(tmp: Path) -> None:
        shutil.copytree(model, tmp, dirs_exist_ok=True)
        (tmp / folder).mkdir()
        layer.save(str(tmp / folder))
        entry = {"name": str(at), "path": folder, "type": DENSE_TYPE}
        listed = [*modules[:at], entry, *modules[at:]]
        for index, module in enumerate(listed):
            module["idx"] = index
            if index > at and module["name"].isdigit():
                module["name"] = str(index)
        (tmp / MODULES).write_text(json.dumps(listed, indent=2), encoding="utf-8")

    return save_atomically(out, save)
