"""The validation split: a share of the pairs' documents held out of training, so that
`embsynth train` can compare its candidate models on queries none of them was trained on
(pipeline.selection).

Whole documents are held out, not pairs: two queries of one document are near twins, and
one in training would make its sibling easy. A document's side is a function of its key and
the seed alone, so it stays on its side when the data grows (a refresh adds versions) and
a resumed run splits as the first did.
"""

import hashlib
from collections.abc import Sequence
from dataclasses import replace

from pipeline.config.errors import UserError
from pipeline.embedding.data import Example


def document_key(example: Example) -> str:
    """What identifies a pair's document: its id, or its text where the data has no ids."""
    return example.doc_id or example.positive


def held_out(key: str, share: float, seed: int) -> bool:
    """Whether the document `key` is in the validation split (about `share` of keys are)."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < share * 2**64


def split_pairs(
    examples: Sequence[Example], share: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """(training pairs, held-out pairs): every pair of a held-out document goes to the
    second list, in the data's order, and no training pair keeps a held-out document as a
    hard negative (mined from the whole corpus, it would train the model on that text).
    Refused when either side would be empty."""
    train: list[Example] = []
    held: list[Example] = []
    for example in examples:
        (held if held_out(document_key(example), share, seed) else train).append(example)
    unseen = {e.positive for e in held}
    train = [without_negatives(e, unseen) for e in train]
    documents = len({document_key(e) for e in examples})
    if not held or not train:
        side = "no pair" if not held else "every pair"
        raise UserError(
            f"select.held_out {share}: the validation split holds {side} of the data's "
            f"{len(examples)} pairs ({documents} documents); change the share or add data"
        )
    return train, held


def without_negatives(example: Example, texts: set[str]) -> Example:
    """`example` without the hard negatives whose text is in `texts`, and without their
    teacher scores (which follow the positive's in the negatives' order)."""
    keep = [i for i, text in enumerate(example.negatives) if text not in texts]
    if len(keep) == len(example.negatives):
        return example
    scores = example.teacher_scores
    kept_scores = scores[:1] + tuple(scores[1 + i] for i in keep if 1 + i < len(scores))
    negatives = tuple(example.negatives[i] for i in keep)
    return replace(example, negatives=negatives, teacher_scores=kept_scores if scores else ())
