"""The one pass over the corpus before generation: it checks every row (so bad input fails
before a model loads), counts what the progress bars will see, digests the content (what
tells a rerun of the same job from a new one) and lists each document's content key (what a
refresh compares with the keys earlier versions covered, and what names a corpus state).
It holds no text: a job that embeds the corpus reads its documents again
(`kept_documents`) only for a corpus state it has not written yet (pipeline.run.job).

A `limit` bounds what is counted, digested and listed; the rows past it are still checked,
as a job over the first N rows of a broken file should not pass.
"""

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from pipeline.config.errors import UserError
from pipeline.config.input import InputConfig
from pipeline.corpus.reader import check_layout, read_documents, skip
from pipeline.dataset.records import Document


@dataclass
class Survey:
    """What the pass found, up to the limit."""

    fmt: str
    read: int = 0  # documents and skipped rows: the read step's progress total
    keys: list[tuple[str, str]] = field(default_factory=list)  # (doc_id, key) per document
    digest: str = ""

    def new(self, seen: set[str]) -> int:
        """How many documents no earlier version read (their key is not in `seen`)."""
        return sum(key not in seen for _, key in self.keys)


def survey_corpus(config: InputConfig, limit: int | None = None) -> Survey:
    """Check, count and digest the corpus in one pass (see the module docstring)."""
    survey = Survey(check_layout(config))
    digest = hashlib.sha256()
    fields: dict[str, None] = {}  # every JSONL field seen, in order of first sight
    rows = empty = long = taken = 0
    for row, doc in read_documents(config, survey.fmt):
        rows += 1
        if survey.fmt == "jsonl":
            fields.update(dict.fromkeys(row))
        reject = skip(doc, config)
        empty += reject is not None and reject.reason == "empty"
        long += reject is not None and reject.reason == "too_long"
        if limit is not None and taken >= limit:
            continue  # past the limit: checked, not read
        survey.read += 1
        if reject is not None:
            digest.update(f"{reject.doc_id}\0{reject.reason}\0".encode())
            continue
        taken += 1
        digest.update(doc.key.encode())
        survey.keys.append((doc.doc_id, doc.key))
    if survey.fmt == "jsonl":
        _named_fields(config, fields)
    _some_document(config, rows, empty, long)
    survey.digest = digest.hexdigest()[:16]
    return survey


def kept_documents(config: InputConfig, survey: Survey, size: int) -> Iterator[list[Document]]:
    """The documents the survey listed, read again in batches of `size`: a document whose
    content is not the one surveyed (the file changed under the job) is a user error."""
    batch: list[Document] = []
    taken = 0
    for _, doc in read_documents(config, survey.fmt):
        if taken == len(survey.keys):
            break
        if skip(doc, config) is not None:
            continue
        if doc.key != survey.keys[taken][1]:
            raise UserError(f"{config.path} changed while the job read it; run the job again")
        taken += 1
        batch.append(doc)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
    if taken < len(survey.keys):
        raise UserError(f"{config.path} changed while the job read it; run the job again")


def check_corpus(config: InputConfig) -> str:
    """Fail fast on anything wrong with the whole corpus; return its format."""
    return survey_corpus(config).fmt


def corpus_digest(config: InputConfig, limit: int | None = None) -> str:
    """A hash of the corpus content a job reads (ids and texts, skips included)."""
    return survey_corpus(config, limit).digest


def _named_fields(config: InputConfig, fields: Iterable[str]) -> None:
    seen = list(fields)
    for setting, column in config.named_columns().items():
        if column not in seen:
            raise UserError(
                f"{config.path}: input.{setting} '{column}': no such field in any line "
                f"(has: {', '.join(seen)})"
            )


def _some_document(config: InputConfig, rows: int, empty: int, long: int) -> None:
    if rows == empty + long:
        found = (
            f"of its {rows} rows, {empty} have no text and {long} are longer than "
            f"input.max_chars ({config.max_chars})"
            if rows
            else "it holds no rows"
        )
        raise UserError(f"no documents in {config.path}: {found}")
