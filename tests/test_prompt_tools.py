"""`embsynth prompts check` and `embsynth prompts render`: the bundled prompts pass, a
broken copy fails naming the file and the problem, and the preview shows what the
generator would see without loading it."""

from collections.abc import Callable
from pathlib import Path

import yaml
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.prompts.library import PromptLibrary
from pipeline.prompts.lint import check_prompts
from tests.test_prompts import copy_prompts

runner = CliRunner()


def test_bundled_prompts_render_for_every_family_and_language() -> None:
    library = PromptLibrary()
    findings, renders = check_prompts()
    assert findings == []
    stages = sum(len(library.task(name).stages) for name in library.available())
    assert len(library.available()) >= 7 and len(library.languages) >= 20
    assert renders == stages * len(library.languages)
    result = runner.invoke(app, ["prompts", "check"])
    assert result.exit_code == 0 and f"ok: {renders} renders" in result.output


def test_broken_copy_names_each_file_and_problem(tmp_path: Path) -> None:
    root = copy_prompts(tmp_path)
    # An undefined variable, a stage tail that repeats the document, an invalid
    # schema and an example that does not match its schema, each in another family.
    (root / "sts" / "sentences.user.j2").write_text("{{ passage }} in {{ query_langauge }}")
    (root / "retrieval" / "query.tail.j2").write_text("Again:\n{{ passage }}\n{{ character }}")
    bitext = yaml.safe_load((root / "bitext" / "task.yaml").read_text())
    bitext["stages"][0]["schema"]["properties"]["sentence"]["type"] = "text"
    (root / "bitext" / "task.yaml").write_text(yaml.safe_dump(bitext))
    long_long = yaml.safe_load((root / "long_long" / "task.yaml").read_text())
    long_long["stages"][0]["examples"][0]["output"] = {"related_passage": "too short"}
    (root / "long_long" / "task.yaml").write_text(yaml.safe_dump(long_long))

    findings = [str(f) for f in check_prompts(root)[0]]
    expected = [
        (root / "sts" / "sentences.user.j2", "'query_langauge' is undefined"),
        (root / "retrieval" / "query.tail.j2", "the tail repeats the document"),
        (root / "bitext" / "task.yaml", "schema is not valid JSON Schema"),
        (root / "long_long" / "task.yaml", "example 1 does not match the schema"),
    ]
    for path, problem in expected:
        assert any(f.startswith(f"{path}: ") and problem in f for f in findings), (path, findings)
    assert len(findings) == len(expected)

    result = runner.invoke(app, ["prompts", "check", str(root)])
    assert result.exit_code == 1
    assert str(root / "sts" / "sentences.user.j2") in result.output
    missing = runner.invoke(app, ["prompts", "check", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "prompts folder not found" in missing.output


def test_user_folder_adds_and_overrides_tasks(tmp_path: Path) -> None:
    bundled = PromptLibrary()
    root = tmp_path / "mine"
    (root / "faq").mkdir(parents=True)
    for name in ("classify.system.j2", "classify.user.j2"):
        source = bundled.root / "classification" / name
        (root / "faq" / name).write_text(source.read_text())
    spec = yaml.safe_load((bundled.root / "classification" / "task.yaml").read_text())
    spec["instructions"] = ["Classify the question of a customer"]
    (root / "faq" / "task.yaml").write_text(yaml.safe_dump(spec))
    library = PromptLibrary(root)
    assert "faq" in library.available() and "retrieval" in library.available()
    assert library.task("faq").instructions == ["Classify the question of a customer"]
    assert library.task("retrieval").template_hash == bundled.task("retrieval").template_hash
    assert check_prompts(root) == ([], 31 * 1)  # its own task, every language


def test_render_shows_every_stage_with_marked_placeholders(
    job_file: Callable[..., Path],
) -> None:
    path = job_file(tasks=[{"type": "retrieval_brainstorm"}])
    result = runner.invoke(app, ["prompts", "render", str(path), "--limit", "2"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.count("=== document ") == 2
    assert out.count("--- stage 1/3: brainstorm") == 2 and out.count("--- stage 3/3: query") == 2
    assert "<placeholder: character from stage config>" in out  # stage 3 needs stage 2's pick
    assert "<placeholder: instruction" not in out  # no template shows a later-used output
    assert '[schema] {"type": "object"' in out
