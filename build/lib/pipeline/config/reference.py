"""The configuration reference (docs/config.md), rendered from the pydantic models.

A hand-written list of keys drifts the day a key is added; this one is read off the models
the loader validates against (the `filters:` section included, which the filter registry
assembles), so `embsynth config schema --markdown` prints what the code accepts now and a
test keeps docs/config.md equal to it. Keys are dotted paths as they are written in YAML.
"""

import json
import re
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, TypeAdapter
from pydantic.fields import FieldInfo

HEADER = """\
<!-- Generated from the pydantic models by `embsynth config schema --markdown`: do not edit.
Regenerate with: embsynth config schema --markdown > docs/config.md -->
# Configuration reference

Every key embsynth's YAML files take, read off the models that validate them. Unknown keys
are errors; a key left out takes its default; relative paths are read next to the file.

Keys are dotted paths: `dedup.near.threshold` is `threshold` under `near` under `dedup`.
`[]` is an entry of a list (`tasks[].type`), `<name>` a key of your choosing in a mapping
(`sampling.<name>.temperature`), and `{name=x}` the variant of an entry whose `name` is `x`
(`losses[]{name=info_nce}.temperature`). A default of `{}` is the section with its own
defaults; `required` keys have none.
"""
TABLE_HEAD = "| key | type | default | constraints | description |\n|---|---|---|---|---|"
BOUNDS = (
    (annotated_types.Gt, "gt", "> {}"),
    (annotated_types.Ge, "ge", ">= {}"),
    (annotated_types.Lt, "lt", "< {}"),
    (annotated_types.Le, "le", "<= {}"),
    (annotated_types.MinLen, "min_length", "length >= {}"),
    (annotated_types.MaxLen, "max_length", "length <= {}"),
)


@dataclass(frozen=True)
class KeyRow:
    """One key of a config file, as the reference shows it."""

    key: str
    type: str
    default: str
    constraints: str
    description: str

    def markdown(self) -> str:
        """The key as one table row (code spans for what is typed into YAML)."""
        cells = [_code(self.key), _code(self.type), _code(self.default)]
        cells += [self.constraints, self.description]
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _code(text: str) -> str:
    return f"`{text}`" if text and text != "required" else text


def _unwrap(annotation: Any) -> Any:
    """The type under `Annotated[...]` (its metadata is the field's, shown as constraints)."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType)


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def type_name(annotation: Any) -> str:
    """A YAML reader's name for a type: `"a" | "b"` for a Literal, `section` for a nested
    model, `null` for None, `path` for a Path, containers with their items' types."""
    annotation = _unwrap(annotation)
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is type(None) or annotation is None:
        return "null"
    if origin is Literal:
        return " | ".join(json.dumps(value) for value in args)
    if _is_union(annotation):
        return " | ".join(dict.fromkeys(type_name(arg) for arg in args))
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return f"tuple[{type_name(args[0])}, ...]"
    if origin in (list, tuple, dict, set, frozenset):
        return f"{origin.__name__}[{', '.join(type_name(arg) for arg in args)}]"
    if _is_model(annotation):
        return "section"
    if annotation is Path:
        return "path"
    if annotation is Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation))


def default_text(field: FieldInfo) -> str:
    """The default as YAML (JSON flow style) would write it; factories are called and a
    section's own defaults left out (`{}`), so the cell is what leaving the key out means."""
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    dumped = TypeAdapter(field.annotation).dump_python(value, mode="json", exclude_defaults=True)
    return json.dumps(dumped, ensure_ascii=False)


def constraints_text(field: FieldInfo) -> str:
    """The field's bounds and pattern, as the validator checks them."""
    found = []
    for item in field.metadata:
        for kind, attribute, text in BOUNDS:
            if isinstance(item, kind):
                found.append(text.format(getattr(item, attribute)))
        if pattern := getattr(item, "pattern", None):
            found.append(f"matches `{pattern}`")
    return ", ".join(found)


def summary(model: type[BaseModel]) -> str:
    """A model's docstring's first sentence: a section's description in its owner's table."""
    first = doc_paragraph(model)
    return re.split(r"(?<=[.!?])\s+(?=[A-Z`(])", first, maxsplit=1)[0]


def doc_paragraph(model: type[BaseModel]) -> str:
    """A model's docstring's first paragraph on one line (pydantic's base doc is no doc)."""
    doc = model.__doc__ if model.__doc__ != BaseModel.__doc__ else None
    return " ".join((doc or "").strip().split("\n\n")[0].split())


def nested(annotation: Any) -> list[tuple[str, type[BaseModel]]]:
    """The models under a field's type, each with what its keys' path adds: `` for the
    model itself, `[]` through a list, `.<name>` through a mapping, `{name=x}` for each
    variant of a union of models told apart by a `name` literal."""
    annotation = _unwrap(annotation)
    origin, args = get_origin(annotation), get_args(annotation)
    if _is_model(annotation):
        return [("", annotation)]
    if origin in (list, tuple, set, frozenset):
        return [(f"[]{suffix}", model) for arg in args for suffix, model in nested(arg)]
    if origin is dict:
        return [(f".<name>{suffix}", model) for suffix, model in nested(args[1])]
    if _is_union(annotation):
        models = [_unwrap(arg) for arg in args if _is_model(_unwrap(arg))]
        marked = [(f"{{name={_variant(m)}}}", m) for m in models] if len(models) > 1 else None
        others = [item for arg in args if not _is_model(_unwrap(arg)) for item in nested(arg)]
        return (marked or [("", m) for m in models]) + others
    return []


def _variant(model: type[BaseModel]) -> str:
    """The `name` a union's variant is picked by (its model name when it has none)."""
    field = model.model_fields.get("name")
    values = get_args(_unwrap(field.annotation)) if field else ()
    return str(values[0]) if values else model.__name__


def rows(model: type[BaseModel], prefix: str = "") -> Iterator[KeyRow]:
    """Every key of `model`, in declaration order, each nested section's keys after it."""
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        inner = nested(field.annotation)
        description = field.description or (summary(inner[0][1]) if len(inner) == 1 else "")
        yield KeyRow(
            key,
            type_name(field.annotation),
            default_text(field),
            constraints_text(field),
            " ".join(description.split()),
        )
        for suffix, section in inner:
            if suffix.endswith("}"):  # a variant: its own row, as its keys differ
                yield KeyRow(f"{key}{suffix}", "section", "", "", summary(section))
            yield from rows(section, f"{key}{suffix}.")


def part(title: str, model: type[BaseModel]) -> str:
    """One config file's reference: its top-level keys, then a table per section."""
    every = list(rows(model))
    lines = [f"## {title}", "", doc_paragraph(model), "", "### Top-level keys", "", TABLE_HEAD]
    lines += [row.markdown() for row in every if row.key in model.model_fields]
    for name, field in model.model_fields.items():
        inner = nested(field.annotation)
        if not inner:
            continue
        about = field.description or (doc_paragraph(inner[0][1]) if len(inner) == 1 else "")
        lines += ["", f"### `{name}`", ""] + ([" ".join(about.split()), ""] if about else [])
        lines += [TABLE_HEAD]
        lines += [row.markdown() for row in every if row.key.startswith(_below(name))]
    return "\n".join(lines) + "\n"


def _below(name: str) -> tuple[str, ...]:
    """The prefixes of the keys under top-level key `name`."""
    return (f"{name}.", f"{name}[]", f"{name}{{")


def reference(parts: Sequence[tuple[str, type[BaseModel]]]) -> str:
    """The whole reference: the header, then one part per (title, config model)."""
    return "\n".join([HEADER, *(part(title, model) for title, model in parts)])
