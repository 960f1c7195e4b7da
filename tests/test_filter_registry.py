"""The filter registry: what used to be listed by hand in five places (the chain and its
switches, the `filters:` section, the families' check names, whether a job embeds, the
README's reject reasons) is built from it, and a check registered here, touching no other
file, runs in a real job (tiny Qwen3 on vLLM): its rejects are counted in the manifest and
shown on the card."""

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow.parquet as pq
import pytest
import yaml
from pydantic import Field, ValidationError

from pipeline.config.base import Strict
from pipeline.config.errors import UserError
from pipeline.config.job import JobConfig, load_config
from pipeline.dataset.records import Candidate, Reject
from pipeline.personas.library import load_personas
from pipeline.prompts.library import PromptLibrary, known_checks
from pipeline.quality.chain import Context, filter_checks, needs_embedder
from pipeline.quality.minimal import MinimalFilter, words
from pipeline.quality.registry import (
    Check,
    Filter,
    add,
    filters,
    filters_model,
    per_candidate,
    reasons_table,
    registered,
)
from pipeline.run.job import run_job
from tests.conftest import NO_QUALITY_FILTERS

if TYPE_CHECKING:
    from pipeline.generation.backends.base import Generator

README = Path(__file__).resolve().parent.parent / "README.md"
NAME = "forbidden_word"


class ForbiddenWordFilter(Strict):
    """The test check's settings (`filters.forbidden_word`)."""

    enabled: bool = True
    word: str = Field("", description="a query with this word is rejected")


def forbidden_word_check(config: JobConfig, library: PromptLibrary, context: Context) -> Check:
    """Reject a query that has the configured word among its words."""
    word = config.filters.forbidden_word.word.lower()

    def check(c: Candidate) -> Reject | None:
        if word not in words(c.query or ""):
            return None
        return Reject(c.doc.doc_id, c.task, NAME, "forbidden_word", f"has {word!r}", c.query)

    return per_candidate(check)


FORBIDDEN_WORD = Filter(
    NAME,
    order=650,  # a text check: after the heuristics, before the embedding checks
    build=forbidden_word_check,
    reasons={"forbidden_word": "the query has the word `word`"},
    settings=ForbiddenWordFilter,
)


@pytest.fixture
def forbidden_word() -> Iterator[Filter]:
    """The test check, registered for one test only."""
    with registered(FORBIDDEN_WORD):
        yield FORBIDDEN_WORD


def job(**overrides: Any) -> JobConfig:
    """A job config that names no file it reads (nothing here runs it)."""
    raw = {"name": "t", "input": {"path": "corpus.jsonl"}, "generator": {"model": "m"}}
    return JobConfig.model_validate(raw | overrides)


def checks_of(config: JobConfig) -> list[str]:
    library = PromptLibrary(config.prompts_dir, load_personas(config.personas))
    context = Context(None, None, None, generator=object())  # type: ignore[arg-type]
    return [name for name, _ in filter_checks(config, library, context)]


def test_the_readme_reason_table_is_the_registry_s() -> None:
    readme = README.read_text(encoding="utf-8")
    table = readme.split("<!-- reasons_table() -->\n")[1].split("\n<!-- /reasons_table() -->")[0]
    assert table == reasons_table(), f"README.md's table should read:\n{reasons_table()}"


def test_the_registry_builds_what_was_listed_by_hand() -> None:
    assert [entry.name for entry in filters()] == [
        "filter", "same_document", "decontamination", "length", "language", "heuristics",
        "consistency", "round_trip", "llm_judge", "one_per_plan",
    ]  # fmt: skip
    every = {entry.name for entry in filters() if entry.every_family}
    assert every == {"filter", "same_document", "decontamination", "llm_judge", "one_per_plan"}
    assert known_checks() == ("bounds", "copy", "length", "language", "heuristics",
                              "consistency", "round_trip", "negatives")  # fmt: skip
    section = filters_model()
    assert issubclass(section, MinimalFilter)
    assert section().model_dump(mode="json") == {
        "min_query_words": 1, "max_query_words": 40, "max_query_chars": 300,
        "max_copy_ratio": 0.9,
        "decontamination": {"files": [], "ngram": 4, "max_overlap": 0.5},
        "length": {"enabled": True, "tolerance": 0.5, "slack": 2},
        "language": {"enabled": True, "min_confidence": 0.5, "min_words": 3},
        "heuristics": {"enabled": True, "ngram": 3, "max_ngram_overlap": 0.6},
        "consistency": {"enabled": True, "min_cosine": 0.3},
        "round_trip": {"enabled": True, "top_k": 10, "judge": "student"},
        "llm_judge": {"enabled": False, "min_score": 0.5},
    }  # fmt: skip
    for bad in ({"max_copy_ratio": 0}, {"length": {"slack": -1}}, {"nope": {}}):
        with pytest.raises(ValidationError):
            section.model_validate(bad)


