"""Reading JSONL, Parquet and text folders: ids, skips with reasons, streaming, bad input."""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config.errors import UserError
from pipeline.config.job import InputConfig
from pipeline.corpus.reader import read_batches
from pipeline.corpus.survey import check_corpus
from pipeline.dataset.records import content_hash
from tests.conftest import write_jsonl


def read_all(config: InputConfig) -> tuple[list, list]:
    docs, skipped = [], []
    for batch_docs, batch_skipped in read_batches(config):
        docs += batch_docs
        skipped += batch_skipped
    return docs, skipped


def test_jsonl_ids_titles_languages_and_skips(tmp_path: Path) -> None:
    rows = [
        {"id": "a", "text": " First passage. ", "title": "T", "language": "en"},
        {"text": "No id given here."},
        {"id": "c", "text": ""},
        {"id": "d", "text": "x" * 50},
    ]
    config = InputConfig(path=write_jsonl(tmp_path / "c.jsonl", rows), max_chars=40)
    docs, skipped = read_all(config)
    assert [d.doc_id for d in docs] == ["a", content_hash("No id given here.")]
    assert docs[0].text == "First passage." and docs[0].title == "T" and docs[0].language == "en"
    assert docs[1].language is None
    assert [(s.doc_id, s.reason) for s in skipped] == [("c", "empty"), ("d", "too_long")]


def test_parquet_streams_in_batches_with_custom_columns(tmp_path: Path) -> None:
    table = pa.table(
        {"body": [f"passage number {i}" for i in range(25)], "key": [str(i) for i in range(25)]}
    )
    pq.write_table(table, tmp_path / "c.parquet", row_group_size=7)
    config = InputConfig(
        path=tmp_path / "c.parquet", text_column="body", id_column="key", batch_size=10
    )
    sizes = [len(docs) for docs, _ in read_batches(config)]
    assert sizes == [10, 10, 5]
    docs, _ = read_all(config)
    assert docs[24].doc_id == "24" and docs[24].text == "passage number 24"


def test_text_folder_uses_content_hash_and_file_stem(tmp_path: Path) -> None:
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    (tmp_path / "docs" / "a.txt").write_text("Alpha text.")
    (tmp_path / "docs" / "sub" / "b.md").write_text("# Beta\nBeta text.")
    (tmp_path / "docs" / "ignored.bin").write_bytes(b"\x00")
    docs, _ = read_all(InputConfig(path=tmp_path / "docs"))
    assert [d.title for d in docs] == ["a", "b"]
    assert docs[0].doc_id == content_hash("Alpha text.")


def test_corrupt_parquet_is_a_user_error(tmp_path: Path) -> None:
    bad = tmp_path / "c.parquet"
    bad.write_bytes(b"PAR1 this is not parquet at all")
    with pytest.raises(UserError, match="not a readable Parquet file"):
        check_corpus(InputConfig(path=bad))


def test_missing_text_column_names_the_columns(tmp_path: Path) -> None:
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "c.parquet")
    with pytest.raises(UserError, match=r"no column 'text' \(has: body\)"):
        check_corpus(InputConfig(path=tmp_path / "c.parquet"))
    path = write_jsonl(tmp_path / "c.jsonl", [{"body": "x"}])
    with pytest.raises(UserError, match="no field 'text'"):
        check_corpus(InputConfig(path=path))


def test_missing_corpus_and_bad_json_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="corpus not found"):
        check_corpus(InputConfig(path=tmp_path / "nope.jsonl"))
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "ok"}\n{"text": broken\n')
    with pytest.raises(UserError, match=r"c.jsonl:2: not valid JSON"):
        read_all(InputConfig(path=path))


def test_non_utf8_jsonl_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(UserError, match=r"c.jsonl:2: not UTF-8 text"):
        read_all(InputConfig(path=path))


def test_later_row_without_text_is_skipped_as_empty(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "c.jsonl", [{"id": "a", "text": "A."}, {"id": "b", "body": "B"}])
    docs, skipped = read_all(InputConfig(path=path))
    assert [d.doc_id for d in docs] == ["a"]
    assert [(s.doc_id, s.reason) for s in skipped] == [("b", "empty")]


def test_format_that_does_not_fit_the_path(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "c.jsonl", [{"text": "A."}])
    with pytest.raises(UserError, match=r"input\.format 'text' needs a folder"):
        check_corpus(InputConfig(path=path, format="text"))
    with pytest.raises(UserError, match=r"input\.format 'jsonl' needs a file"):
        check_corpus(InputConfig(path=tmp_path, format="jsonl"))


def test_batches_bound_documents_and_skips_together(tmp_path: Path) -> None:
    rows = [{"id": str(i), "text": "" if i % 2 else f"doc {i}"} for i in range(10)]
    config = InputConfig(path=write_jsonl(tmp_path / "c.jsonl", rows), batch_size=4)
    sizes = [(len(d), len(s)) for d, s in read_batches(config)]
    assert sizes == [(2, 2), (2, 2), (1, 1)]


def test_limit_stops_reading_after_n_documents(tmp_path: Path) -> None:
    rows = [{"id": str(i), "text": "" if i in (1, 7) else f"doc {i}"} for i in range(10)]
    config = InputConfig(path=write_jsonl(tmp_path / "c.jsonl", rows), batch_size=3)
    docs, skipped = [], []
    for batch_docs, batch_skipped in read_batches(config, limit=4):
        docs += batch_docs
        skipped += batch_skipped
    assert [d.doc_id for d in docs] == ["0", "2", "3", "4"]
    assert [s.doc_id for s in skipped] == ["1"]  # row 7 lies past the limit


def test_bundled_sample_corpus() -> None:
    from tests.conftest import SAMPLE_CORPUS

    docs, skipped = read_all(InputConfig(path=SAMPLE_CORPUS))
    assert len(docs) == 300
    assert {d.language for d in docs} >= {"en", "de", "fr", "es"}
    assert len({d.doc_id for d in docs}) == len(docs)
    assert {s.reason for s in skipped} == {"empty"}  # the two deliberate edge cases
