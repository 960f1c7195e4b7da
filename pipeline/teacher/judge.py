"""What the teacher decides: its scores on each pair, what happens when it prefers a
negative to the positive, and the round trip judged by it instead of the student.

The student's own filters keep the pairs it already gets right; a teacher that ranks
better than the student (the fused embedder + BM25 does on the collections measured in
docs/benchmarks.md) confirms pairs the student misses and flags negatives that are
really positives. When the teacher scores a negative at or above the positive:
`drop_negative` (default) removes that negative, so mining is judged by the teacher;
`drop_pair` rejects the pair (`teacher_prefers_negative`); `relabel` makes the preferred
candidate the positive and the old positive a negative (Gecko); `keep` only records scores.
"""

from collections.abc import Callable

import numpy as np

from pipeline.config.job import TeacherConfig
from pipeline.corpus.index import CorpusIndex
from pipeline.dataset.records import Candidate, Reject
from pipeline.generation.backends.base import Generator
from pipeline.quality.consistency import RoundTripFilter
from pipeline.teacher.scorers import Scoring, Teacher, open_teacher

POOL = 100  # the student's top documents the teacher re-ranks for the round trip


class TeacherJudge:
    """The job's teacher with the corpus rows of every text, for scoring candidates."""

    def __init__(
        self,
        teacher: Teacher,
        config: TeacherConfig,
        index: CorpusIndex,
        instruction_of: Callable[[Candidate], str] = lambda c: c.instruction or "",
    ) -> None:
        self.teacher = teacher
        self.config = config
        self.index = index
        self.instruction_of = instruction_of

    def _scoring(self, candidate: Candidate, texts: list[str], rows: list[int | None]) -> Scoring:
        return Scoring(
            candidate.query or "", candidate.vector, texts, rows, self.instruction_of(candidate)
        )

    def score(self, candidates: list[Candidate]) -> list[Reject | None]:
        """Store `teacher_scores` (positive first, then every negative in record order) and
        apply `on_preferred_negative`."""
        items = []
        for c in candidates:
            texts = [c.positive_text, *([c.negative] if c.negative else []), *c.negatives]
            own = self.index.rows.get(c.doc.doc_id) if c.positive is None else None
            rows = [own, *(self.index.columns.by_text.find(t) for t in texts[1:])]
            items.append(self._scoring(c, texts, rows))
        verdicts: list[Reject | None] = []
        for candidate, scores in zip(candidates, self.teacher.score(items), strict=True):
            candidate.teacher_scores = scores
            verdicts.append(self._decide(candidate))
        return verdicts

    def _decide(self, c: Candidate) -> Reject | None:
        scores = c.teacher_scores
        policy = self.config.on_preferred_negative
        if policy == "keep" or len(scores) < 2 or scores[0] is None:
            return None
        positive = scores[0]
        above = [i for i, s in enumerate(scores[1:], start=1) if s is not None and s >= positive]
        if not above:
            return None
        best = max(above, key=lambda i: scores[i] or 0.0)
        gap = (scores[best] or 0.0) - positive
        if policy == "drop_pair":
            return Reject(c.doc.doc_id, c.task, "teacher", "teacher_prefers_negative",
                          f"the teacher scores a negative {gap:.3f} above the positive",
                          c.query, gap)  # fmt: skip
        written = 1 if c.negative else 0
        if policy == "relabel" and best > written:  # a mined document becomes the positive
            mined = best - 1 - written
            old = c.positive_text
            c.positive = c.negatives[mined]
            c.negatives[mined] = old
            c.negative_scores[mined] = c.scores.get("consistency", float("nan"))
            scores[0], scores[best] = scores[best], scores[0]
            c.scores["teacher_relabeled"] = 1.0
            return None
        # drop_negative (and a relabel onto a written text): the negatives it prefers go.
        dropped = set(above)
        if written and 1 in dropped:
            c.negative = None
        keep = [i for i in range(len(c.negatives)) if 1 + written + i not in dropped]
        c.negatives = [c.negatives[i] for i in keep]
        c.negative_scores = [c.negative_scores[i] for i in keep]
        c.teacher_scores = [s for i, s in enumerate(scores) if i not in dropped]
        return None

    def _rerank(self, candidates: list[Candidate]) -> list[tuple[list[int], list[float | None]]]:
        """Each candidate's pool, its own document first and then the student's top POOL
        documents, with the teacher's score of each (corpus rows, scores)."""
        tops, _ = self.index.top(np.stack([c.vector for c in candidates]), POOL)
        pools, items = [], []
        for c, top in zip(candidates, tops, strict=True):
            own = self.index.rows[c.doc.doc_id]
            pool = [own, *(int(r) for r in top if r != own and r >= 0)]
            pools.append(pool)
            items.append(self._scoring(c, [self.index.texts[r] for r in pool], list(pool)))
        return list(zip(pools, self.teacher.score(items), strict=True))

    def ranking(self, candidates: list[Candidate], depth: int) -> tuple[np.ndarray, ...]:
        """The teacher's order for mining (`negatives.ranked_by: teacher`): each candidate's
        re-ranked pool as (rows, scores; -inf for a document it did not score, row -1 pads),
        and each positive's score (`depth`: the pools are what the teacher scored).
        Why offered: the student's own order only yields negatives it already ranks high.
        Measured on Cranfield it hurts (docs/experiments.md): the teacher's top ranks hold
        more unlabelled positives, so the embedder's order stays the default."""
        del depth  # the pools are POOL deep whatever mining asks for
        ranked = self._rerank(candidates)
        width = max(len(pool) for pool, _ in ranked)
        rows = np.full((len(candidates), width), -1, dtype=np.int64)
        table = np.full((len(candidates), width), -np.inf, dtype=np.float32)
        positives = np.full(len(candidates), np.nan, dtype=np.float32)
        for n, (pool, scores) in enumerate(ranked):
            rows[n, : len(pool)] = pool
            table[n, : len(pool)] = [-np.inf if s is None else s for s in scores]
            positives[n] = np.nan if scores[0] is None else scores[0]
        return rows, table, positives

    def round_trip(
        self, candidates: list[Candidate], config: RoundTripFilter
    ) -> list[Reject | None]:
        """The positive's rank among the student's top POOL documents (itself added), as
        the teacher ranks them: a pair the student misses but the teacher confirms stays."""
        if not candidates:
            return []
        verdicts: list[Reject | None] = []
        for c, (_, scores) in zip(candidates, self._rerank(candidates), strict=True):
            mine = scores[0]
            rank = sum(s is not None and mine is not None and s >= mine for s in scores)
            c.scores["round_trip_rank"] = rank
            verdicts.append(
                None
                if rank <= config.top_k
                else Reject(c.doc.doc_id, c.task, "round_trip", "round_trip_miss",
                            f"the teacher ranks the positive {rank} of {len(scores)} "
                            f"> top {config.top_k}", c.query, float(rank))
            )  # fmt: skip
        return verdicts


def judge_for(
    config: TeacherConfig,
    index: CorpusIndex | None,
    generator: Generator | None,
    instruction_of: Callable[[Candidate], str],
) -> TeacherJudge | None:
    """The job's teacher judge, or None when the job has no teacher."""
    teacher = open_teacher(config, index, generator)
    if teacher is None:
        return None
    assert index is not None  # a job with a teacher embeds its corpus (needs_embedder)
    return TeacherJudge(teacher, config, index, instruction_of)
