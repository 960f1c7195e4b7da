"""Prompt rendering: sandboxed, strict, document text never executed, static text first."""

from pathlib import Path

import pytest

from pipeline.config.errors import UserError
from pipeline.prompts.library import DEFAULT_PROMPTS_DIR, PromptLibrary, schema_for


def config_vars(passage: str) -> dict:
    return {"passage": passage, "passage_language": "English", "personas": ["a nurse", "a chef"]}


def test_document_text_is_a_variable_not_template_source() -> None:
    library = PromptLibrary()
    stage = library.task("retrieval").stages[0]
    hostile = "{{ 7 * 7 }} {% for x in range(3) %}loop{% endfor %} {{ ''.__class__ }}"
    messages = library.render(stage, config_vars(hostile))
    assert hostile in messages[-1]["content"]
    assert "49" not in messages[-1]["content"]


def test_static_text_first_and_document_last() -> None:
    library = PromptLibrary()
    stage = library.task("retrieval").stages[1]
    passage = "The Danube flows through ten countries."
    variables = {
        "passage": passage, "passage_language": "English", "character": "a tourist",
        "question_type": "keywords", "difficulty": "high_school", "query_words": 4,
        "query_language": "German", "clarity": "clear",
    }  # fmt: skip
    messages = library.render(stage, variables)
    assert [m["role"] for m in messages] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
    ]
    assert messages[-1]["content"].endswith(passage)
    assert "Language: German" in messages[-1]["content"]
    # Two requests share everything before the last message (prefix-cache friendly).
    other = library.render(stage, {**variables, "passage": "Another passage."})
    assert messages[:-1] == other[:-1]


def test_missing_variable_is_an_error_not_an_empty_string() -> None:
    library = PromptLibrary()
    stage = library.task("retrieval").stages[0]
    with pytest.raises(UserError, match="personas"):
        library.render(stage, {"passage": "x", "passage_language": "English"})


def copy_prompts(tmp_path: Path) -> Path:
    root = tmp_path / "prompts"
    for path in DEFAULT_PROMPTS_DIR.rglob("*"):
        target = root / path.relative_to(DEFAULT_PROMPTS_DIR)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    return root


def test_sandbox_blocks_unsafe_templates(tmp_path: Path) -> None:
    root = copy_prompts(tmp_path)
    (root / "retrieval" / "config.user.j2").write_text(
        "{{ passage.__class__.__mro__[1].__subclasses__() }}"
    )
    library = PromptLibrary(root)
    with pytest.raises(UserError, match="unsafe"):
        library.render(library.task("retrieval").stages[0], config_vars("x"))


def test_template_hash_follows_the_templates(tmp_path: Path) -> None:
    root = copy_prompts(tmp_path)
    before = PromptLibrary(root).task("retrieval").template_hash
    assert before == PromptLibrary().task("retrieval").template_hash
    with (root / "retrieval" / "query.system.j2").open("a") as handle:
        handle.write("\nBe brief.")
    assert PromptLibrary(root).task("retrieval").template_hash != before


def test_template_hash_follows_the_personas() -> None:
    before = PromptLibrary().task("retrieval").template_hash
    assert PromptLibrary(personas=["a pilot", "a nurse"]).task("retrieval").template_hash != before


def test_malformed_registry_and_missing_template(tmp_path: Path) -> None:
    root = copy_prompts(tmp_path)
    (root / "retrieval" / "query.user.j2").unlink()
    with pytest.raises(UserError, match=r"template not found: .*query\.user\.j2"):
        PromptLibrary(root).task("retrieval")
    (root / "retrieval" / "task.yaml").write_text("stages: 3\n")
    with pytest.raises(UserError, match="malformed task registry"):
        PromptLibrary(root).task("retrieval")


def test_unknown_task_and_persona_enum() -> None:
    library = PromptLibrary()
    with pytest.raises(UserError, match=r"unknown task type 'nope' \(known: bitext, "):
        library.task("nope")
    stage = library.task("retrieval").stages[0]
    schema = schema_for(stage, {"personas": ["a nurse"]})
    assert schema["properties"]["character"]["enum"] == ["a nurse"]
    assert "enum" not in stage.schema["properties"]["character"]  # registry left untouched
