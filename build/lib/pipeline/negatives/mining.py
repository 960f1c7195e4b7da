"""Hard negatives: documents the embedder ranks high for a query that are not its positive.

The top of the ranking is where unlabeled positives hide (another abstract on the same
experiment), so candidates come from a rank window, and a false-negative guard drops any
candidate scoring above `max_score_ratio` of the positive's score or within `margin` of
it (NV-Retriever's positive-aware mining). Documents with the positive's text are never
negatives. The order is the embedder's, or the teacher's re-ranking of the embedder's top
documents (`negatives.ranked_by: teacher`).
"""

from collections.abc import Callable

import numpy as np

from pipeline.config.job import NegativesConfig
from pipeline.corpus.index import CorpusIndex
from pipeline.dataset.records import Candidate
from pipeline.dedup.text import text_key

Ranking = Callable[[list[Candidate]], tuple[np.ndarray, np.ndarray]]


def embedder_ranking(index: CorpusIndex) -> Ranking:
    """The embedder's order: every corpus document's cosine, and the positive's."""

    def rank(candidates: list[Candidate]) -> tuple[np.ndarray, np.ndarray]:
        vectors = np.stack([c.vector for c in candidates])
        return index.scores(vectors), index.positive_scores(
            vectors, [c.doc.doc_id for c in candidates]
        )

    return rank


def mine(
    candidates: list[Candidate],
    index: CorpusIndex,
    config: NegativesConfig,
    ranking: Ranking | None = None,
) -> int:
    """Fill `negatives` and `negative_scores` of each candidate (ranks count the whole
    corpus, the positive included; the order is the embedder's unless `ranking` gives
    another, such as the teacher's, with -inf for documents it did not rank); returns how
    many pairs got none. Such a pair stays: it still trains with in-batch negatives."""
    if not candidates:
        return 0
    scores, positives = (ranking or embedder_ranking(index))(candidates)
    depth = min(config.rank_end, scores.shape[1])
    top = np.argpartition(-scores, depth - 1, axis=1)[:, :depth]
    without = 0
    for row, candidate in enumerate(candidates):
        order = top[row][np.argsort(-scores[row, top[row]], kind="stable")]
        ceiling = min(
            positives[row] * config.max_score_ratio if positives[row] > 0 else positives[row],
            positives[row] - config.margin,
        )
        own = text_key(candidate.doc.text)
        picked: list[tuple[str, float]] = []
        for rank, j in enumerate(order):
            if len(picked) == config.count:
                break
            score = float(scores[row, j])
            same = index.doc_ids[j] == candidate.doc.doc_id or index.keys[j] == own
            guarded = not (np.isfinite(score) and score <= ceiling)  # also unranked, NaN
            if rank < config.rank_start or same or guarded:
                continue
            picked.append((index.texts[j], score))
        candidate.negatives = [text for text, _ in picked]
        candidate.negative_scores = [score for _, score in picked]
        without += not picked
    return without
