"""Document ids: what a row's id value reads as, and one document per id.

Every consumer of a document looks it up by id: the planner seeds its plans with it, the
corpus index maps it to its row (consistency, round trip, mining guard, teacher, persona
retrieval), a refresh keys it. Two rows under one id (a chunked corpus whose chunks keep
their parent's id) would share plans and score every chunk's query against the last chunk,
so the reader lets no repeat through: by default it is an error naming both rows; with
`input.duplicate_ids: suffix` the first keeps its id and later ones become ID#2, ID#3, ...
in corpus order, skipping any suffix that is some other row's real id.

Ids are compared as the text they read as: the number 1 and the string "1" are one id.
A missing id (null, NaN, which is how pandas writes a missing value, or blank text) means
"none given": the document is named by a hash of its text, as a corpus without an id
column is. Identical texts then share an id, which is right (they are the same document)
and left to document dedup. So is a row repeated whole (the same id and the same text, as
a corpus concatenated with itself has): a twin scores and plans as its first, so it is no
repeat here either.
"""

import math
from pathlib import Path
from typing import Any

from pipeline.config.errors import UserError

SUFFIX = "#"


def describe(value: Any) -> str:
    """A value's kind, for messages: 'a number (42)', 'a list', ..."""
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def id_text(value: Any) -> str | None:
    """The id a row's id value gives, as text; None when it gives none. Raises ValueError
    (with the value's kind) for a value no id can be read from: a list, an object, bytes
    or a boolean."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool | list | tuple | dict | bytes | bytearray):
        raise ValueError(describe(value))
    text = str(value)
    return text if text.strip() else None


class DocumentIds:
    """The ids of one read of a corpus, in corpus order.

    `unit` names a row number in messages (line, row); `reserved` holds every real id of
    the whole corpus that contains the suffix mark, so a made-up `ID#2` never takes an id
    a later row really has (and a run with --limit gives a prefix of the full run's ids).
    """

    def __init__(
        self, path: Path, unit: str, policy: str, reserved: frozenset[str] = frozenset()
    ) -> None:
        self.path, self.unit, self.policy, self.reserved = path, unit, policy, reserved
        # id -> its first row, whether it was given as text, and a hash of its text
        self.first: dict[str, tuple[int, bool, int]] = {}
        self.made: set[str] = set()
        self.next_suffix: dict[str, int] = {}

    def assign(self, given: str | None, as_text: bool, number: int, text: str) -> str | None:
        """The document id of row `number`, whose id value reads as `given` (None: none
        given, so the caller names the document by its text; `as_text`: the value was a
        string, not a number); a repeat is an error or renamed, per policy, unless its
        text is the first's (a twin keeps the id)."""
        if given is None:
            return None
        first = self.first.get(given)
        if first is None and given not in self.made:
            self.first[given] = (number, as_text, hash(text))
            return given
        if first is not None and first[2] == hash(text):
            return given
        if self.policy != "suffix":
            raise UserError(self._repeat(given, as_text, number))
        n = self.next_suffix.get(given, 2)
        while (made := f"{given}{SUFFIX}{n}") in self.reserved or (
            made in self.first or made in self.made
        ):
            n += 1
        self.next_suffix[given] = n + 1
        self.made.add(made)
        return made

    def _repeat(self, given: str, as_text: bool, number: int) -> str:
        first, first_text, _ = self.first.get(given, (None, as_text, 0))
        rows = f"{self.unit} {first} and {self.unit} {number}"
        if first_text != as_text:

            def kind(text: bool) -> str:
                return f"the string {given!r}" if text else f"the number {given}"

            rows = (
                f"{self.unit} {first} ({kind(first_text)}) and {self.unit} {number} "
                f"({kind(as_text)}) read as the same id"
            )
        return (
            f"{self.path}: duplicate id {given!r}: {rows}; make the ids unique or set "
            "input.duplicate_ids: suffix (the first keeps its id, later ones become ID#2, ...)"
        )
