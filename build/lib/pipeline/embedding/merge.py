"""Merge checkpoints by spherical linear interpolation (slerp), as Qwen3-Embedding's last
stage does: models from different points of training are combined into one that is more
robust than any of them.

Two models are interpolated per tensor along the great circle between their flattened
weights (`t` is the second's share). More than two are folded in one at a time, model k
with share 1/k: equal shares for plain averaging, and close to equal on the sphere when the
checkpoints are near one another, as checkpoints of one run are. Near-parallel tensors fall
back to plain interpolation.
"""

import shutil
from pathlib import Path

import torch
from transformers import AutoModel

from pipeline.config.errors import UserError
from pipeline.models.folder import save_atomically

PARALLEL = 1e-6


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Interpolate tensors a -> b by fraction t along the arc between them."""
    if not a.is_floating_point():
        return a.clone()
    x, y = a.double().flatten(), b.double().flatten()
    norm_x, norm_y = x.norm(), y.norm()
    if norm_x == 0 or norm_y == 0:
        return torch.lerp(a.double(), b.double(), t).to(a.dtype)
    cos = torch.clamp(torch.dot(x / norm_x, y / norm_y), -1.0, 1.0)
    omega = torch.arccos(cos)
    if omega.abs() < PARALLEL:
        return torch.lerp(a.double(), b.double(), t).to(a.dtype)
    sin = torch.sin(omega)
    mixed = (torch.sin((1 - t) * omega) / sin) * x + (torch.sin(t * omega) / sin) * y
    return mixed.reshape(a.shape).to(a.dtype)


def merge_models(paths: list[Path], out: Path, t: float | None = None) -> Path:
    """Merge saved models (same architecture) into `out`, a copy of the first's folder."""
    if len(paths) < 2:
        raise UserError("merge needs at least two models")
    if t is not None and len(paths) > 2:
        raise UserError("--t sets the second model's share, so it takes exactly two models")
    for path in paths:
        if not (path / "config.json").is_file():
            raise UserError(f"not a saved model folder: {path}")
    merged = AutoModel.from_pretrained(paths[0], dtype=torch.float32)
    state = merged.state_dict()
    for index, path in enumerate(paths[1:], start=2):
        other = AutoModel.from_pretrained(path, dtype=torch.float32).state_dict()
        if other.keys() != state.keys() or any(other[k].shape != state[k].shape for k in state):
            raise UserError(f"{path}: not the same architecture as {paths[0]}")
        share = 1 / index if t is None else t
        state = {name: slerp(state[name], other[name], share) for name in state}
    merged.load_state_dict(state)

    def save(folder: Path) -> None:
        shutil.copytree(paths[0], folder, dirs_exist_ok=True)
        for stale in (*folder.glob("*.safetensors"), *folder.glob("*.bin"), *folder.glob("*.pt")):
            stale.unlink()
        merged.save_pretrained(folder)

    return save_atomically(out, save)
