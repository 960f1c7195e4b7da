"""Document language identification with lingua, for corpora that carry no language column.

lingua ships its models inside the wheel, so it works offline; low-accuracy mode is plenty
for passages and loads lazily, once per process.
"""

from functools import lru_cache

from lingua import LanguageDetector, LanguageDetectorBuilder


@lru_cache(maxsize=1)
def _detector() -> LanguageDetector:
    return LanguageDetectorBuilder.from_all_languages().with_low_accuracy_mode().build()


def detect_languages(texts: list[str]) -> list[str | None]:
    """ISO 639-1 codes for `texts` (None where lingua cannot tell)."""
    found = _detector().detect_languages_in_parallel_of(texts)
    return [lang.iso_code_639_1.name.lower() if lang else None for lang in found]