def test_switches_choose_the_checks_and_the_embedder(tmp_path: Path) -> None:
    assert checks_of(job()) == ["filter", "length", "language", "heuristics", "consistency",
                                "round_trip"]  # fmt: skip
    assert checks_of(job(filters=NO_QUALITY_FILTERS)) == ["filter"]
    queries = tmp_path / "eval.jsonl"
    queries.write_text('{"text": "an evaluation query"}\n', encoding="utf-8")
    everything = job(
        tasks=[{"queries_per_document": 2, "samples": 2}],
        filters={"decontamination": {"files": [str(queries)]}, "llm_judge": {"enabled": True}},
    )
    assert checks_of(everything) == [entry.name for entry in filters()]

    bare = {"personas": {"select": "random"}, "negatives": {"enabled": False},
            "dedup": {"semantic": {"enabled": False}}}  # fmt: skip
    assert not needs_embedder(job(filters=NO_QUALITY_FILTERS, **bare))
    for name in ("consistency", "round_trip"):  # the checks that declare it
        switches = NO_QUALITY_FILTERS | {name: {"enabled": True}}
        assert needs_embedder(job(filters=switches, **bare))
    assert needs_embedder(job(filters=NO_QUALITY_FILTERS))  # persona retrieval


def test_a_registered_check_joins_the_config_and_leaves_nothing_behind(tmp_path: Path) -> None:
    before = filters_model()
    settings = {NAME: {"word": "river"}}
    with pytest.raises(ValidationError):
        job(filters=settings)
    with registered(FORBIDDEN_WORD):
        assert job(filters=settings).filters.forbidden_word.word == "river"
        assert job().filters.forbidden_word == ForbiddenWordFilter()
        assert NAME in known_checks() and checks_of(job())[4] == NAME
        path = tmp_path / "job.yaml"
        raw = {"name": "t", "input": {"path": "c.jsonl"}, "generator": {"model": "m"},
               "filters": {NAME: {"enabled": 2}}}  # fmt: skip
        path.write_text(yaml.safe_dump(raw), encoding="utf-8")
        with pytest.raises(UserError, match=f"'filters.{NAME}.enabled'"):
            load_config(path)
        for clash in (
            Filter(NAME, 651, forbidden_word_check, {}),  # its name
            Filter("other", 650, forbidden_word_check, {}),  # its place in the chain
            Filter("other", 651, forbidden_word_check, {}, MinimalFilter, inline=True),  # keys
        ):
            with pytest.raises(ValueError, match=r"clashes|taken"):
                add(clash)
    assert filters_model() is before and NAME not in known_checks()
    assert type(job().filters) is before
    with pytest.raises(ValidationError):
        job(filters=settings)


def test_a_check_registered_here_runs_in_a_real_job(
    generator: "Generator",
    job_file: Callable[..., Path],
    tmp_path: Path,
    forbidden_word: Filter,
) -> None:
    # The tiny model writes gibberish: forbid a word it is known to write for these
    # documents (each request is seeded from its content, so it writes it again).
    first = run_job(load_config(job_file()), generator=generator, limit=8, progress=False)
    assert first.kept > 0
    word = words(pq.read_table(first.version_dir / "data").column("query")[0].as_py())[0]

    switches = NO_QUALITY_FILTERS | {NAME: {"word": word}}
    output = {"dir": str(tmp_path / "second"), "shard_size": 10}
    config = load_config(job_file(filters=switches, output=output))
    summary = run_job(config, generator=generator, limit=8, progress=False)
    version = summary.version_dir

    manifest = json.loads((version / "manifest.json").read_text())
    [step] = [step for step in manifest["funnel"] if step["step"] == NAME]
    rejected = step["rejected"]["forbidden_word"]
    assert rejected > 0 and step["in"] == step["out"] + rejected
    assert manifest["counts"]["rejected"][NAME] == {"forbidden_word": rejected}
    assert summary.rejected[NAME]["forbidden_word"] == rejected
    assert manifest["config"]["filters"][NAME] == {"enabled": True, "word": word}
    rejects = [r for r in pq.read_table(version / "rejects").to_pylist() if r["stage"] == NAME]
    assert len(rejects) == rejected and all(word in words(r["raw"]) for r in rejects)
    kept = pq.read_table(version / "data").column("query").to_pylist()
    assert all(word not in words(query) for query in kept)
    card = (version / "README.md").read_text()
    assert f"| {NAME} | {step['in']} | {step['out']} | forbidden_word {rejected} |" in card
