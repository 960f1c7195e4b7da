"""Text normalization and shingles shared by exact and near-duplicate detection."""

import hashlib
import re
import unicodedata

WORD = re.compile(r"\w+", re.UNICODE)


def normalize(text: str) -> str:
    """Case, accents' composed forms, punctuation and spacing do not make a new query."""
    return " ".join(WORD.findall(unicodedata.normalize("NFKC", text).casefold()))


def text_key(text: str) -> str:
    """A short hash of the normalized text: the exact-duplicate key."""
    return hashlib.blake2b(normalize(text).encode(), digest_size=12).hexdigest()


def shingles(normalized: str, size: int) -> list[str]:
    """Word n-grams of a normalized text (the text itself when it is shorter than n)."""
    tokens = normalized.split()
    if len(tokens) <= size:
        return [" ".join(tokens)]
    return [" ".join(tokens[i : i + size]) for i in range(len(tokens) - size + 1)]
