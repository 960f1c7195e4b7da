"""Document language identification with lingua, for corpora that carry no language column.

lingua ships its models inside the wheel, so it works offline; low-accuracy mode is plenty
for passages and loads lazily, once per process.

A job names languages by ISO 639-1 code, and a few codes users write mean a language lingua
splits in two: `no` (Norwegian, as prompts/languages.yaml names it) is written as Bokmål
(`nb`) or Nynorsk (`nn`). Judging among the job's codes, lingua gets both halves and their
confidence counts for `no`, so a Norwegian query asked for as `no` is never rejected.
"""

from functools import lru_cache

from lingua import IsoCode639_1, Language, LanguageDetector, LanguageDetectorBuilder

# A code a job may use -> the lingua codes that stand for it.
ALIASES: dict[str, tuple[str, ...]] = {"no": ("nb", "nn")}


@lru_cache(maxsize=1)
def lingua_codes() -> frozenset[str]:
    """Every ISO 639-1 code lingua can identify."""
    return frozenset(language.iso_code_639_1.name.lower() for language in Language.all())


def identifiable(code: str) -> bool:
    """Whether `language_confidence` can judge `code`, itself or through its alias."""
    return all(lingua in lingua_codes() for lingua in ALIASES.get(code, (code,)))


def same_language(asked: str, detected: str) -> bool:
    """Whether lingua's `detected` code is the language a plan `asked` for (`nb` is `no`)."""
    return detected == asked or detected in ALIASES.get(asked, ())


@lru_cache(maxsize=1)
def _detector() -> LanguageDetector:
    return LanguageDetectorBuilder.from_all_languages().with_low_accuracy_mode().build()


# A lingua code -> the job's code for it (a Bokmål document is `no`, as a job names it).
JOB_CODE = {half: alias for alias, halves in ALIASES.items() for half in halves}


def detect_languages(texts: list[str]) -> list[str | None]:
    """ISO 639-1 codes for `texts` (None where lingua cannot tell), in the job's codes, so
    that a Norwegian document matches a job's `no` (`languages.match_document`)."""
    found = _detector().detect_languages_in_parallel_of(texts)
    codes = [lang.iso_code_639_1.name.lower() if lang else None for lang in found]
    return [JOB_CODE.get(code, code) if code else None for code in codes]


@lru_cache(maxsize=4)
def _detector_for(codes: frozenset[str]) -> LanguageDetector:
    unknown = sorted(code for code in codes if not identifiable(code))
    if unknown:  # the job config refuses these; a caller passing one is a bug
        raise ValueError(f"lingua cannot identify {', '.join(unknown)}")
    lingua = sorted({c for code in codes for c in ALIASES.get(code, (code,))})
    languages = [IsoCode639_1.from_str(code) for code in lingua]
    return LanguageDetectorBuilder.from_iso_codes_639_1(*languages).build()


def language_confidence(texts: list[str], among: frozenset[str]) -> list[tuple[str | None, float]]:
    """(ISO 639-1 code, confidence 0..1) of the most likely language of each text, chosen
    among `among` (two or more codes): judging a short query against every language
    lingua knows calls English technical terms Latin. An alias's halves are summed under
    the alias (Bokmål and Nynorsk as `no`) unless `among` names the half itself."""
    detector = _detector_for(among)
    back = {
        half: alias
        for alias, halves in ALIASES.items()
        if alias in among
        for half in halves
        if half not in among
    }
    found: list[tuple[str | None, float]] = []
    for values in detector.compute_language_confidence_values_in_parallel(texts):
        totals: dict[str, float] = {}
        for value in values:
            code = value.language.iso_code_639_1.name.lower()
            code = back.get(code, code)
            totals[code] = totals.get(code, 0.0) + float(value.value)
        if not totals:
            found.append((None, 0.0))
            continue
        top = max(totals, key=lambda code: totals[code])  # the first of equals: lingua's order
        found.append((top, totals[top]))
    return found
