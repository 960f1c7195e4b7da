"""Read a corpus (JSONL, Parquet or a folder of .txt/.md files) as batches of Documents,
and query files (JSONL or a BEIR folder) as texts.

Reading streams: Parquet by record batch, JSONL by line, folders by file, so memory does
not grow with the corpus. Empty and oversized documents are skipped as counted rejects.
The corpus is checked up front (`check_corpus`) so that a wrong path or column fails in a
second, before a model is loaded.
"""

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config import InputConfig
from pipeline.errors import UserError
from pipeline.records import Document, Reject, content_hash

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


def check_corpus(config: InputConfig) -> str:
    """Fail fast on a missing corpus, a corrupt file or a missing text column."""
    fmt = detect_format(config)
    if fmt == "parquet":
        names = _parquet_file(config.path).schema_arrow.names
        if config.text_column not in names:
            raise UserError(
                f"{config.path}: no column '{config.text_column}' (has: {', '.join(names)}); "
                "set input.text_column"
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


def _rows(config: InputConfig, fmt: str) -> Iterator[dict[str, Any]]:
    if fmt == "jsonl":
        # A later row without the text field is skipped as `empty`, like a null text.
        for _number, row in jsonl_rows(config.path):
            yield row
    elif fmt == "parquet":
        parquet = _parquet_file(config.path)
        names = parquet.schema_arrow.names
        columns = [c for c in _wanted_columns(config) if c in names]
        try:
            for batch in parquet.iter_batches(batch_size=config.batch_size, columns=columns):
                yield from batch.to_pylist()
        except (pa.ArrowInvalid, OSError) as exc:
            raise UserError(f"{config.path}: corrupt Parquet data ({exc})") from exc
    else:
        for path in _text_files(config.path):
            text = path.read_text(encoding="utf-8", errors="replace")
            yield {config.text_column: text, "__title__": path.stem}


def _document(row: dict[str, Any], config: InputConfig) -> Document:
    text = row.get(config.text_column)
    text = "" if text is None else str(text).strip()
    given_id = row.get(config.id_column) if config.id_column else None
    title = row.get(config.title_column) if config.title_column else row.get("__title__")
    language = row.get(config.language_column) if config.language_column else None
    return Document(
        doc_id=str(given_id) if given_id not in (None, "") else content_hash(text),
        text=text,
        title=str(title) if title else row.get("__title__"),
        language=str(language) if language else None,
    )


def read_batches(
    config: InputConfig, limit: int | None = None
) -> Iterator[tuple[list[Document], list[Reject]]]:
    """Yield (documents, skipped) batches of at most `config.batch_size` documents and
    skips together, stopping after `limit` documents (skips past that point are not read)."""
    fmt = check_corpus(config)
    documents: list[Document] = []
    skipped: list[Reject] = []
    taken = 0
    for row in _rows(config, fmt):
        if limit is not None and taken >= limit:
            break
        doc = _document(row, config)
        if not doc.text:
            skipped.append(Reject(doc.doc_id, None, "read", "empty", "no text", None))
        elif len(doc.text) > config.max_chars:
            detail = f"{len(doc.text)} chars > input.max_chars {config.max_chars}"
            head = doc.text[: config.max_chars]
            skipped.append(Reject(doc.doc_id, None, "read", "too_long", detail, head))
        else:
            documents.append(doc)
            taken += 1
        if len(documents) + len(skipped) >= config.batch_size:
            yield documents, skipped
            documents, skipped = [], []
    if documents or skipped:
        yield documents, skipped


def count_rows(config: InputConfig, limit: int | None = None) -> int:
    """How many rows the corpus holds (at most `limit`), cheaply: Parquet metadata, a
    line count, a file count. Progress bars use it for their total and ETA."""
    fmt = check_corpus(config)
    if fmt == "parquet":
        rows = _parquet_file(config.path).metadata.num_rows
    elif fmt == "jsonl":
        with config.path.open("rb") as handle:
            rows = sum(1 for line in handle if line.strip())
    else:
        rows = sum(1 for _ in _text_files(config.path))
    return rows if limit is None else min(rows, limit)


def corpus_digest(config: InputConfig, limit: int | None = None) -> str:
    """A hash of the corpus content a job reads (ids and texts, skips included), so a rerun
    can tell an unchanged corpus from a changed one."""
    digest = hashlib.sha256()
    for docs, skipped in read_batches(config, limit):
        for doc in docs:
            digest.update(doc.key.encode())
        for reject in skipped:
            digest.update(f"{reject.doc_id}\0{reject.reason}\0".encode())
    return digest.hexdigest()[:16]
