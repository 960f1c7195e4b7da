"""Input faults that used to pass silently (issue 32, items 3, 8 and 9): each is one line,
exit code 2 and nothing written, found before a model is loaded.

Duplicate document ids, language codes no enabled stage supports, misspelled columns,
non-text texts, empty corpora, dataset names that leave the output folder, and templates
pulled in by `{% include %}` that the template hash missed.
"""

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.config.errors import UserError
from pipeline.config.job import DedupConfig, InputConfig, load_config
from pipeline.corpus.index import CorpusIndex
from pipeline.corpus.langid import detect_languages, identifiable, language_confidence
from pipeline.corpus.reader import read_batches
from pipeline.corpus.survey import check_corpus, corpus_digest
from pipeline.dataset.records import Candidate, Document, content_hash
from pipeline.dedup.documents import DocumentDedup
from pipeline.prompts.library import DEFAULT_PROMPTS_DIR, PromptLibrary
from pipeline.quality.language import LanguageFilter, check_languages
from tests.conftest import cli, write_jsonl


def read_all(config: InputConfig, limit: int | None = None) -> tuple[list, list]:
    docs, skipped = [], []
    for batch_docs, batch_skipped in read_batches(config, limit):
        docs += batch_docs
        skipped += batch_skipped
    return docs, skipped


