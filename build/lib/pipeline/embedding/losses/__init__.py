"""The training losses, one module each, and the registry that builds them from a config.

A training config names its losses as a list (`losses: [{name: info_nce, weight: 1.0},
...]`, see pipeline.embedding.train_config); `build_objective` turns that list into one
module, the weighted sum the trainer minimizes. A wrapper (`matryoshka`) names its inner
loss under `loss`, which is built first and handed to it.
"""

from collections.abc import Sequence

import torch

from pipeline.embedding.losses.base import Batch, Loss
from pipeline.embedding.losses.info_nce import InfoNCE
from pipeline.embedding.losses.margin_mse import MarginMSE
from pipeline.embedding.losses.matryoshka import Matryoshka
from pipeline.embedding.train_config import LossSpec, WrappedSpec

__all__ = [
    "LOSSES",
    "Batch",
    "InfoNCE",
    "Loss",
    "LossSum",
    "MarginMSE",
    "Matryoshka",
    "build_loss",
    "build_objective",
]

# name -> class: the names a config may use. Each class takes its config entry's settings
# (all but `name`, `weight` and a wrapper's `loss`) as keyword arguments.
LOSSES: dict[str, type[Loss]] = {cls.name: cls for cls in (InfoNCE, MarginMSE, Matryoshka)}


class LossSum(Loss):
    """The trainer's objective: each configured loss times its weight, summed in the
    config's order (the order fixes the float sum, so a run repeats exactly)."""

    name = "sum"

    def __init__(self, terms: Sequence[tuple[float, Loss]]) -> None:
        super().__init__()
        if not terms:
            raise ValueError("an objective needs at least one loss")
        self.weights = [weight for weight, _ in terms]
        self.terms = torch.nn.ModuleList(loss for _, loss in terms)

    def extra_repr(self) -> str:
        return f"weights={self.weights}"

    def forward(self, batch: Batch) -> torch.Tensor:
        pairs = zip(self.weights, self.terms, strict=True)
        parts = [weight * loss(batch) for weight, loss in pairs]
        return sum(parts[1:], parts[0])


def build_loss(spec: LossSpec | WrappedSpec) -> Loss:
    """The loss module one config entry describes (its weight is the caller's to apply)."""
    settings = spec.model_dump(exclude={"name", "weight", "loss"})
    inner = getattr(spec, "loss", None)
    if inner is not None:
        settings["loss"] = build_loss(inner)
    return LOSSES[spec.name](**settings)


def build_objective(specs: Sequence[LossSpec]) -> LossSum:
    """The weighted sum of the configured losses."""
    return LossSum([(spec.weight, build_loss(spec)) for spec in specs])
