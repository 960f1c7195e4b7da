"""Read a corpus (JSONL, Parquet or a folder of .txt/.md files) as batches of Documents,
and query files (JSONL or a BEIR folder) as texts.

Reading streams: Parquet by record batch, JSONL by line, folders by file, so memory does
not grow with the corpus (only the set of ids does: see pipeline.corpus.doc_ids). Empty and
oversized documents are skipped as counted rejects.

The corpus is checked up front (pipeline.corpus.survey, the one pass before generation) so
that bad input fails before a model is loaded: a wrong path, format or column, a column the
config names that the corpus lacks, a text that is not text, a repeated id, a corpus without
documents. The reader checks rows again as it streams, so a caller that skips the survey
still never gets a document of a repeated id or a str()'d number as text.
"""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config.errors import UserError
from pipeline.config.input import InputConfig
from pipeline.corpus.doc_ids import SUFFIX, DocumentIds, describe, id_text
from pipeline.dataset.records import Document, Reject, content_hash

TEXT_SUFFIXES = (".txt", ".md")
QUERY_FIELDS = ("text", "query")


def detect_format(config: InputConfig) -> str:
    """The corpus format: as configured, or from the path."""
    path = config.path
    if not path.exists():
        raise UserError(f"corpus not found: {path}")
    if config.format != "auto":
        if (config.format == "text") != path.is_dir():
            kind = "a folder" if config.format == "text" else "a file"
            raise UserError(f"input.format '{config.format}' needs {kind}: {path}")
        return config.format
    if path.is_dir():
        return "text"
    if path.suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if path.suffix == ".parquet":
        return "parquet"
    raise UserError(f"cannot tell the format of {path}; set input.format (jsonl, parquet, text)")


def _wanted_columns(config: InputConfig) -> list[str]:
    optional = [config.id_column, config.title_column, config.language_column]
    return [config.text_column, *[c for c in optional if c]]


def check_layout(config: InputConfig) -> str:
    """What a glance tells: a missing corpus, a corrupt file, a missing text column, a
    Parquet text column of another type, a named Parquet column that is not there."""
    fmt = detect_format(config)
    if fmt == "parquet":
        schema = _parquet_file(config.path).schema_arrow
        names = schema.names
        if config.text_column not in names:
            raise UserError(
                f"{config.path}: no column '{config.text_column}' (has: {', '.join(names)}); "
                "set input.text_column"
            )
        kind = schema.field(config.text_column).type
        if not _is_text(kind):
            raise UserError(
                f"{config.path}: column '{config.text_column}' holds {kind}, not text; "
                "set input.text_column"
            )
        for setting, column in config.named_columns().items():
            if column not in names:
                raise UserError(
                    f"{config.path}: input.{setting} '{column}': no such column "
                    f"(has: {', '.join(names)})"
                )
    elif fmt == "jsonl":
        first = next(jsonl_rows(config.path), None)
        if first is not None and config.text_column not in first[1]:
            raise UserError(
                f"{config.path}:{first[0]}: no field '{config.text_column}' "
                f"(has: {', '.join(first[1])}); set input.text_column"
            )
    elif not any(_text_files(config.path)):
        raise UserError(f"{config.path}: no .txt or .md files in this folder")
    return fmt


def _is_text(kind: pa.DataType) -> bool:
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    string_view = getattr(pa.types, "is_string_view", lambda _: False)  # pyarrow >= 16
    return any(
        test(kind)
        for test in (pa.types.is_null, pa.types.is_string, pa.types.is_large_string, string_view)
    )


def _parquet_file(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise UserError(f"{path}: not a readable Parquet file ({exc})") from exc


def jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) per non-blank line; bad UTF-8, JSON or non-objects are errors."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise UserError(f"{path}:{number}: not UTF-8 text ({exc.reason})") from exc
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise UserError(f"{path}:{number}: expected a JSON object per line")
            yield number, row


def query_file(path: Path, setting: str) -> Path:
    """The JSONL file behind a configured query path (a BEIR folder's queries.jsonl);
    `setting` names the config key in the error."""
    if path.is_dir():
        path = path / "queries.jsonl"
    if not path.is_file():
        raise UserError(f"{setting}: no such query file: {path}")
    return path


def read_queries(path: Path, setting: str) -> list[str]:
    """Every query text of one file (objects with `text` or `query`, one per line, as BEIR
    and most query logs write them); a line without a query field is an error."""
    texts = []
    source = query_file(path, setting)
    for number, row in jsonl_rows(source):
        text = next((row[f] for f in QUERY_FIELDS if f in row), None)
        if not isinstance(text, str):
            raise UserError(f"{source}:{number}: no 'text' or 'query' field")
        texts.append(text)
    return texts