def one_line_exit_2(result: Any, message: str) -> None:
    """The CLI's answer to bad input: exit 2 and one line naming the problem."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("embsynth: error:"), result.stderr
    assert message in lines[0], lines[0]


# --- item 3: duplicate document ids -------------------------------------------------------


def test_duplicate_jsonl_ids_name_the_id_and_both_lines(tmp_path: Path) -> None:
    rows = [{"id": "a", "text": "chunk one"}, {"id": "b", "text": "other"},
            {"id": "a", "text": "chunk two"}]  # fmt: skip
    path = write_jsonl(tmp_path / "c.jsonl", rows)
    with pytest.raises(UserError, match=r"c\.jsonl: duplicate id 'a': line 1 and line 3"):
        check_corpus(InputConfig(path=path))


def test_duplicate_parquet_ids_name_the_rows(tmp_path: Path) -> None:
    table = pa.table({"id": ["x", "y", "z", "y"], "text": ["one", "two", "three", "four"]})
    pq.write_table(table, tmp_path / "c.parquet", row_group_size=2)
    with pytest.raises(UserError, match=r"duplicate id 'y': row 2 and row 4"):
        check_corpus(InputConfig(path=tmp_path / "c.parquet"))


def test_number_and_string_ids_that_read_the_same_are_duplicates(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "c.jsonl", [{"id": 1, "text": "one"}, {"id": "1", "text": "2"}])
    with pytest.raises(UserError, match=r"line 1 \(the number 1\) and line 2 \(the string '1'\)"):
        check_corpus(InputConfig(path=path))


def test_duplicates_fail_the_reader_too(tmp_path: Path) -> None:
    """A caller that reads without checking first still never gets two documents of one id."""
    path = write_jsonl(tmp_path / "c.jsonl", [{"id": "a", "text": "one"}, {"id": "a", "text": "2"}])
    with pytest.raises(UserError, match="duplicate id 'a'"):
        read_all(InputConfig(path=path))


def test_suffix_makes_ids_unique_in_corpus_order(tmp_path: Path) -> None:
    # `a#2` is a real id further down: the second `a` must not take it.
    rows = [{"id": "a", "text": "chunk one"}, {"id": "a", "text": "chunk two"},
            {"id": "a#2", "text": "a real id"}, {"id": "a", "text": "chunk three"},
            {"id": 7, "text": "seven"}, {"id": "7", "text": "seven again"}]  # fmt: skip
    config = InputConfig(path=write_jsonl(tmp_path / "c.jsonl", rows), duplicate_ids="suffix")
    check_corpus(config)
    docs, _ = read_all(config)
    assert [d.doc_id for d in docs] == ["a", "a#3", "a#2", "a#4", "7", "7#2"]
    assert [d.doc_id for d in read_all(config, limit=2)[0]] == ["a", "a#3"]  # a prefix
    assert corpus_digest(config) == corpus_digest(config)  # the same ids every read
    # Every consumer sees the same unique ids: the index maps each chunk to its own row.
    index = CorpusIndex.from_vectors(docs, np.eye(len(docs), dtype=np.float32))
    assert [index.rows[d.doc_id] for d in docs] == list(range(len(docs)))


def test_missing_and_nan_ids_fall_back_to_the_content_hash(tmp_path: Path) -> None:
    table = pa.table({"id": [1.5, float("nan"), None], "text": ["one", "two", "three"]})
    pq.write_table(table, tmp_path / "c.parquet")
    docs, _ = read_all(InputConfig(path=tmp_path / "c.parquet"))
    assert [d.doc_id for d in docs] == ["1.5", content_hash("two"), content_hash("three")]


def test_content_hash_twins_are_left_to_document_dedup(tmp_path: Path) -> None:
    rows = [{"text": "the same text"}, {"text": "another"}, {"text": "the same text"}]
    config = InputConfig(path=write_jsonl(tmp_path / "c.jsonl", rows))
    check_corpus(config)
    docs, _ = read_all(config)
    kept, rejects = DocumentDedup(DedupConfig()).check(docs)
    assert [d.text for d in kept] == ["the same text", "another"]
    assert [r.reason for r in rejects] == ["duplicate_document"]
    index = CorpusIndex.from_vectors(docs, np.eye(3, dtype=np.float32))
    assert index.rows[docs[0].doc_id] == 0  # a twin is the same text: the first row stands


@pytest.mark.parametrize("policy", ["error", "suffix"])
def test_a_row_repeated_whole_is_a_twin_not_a_duplicate(policy: str, tmp_path: Path) -> None:
    """The same id and the same text is one document twice (scored and planned alike):
    document dedup drops the copy, as it drops a content-hash twin."""
    rows = [{"id": "a", "text": "one"}, {"id": "b", "text": "two"}, {"id": "a", "text": "one"}]
    config = InputConfig(path=write_jsonl(tmp_path / "c.jsonl", rows), duplicate_ids=policy)
    check_corpus(config)
    docs, _ = read_all(config)
    assert [d.doc_id for d in docs] == ["a", "b", "a"]
    kept, rejects = DocumentDedup(DedupConfig()).check(docs)
    assert [d.doc_id for d in kept] == ["a", "b"] and len(rejects) == 1


def test_corpus_index_refuses_two_texts_under_one_id() -> None:
    docs = [Document("a", "first chunk"), Document("a", "second chunk")]
    with pytest.raises(ValueError, match="duplicate document id 'a'"):
        CorpusIndex.from_vectors(docs, np.eye(2, dtype=np.float32))


def test_duplicate_ids_fail_the_run_before_anything_is_written(
    tmp_path: Path, job_file: Callable[..., Path]
) -> None:
    rows = [{"id": "a", "text": "chunk one"}, {"id": "a", "text": "chunk two"}]
    path = write_jsonl(tmp_path / "c.jsonl", rows)
    bad = job_file(input={"path": str(path), "duplicate_ids": "rename"})
    one_line_exit_2(cli("run", bad), "'input.duplicate_ids': Input should be 'error' or 'suffix'")
    one_line_exit_2(cli("run", job_file(input={"path": str(path)})), "duplicate id 'a'")
    assert not (tmp_path / "out").exists()


# --- item 8: every configured language is one each enabled stage supports -----------------

NORWEGIAN = "Hvor lang er elven Donau, og gjennom hvilke land renner den før havet?"


def bundled_languages() -> list[str]:
    return list(yaml.safe_load((DEFAULT_PROMPTS_DIR / "languages.yaml").read_text()))


def test_every_bundled_language_runs_through_the_language_filter() -> None:
    """One detector over every code of prompts/languages.yaml (what a job asking for all
    of them builds): `no` used to crash it, as lingua knows only nb and nn. Texts in a
    script of one language each keep lingua from loading its n-gram models (seconds)."""
    codes = frozenset(bundled_languages())
    assert all(identifiable(code) for code in codes)
    found = language_confidence(["ภาษาไทยเป็นภาษาราชการ", "한국어는 한국의 공용어이다"], codes)
    assert [code for code, _ in found] == ["th", "ko"]


def test_norwegian_queries_pass_for_no() -> None:
    doc = Document("d", "Donau er Europas nest lengste elv.", language="no")

    def asked_in_norwegian(query: str) -> Candidate:
        return Candidate(doc=doc, task="retrieval", query_language="no", query_words=9,
                         personas=[], query=query)  # fmt: skip

    asked = asked_in_norwegian(NORWEGIAN)
    english = asked_in_norwegian("How long is the Danube and where does it flow?")
    verdicts = check_languages([asked, english], LanguageFilter(), ["en", "no"])
    assert verdicts[0] is None
    assert verdicts[1] is not None and verdicts[1].reason == "wrong_language"


def test_a_norwegian_document_is_detected_as_the_job_code_no() -> None:
    """Planning matches a document's language against the job's codes (`match_document`):
    lingua's Bokmål must come back as `no`, the code the bundled languages use."""
    norwegian = (
        "Donau er Europas nest lengste elv. Den renner gjennom ti land, fra Schwarzwald i "
        "Tyskland til Svartehavet, og har i hundrevis av år vært en viktig ferdselsåre for "
        "handel og reiser mellom øst og vest."
    )  # a passage: lingua's low-accuracy mode, as for documents, needs more than a question
    english = "The Danube is the second longest river in Europe. It flows through ten countries."
    assert detect_languages([norwegian, english]) == ["no", "en"]


