"""Text normalization and shingles shared by exact and near-duplicate detection."""

import hashlib
import itertools
import re
import unicodedata

WORD = re.compile(r"\w+", re.UNICODE)


def normalize(text: str) -> str:
    """Case, accents' composed forms, punctuation and spacing do not make a new query."""
    if not text.isascii():  # NFKC changes nothing in ASCII and is the slow part
        text = unicodedata.normalize("NFKC", text)
    return " ".join(WORD.findall(text.casefold()))


def text_key(text: str) -> str:
    """A short hash of the normalized text: the exact-duplicate key."""
    return hashlib.blake2b(normalize(text).encode(), digest_size=12).hexdigest()


def shingles(normalized: str, size: int) -> list[str]:
    """Word n-grams of a normalized text (the text itself when it is shorter than n)."""
    tokens = normalized.split()
    if len(tokens) <= size:
        return [normalized]
    if size == 1:
        return tokens
    if size == 2:  # the default, and the hot path of near-duplicate detection
        return [f"{a} {b}" for a, b in itertools.pairwise(tokens)]
    return [" ".join(tokens[i : i + size]) for i in range(len(tokens) - size + 1)]
