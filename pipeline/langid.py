"""Document language identification with lingua, for corpora that carry no language column.

lingua ships its models inside the wheel, so it works offline; low-accuracy mode is plenty
for passages and loads lazily, once per process.
"""

from functools import lru_cache

from lingua import IsoCode639_1, LanguageDetector, LanguageDetectorBuilder


@lru_cache(maxsize=1)
def _detector() -> LanguageDetector:
    return LanguageDetectorBuilder.from_all_languages().with_low_accuracy_mode().build()


def detect_languages(texts: list[str]) -> list[str | None]:
    """ISO 639-1 codes for `texts` (None where lingua cannot tell)."""
    found = _detector().detect_languages_in_parallel_of(texts)
    return [lang.iso_code_639_1.name.lower() if lang else None for lang in found]


@lru_cache(maxsize=4)
def _detector_for(codes: frozenset[str]) -> LanguageDetector:
    languages = [IsoCode639_1.from_str(code) for code in sorted(codes)]
    return LanguageDetectorBuilder.from_iso_codes_639_1(*languages).build()


def language_confidence(texts: list[str], among: frozenset[str]) -> list[tuple[str | None, float]]:
    """(ISO 639-1 code, confidence 0..1) of the most likely language of each text, chosen
    among `among` (two or more codes): judging a short query against every language
    lingua knows calls English technical terms Latin."""
    detector = _detector_for(among)
    found: list[tuple[str | None, float]] = []
    for values in detector.compute_language_confidence_values_in_parallel(texts):
        if not values:
            found.append((None, 0.0))
            continue
        top = values[0]
        found.append((top.language.iso_code_639_1.name.lower(), float(top.value)))
    return found