def test_a_language_lingua_cannot_identify_is_a_config_error(job_file: Callable[..., Path]) -> None:
    job = job_file(languages={"query": ["en", "xx"]}, filters={})
    with pytest.raises(UserError, match=r"languages\.query 'xx'.*filters\.language"):
        load_config(job)
    # With the language filter off, the prompt library is what must know the code.
    job = job_file(languages={"query": ["en", "xx"]})
    one_line_exit_2(cli("run", job), "languages.query 'xx' is not in")


# --- item 9: faults that passed silently ---------------------------------------------------


@pytest.mark.parametrize("setting", ["id_column", "title_column", "language_column"])
def test_misspelled_columns_name_the_column_and_those_present(setting: str, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "c.jsonl", [{"id": "a", "text": "one"}, {"text": "two", "x": 1}])
    with pytest.raises(
        UserError, match=rf"input\.{setting} 'idd': no such field in any line \(has: id, text, x\)"
    ):
        check_corpus(InputConfig(path=path, **{setting: "idd"}))
    pq.write_table(pa.table({"id": ["a"], "text": ["one"]}), tmp_path / "c.parquet")
    with pytest.raises(
        UserError, match=rf"input\.{setting} 'idd': no such column \(has: id, text\)"
    ):
        check_corpus(InputConfig(path=tmp_path / "c.parquet", **{setting: "idd"}))


def test_default_columns_may_be_absent(tmp_path: Path) -> None:
    """The default names (id, title, language) keep today's behaviour when the corpus
    lacks them, named or not: ids by content hash, no titles (the embed command names
    `id` always)."""
    path = write_jsonl(tmp_path / "c.jsonl", [{"text": "one"}])
    check_corpus(InputConfig(path=path))
    check_corpus(InputConfig(path=path, id_column="id", title_column="title"))
    check_corpus(InputConfig(path=path, id_column="text", title_column=None))


@pytest.mark.parametrize("value", [42, ["a", "list"], {"a": "dict"}, True])
def test_a_text_that_is_not_text_names_the_row(value: Any, tmp_path: Path) -> None:
    rows = [{"id": "a", "text": "fine"}, {"id": "b", "text": None}, {"id": "c", "text": value}]
    config = InputConfig(path=write_jsonl(tmp_path / "c.jsonl", rows))
    with pytest.raises(UserError, match=r"c\.jsonl:3: 'text' is .*, not text"):
        check_corpus(config)
    with pytest.raises(UserError, match=r"c\.jsonl:3: 'text' is"):
        read_all(config)


def test_a_parquet_text_column_that_is_not_text(tmp_path: Path) -> None:
    pq.write_table(pa.table({"text": [1, 2]}), tmp_path / "c.parquet")
    with pytest.raises(UserError, match=r"column 'text' holds int64, not text"):
        check_corpus(InputConfig(path=tmp_path / "c.parquet"))


