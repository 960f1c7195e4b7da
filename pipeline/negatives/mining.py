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

# (rows, scores, positives): for each candidate, corpus rows and their scores in any order
# (row -1 pads), and its positive's score.
Ranking = Callable[[list[Candidate], int], tuple[np.ndarray, np.ndarray, np.ndarray]]


def embedder_ranking(index: CorpusIndex) -> Ranking:
    """The embedder's order: each query's `depth` nearest documents, and the positive's
    cosine (nothing past the depth is scored: memory and time stay per query)."""

    def rank(candidates: list[Candidate], depth: int) -> tuple[np.ndarray, ...]:
        vectors = np.stack([c.vector for c in candidates])
        rows, scores = index.top(vectors, depth)
        return rows, scores, index.positive_scores(vectors, [c.doc.doc_id for c in candidates])

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
    depth = min(config.rank_end, len(index.doc_ids))
    rows, scores, positives = (ranking or embedder_ranking(index))(candidates, depth)
    without = 0
    for row, candidate in enumerate(candidates):
        order = np.argsort(-scores[row], kind="stable")[:depth]
        ceiling = min(
            positives[row] * config.max_score_ratio if positives[row] > 0 else positives[row],
            positives[row] - config.margin,
        )
        own = text_key(candidate.doc.text)
        picked: list[tuple[str, float]] = []
        for rank, position in enumerate(order):
            if len(picked) == config.count:
                break
            j, score = int(rows[row, position]), float(scores[row, position])
            same = j < 0 or index.doc_ids[j] == candidate.doc.doc_id or index.keys[j] == own
            guarded = not (np.isfinite(score) and score <= ceiling)  # also unranked, NaN
            if rank < config.rank_start or same or guarded:
                continue
            picked.append((index.texts[j], score))
        candidate.negatives = [text for text, _ in picked]
        candidate.negative_scores = [score for _, score in picked]
        without += not picked
    return without
