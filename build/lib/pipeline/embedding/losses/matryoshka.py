"""Matryoshka (MRL): an inner loss applied at full size and on truncated prefixes."""

from collections.abc import Sequence

import torch

from pipeline.embedding.losses.base import Batch, Loss


class Matryoshka(Loss):
    """The inner loss at full size, averaged with it on each truncated, renormalized prefix
    of `dims` components, so that a prefix of the embedding is itself a usable embedding.

    A wrapper rather than a switch inside each loss: any loss that reads vectors can be
    trained for its prefixes the same way.
    """

    name = "matryoshka"

    def __init__(self, loss: Loss, dims: Sequence[int]) -> None:
        super().__init__()
        self.loss = loss
        self.dims = list(dims)

    def extra_repr(self) -> str:
        return f"dims={self.dims}"

    def forward(self, batch: Batch) -> torch.Tensor:
        total = self.loss(batch)
        for dim in self.dims:
            total = total + self.loss(batch.truncated(dim))
        return total / (1 + len(self.dims))
