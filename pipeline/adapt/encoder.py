"""Fit the whole encoder to the adapter's lesson (`fit: encoder`): every weight of the trained
model learns the teacher's distribution over the corpus, for the same queries and with
the same loss as the linear map (pipeline.adapt.linear).

Why beside the map: a map after pooling bends one shared space for every query and stops
short of the teacher; the encoder can move each query by its own words (docs/training.md,
"The adapter stage"; the figures are in docs/benchmarks.md). The documents
stay at the lesson's vectors (the trained model's) while the queries learn: encoding the
corpus with gradients at every step would cost a pass over the corpus per step, and at one
epoch and a small learning rate the documents' own vectors move little; the final model
encodes them anew. A fifth of the queries is held out, as in the linear fit.
"""

import math
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pipeline.adapt.lesson import Lesson, distinct
from pipeline.adapt.linear import held_out_kl, held_out_split, listwise_kl
from pipeline.embedding.inference import saved_settings
from pipeline.embedding.model import EmbeddingModel, query_text
from pipeline.embedding.save import export_model
from pipeline.embedding.train_config import AdapterConfig


def fit_encoder(
    model: Path,
    taught: Lesson,
    settings: AdapterConfig,
    *,
    instruction: str | None,
    seed: int,
    device: torch.device,
    out: Path,
) -> tuple[float, float]:
    """Fine-tune the saved model `model` (the lesson's, whose vectors it holds) so its
    query vectors, against the lesson's fixed document vectors, give the teacher's softmax
    over the corpus; write it to `out` with `instruction`'s query prompt. Returns the
    held-out KL before and after."""
    torch.manual_seed(seed)
    pooling, max_length, _ = saved_settings(model)
    encoder = EmbeddingModel(model, pooling, max_length).to(device)
    held, train = held_out_split(len(taught.texts), seed)
    prompted = [query_text(text, instruction) for text in taught.texts]
    doc_vectors = torch.from_numpy(taught.index.vectors).float().to(device)
    teacher = torch.from_numpy(taught.targets).float().to(device)
    shift = None if taught.weights is None else torch.from_numpy(taught.weights).to(device)
    temperature, fit = settings.temperature, settings.encoder

    def embed(rows: np.ndarray) -> torch.Tensor:
        batch = encoder.tokenize([prompted[i] for i in rows])
        return encoder({k: v.to(device) for k, v in batch.items()})

    def kl(queries: torch.Tensor, batch: np.ndarray) -> torch.Tensor:
        """The batch's KL, its queries' vectors given (against the fixed documents)."""
        unique, where = distinct(taught.rows[batch])
        student = (queries @ doc_vectors[unique.to(device)].T).gather(1, where.to(device))
        return listwise_kl(student, teacher[batch], temperature, shift)

    def fixed(rows: np.ndarray) -> torch.Tensor:  # the lesson's vectors: the model as it was
        return kl(torch.from_numpy(taught.vectors[rows]).float().to(device), rows)

    size = fit.batch_size
    before = held_out_kl(held, size, fixed)
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=fit.learning_rate)
    rng = np.random.default_rng(seed)
    steps = fit.epochs * math.ceil(len(train) / size)
    encoder.train()
    with tqdm(total=steps, desc="adapter: encoder", unit="step") as bar:
        for _ in range(fit.epochs):
            order = rng.permutation(train)
            for start in range(0, len(order), size):
                rows = order[start : start + size]
                loss = kl(embed(rows), rows)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                bar.set_postfix(kl=f"{loss.item():.3f}")
                bar.update(1)
    encoder.eval()
    after = held_out_kl(held, size, lambda rows: kl(embed(rows), rows))
    export_model(encoder, out, instruction)
    return before, after
