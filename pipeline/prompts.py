"""Prompt templates as data: a registry per task, rendered in a Jinja sandbox.

`prompts/<task>/task.yaml` names the task's training instruction and its stages; each stage
has a static system template, a user template and an output JSON schema. Few-shot examples
are rendered through the same user template as earlier chat turns. Document text only ever
enters as a template variable, never as template source, and the sandbox with
StrictUndefined turns a missing variable into an error instead of an empty string.
Static text comes first and the document last, so vLLM's prefix cache shares the head.
"""

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jinja2 import FileSystemLoader, StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from pipeline.errors import UserError

DEFAULT_PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class Stage:
    """One generation stage of a task: templates, examples and the output schema."""

    name: str
    system: str
    user: str
    schema: dict[str, Any]
    enums: dict[str, str]
    examples: list[dict[str, Any]]


@dataclass(frozen=True)
class TaskSpec:
    """A task's registry entry: its instruction and its ordered stages."""

    name: str
    instruction: str
    stages: list[Stage]
    template_hash: str


class PromptLibrary:
    """Loads task registries, personas and language names, and renders chat messages."""

    def __init__(self, root: Path | None = None, personas: Path | None = None) -> None:
        self.root = root or DEFAULT_PROMPTS_DIR
        if not self.root.is_dir():
            raise UserError(f"prompts folder not found: {self.root}")
        self.env = SandboxedEnvironment(
            loader=FileSystemLoader(self.root),
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=False,
        )
        self.languages: dict[str, str] = self._yaml(self.root / "languages.yaml")
        if not all(isinstance(code, str) for code in self.languages):
            raise UserError(
                f"{self.root / 'languages.yaml'}: quote every code (YAML reads no as false)"
            )
        self.personas: list[str] = self._yaml(personas or self.root / "personas.yaml")
        if not isinstance(self.personas, list) or not self.personas:
            raise UserError(
                f"{personas or self.root / 'personas.yaml'}: expected a list of personas"
            )
        self._tasks: dict[str, TaskSpec] = {}

    @staticmethod
    def _yaml(path: Path) -> Any:
        if not path.is_file():
            raise UserError(f"prompt data file not found: {path}")
        try:
            return yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise UserError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from exc

    def available(self) -> list[str]:
        """Task names that have a registry."""
        return sorted(p.parent.name for p in self.root.glob("*/task.yaml"))

    def task(self, name: str) -> TaskSpec:
        """The registry of task `name`, loaded once."""
        if name not in self._tasks:
            self._tasks[name] = self._load_task(name)
        return self._tasks[name]

    def _load_task(self, name: str) -> TaskSpec:
        registry = self.root / name / "task.yaml"
        if not registry.is_file():
            raise UserError(f"unknown task type '{name}' (known: {', '.join(self.available())})")
        spec = self._yaml(registry)
        # The hash covers everything that shapes a prompt: registry, templates, personas and
        # language names, so a changed persona list shows up as a changed template hash.
        digest = hashlib.sha256(registry.read_bytes())
        digest.update(json.dumps([self.personas, self.languages], sort_keys=True).encode())
        try:
            stages = [self._stage(name, entry, digest) for entry in spec["stages"]]
            instruction = spec["instruction"].strip()
        except (KeyError, TypeError, AttributeError) as exc:
            raise UserError(f"{registry}: malformed task registry ({exc!r})") from exc
        return TaskSpec(name, instruction, stages, digest.hexdigest()[:16])

    def _stage(self, task: str, entry: dict[str, Any], digest: "hashlib._Hash") -> Stage:
        for key in ("system", "user"):
            template = self.root / task / entry[key]
            if not template.is_file():
                raise UserError(f"task {task}: template not found: {template}")
            digest.update(template.read_bytes())
        return Stage(
            name=entry["name"],
            system=f"{task}/{entry['system']}",
            user=f"{task}/{entry['user']}",
            schema=entry["schema"],
            enums=entry.get("enums", {}),
            examples=entry.get("examples", []),
        )

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
                messages.append(
                    {"role": "user", "content": self._render(stage.user, example["input"])}
                )
                messages.append(
                    {
                        "role": "assistant",
                        "content": json.dumps(example["output"], ensure_ascii=False),
                    }
                )
            messages.append({"role": "user", "content": self._render(stage.user, variables)})
        except TemplateError as exc:
            raise UserError(f"prompt template {stage.user}: {exc}") from exc
        return messages

    def _render(self, template: str, variables: dict[str, Any]) -> str:
        return self.env.get_template(template).render(**variables).strip()


def schema_for(stage: Stage, values: dict[str, list[str]]) -> dict[str, Any]:
    """The stage's JSON schema with per-request enums filled in (e.g. candidate personas)."""
    schema = copy.deepcopy(stage.schema)
    for prop, source in stage.enums.items():
        schema["properties"][prop]["enum"] = values[source]
    return schema
