"""Prompt templates as data: a registry per task, rendered in a Jinja sandbox.

`prompts/<task>/task.yaml` is a task family: its training instructions, its stages (one to
three; each a static system template, a user template and an output JSON schema), which
outputs make the pair (`record`) and which post-generation checks suit its pairs (`checks`).
Few-shot examples are rendered through the same user template as earlier chat turns. A
multi-stage family may also name a `lead` (the passage block) and a `tail` per stage: with
`prompt_layout: shared` every stage's request is one head, the lead, then its tail.
Document text only ever enters as a template variable, never as template source, and the
sandbox with StrictUndefined turns a missing variable into an error instead of an empty string.
Static text comes first and the document last, so vLLM's prefix cache shares the head.
"""

import copy
import dataclasses
import hashlib
import json
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path
from typing import Any

from jinja2 import (
    FileSystemLoader,
    StrictUndefined,
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
    meta,
)
from jinja2.sandbox import SandboxedEnvironment

from pipeline.config.errors import UserError
from pipeline.config.job import PersonasConfig
from pipeline.personas.library import load_personas
from pipeline.prompts.languages import DEFAULT_PROMPTS_DIR, language_names, read_yaml
from pipeline.quality.registry import family_checks

# The opening of a shared head's system text; each request's `**Task**` line names its stage.
SHARED_HEAD = (
    "Each request shows a Passage, then names one of these tasks in its **Task** line.\n\n"
)

Messages = list[dict[str, str]]


# Post-generation steps a family may list that are no registered check: mining hard
# negatives from the corpus (positive = passage).
OTHER_CHECKS = ("negatives",)


def known_checks() -> tuple[str, ...]:
    """Every post-generation check a family may list (a family that lists none gets them
    all): the registered quality checks' names (pipeline.quality.registry: `bounds` and
    `copy` are parts of the minimal filters), then mining."""
    return (*family_checks(), *OTHER_CHECKS)


# Where a record field may come from besides a stage output.
DOCUMENT_SOURCES = ("passage", "title")


@dataclass(frozen=True)
class Stage:
    """One generation stage of a task: templates, examples and the output schema."""

    name: str
    system: str
    user: str
    schema: dict[str, Any]
    enums: dict[str, str]
    examples: list[dict[str, Any]]
    max_tokens: int = 128  # the stage's default; `sampling.<stage>` in a job overrides it
    # What this stage's request adds after the family's `lead` (`prompt_layout: shared`):
    # only what is new, never the passage.
    tail: str | None = None


@dataclass(frozen=True)
class RecordSpec:
    """Which text becomes each field of the pair: a stage output key, `passage` or `title`.

    `instruction` names an output key that writes the pair's instruction (else one of the
    task's `instructions` is drawn); `language` names the field written in the planned
    query language (what the language filter checks).
    """

    query: str = "query"
    positive: str = "passage"
    negative: str | None = None
    instruction: str | None = None
    language: str = "query"


@dataclass(frozen=True)
class TaskSpec:
    """A task family's registry entry: instructions, stages, record mapping and checks."""

    name: str
    instructions: list[str]
    stages: list[Stage]
    template_hash: str
    record: RecordSpec = RecordSpec()
    checks: frozenset[str] = dataclasses.field(default_factory=lambda: frozenset(known_checks()))
    cross_lingual: bool = False  # the query language is always another than the document's
    # The opening of every stage's request (`prompt_layout: shared`): the passage block.
    lead: str | None = None

    @property
    def instruction(self) -> str:
        """The task's first (canonical) training instruction."""
        return self.instructions[0]

    def applies(self, check: str) -> bool:
        """Whether a post-generation check suits this family's pairs."""
        return check in self.checks

    @property
    def shares_lead(self) -> bool:
        """Whether the family's stages can share one prompt head up to the passage: it has
        more than one stage, a `lead` template, and a `tail` for every stage."""
        return (
            self.lead is not None
            and len(self.stages) > 1
            and all(stage.tail is not None for stage in self.stages)
        )


