"""A refresh supersedes the pairs of documents whose text changed or that left the corpus:
the new version lists them (even one with no new pair at all), and readers of several
versions (the trainer's `versions: all`, `embsynth export --all`) leave their old pairs
out while keeping the changed documents' new pairs; a deleted document that comes back is
generated again. Queries are scripted (tests.test_published_queries.Scripted), so a
changed document asks the same query as before and the query dedup must not hold its
superseded pair against it."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from pipeline.config.errors import NothingToDo
from pipeline.config.job import load_config
from pipeline.dataset.writer import chosen_versions
from pipeline.embedding.data import load_examples
from pipeline.run.job import run_job
from tests.conftest import cli, write_jsonl
from tests.test_published_queries import DOCS, scripted

REVISED = " It was revised in 2026."
# No embedder: no mining, no semantic dedup (what is tested is which pairs count).
JOB = {"negatives": {"enabled": False}, "dedup": {"semantic": {"enabled": False}}}


@pytest.fixture
def refresh(job_file: Callable[..., Path], tmp_path: Path) -> Callable[..., Path]:
    """Run the job on the given documents: the first call a plain run, later ones a refresh;
    returns the new version."""
    corpus = tmp_path / "corpus.jsonl"
    path = job_file(input={"path": str(corpus), "batch_size": 4}, **JOB)

    def run(docs: list[dict[str, Any]]) -> Path:
        write_jsonl(corpus, docs)
        first = not (tmp_path / "out").exists()
        return run_job(load_config(path), scripted(DOCS[:6]), progress=False,
                       refresh=not first).version_dir  # fmt: skip

    return run


def superseded(version: Path) -> dict[str, str]:
    manifest = json.loads((version / "manifest.json").read_text(encoding="utf-8"))
    assert manifest.get("superseded") is not None, "the manifest counts nothing superseded"
    rows = pq.read_table(version / "state" / "superseded.parquet").to_pylist()
    return {r["doc_id"]: r["reason"] for r in rows}


def trained_on(root: Path) -> set[tuple[str, str]]:
    """(query, positive) of what the trainer reads with `versions: all`."""
    return {(e.query, e.positive) for e in load_examples(chosen_versions(root, "all"), 3)}


def exported(root: Path, out: Path) -> set[tuple[str, str]]:
    result = cli("export", root, "--format", "jsonl", "--out", out, "--all")
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for p in sorted((out / "data").glob("*.jsonl"))
             for x in p.read_text(encoding="utf-8").splitlines()]  # fmt: skip
    return {(r["query"], r["positive"]) for r in lines}


def test_a_refresh_lists_changed_and_deleted_documents_and_readers_drop_their_old_pairs(
    refresh: Callable[..., Path], tmp_path: Path
) -> None:
    docs = DOCS[:6]
    changed = {**docs[2], "text": docs[2]["text"] + REVISED}
    one = refresh(docs)
    root = one.parent
    old = {(r["query"], r["positive"]) for r in pq.read_table(one / "data").to_pylist()}
    by_doc = {r["doc_id"]: (r["query"], r["positive"])
              for r in pq.read_table(one / "data").to_pylist()}  # fmt: skip
    assert len(old) == 6

    two = refresh([*docs[:2], changed, docs[3], docs[5]])  # 2 changed, 4 deleted
    assert superseded(two) == {docs[2]["id"]: "changed", docs[4]["id"]: "deleted"}
    manifest = json.loads((two / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["superseded"] == {"changed": 1, "deleted": 1}
    new = [(r["query"], r["positive"]) for r in pq.read_table(two / "data").to_pylist()]
    assert new == [(by_doc[docs[2]["id"]][0], changed["text"])]  # same query, kept

    now = old - {by_doc[docs[2]["id"]], by_doc[docs[4]["id"]]} | set(new)
    assert trained_on(root) == now
    assert exported(root, tmp_path / "export") == now
    export = json.loads((tmp_path / "export" / "export.json").read_text(encoding="utf-8"))
    assert export["superseded"] == 2 and export["rows"] == 5
    # One version named alone is all of it: nothing later is read with it.
    assert {(e.query, e.positive) for e in load_examples([one], 3)} == old


def test_a_deletion_alone_makes_a_version_and_a_returning_document_is_new_again(
    refresh: Callable[..., Path],
) -> None:
    docs = DOCS[:6]
    one = refresh(docs)
    root = one.parent
    by_doc = {r["doc_id"]: (r["query"], r["positive"])
              for r in pq.read_table(one / "data").to_pylist()}  # fmt: skip

    two = refresh(docs[:5])  # nothing new: only a deletion
    assert superseded(two) == {docs[5]["id"]: "deleted"}
    assert pq.read_table(two / "data").num_rows == 0
    assert trained_on(root) == {by_doc[d["id"]] for d in docs[:5]}
    with pytest.raises(NothingToDo, match="no new or changed documents"):
        refresh(docs[:5])

    three = refresh(docs)  # the deleted document is back, with its old text
    assert [r["doc_id"] for r in pq.read_table(three / "data").to_pylist()] == [docs[5]["id"]]
    assert superseded(three) == {}
    assert trained_on(root) == set(by_doc.values())
