"""The persona library and retrieval: 300+ bundled personas, user files in Persona Hub form,
top-k by embedding similarity with the offline MiniLM, vectors cached by content hash."""

from pathlib import Path

import pytest

from pipeline.config.errors import UserError
from pipeline.config.job import EmbedderConfig, PersonasConfig
from pipeline.corpus.embedder import open_embedder
from pipeline.dataset.records import Document
from pipeline.personas.library import load_personas, read_personas
from pipeline.personas.retrieval import PersonaChooser, PersonaIndex

DOCS = [
    Document("bread", "Kneading bread dough develops gluten; let the dough rise before baking."),
    Document("court", "The defendant appealed the verdict to the supreme court, citing case law."),
    Document("match", "The coach changed the team's training plan before the championship game."),
]


def test_bundled_library_is_large_and_distinct() -> None:
    personas = load_personas(PersonasConfig())
    assert len(personas) >= 300 and len(set(personas)) == len(personas)


def test_user_files_add_personas_and_bad_files_are_named(tmp_path: Path) -> None:
    hub = tmp_path / "hub.jsonl"
    hub.write_text('{"persona": "a beekeeper in Slovenia"}\n\n{"persona": "a sommelier"}\n')
    extra = tmp_path / "extra.yaml"
    extra.write_text("- a sommelier\n- a glassblower\n")
    config = PersonasConfig(bundled=False, files=[hub, extra])
    assert load_personas(config) == ["a beekeeper in Slovenia", "a sommelier", "a glassblower"]
    assert (
        len(load_personas(PersonasConfig(files=[hub]))) == len(load_personas(PersonasConfig())) + 2
    )

    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"persona": "ok"}\n{"name": "no persona key"}\n')
    with pytest.raises(UserError, match=r"broken.jsonl:2: expected"):
        read_personas(broken)
    with pytest.raises(UserError, match="persona file not found"):
        read_personas(tmp_path / "missing.jsonl")
    with pytest.raises(UserError, match="no personas"):
        load_personas(PersonasConfig(bundled=False))


def test_retrieval_picks_personas_near_the_document(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EMBSYNTH_CACHE", str(tmp_path / "cache"))
    embedder = open_embedder(EmbedderConfig())
    personas = load_personas(PersonasConfig())
    index = PersonaIndex(personas, embedder)
    assert not index.cached and len(list((tmp_path / "cache" / "personas").glob("*.npy"))) == 1
    chosen = PersonaChooser(index, None, 5).choose(DOCS)
    top = dict(zip([d.doc_id for d in DOCS], chosen, strict=True))
    assert all(len(found) == len(set(found)) == 5 for found in top.values())
    assert any(word in p for p in top["bread"] for word in ("baker", "cook", "chef"))
    assert any(word in p for p in top["court"] for word in ("lawyer", "judge", "paralegal"))
    assert any(word in p for p in top["match"] for word in ("coach", "athlete", "sports"))

    again = PersonaIndex(personas, embedder)  # same texts, same model: from the cache
    assert again.cached and (again.vectors == index.vectors).all()
    assert not PersonaIndex(personas[:-1], embedder).cached  # other texts: recomputed
