"""`embsynth prompts check`: everything that can be wrong with a prompts folder, found
before a model is loaded.

For every task family it renders every stage for every language of the folder (undefined
variables are errors under StrictUndefined), validates each output schema as JSON Schema
and each few-shot example against it, and checks the prefix-cache rules: the system
template is static, the document is in the request and not in the head (system and
examples, shared by every request), and for a family with a shared head the `lead` holds
the document and no stage's `tail` repeats it.
"""

from dataclasses import dataclass
from pathlib import Path

from jinja2 import TemplateError
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from jsonschema.exceptions import ValidationError as SchemaMismatch

from pipeline.config.errors import UserError
from pipeline.prompts.library import DEFAULT_PROMPTS_DIR, PromptLibrary, Stage, TaskSpec
from pipeline.prompts.samples import sample_variables

SENTINEL = "<<DOCUMENT-SENTINEL-7f3a>>"


@dataclass(frozen=True)
class Finding:
    """One problem, named by the file it is in."""

    path: Path
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


def check_prompts(root: Path | None = None) -> tuple[list[Finding], int]:
    """All findings for a prompts folder, and how many renders were checked."""
    root = root or DEFAULT_PROMPTS_DIR
    try:
        library = PromptLibrary(root)
    except UserError as exc:
        return [Finding(root, str(exc))], 0
    findings: list[Finding] = []
    renders = 0
    own = sorted(p.parent.name for p in root.glob("*/task.yaml"))
    for name in own or library.available():
        try:
            spec = library.task(name)
        except UserError as exc:
            findings.append(Finding(root / name / "task.yaml", str(exc)))
            continue
        for index, stage in enumerate(spec.stages):
            findings += _schema_findings(library, stage)
            for code in library.languages:
                found, count = _render_findings(library, spec, index, code)
                findings += found
                renders += count
                if found:
                    break  # one language shows the problem; the others would repeat it
    return list(dict.fromkeys(findings)), renders


def _file(library: PromptLibrary, template: str) -> Path:
    """The file a finding is about: where the library found it (the user's folder first)."""
    return library.find(template) or library.root / template


def _render_findings(
    library: PromptLibrary, spec: TaskSpec, index: int, code: str
) -> tuple[list[Finding], int]:
    stage = spec.stages[index]
    name = library.language_name(code)
    findings = []
    try:
        library.env.get_template(stage.system).render()
    except TemplateError as exc:
        findings.append(
            Finding(_file(library, stage.system), f"system template is not static ({exc})")
        )
    variables = sample_variables(spec, index, SENTINEL, name, name)
    try:
        messages = library.render(stage, variables)
    except UserError as exc:
        return [*findings, Finding(_file(library, stage.user), str(exc))], 1
    if SENTINEL not in messages[-1]["content"]:
        findings.append(Finding(_file(library, stage.user), "the document is not in the request"))
    if any(SENTINEL in m["content"] for m in messages[:-1]):
        findings.append(Finding(_file(library, stage.user), "the document leaks into the head"))
    if spec.shares_lead:
        try:
            shared = library.render_shared(spec, stage, variables)
        except UserError as exc:
            return [*findings, Finding(_file(library, stage.tail or stage.user), str(exc))], 1
        assert spec.lead is not None and stage.tail is not None
        if SENTINEL not in library.render_lead(spec, variables):
            findings.append(Finding(_file(library, spec.lead), "the lead lacks the document"))
        if SENTINEL in library.render_tail(stage, variables):
            problem = "the tail repeats the document (the lead has it)"
            findings.append(Finding(_file(library, stage.tail), problem))
        if any(SENTINEL in m["content"] for m in shared[:-1]):
            findings.append(Finding(_file(library, spec.lead), "the document leaks into the head"))
    return findings, 1


def _schema_findings(library: PromptLibrary, stage: Stage) -> list[Finding]:
    registry = _file(library, f"{stage.user.split('/')[0]}/task.yaml")
    try:
        Draft202012Validator.check_schema(stage.schema)
    except SchemaError as exc:
        return [
            Finding(registry, f"stage {stage.name}: schema is not valid JSON Schema: {exc.message}")
        ]
    validator = Draft202012Validator(stage.schema)
    findings = []
    for number, example in enumerate(stage.examples, 1):
        try:
            validator.validate(example["output"])
        except SchemaMismatch as exc:
            findings.append(
                Finding(
                    registry,
                    f"stage {stage.name}: example {number} does not match the schema: "
                    + exc.message,
                )
            )
        except (KeyError, TypeError):
            findings.append(
                Finding(registry, f"stage {stage.name}: example {number} has no output")
            )
    return findings