def test_null_text_is_still_an_empty_skip(tmp_path: Path) -> None:
    rows = [{"id": "a", "text": "fine"}, {"id": "b", "text": None}, {"id": "c"}]
    config = InputConfig(path=write_jsonl(tmp_path / "c.jsonl", rows))
    check_corpus(config)
    assert [(s.doc_id, s.reason) for s in read_all(config)[1]] == [("b", "empty"), ("c", "empty")]


def empty_corpora(tmp_path: Path) -> dict[str, Path]:
    blank = tmp_path / "blank.jsonl"
    blank.write_text("\n  \n")
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), tmp_path / "none.parquet")
    return {
        "no lines": write_jsonl(tmp_path / "empty.jsonl", []),
        "blank lines": blank,
        "no rows": tmp_path / "none.parquet",
        "only empty texts": write_jsonl(tmp_path / "e.jsonl", [{"text": " "}, {"text": None}]),
    }


@pytest.mark.parametrize("case", ["no lines", "blank lines", "no rows", "only empty texts"])
def test_an_empty_corpus_is_an_error(case: str, tmp_path: Path) -> None:
    path = empty_corpora(tmp_path)[case]
    with pytest.raises(UserError, match=f"no documents in {path}"):
        check_corpus(InputConfig(path=path))


@pytest.mark.parametrize("name", [".", "..", "a/b", "../up", "a\\b"])
def test_a_dataset_name_stays_inside_the_output_folder(
    name: str, tmp_path: Path, job_file: Callable[..., Path]
) -> None:
    with pytest.raises(UserError, match="'name'"):
        load_config(job_file(name=name))
    one_line_exit_2(cli("run", job_file(name=name)), "'name'")
    assert not (tmp_path / "out").exists() and not (tmp_path / "v0001").exists()


def copy_prompts(tmp_path: Path) -> Path:
    root = tmp_path / "prompts"
    shutil.copytree(DEFAULT_PROMPTS_DIR, root)
    return root


def test_template_hash_covers_included_templates(tmp_path: Path) -> None:
    root = copy_prompts(tmp_path)
    before = PromptLibrary(root).task("retrieval").template_hash
    assert before == PromptLibrary().task("retrieval").template_hash
    brainstorm = PromptLibrary(root).task("retrieval_brainstorm").template_hash
    # retrieval/config.user.j2 includes retrieval/passage.j2; so does brainstorm's passage.
    with (root / "retrieval" / "passage.j2").open("a") as handle:
        handle.write("\nRead it closely.")
    assert PromptLibrary(root).task("retrieval").template_hash != before
    assert PromptLibrary(root).task("retrieval_brainstorm").template_hash != brainstorm


@pytest.mark.parametrize(
    "tag",
    ['{% import "retrieval/macros.j2" as m %}', '{% extends "retrieval/macros.j2" %}',
     '{% from "retrieval/macros.j2" import shout %}',
     '{% include "retrieval/outer.j2" %}'],  # outer.j2 includes macros.j2: followed
)  # fmt: skip
def test_template_hash_covers_imports_and_extends(tag: str, tmp_path: Path) -> None:
    root = copy_prompts(tmp_path)
    (root / "retrieval" / "macros.j2").write_text("{% macro shout(x) %}{{ x }}!{% endmacro %}")
    (root / "retrieval" / "outer.j2").write_text('{% include "retrieval/macros.j2" %}')
    system = root / "retrieval" / "query.system.j2"
    system.write_text(tag + "\n" + system.read_text())
    before = PromptLibrary(root).task("retrieval").template_hash
    (root / "retrieval" / "macros.j2").write_text("{% macro shout(x) %}{{ x }}!!{% endmacro %}")
    assert PromptLibrary(root).task("retrieval").template_hash != before


def test_an_include_by_variable_cannot_be_hashed(tmp_path: Path) -> None:
    root = copy_prompts(tmp_path)
    system = root / "retrieval" / "query.system.j2"
    system.write_text("{% include which %}\n" + system.read_text())
    with pytest.raises(UserError, match=r"query\.system\.j2.*by a variable"):
        PromptLibrary(root).task("retrieval")
