"""Decontamination: a training query that repeats an evaluation query (or most of one's
word n-grams) would let a model that memorized it score well on that evaluation, so such
pairs are rejected with the overlap as their score.

Evaluation queries come from JSONL files (one object per line with `text` or `query`) or
BEIR folders (their `queries.jsonl`). Texts are compared after the normalization exact
dedup uses (case, punctuation, spacing), as sets of word n-grams; a query shorter than n
words is one n-gram, so it is caught only by an exact match.
"""

from pipeline.corpus.reader import read_queries
from pipeline.dataset.records import Candidate, Reject
from pipeline.dedup.text import normalize, shingles
from pipeline.quality.settings import DecontaminationFilter

SETTING = "filters.decontamination.files"


class Decontaminator:
    """The n-grams and normalized texts of every evaluation query, and the check."""

    def __init__(self, config: DecontaminationFilter) -> None:
        self.config = config
        self.exact: set[str] = set()
        self.grams: set[str] = set()
        for path in config.files:
            for text in read_queries(path, SETTING):
                normalized = normalize(text)
                self.exact.add(normalized)
                self.grams.update(shingles(normalized, config.ngram))

    def check(self, candidate: Candidate) -> Reject | None:
        """Reject a query equal to an evaluation query, or with too many of its n-grams."""
        normalized = normalize(candidate.query or "")

        def reject(reason: str, detail: str, score: float) -> Reject:
            return Reject(candidate.doc.doc_id, candidate.task, "decontamination", reason,
                          detail, candidate.query, score)  # fmt: skip

        if normalized in self.exact:
            return reject("eval_query", "the query is an evaluation query", 1.0)
        grams = shingles(normalized, self.config.ngram) if normalized else []
        if not grams:
            return None
        overlap = sum(g in self.grams for g in grams) / len(grams)
        candidate.scores["eval_overlap"] = overlap
        if overlap >= self.config.max_overlap:
            return reject(
                "eval_overlap",
                f"{overlap:.0%} of its {self.config.ngram}-grams are in evaluation queries",
                overlap,
            )
        return None
