"""InfoNCE as in the Qwen3-Embedding report, with its false-negative mask.

For query i with positive document d_i+ the denominator Z_i sums, over everything switched
on: the positive, the query's own hard negatives, the other documents in the batch
(`in_batch`), the other queries (`query_query`: s(q_i, q_j)) and the other positives seen
from d_i+ (`doc_doc`: s(d_i+, d_j)). A term is masked out when its score exceeds the
positive's by more than `margin` or when its document is the positive itself (same key),
because such terms are far more likely unlabelled positives than negatives.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from pipeline.embedding.losses.base import Batch, Loss

NEG_INF = float("-inf")


class InfoNCE(Loss):
    """Mean InfoNCE over the batch's queries; the settings pick the denominator's terms."""

    name = "info_nce"

    def __init__(
        self,
        temperature: float = 0.05,
        in_batch: bool = True,
        query_query: bool = True,
        doc_doc: bool = True,
        margin: float = 0.1,
    ) -> None:
        super().__init__()
        self.temperature = temperature
        self.in_batch = in_batch
        self.query_query = query_query
        self.doc_doc = doc_doc
        self.margin = margin

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, in_batch={self.in_batch}, "
            f"query_query={self.query_query}, doc_doc={self.doc_doc}, margin={self.margin}"
        )

    def forward(self, batch: Batch) -> torch.Tensor:
        queries, documents, size = batch.queries, batch.documents, batch.size
        rows = torch.arange(size, device=queries.device)
        qd = queries @ documents.T  # (B, N)
        positive = qd[rows, rows]
        same_text = _same(batch.doc_keys, size, queries.device)
        own = batch.owners.unsqueeze(0) == rows.unsqueeze(1)  # (B, N): the query's own documents
        allowed = own if not self.in_batch else torch.ones_like(own)
        allowed = allowed & ~same_text
        allowed[rows, rows] = True  # the positive itself
        blocks = [_masked(qd, allowed, positive, self.margin, rows)]
        off_diagonal = ~torch.eye(size, dtype=torch.bool, device=queries.device)
        if self.query_query:
            qq = queries @ queries.T
            keep = off_diagonal
            if batch.query_keys is not None:
                keep = keep & ~_same(batch.query_keys, size, queries.device)
            blocks.append(_masked(qq, keep, positive, self.margin))
        if self.doc_doc:
            positives = documents[:size]
            dd = positives @ positives.T
            keep = off_diagonal & ~same_text[:, :size]
            blocks.append(_masked(dd, keep, positive, self.margin))
        logits = torch.cat(blocks, dim=1) / self.temperature
        return F.cross_entropy(logits, rows)


def _same(keys: Sequence[str], size: int, device: torch.device) -> torch.Tensor:
    """(size, len(keys)): whether key j equals key i, for the first `size` keys i."""
    codes: dict[str, int] = {}
    ids = torch.tensor([codes.setdefault(k, len(codes)) for k in keys])
    return (ids[:size, None] == ids[None, :]).to(device)


def _masked(
    scores: torch.Tensor,
    keep: torch.Tensor,
    positive: torch.Tensor,
    margin: float,
    exempt: torch.Tensor | None = None,
) -> torch.Tensor:
    """Scores with dropped terms set to -inf: not kept, or above positive + margin.

    The mask is decided without gradient: it selects terms, it is not part of the loss.
    """
    with torch.no_grad():
        too_close = scores > (positive.unsqueeze(1) + margin)
        if exempt is not None:
            too_close[exempt, exempt] = False
        drop = ~keep | too_close
    return scores.masked_fill(drop, NEG_INF)
