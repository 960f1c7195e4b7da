"""Planning is seeded per document: independent of batching and order, varied across docs."""

from collections import Counter
from pathlib import Path

import yaml

from pipeline.config.job import load_config
from pipeline.dataset.records import Document
from pipeline.generation.planner import plan
from pipeline.prompts.library import PromptLibrary

DOCS = [
    Document("a", "Die Donau fließt durch zehn Länder Europas.", language="de"),
    Document("b", "The Danube flows through ten European countries.", language="en"),
    Document("c", "Le Danube traverse dix pays d'Europe et se jette dans la mer Noire."),
    Document("d", "El Danubio atraviesa diez países de Europa.", language="es"),
]


def config(tmp_path: Path, seed: int = 3):
    job = {
        "name": "p",
        "seed": seed,
        "input": {"path": "c.jsonl"},
        "languages": {"query": ["en", "de", "fr"], "match_document": 1.0},
        "tasks": [{"query_words": [2, 9], "persona_candidates": 4}],
        "generator": {"model": "./m"},
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return load_config(path)


def summary(candidates) -> list[tuple]:
    return [(c.doc.doc_id, c.query_language, c.query_words, tuple(c.personas)) for c in candidates]


def test_plan_is_independent_of_batching_and_order(tmp_path: Path) -> None:
    library = PromptLibrary()
    job = config(tmp_path)
    whole = summary(plan([Document(**vars(d)) for d in DOCS], job, library))
    split = summary(plan([Document(**vars(d)) for d in DOCS[2:]], job, library)) + summary(
        plan([Document(**vars(d)) for d in DOCS[:2]], job, library)
    )
    assert sorted(whole) == sorted(split)
    other_seed = summary(plan([Document(**vars(d)) for d in DOCS], config(tmp_path, 4), library))
    assert other_seed != whole


def test_plan_respects_languages_and_detects_missing_ones(tmp_path: Path) -> None:
    docs = [Document(**vars(d)) for d in DOCS]
    candidates = plan(docs, config(tmp_path), PromptLibrary())
    assert docs[2].language == "fr"  # detected by lingua
    by_id = {c.doc.doc_id: c for c in candidates}
    # match_document=1.0: a document in an allowed language gets a query in that language.
    assert by_id["a"].query_language == "de" and by_id["c"].query_language == "fr"
    assert by_id["d"].query_language in {"en", "de", "fr"}  # es is not allowed
    for c in candidates:
        assert 2 <= c.query_words <= 9
        assert len(set(c.personas)) == 4


def test_controlled_draws_follow_the_configured_weights(tmp_path: Path) -> None:
    job = config(tmp_path).model_copy(deep=True)
    job.tasks[0].question_type = {"keywords": 3.0, "summary": 1.0}
    job.tasks[0].difficulty = {"phd": 1.0}
    job.tasks[0].clarity = {"clear": 1.0, "ambiguous": 1.0}
    job.languages.query = {"en": 0.0, "de": 1.0}
    job.languages.match_document = 0.0
    docs = [Document(f"d{i}", "Ein kurzer Text über Flüsse.", language="de") for i in range(400)]
    candidates = plan(docs, job, PromptLibrary())
    types = Counter(c.question_type for c in candidates)
    assert set(types) == {"keywords", "summary"} and 0.68 < types["keywords"] / 400 < 0.82
    assert {c.difficulty for c in candidates} == {"phd"}
    assert {c.clarity for c in candidates} == {"clear", "ambiguous"}
    assert {c.query_language for c in candidates} == {"de"}  # weight 0: never drawn


def test_cross_lingual_families_never_use_the_document_language(tmp_path: Path) -> None:
    job = config(tmp_path).model_copy(deep=True)
    job.tasks[0].type = "bitext"
    docs = [Document(f"d{i}", "The river flows east.", language="en") for i in range(60)]
    languages = Counter(c.query_language for c in plan(docs, job, PromptLibrary()))
    assert set(languages) == {"de", "fr"}


def test_queries_per_document_plans_differ_and_keep_the_first_plan(tmp_path: Path) -> None:
    one = config(tmp_path)
    three = one.model_copy(deep=True)
    three.tasks[0].queries_per_document = 3
    docs = [Document(**vars(d)) for d in DOCS]
    single = summary(plan(docs, one, PromptLibrary()))
    triple = summary(plan(docs, three, PromptLibrary()))
    assert len(triple) == 3 * len(single)
    assert triple[::3] == single  # the first plan of a document is the one-query plan
    for i in range(0, len(triple), 3):
        plans = triple[i : i + 3]
        assert len({p[0] for p in plans}) == 1
        assert len({p[3] for p in plans}) == 3  # persona candidates rotated: prompts differ
        assert {frozenset(p[3]) for p in plans} == {frozenset(plans[0][3])}
