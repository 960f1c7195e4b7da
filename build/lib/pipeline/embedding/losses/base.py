"""What every loss sees and is: one `Batch` of embedded vectors in, one scalar out.

A loss is a small torch module whose settings are fixed when it is built (as in
sentence-transformers, one module per loss), so the trainer can hold any configured mix of
them and call each the same way. Losses work on vectors, not texts: GradCache computes the
loss on cached embeddings, outside the model's graph.
"""

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import ClassVar

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Batch:
    """One step's vectors and what the losses need to know about them.

    `queries` (B, D) and `documents` (N, D) are unit vectors. The first B documents are the
    positives of the B queries in order; the rest are hard negatives, `owners[n]` giving the
    query each document belongs to. `doc_keys` (and `query_keys`) identify the texts, so a
    loss can tell a duplicate of the positive from a negative. `teacher` (N,) holds the
    teacher's score of each document for its query, NaN where it gave none; None when no
    loss asked for it.
    """

    queries: torch.Tensor
    documents: torch.Tensor
    owners: torch.Tensor
    doc_keys: Sequence[str]
    query_keys: Sequence[str] | None = None
    teacher: torch.Tensor | None = None

    @property
    def size(self) -> int:
        """The number of queries, B."""
        return self.queries.shape[0]

    def truncated(self, dim: int) -> "Batch":
        """The same batch with every vector cut to its first `dim` components and
        renormalized: what a Matryoshka prefix of the embedding would give."""
        return replace(
            self,
            queries=F.normalize(self.queries[:, :dim], dim=-1),
            documents=F.normalize(self.documents[:, :dim], dim=-1),
        )


class Loss(torch.nn.Module):
    """One training loss: settings fixed at construction, a scalar from a `Batch`.

    `name` is the key that training configs use for it (see the registry in
    pipeline.embedding.losses); `needs_teacher` says it reads `Batch.teacher`, so the trainer
    builds that column only when some loss will use it and refuses data without one.
    """

    name: ClassVar[str]
    needs_teacher: ClassVar[bool] = False

    def uses_teacher(self) -> bool:
        """Whether this loss or any loss inside it (a wrapper's) reads `Batch.teacher`."""
        return any(isinstance(m, Loss) and m.needs_teacher for m in self.modules())

    def forward(self, batch: Batch) -> torch.Tensor:
        raise NotImplementedError
