"""The corpus index's ids and texts as memory-mapped Arrow columns
(pipeline.corpus.columns): what is written reads back as it was, lookups by id and text
find the first row holding the value (also where digests meet), a pickled index (what
Ray sends its actors) names the file instead of carrying the texts, and the read that
writes them refuses a corpus that changed since the survey."""

import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from pipeline.config.errors import UserError
from pipeline.config.input import InputConfig
from pipeline.corpus.columns import (
    SCHEMA,
    TEXTS,
    CorpusColumns,
    digest64,
    record_batch,
    write_columns,
)
from pipeline.corpus.index import CorpusIndex
from pipeline.corpus.survey import kept_documents, survey_corpus
from pipeline.dataset.records import Document
from pipeline.dedup.text import text_key
from tests.conftest import write_jsonl

DOCS = [
    Document("a", "Photosynthesis turns light into sugar."),
    Document("b", "Die Photosynthese wandelt Licht in Zucker um. Straße, Ökologie."),
    Document("c", "光合作用把光能转化为化学能。🌱"),
    Document("h1", "A twin: the same text under two content-hash ids."),
    Document("h2", "A twin: the same text under two content-hash ids."),
    Document("a", "Photosynthesis turns light into sugar."),  # the same row repeated
]


def test_written_columns_read_back_memory_mapped(tmp_path: Path) -> None:
    path = tmp_path / TEXTS
    killed = tmp_path / f".{TEXTS}.tmp-999999"  # what a killed write left
    killed.write_bytes(b"half a file")
    write_columns(path, [DOCS[:2], DOCS[2:]])  # two chunks, as the job's read sends them
    assert not list(tmp_path.glob(".*tmp*"))  # renamed into place; the killed one removed
    mapped, held = CorpusColumns.open(path), CorpusColumns.from_documents(DOCS)
    for columns in (mapped, held):
        assert len(columns) == len(DOCS)
        assert list(columns.doc_ids) == [d.doc_id for d in DOCS]
        assert list(columns.texts) == [d.text for d in DOCS]
        assert [columns.texts[i] for i in range(len(DOCS))] == [d.text for d in DOCS]
        assert list(columns.keys) == [text_key(d.text) for d in DOCS]
        # By id: the first row of a repeated one; a missing id is a KeyError / None.
        assert [columns.rows[i] for i in ("a", "b", "c", "h1", "h2")] == [0, 1, 2, 3, 4]
        assert columns.rows.get("zzz") is None
        # By text: the first row holding it (a negative's text names its row).
        assert columns.by_text.find(DOCS[4].text) == 3
        assert columns.by_text.find("not in the corpus") is None
    assert mapped.path == path


def test_lookups_check_every_row_whose_digest_meets(tmp_path: Path) -> None:
    """Digests of 64 bits rarely meet; where they do, the column decides. Written here with
    every row's digests those of the last id and of the third text, so a lookup of either
    walks every row to the one that holds it."""
    batch = record_batch(DOCS[:5])
    clashing = pa.record_batch(
        [*batch.columns[:3], pa.array([digest64("h2")] * 5, pa.uint64()),
         pa.array([digest64(DOCS[2].text)] * 5, pa.uint64())],
        schema=SCHEMA,
    )  # fmt: skip
    columns = CorpusColumns(pa.Table.from_batches([clashing]))
    assert columns.rows["h2"] == 4
    assert columns.by_text.find(DOCS[2].text) == 2


def test_two_texts_under_one_id_are_refused() -> None:
    with pytest.raises(ValueError, match="duplicate document id 'a' for two texts"):
        CorpusColumns.from_documents([DOCS[0], DOCS[1], Document("a", "another text")])
    # Also where another id's digest meets theirs and stands between them in the sort.
    batch = record_batch([DOCS[0], DOCS[1], Document("a", "another text")])
    clashing = pa.record_batch(
        [*batch.columns[:3], pa.array([digest64("a")] * 3, pa.uint64()), batch.columns[4]],
        schema=SCHEMA,
    )
    with pytest.raises(
        ValueError, match=r"duplicate document id 'a' for two texts \(rows 0 and 2\)"
    ):
        CorpusColumns(pa.Table.from_batches([clashing]))


def test_a_pickled_index_names_its_columns_file(tmp_path: Path) -> None:
    path = tmp_path / TEXTS
    write_columns(path, [DOCS])
    vectors = np.eye(len(DOCS), 8, dtype=np.float32)
    index = CorpusIndex(CorpusColumns.open(path), vectors, tmp_path)
    sent = pickle.dumps(index, protocol=5)
    # The vectors (what Ray puts in the object store) and a path: no text goes with it.
    assert not any(d.text.encode() in sent for d in DOCS)
    assert len(sent) < vectors.nbytes + 2000
    received = pickle.loads(sent)
    assert received.columns.path == path
    assert list(received.texts) == [d.text for d in DOCS]
    assert received.rows["h2"] == 4
    rows, _ = received.top(vectors[[2]], 1)
    assert rows[0, 0] == 2


def test_the_state_read_refuses_a_corpus_changed_since_the_survey(tmp_path: Path) -> None:
    rows = [{"id": d.doc_id, "text": d.text} for d in DOCS[:4]]
    config = InputConfig(path=write_jsonl(tmp_path / "c.jsonl", rows))
    survey = survey_corpus(config)
    read = [d for chunk in kept_documents(config, survey, 3) for d in chunk]
    assert [(d.doc_id, d.key) for d in read] == survey.keys
    for changed in ([*rows[:2], {**rows[2], "text": "edited"}, rows[3]], rows[:3]):
        write_jsonl(config.path, changed)
        with pytest.raises(UserError, match="changed while the job read it"):
            list(kept_documents(config, survey, 3))
