"""Language match: the query must be in the language the plan asked for.

Small models often answer in English whatever they are asked. lingua is unreliable on a
few words, so a query is only rejected when it is long enough and lingua is confident, and
it only chooses among the job's query languages and English (the language a model falls
back to); a job with English queries alone has nothing to check.
"""

from collections.abc import Callable
from typing import TYPE_CHECKING

from pydantic import Field

from pipeline.config.base import Strict
from pipeline.corpus.langid import language_confidence, same_language
from pipeline.dataset.records import Candidate, Reject
from pipeline.quality.minimal import words
from pipeline.quality.registry import Check, register

if TYPE_CHECKING:  # annotations only: both import the job config, which imports this
    from pipeline.config.job import JobConfig
    from pipeline.prompts.library import PromptLibrary
    from pipeline.quality.chain import Context

FALLBACK = "en"


class LanguageFilter(Strict):
    """Language match: lingua's detected language of the query equals the requested one."""

    enabled: bool = True
    min_confidence: float = Field(
        0.5, ge=0, le=1, description="reject only when lingua is at least this sure"
    )
    min_words: int = Field(3, ge=1, description="shorter queries are not judged")


def query_text(candidate: Candidate) -> str:
    return candidate.query or ""


def check_languages(
    candidates: list[Candidate],
    config: LanguageFilter,
    languages: list[str],
    text: Callable[[Candidate], str] = query_text,
) -> list[Reject | None]:
    """One verdict per candidate; scores the confidence of the detected language of
    `text` (the query, or for bitext the translation)."""
    among = frozenset([*languages, FALLBACK])
    verdicts: list[Reject | None] = []
    judged = [c for c in candidates if len(words(text(c))) >= config.min_words]
    if len(among) < 2 or not judged:
        return [None] * len(candidates)
    found = dict(
        zip(
            map(id, judged),
            language_confidence([text(c) for c in judged], among),
            strict=True,
        )
    )
    for candidate in candidates:
        detected = found.get(id(candidate))
        if detected is None:
            verdicts.append(None)
            continue
        code, confidence = detected
        candidate.scores["language_confidence"] = confidence
        if (
            code is None
            or same_language(candidate.query_language, code)
            or confidence < config.min_confidence
        ):
            verdicts.append(None)
            continue
        verdicts.append(
            Reject(
                candidate.doc.doc_id,
                candidate.task,
                "language",
                "wrong_language",
                f"asked for {candidate.query_language}, lingua says {code} ({confidence:.2f})",
                candidate.query,
                confidence,
            )
        )
    return verdicts


@register(
    "language",
    order=500,
    settings=LanguageFilter,
    reasons={
        "wrong_language": "lingua is at least `min_confidence` sure the text is in another "
        "language than the planned one (score: lingua's confidence)"
    },
)
def language_check(config: "JobConfig", library: "PromptLibrary", context: "Context") -> Check:
    """The families that list `language`, on the text their `record.language` names."""
    settings: LanguageFilter = config.filters.language
    languages = list(config.languages.query)

    def written(c: Candidate) -> str:  # the text the plan asked for in its language
        in_language = library.task(c.task).record.language
        return (c.positive_text if in_language == "positive" else c.query) or ""

    return lambda candidates: check_languages(candidates, settings, languages, written)
