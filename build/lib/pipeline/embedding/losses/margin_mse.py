"""MarginMSE (GPL): the student's margin s(q, p) - s(q, n) regressed on the teacher's."""

import torch

from pipeline.embedding.losses.base import Batch, Loss


class MarginMSE(Loss):
    """Distillation from the teacher's scores of each positive and hard negative.

    Teacher scores are on the cosine scale (see pipeline.teacher), and both margins are
    divided by the temperature, so the term is in the units of the InfoNCE logits and one
    weight means the same beside it. Negatives without a teacher score on either side are
    left out; a batch without any gives zero (still in the graph, so backward works).
    """

    name = "margin_mse"
    needs_teacher = True

    def __init__(self, temperature: float = 0.05) -> None:
        super().__init__()
        self.temperature = temperature

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"

    def forward(self, batch: Batch) -> torch.Tensor:
        if batch.teacher is None:
            raise ValueError("margin_mse needs the batch's teacher scores")
        queries, documents, size = batch.queries, batch.documents, batch.size
        negatives = documents[size:]
        owner = batch.owners[size:]
        own_query = queries[owner]
        student = (own_query * documents[owner]).sum(-1) - (own_query * negatives).sum(-1)
        target = batch.teacher[owner] - batch.teacher[size:]
        known = ~torch.isnan(target)
        if not bool(known.any()):
            return queries.sum() * 0.0
        error = (student[known] - target[known]) / self.temperature
        return (error**2).mean()
