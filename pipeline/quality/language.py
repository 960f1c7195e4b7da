"""Language match: the query must be in the language the plan asked for.

Small models often answer in English whatever they are asked. lingua is unreliable on a
few words, so a query is only rejected when it is long enough and lingua is confident, and
it only chooses among the job's query languages and English (the language a model falls
back to); a job with English queries alone has nothing to check.
"""

from collections.abc import Callable

from pipeline.corpus.langid import language_confidence, same_language
from pipeline.dataset.records import Candidate, Reject
from pipeline.quality.minimal import words
from pipeline.quality.settings import LanguageFilter

FALLBACK = "en"


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