def _text_files(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix in TEXT_SUFFIXES:
            yield path


UNITS = {"jsonl": "line", "parquet": "row", "text": "file"}


def _rows(config: InputConfig, fmt: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(number, row) in corpus order: JSONL line numbers, Parquet and folder rows counted
    from 1."""
    if fmt == "jsonl":
        # A later row without the text field is skipped as `empty`, like a null text.
        yield from jsonl_rows(config.path)
    elif fmt == "parquet":
        parquet = _parquet_file(config.path)
        names = parquet.schema_arrow.names
        columns = [c for c in dict.fromkeys(_wanted_columns(config)) if c in names]
        number = 0
        try:
            for batch in parquet.iter_batches(batch_size=config.batch_size, columns=columns):
                for row in batch.to_pylist():
                    number += 1
                    yield number, row
        except (pa.ArrowInvalid, OSError) as exc:
            raise UserError(f"{config.path}: corrupt Parquet data ({exc})") from exc
    else:
        for number, path in enumerate(_text_files(config.path), start=1):
            text = path.read_text(encoding="utf-8", errors="replace")
            yield number, {config.text_column: text, "__title__": path.stem}


def _where(config: InputConfig, fmt: str, number: int) -> str:
    return f"{config.path}:{number}" if fmt == "jsonl" else f"{config.path} {UNITS[fmt]} {number}"


def _text(row: dict[str, Any], config: InputConfig, fmt: str, number: int) -> str:
    """A row's text, stripped; a missing or null text is empty (skipped as `empty`), any
    other value than a string an error: str() of a number or a list is no passage."""
    text = row.get(config.text_column)
    if text is None:
        return ""
    if not isinstance(text, str):
        where = _where(config, fmt, number)
        raise UserError(f"{where}: '{config.text_column}' is {describe(text)}, not text")
    return text.strip()


def _id_of(value: Any, config: InputConfig, fmt: str, number: int) -> str | None:
    """A row's given id as text (None: none given), its value checked."""
    try:
        return id_text(value)
    except ValueError as exc:
        where = _where(config, fmt, number)
        raise UserError(f"{where}: '{config.id_column}' is {exc}, not an id") from None


def _reserved(config: InputConfig, fmt: str) -> frozenset[str]:
    """Every given id of the whole corpus that holds the suffix mark, so that renaming a
    repeat never takes a real id (read cheaply: JSONL lines without the mark are skipped
    unparsed, Parquet reads the id column alone)."""
    if not config.id_column or fmt == "text":
        return frozenset()
    found: set[str] = set()
    if fmt == "parquet":
        parquet = _parquet_file(config.path)
        if config.id_column not in parquet.schema_arrow.names:
            return frozenset()
        for batch in parquet.iter_batches(batch_size=65536, columns=[config.id_column]):
            values = batch.column(0).to_pylist()
            found.update(v for v in map(_plain_id, values) if v and SUFFIX in v)
        return frozenset(found)
    with config.path.open("rb") as handle:
        for raw in handle:
            if SUFFIX.encode() in raw or b"\\u0023" in raw:
                try:
                    row = json.loads(raw)
                except ValueError:
                    continue  # the read itself reports a broken line, with its number
                value = _plain_id(row.get(config.id_column) if isinstance(row, dict) else None)
                if value and SUFFIX in value:
                    found.add(value)
    return frozenset(found)


def _plain_id(value: Any) -> str | None:
    try:
        return id_text(value)
    except ValueError:
        return None  # not an id at all: the read reports it


def _document(
    row: dict[str, Any], number: int, config: InputConfig, fmt: str, ids: DocumentIds
) -> Document:
    text = _text(row, config, fmt, number)
    given_id = None
    if config.id_column:
        value = row.get(config.id_column)
        given = _id_of(value, config, fmt, number)
        given_id = ids.assign(given, isinstance(value, str), number, text)
    title = row.get(config.title_column) if config.title_column else row.get("__title__")
    language = row.get(config.language_column) if config.language_column else None
    return Document(
        doc_id=given_id if given_id is not None else content_hash(text),
        text=text,
        title=str(title) if title else row.get("__title__"),
        language=str(language) if language else None,
    )


def read_batches(
    config: InputConfig, limit: int | None = None
) -> Iterator[tuple[list[Document], list[Reject]]]:
    """Yield (documents, skipped) batches of at most `config.batch_size` documents and
    skips together, stopping after `limit` documents (skips past that point are not read)."""
    fmt = check_layout(config)
    documents: list[Document] = []
    skipped: list[Reject] = []
    taken = 0
    for _, doc in read_documents(config, fmt):
        if limit is not None and taken >= limit:
            break
        reject = skip(doc, config)
        if reject is not None:
            skipped.append(reject)
        else:
            documents.append(doc)
            taken += 1
        if len(documents) + len(skipped) >= config.batch_size:
            yield documents, skipped
            documents, skipped = [], []
    if documents or skipped:
        yield documents, skipped


def read_documents(config: InputConfig, fmt: str) -> Iterator[tuple[dict[str, Any], Document]]:
    """(row, document) for every row in corpus order, ids assigned under the config's
    `duplicate_ids` policy (a repeated id is an error there, or gets its suffix)."""
    reserved = _reserved(config, fmt) if config.duplicate_ids == "suffix" else frozenset()
    ids = DocumentIds(config.path, UNITS[fmt], config.duplicate_ids, reserved)
    for number, row in _rows(config, fmt):
        yield row, _document(row, number, config, fmt, ids)


def skip(doc: Document, config: InputConfig) -> Reject | None:
    """The read step's reject of a document no plan is made for: empty, or too long."""
    if not doc.text:
        return Reject(doc.doc_id, None, "read", "empty", "no text", None)
    if len(doc.text) > config.max_chars:
        detail = f"{len(doc.text)} chars > input.max_chars {config.max_chars}"
        return Reject(doc.doc_id, None, "read", "too_long", detail, doc.text[: config.max_chars])
    return None


def count_rows(config: InputConfig, limit: int | None = None) -> int:
    """How many rows the corpus holds (at most `limit`), cheaply: Parquet metadata, a
    line count, a file count. Progress bars use it for their total and ETA."""
    fmt = check_layout(config)
    if fmt == "parquet":
        rows = _parquet_file(config.path).metadata.num_rows
    elif fmt == "jsonl":
        with config.path.open("rb") as handle:
            rows = sum(1 for line in handle if line.strip())
    else:
        rows = sum(1 for _ in _text_files(config.path))
    return rows if limit is None else min(rows, limit)
