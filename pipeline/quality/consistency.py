"""The embedding checks: a query must be close to its own passage (consistency) and find it
among the whole corpus (round trip, as in Promptagator). Off-topic queries, the main fault
of small generators, fail both. Query vectors are computed once here and kept on the
candidate for semantic dedup and mining."""

import numpy as np

from pipeline.config import ConsistencyFilter, RoundTripFilter
from pipeline.embedding.inference import Embedder
from pipeline.index.corpus import CorpusIndex
from pipeline.records import Candidate, Reject


def embed_queries(candidates: list[Candidate], embedder: Embedder) -> None:
    """Set `vector` on every candidate that has none yet, in one batch. Queries are
    encoded without an instruction: the filters judge the query text itself."""
    todo = [c for c in candidates if c.vector is None]
    if todo:
        vectors = embedder.encode_queries([c.query or "" for c in todo], instruction="")
        for candidate, vector in zip(todo, vectors, strict=True):
            candidate.vector = vector


def _vectors(candidates: list[Candidate]) -> np.ndarray:
    return np.stack([c.vector for c in candidates])


def check_consistency(
    candidates: list[Candidate], index: CorpusIndex, config: ConsistencyFilter
) -> list[Reject | None]:
    """Reject a query whose cosine with its positive is below `min_cosine`."""
    if not candidates:
        return []
    scores = index.positive_scores(_vectors(candidates), [c.doc.doc_id for c in candidates])
    verdicts: list[Reject | None] = []
    for candidate, score in zip(candidates, scores.tolist(), strict=True):
        candidate.scores["consistency"] = score
        ok = score >= config.min_cosine
        verdicts.append(
            None
            if ok
            else Reject(
                candidate.doc.doc_id,
                candidate.task,
                "consistency",
                "low_consistency",
                f"cosine {score:.3f} < {config.min_cosine}",
                candidate.query,
                score,
            )
        )
    return verdicts


def check_round_trip(
    candidates: list[Candidate], index: CorpusIndex, config: RoundTripFilter
) -> list[Reject | None]:
    """Reject a query whose positive ranks below `top_k` among the job's corpus."""
    if not candidates:
        return []
    ranks = index.ranks(_vectors(candidates), [c.doc.doc_id for c in candidates])
    verdicts: list[Reject | None] = []
    for candidate, rank in zip(candidates, ranks.tolist(), strict=True):
        candidate.scores["round_trip_rank"] = rank
        verdicts.append(
            None
            if rank <= config.top_k
            else Reject(
                candidate.doc.doc_id,
                candidate.task,
                "round_trip",
                "round_trip_miss",
                f"positive ranks {rank} of {len(index.doc_ids)} > top {config.top_k}",
                candidate.query,
                float(rank),
            )
        )
    return verdicts
