"""InfoNCE as in the Qwen3-Embedding report, with its false-negative mask, and MRL.

For query i with positive document d_i+ the denominator Z_i sums, over everything switched
on: the positive, the query's own hard negatives, the other documents in the batch
(`in_batch`), the other queries (`query_query`: s(q_i, q_j)) and the other positives seen
from d_i+ (`doc_doc`: s(d_i+, d_j)). A term is masked out when its score exceeds the
positive's by more than `margin` or when its document is the positive itself (same key),
because such terms are far more likely unlabelled positives than negatives.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

NEG_INF = float("-inf")


@dataclass(frozen=True)
class LossTerms:
    """Which in-batch terms enter the denominator, and the mask and temperature."""

    temperature: float = 0.05
    in_batch: bool = True
    query_query: bool = True
    doc_doc: bool = True
    margin: float = 0.1


def info_nce(
    queries: torch.Tensor,
    documents: torch.Tensor,
    owners: torch.Tensor,
    doc_keys: Sequence[str],
    terms: LossTerms,
    query_keys: Sequence[str] | None = None,
) -> torch.Tensor:
    """Mean InfoNCE loss.

    `queries` (B, D) and `documents` (N, D) are unit vectors. The first B documents are the
    positives of the B queries in order; the rest are hard negatives, `owners[n]` giving the
    query each document belongs to. `doc_keys` (and `query_keys`, for the query-query
    term) identify texts, for the same-text mask.
    """
    size = queries.shape[0]
    rows = torch.arange(size, device=queries.device)
    qd = queries @ documents.T  # (B, N)
    positive = qd[rows, rows]
    same_text = _same(doc_keys, size, queries.device)
    own = owners.unsqueeze(0) == rows.unsqueeze(1)  # (B, N): the query's own documents
    allowed = own if not terms.in_batch else torch.ones_like(own)
    allowed = allowed & ~same_text
    allowed[rows, rows] = True  # the positive itself
    blocks = [_masked(qd, allowed, positive, terms.margin, rows)]
    off_diagonal = ~torch.eye(size, dtype=torch.bool, device=queries.device)
    if terms.query_query:
        qq = queries @ queries.T
        keep = off_diagonal
        if query_keys is not None:
            keep = keep & ~_same(query_keys, size, queries.device)
        blocks.append(_masked(qq, keep, positive, terms.margin))
    if terms.doc_doc:
        positives = documents[:size]
        dd = positives @ positives.T
        keep = off_diagonal & ~same_text[:, :size]
        blocks.append(_masked(dd, keep, positive, terms.margin))
    logits = torch.cat(blocks, dim=1) / terms.temperature
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


def matryoshka(
    queries: torch.Tensor,
    documents: torch.Tensor,
    owners: torch.Tensor,
    doc_keys: Sequence[str],
    terms: LossTerms,
    dims: Sequence[int] = (),
    query_keys: Sequence[str] | None = None,
) -> torch.Tensor:
    """InfoNCE at full size, averaged with InfoNCE on each truncated, renormalized prefix."""
    loss = info_nce(queries, documents, owners, doc_keys, terms, query_keys)
    for dim in dims:
        loss = loss + info_nce(
            F.normalize(queries[:, :dim], dim=-1),
            F.normalize(documents[:, :dim], dim=-1),
            owners,
            doc_keys,
            terms,
            query_keys,
        )
    return loss / (1 + len(dims))


def margin_mse(
    queries: torch.Tensor,
    documents: torch.Tensor,
    owners: torch.Tensor,
    teacher: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """MarginMSE (GPL): the student's margin s(q, p) - s(q, n) regressed on the teacher's.

    `documents` are laid out as for `info_nce` (B positives, then hard negatives with their
    `owners`); `teacher` (N,) holds the teacher's score of each document for its query, NaN
    where it gave none. Teacher scores are on the cosine scale (see pipeline.teacher), and
    both margins are divided by the temperature, so the term is in the units of the InfoNCE
    logits. Negatives without a teacher score on either side are left out; a batch without
    any gives zero.
    """
    size = queries.shape[0]
    negatives = documents[size:]
    owner = owners[size:]
    own_query = queries[owner]
    student = (own_query * documents[owner]).sum(-1) - (own_query * negatives).sum(-1)
    target = teacher[owner] - teacher[size:]
    known = ~torch.isnan(target)
    if not bool(known.any()):
        return queries.sum() * 0.0
    error = (student[known] - target[known]) / temperature
    return (error**2).mean()
