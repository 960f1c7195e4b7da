"""Queries cut from the corpus itself, for the adapter to learn the teacher's ranking on.

A generated pair gives the adapter one query per document or two; the corpus's own
sentences give it thousands more, on every topic the corpus holds, at no generation cost.
The teacher ranks the corpus for each; whether the sentence's own document comes first is
not assumed (it is not a pair, only a query).
"""

import re

import numpy as np

SENTENCE_END = re.compile(r"\s*[.!?]\s+")
WORDS = (4, 30)  # a sentence shorter or longer than this is no query
WINDOW = (6, 14)  # words of the window cut where a text has no usable sentence


def crops(texts: list[str], per_doc: int, seed: int) -> list[str]:
    """Up to `per_doc` sentences of each text, from its second on (the first often restates
    the title, as in Cranfield), or one window of 6-14 words where none qualifies."""
    rng = np.random.default_rng(seed)
    out: list[str] = []
    for text in texts:
        sentences = [s.strip() for s in SENTENCE_END.split(text)]
        picked = [s for s in sentences[1 : per_doc + 1] if WORDS[0] <= len(s.split()) <= WORDS[1]]
        words = text.split()
        if per_doc and not picked and len(words) > WINDOW[1] + 2:
            size = int(rng.integers(WINDOW[0], WINDOW[1] + 1))
            start = int(rng.integers(0, len(words) - size))
            picked = [" ".join(words[start : start + size])]
        out.extend(picked)
    return out
