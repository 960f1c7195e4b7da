"""Heuristic rejects: what a model writes when it is not writing a search query.

- refusals and meta text ("as an AI", "here is a query"),
- placeholders and template leakage (`{{ }}`, `[insert ...]`, `<|im_start|>`),
- questions that only make sense with the passage in view ("according to the text"),
- a query made of the passage's own word n-grams (a copied fragment, not a question).
Patterns cover the bundled languages (en, de, fr, es); they are deliberately few and
specific, because a false reject costs a good pair.
"""

import re
from typing import TYPE_CHECKING

from pydantic import Field

from pipeline.config.base import Strict
from pipeline.dataset.records import Candidate, Reject
from pipeline.quality.minimal import words
from pipeline.quality.registry import Check, per_candidate, register

if TYPE_CHECKING:  # annotations only: both import the job config, which imports this
    from pipeline.config.job import JobConfig
    from pipeline.prompts.library import PromptLibrary
    from pipeline.quality.chain import Context

REFUSAL_OR_META = re.compile(
    r"\b(as an ai|language model|i cannot|i can't|i'm sorry|i am sorry|sorry, but"
    r"|here is (a|the|your) (search )?query|here's (a|the|your) (search )?query"
    r"|the query is)\b"
    r"|^\s*(search )?query\s*:|^(sure|certainly|okay)\b[,!.]",
    re.IGNORECASE,
)
PLACEHOLDER = re.compile(
    r"\{\{|\}\}|\{%|%\}|<\|[a-z_]+\|>|\[(insert|your|query|topic|passage|name)\b|<query>"
    r"|\bplaceholder\b|\blorem ipsum\b|\bxxx\b|\.\.\.$",
    re.IGNORECASE,
)
PASSAGE_DEPENDENT = re.compile(
    r"\b(according to (the|this) (text|passage|article|document|paragraph|author)"
    r"|(in|from) (the|this) (text|passage|article|paragraph|excerpt)"
    r"|(the|this) (passage|text|excerpt|paragraph) (says?|states?|mentions?|describes?|tells?)"
    r"|mentioned above|the above|the author"
    r"|laut (dem|diesem) text|im text|selon le texte|dans le (texte|passage)"
    r"|según el texto|en el (texto|pasaje))\b",
    re.IGNORECASE,
)
CHECKS = (
    ("refusal_or_meta", REFUSAL_OR_META),
    ("placeholder", PLACEHOLDER),
    ("passage_dependent", PASSAGE_DEPENDENT),
)


class HeuristicsFilter(Strict):
    """Refusals, meta text, placeholders, passage-dependent questions, n-gram overlap."""

    enabled: bool = True
    ngram: int = Field(3, ge=1, le=8)
    max_ngram_overlap: float = Field(
        0.6, ge=0, le=1, description="reject if this share of the query's n-grams is in the passage"
    )


def ngram_overlap(query: list[str], passage: list[str], n: int) -> float:
    """Share of the query's word n-grams that also occur in the passage (0 if the query
    has fewer than n + 1 words: short keyword queries legitimately reuse the passage)."""
    if len(query) <= n:
        return 0.0
    grams = [tuple(query[i : i + n]) for i in range(len(query) - n + 1)]
    seen = {tuple(passage[i : i + n]) for i in range(len(passage) - n + 1)}
    return sum(g in seen for g in grams) / len(grams)


def check_heuristics(candidate: Candidate, config: HeuristicsFilter) -> Reject | None:
    """The first heuristic the query fails, as a Reject; None if it passes them all."""
    query = candidate.query or ""
    overlap = ngram_overlap(words(query), words(candidate.doc.text), config.ngram)
    candidate.scores["ngram_overlap"] = overlap

    def reject(reason: str, detail: str, score: float | None = None) -> Reject:
        return Reject(
            candidate.doc.doc_id, candidate.task, "heuristics", reason, detail, query, score
        )

    for reason, pattern in CHECKS:
        if match := pattern.search(query):
            return reject(reason, f"matches {match.group(0)!r}")
    if overlap > config.max_ngram_overlap:
        return reject(
            "ngram_overlap",
            f"{overlap:.2f} of its {config.ngram}-grams are in the passage",
            overlap,
        )
    return None


@register(
    "heuristics",
    order=600,
    settings=HeuristicsFilter,
    reasons={
        "refusal_or_meta": 'a refusal or meta text ("as an AI", "here is a query")',
        "placeholder": "a placeholder or template leakage (`{{ }}`, `[insert ...]`)",
        "passage_dependent": 'only makes sense with the passage in view ("according to the text")',
        "ngram_overlap": "more than `max_ngram_overlap` of its word n-grams are in the passage "
        "(score: overlap)",
    },
)
def heuristics_check(config: "JobConfig", library: "PromptLibrary", context: "Context") -> Check:
    """The families that list `heuristics` (their query is written, not taken)."""
    settings: HeuristicsFilter = config.filters.heuristics
    return per_candidate(lambda c: check_heuristics(c, settings))
