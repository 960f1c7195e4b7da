"""Fit the adapter: a square map W after pooling, s(q, d) = cos(Wq, Wd), taught the
teacher's distribution over the corpus (each query's taught documents: pipeline.adapt.lesson).

Loss per query: KL(teacher || student) between the two softmaxes over its taught documents
at one temperature, plus `reg` x ||W - I||^2. W starts at the identity and the penalty pulls it
back there, so the adapter can only bend what the trained model already knows. Documents
are mapped by W too (one model for both sides, as sentence-transformers applies it). A fifth
of the queries is held out: its KL, before and after, says whether the fit generalized.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.adapt.lesson import distinct

HELD_OUT = 5  # one query in five is held out


def held_out_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows held out of the fit (one in HELD_OUT) and the rows it learns from."""
    order = np.random.default_rng(seed).permutation(n)
    return order[: n // HELD_OUT], order[n // HELD_OUT :]


def listwise_kl(
    student: torch.Tensor,
    teacher: torch.Tensor,
    temperature: float,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean KL(teacher || student) between the softmaxes of two (queries x docs) score
    tables, both on the cosine scale, at one temperature; `weights`: each column's log
    weight in both softmaxes (pipeline.adapt.lesson.sampled_weights)."""
    shift = 0.0 if weights is None else weights
    target = torch.log_softmax(teacher / temperature + shift, dim=-1)
    learned = torch.log_softmax(student / temperature + shift, dim=-1)
    return (target.exp() * (target - learned)).sum(-1).mean()


def held_out_kl(held: np.ndarray, size: int, kl: Callable[[np.ndarray], torch.Tensor]) -> float:
    """The mean KL of the `held` rows, `size` rows at a time (each batch's mean weighted by
    its rows): the same mean as one table, while a table of all the held-out queries x the
    taught documents would grow with the corpus squared (the whole table is taught below
    `whole_table_gib`). NaN with nothing held out."""
    if not len(held):
        return float("nan")
    batches = [held[i : i + size] for i in range(0, len(held), size)]
    with torch.no_grad():
        return sum(float(kl(rows)) * len(rows) for rows in batches) / len(held)


@dataclass(frozen=True)
class Fit:
    """The fitted map and the held-out KL with the identity (before) and with it (after)."""

    weight: torch.Tensor
    held_out_before: float
    held_out_after: float


def fit_linear(
    queries: np.ndarray,
    docs: np.ndarray,
    rows: np.ndarray,
    targets: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    reg: float,
    steps: int,
    learning_rate: float,
    temperature: float,
    batch_size: int,
    seed: int,
    device: torch.device,
) -> Fit:
    """W for query vectors (n x dim), document vectors (docs x dim), the corpus rows each
    query is taught and the teacher's scores of them (n x taught, on the cosine scale),
    and the taught columns' log weights (none: the whole corpus is taught)."""
    held, train = held_out_split(len(queries), seed)
    eye = torch.eye(docs.shape[1], device=device)
    weight = torch.nn.Parameter(eye.clone())
    optimizer = torch.optim.Adam([weight], lr=learning_rate)
    q_all = torch.from_numpy(queries).float().to(device)
    d_all = torch.from_numpy(docs).float().to(device)
    t_all = torch.from_numpy(targets).float().to(device)
    shift = None if weights is None else torch.from_numpy(weights).to(device)

    def kl(batch: np.ndarray) -> torch.Tensor:
        unique, where = distinct(rows[batch])
        q = F.normalize(q_all[batch] @ weight.T, dim=-1)
        d = F.normalize(d_all[unique.to(device)] @ weight.T, dim=-1)
        student = (q @ d.T).gather(1, where.to(device))
        return listwise_kl(student, t_all[batch], temperature, shift)

    before = held_out_kl(held, batch_size, kl)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        batch = train if len(train) <= batch_size else rng.choice(train, batch_size, replace=False)
        optimizer.zero_grad()
        loss = kl(batch) + reg * ((weight - eye) ** 2).sum()
        loss.backward()
        optimizer.step()
    after = held_out_kl(held, batch_size, kl)
    return Fit(weight.detach().cpu(), before, after)