class PromptLibrary:
    """Loads task registries and language names, and renders chat messages. The personas
    (bundled by default) are held for the template hash and the stage-1 candidates."""

    def __init__(self, root: Path | None = None, personas: list[str] | None = None) -> None:
        self.root = root or DEFAULT_PROMPTS_DIR
        if not self.root.is_dir():
            raise UserError(f"prompts folder not found: {self.root}")
        # A user folder adds tasks and overrides whole bundled tasks of the same name.
        self.roots = list(dict.fromkeys([self.root, DEFAULT_PROMPTS_DIR]))
        self.loader = FileSystemLoader(self.roots)
        self.env = SandboxedEnvironment(
            loader=self.loader,
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=False,
        )
        self.languages, _ = language_names(self.root)
        self.personas = personas if personas is not None else load_personas(PersonasConfig())
        self._tasks: dict[str, TaskSpec] = {}
        self._loading: set[str] = set()

    @staticmethod
    def _yaml(path: Path) -> Any:
        return read_yaml(path)

    def find(self, relative: str) -> Path | None:
        """`relative` in the first root that has it (the user's folder before the bundled)."""
        return next((root / relative for root in self.roots if (root / relative).exists()), None)

    def available(self) -> list[str]:
        """Task names that have a registry, in either folder."""
        return sorted({p.parent.name for root in self.roots for p in root.glob("*/task.yaml")})

    def task(self, name: str) -> TaskSpec:
        """The registry of task `name`, loaded once."""
        if name not in self._tasks:
            if name in self._loading:
                raise UserError(f"task {name}: its stages `use` each other in a cycle")
            self._loading.add(name)
            try:
                self._tasks[name] = self._load_task(name)
            finally:
                self._loading.discard(name)
        return self._tasks[name]

    def _load_task(self, name: str) -> TaskSpec:
        registry = self.find(f"{name}/task.yaml")
        if registry is None:
            raise UserError(f"unknown task type '{name}' (known: {', '.join(self.available())})")
        spec = self._yaml(registry)
        # The hash covers everything that shapes a prompt: registry, templates, personas and
        # language names, so a changed persona list shows up as a changed template hash.
        digest = hashlib.sha256(registry.read_bytes())
        digest.update(json.dumps([self.personas, self.languages], sort_keys=True).encode())
        try:
            stages = [self._stage(registry.parent, entry, digest) for entry in spec["stages"]]
            instructions = spec.get("instructions") or [spec["instruction"]]
            record = RecordSpec(**spec.get("record", {}))
            checks = frozenset(spec.get("checks", known_checks()))
            task = TaskSpec(
                name,
                [text.strip() for text in instructions],
                stages,
                digest.hexdigest()[:16],
                record,
                checks,
                bool(spec.get("cross_lingual", False)),
                self._template(registry.parent, spec["lead"], digest) if "lead" in spec else None,
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise UserError(f"{registry}: malformed task registry ({exc!r})") from exc
        _check_registry(registry, task)
        return task

    def _stage(self, folder: Path, entry: dict[str, Any], digest: "hashlib._Hash") -> Stage:
        if "use" in entry:  # `use: retrieval/query` reuses another family's stage as it is
            other, _, name = str(entry["use"]).partition("/")
            spec = self.task(other)
            digest.update(spec.template_hash.encode())
            found = [stage for stage in spec.stages if stage.name == name]
            if not found:
                raise UserError(f"task {folder.name}: no stage '{entry['use']}' to use")
            return found[0]
        return Stage(
            name=entry["name"],
            system=self._template(folder, entry["system"], digest),
            user=self._template(folder, entry["user"], digest),
            schema=entry["schema"],
            enums=entry.get("enums", {}),
            examples=entry.get("examples", []),
            max_tokens=int(entry.get("max_tokens", Stage.max_tokens)),
            tail=self._template(folder, entry["tail"], digest) if "tail" in entry else None,
        )

    def _template(self, folder: Path, name: str, digest: "hashlib._Hash") -> str:
        """A family's template file as the loader names it, its bytes added to the hash
        with those of every template it pulls in."""
        template = folder / name
        if not template.is_file():
            raise UserError(f"task {folder.name}: template not found: {template}")
        source = template.read_bytes()
        digest.update(source)
        loader_name = f"{folder.name}/{name}"
        self._hash_references(loader_name, source.decode("utf-8", "replace"), digest, set())
        return loader_name

    def _hash_references(
        self, name: str, source: str, digest: "hashlib._Hash", seen: set[str]
    ) -> None:
        """Add every template `source` pulls in (`include`, `import`, `from`, `extends`),
        and theirs in turn, to the hash: an edit to a shared passage block must not leave
        a finished version looking complete. A name given by a variable cannot be
        followed, so it is refused."""
        try:
            tree = self.env.parse(source, name)
        except TemplateSyntaxError:
            return  # the template cannot render: rendering reports it, naming the file
        for reference in meta.find_referenced_templates(tree):
            if reference is None:
                raise UserError(
                    f"prompt template {name} pulls in a template named by a variable: the "
                    "template hash cannot follow it (name the template in quotes)"
                )
            if reference in seen:
                continue
            seen.add(reference)
            try:
                pulled, _, _ = self.loader.get_source(self.env, reference)
            except TemplateNotFound as exc:
                raise UserError(
                    f"prompt template {name} pulls in {reference}, which no prompts folder has"
                ) from exc
            digest.update(f"\0{reference}\0{pulled}".encode())
            self._hash_references(reference, pulled, digest, seen)

    def language_name(self, code: str | None) -> str:
        """English name of a language code, for prompts ('de' -> 'German')."""
        if code is None:
            return "an unknown"
        return self.languages.get(code, code)

    def render(self, stage: Stage, variables: dict[str, Any]) -> Messages:
        """Chat messages for one request: system, few-shot turns, then the request."""
        try:
            messages = [{"role": "system", "content": self._render(stage.system, {})}]
            for example in stage.examples:
                messages += self._example(stage.user, example)
            messages.append({"role": "user", "content": self._render(stage.user, variables)})
        except TemplateError as exc:
            raise UserError(f"prompt template {stage.user}: {exc}") from exc
        return messages

    def render_shared(self, spec: TaskSpec, stage: Stage, variables: dict[str, Any]) -> Messages:
        """A request of a family whose stages share one head (`prompt_layout: shared`): one
        system text naming every stage's task, every stage's few-shot examples, then the
        request as the `lead` (the passage block) and this stage's `tail`. Every stage's
        request is the same up to the end of the passage, so stage 1 computes it and the
        later stages of that document (and its other plans) find it in the prefix cache."""
        assert spec.lead is not None
        try:
            system = SHARED_HEAD + "\n\n".join(
                f"**Task**: {s.name}\n{self._render(s.system, {})}" for s in spec.stages
            )
            messages = [{"role": "system", "content": system}]
            rounds = zip_longest(*(s.examples for s in spec.stages))
            for examples in rounds:
                for s, example in zip(spec.stages, examples, strict=True):
                    if example is not None:
                        user = self._shared_request(spec, s, example["input"])
                        messages += self._turns(user, example)
            messages.append(
                {"role": "user", "content": self._shared_request(spec, stage, variables)}
            )
        except TemplateError as exc:
            raise UserError(f"prompt templates of {spec.name}: {exc}") from exc
        return messages

    def _shared_request(self, spec: TaskSpec, stage: Stage, variables: dict[str, Any]) -> str:
        lead, tail = self.render_lead(spec, variables), self.render_tail(stage, variables)
        return f"{lead}\n**Task**: {stage.name}\n{tail}"

    def render_lead(self, spec: TaskSpec, variables: dict[str, Any]) -> str:
        """The opening every stage's request of a shared-head family has: the passage."""
        assert spec.lead is not None
        return self._render_named(spec.lead, variables)

    def render_tail(self, stage: Stage, variables: dict[str, Any]) -> str:
        """What a stage's request adds after the lead."""
        assert stage.tail is not None
        return self._render_named(stage.tail, variables)

    def _render_named(self, template: str, variables: dict[str, Any]) -> str:
        """A template rendered, its error a UserError that names the template."""
        try:
            return self._render(template, variables)
        except TemplateError as exc:
            raise UserError(f"prompt template {template}: {exc}") from exc

    def _example(self, template: str, example: dict[str, Any]) -> Messages:
        """A few-shot example as a user turn and the assistant's JSON answer."""
        return self._turns(self._render(template, example["input"]), example)

    @staticmethod
    def _turns(user: str, example: dict[str, Any]) -> Messages:
        answer = json.dumps(example["output"], ensure_ascii=False)
        return [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]

    def _render(self, template: str, variables: dict[str, Any]) -> str:
        return self.env.get_template(template).render(**variables).strip()


def _check_registry(registry: Path, task: TaskSpec) -> None:
    """Refuse a registry whose record or checks name something that cannot exist."""
    if not 1 <= len(task.stages) <= 3:
        raise UserError(f"{registry}: a task has one to three stages, not {len(task.stages)}")
    unknown = sorted(task.checks - set(known_checks()))
    if unknown:
        known = ", ".join(known_checks())
        raise UserError(f"{registry}: unknown checks {', '.join(unknown)} (known: {known})")
    outputs = {key for stage in task.stages for key in stage.schema.get("properties", {})}
    record = task.record
    sources = {"query": record.query, "positive": record.positive,
               "negative": record.negative, "instruction": record.instruction}  # fmt: skip
    for field, source in sources.items():
        if source is not None and source not in outputs | set(DOCUMENT_SOURCES):
            raise UserError(f"{registry}: record.{field} '{source}' is no stage output")
    if record.language not in ("query", "positive"):
        raise UserError(f"{registry}: record.language must be query or positive")
    if record.positive != "passage" and {"round_trip", "negatives"} & task.checks:
        raise UserError(f"{registry}: round_trip and negatives need record.positive: passage")


def schema_for(stage: Stage, values: dict[str, list[str] | None]) -> dict[str, Any]:
    """The stage's JSON schema with per-request enums filled in (the candidate personas, a
    planned question type); a missing or None value keeps the schema's own choices."""
    schema = copy.deepcopy(stage.schema)
    for prop, source in stage.enums.items():
        if values.get(source) is not None:
            schema["properties"][prop]["enum"] = values[source]
    return schema
