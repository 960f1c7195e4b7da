"""The filter registry: each quality check declares itself once, in its own module, and
everything that used to list the checks by hand is built from these declarations:

- `FiltersConfig`, the job config's `filters:` section (one key per check's settings),
- the check chain of a job and whether it needs an embedder (pipeline.quality.chain),
- the check names a task family's `checks:` may list (pipeline.prompts.library),
- the README's reject-reason table (`reasons_table`, kept equal by a test).

So a new check is one module in this folder that calls `register` (the package imports
every module of its folder) plus its test; nothing else can forget it. A check registered
later (a test, a plugin: `registered`) joins the config section too: the job config, which
embeds the section, is rebuilt around it (`embeds_filters`).

This module imports nothing that imports the job config, which imports it: check modules
import the job config, the prompt library and the chain's Context for annotations only.
"""

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field, create_model
from pydantic.fields import FieldInfo

from pipeline.config.base import Strict
from pipeline.dataset.records import Candidate, Reject

if TYPE_CHECKING:  # annotations only: each of them imports this module
    from pipeline.config.job import JobConfig
    from pipeline.prompts.library import PromptLibrary
    from pipeline.quality.chain import Context

Check = Callable[[list[Candidate]], list[Reject | None]]
Factory = Callable[["JobConfig", "PromptLibrary", "Context"], Check]
# What a check takes from the job's Context besides the candidates.
Need = Literal["embedder", "index", "teacher", "generator"]

FILTERS_DOC = """The `filters:` section: the settings of each quality check, assembled from
the filter registry (pipeline.quality.registry): the minimal filters' limits at the top,
then one section per check that has settings, in chain order."""


@dataclass(frozen=True, eq=False)  # compared and hashed by identity (a registry key)
class Filter:
    """One quality check: what the chain, the config, the prompt library and the README
    need to know of it.

    `name` is its funnel step, its rejects' stage and its key under `filters:`. `order`
    places it in the chain (each check sees only what the earlier ones kept): cheap text
    checks below 700, embedding checks 700-899, the LLM judge 900, and one sample per plan
    last at 1000 (a check after it could reject a plan's chosen sample while a spare
    passed). `settings` is its pydantic model under `filters.<name>` (`inline`: its fields
    sit at the top of `filters:`, as the minimal filters' limits always have). `enabled`
    decides from the job config whether it runs (default: the settings' `enabled` field if
    they have one, else always). `every_family` checks run on every pair; the others only
    on the families whose `checks:` list their name (a family without `checks:` lists all).
    `family_checks` are further names a family may list, which the check reads itself.
    """

    name: str
    order: int
    build: Factory
    reasons: Mapping[str, str]  # reject reason code -> what it means, one line
    settings: type[Strict] | None = None
    inline: bool = False
    enabled: Callable[["JobConfig"], bool] | None = None
    needs: frozenset[Need] = frozenset()
    every_family: bool = False
    family_checks: tuple[str, ...] = ()

    def switched_on(self, config: "JobConfig") -> bool:
        """Whether this job runs the check."""
        if self.enabled is not None:
            return self.enabled(config)
        if self.settings is not None and "enabled" in self.settings.model_fields:
            return bool(self.settings_of(config).enabled)
        return True

    def settings_of(self, config: "JobConfig") -> Any:
        """The check's settings in this job (the `filters:` section itself when inline)."""
        return config.filters if self.inline else getattr(config.filters, self.name)

    @property
    def checks(self) -> tuple[str, ...]:
        """The names a task family's `checks:` may list for this check."""
        return (*(() if self.every_family else (self.name,)), *self.family_checks)


@dataclass
class _Registry:
    """The registered checks by name, and what is built from them."""

    entries: dict[str, Filter] = field(default_factory=dict)
    # FiltersConfig per set of entries, built on first use and kept, so that the same
    # checks (the built-ins again, once a test's check is gone) give the same class.
    models: dict[tuple[Filter, ...], type[Strict]] = field(default_factory=dict)
    owners: list[tuple[type[BaseModel], str]] = field(default_factory=list)


_REGISTRY = _Registry()


def add(entry: Filter) -> None:
    """Register a check; refuses a name, order or settings key already taken."""
    _refuse_clash(entry)
    _REGISTRY.entries[entry.name] = entry
    _changed()


def remove(name: str) -> Filter:
    """Unregister a check (a test's, or a plugin's); returns its entry."""
    entry = _REGISTRY.entries.pop(name)
    _changed()
    return entry


@contextmanager
def registered(*entries: Filter) -> Iterator[None]:
    """The checks registered for the `with` block only (tests: nothing leaks)."""
    added: list[Filter] = []
    try:
        for entry in entries:
            add(entry)
            added.append(entry)
        yield
    finally:
        for entry in reversed(added):
            if _REGISTRY.entries.get(entry.name) is entry:
                remove(entry.name)


def register(
    name: str,
    *,
    order: int,
    reasons: Mapping[str, str],
    settings: type[Strict] | None = None,
    inline: bool = False,
    enabled: Callable[["JobConfig"], bool] | None = None,
    needs: frozenset[Need] = frozenset(),
    every_family: bool = False,
    family_checks: tuple[str, ...] = (),
) -> Callable[[Factory], Factory]:
    """Decorate a check's factory to register it (see Filter for the arguments)."""

    def add_factory(build: Factory) -> Factory:
        add(Filter(name, order, build, dict(reasons), settings, inline, enabled, needs,
                   every_family, family_checks))  # fmt: skip
        return build

    return add_factory


def filters() -> list[Filter]:
    """Every registered check, in chain order."""
    return sorted(_REGISTRY.entries.values(), key=lambda entry: entry.order)


def family_checks() -> tuple[str, ...]:
    """The names of checks a task family's `checks:` may list, in chain order."""
    return tuple(name for entry in filters() for name in entry.checks)


def filters_model() -> type[Strict]:
    """The `filters:` section's model for the checks registered now."""
    entries = tuple(filters())
    if entries not in _REGISTRY.models:
        _REGISTRY.models[entries] = _assemble(list(entries))
    return _REGISTRY.models[entries]


def embeds_filters(owner: type[BaseModel], name: str) -> None:
    """Keep `owner.<name>` (the job config's `filters`) typed by the current FiltersConfig,
    so a check registered after the owner was defined validates, defaults and dumps with
    the rest (pydantic copies a section's schema into its owner's, hence the rebuild)."""
    _REGISTRY.owners.append((owner, name))
    _follow(owner, name, filters_model())


def __getattr__(name: str) -> Any:
    """`FiltersConfig`: the model of the checks registered when it is looked up (the
    package registers its own before anything can import this module from outside)."""
    if name == "FiltersConfig":
        return filters_model()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _refuse_clash(entry: Filter) -> None:
    """A second check of a name, an order or a settings key would silently shadow one."""
    if not entry.name.isidentifier():
        raise ValueError(f"filter name {entry.name!r} is not an identifier")
    for other in _REGISTRY.entries.values():
        if entry.name == other.name or entry.order == other.order:
            raise ValueError(f"filter {entry.name!r} clashes with {other.name!r} (name or order)")
    if entry.inline and entry.settings is None:
        raise ValueError(f"filter {entry.name!r} is inline but has no settings")
    keys = [_keys(other) for other in _REGISTRY.entries.values()]
    taken = {key for group in keys for key in group}
    if clash := taken & set(_keys(entry)):
        raise ValueError(f"filter {entry.name!r}: settings keys {sorted(clash)} are taken")


def _keys(entry: Filter) -> list[str]:
    """The keys an entry takes in the `filters:` section."""
    if entry.settings is None:
        return []
    return list(entry.settings.model_fields) if entry.inline else [entry.name]


def _assemble(entries: list[Filter]) -> type[Strict]:
    """FiltersConfig: inline settings as its bases (their fields first), then a section
    per check with settings, each defaulting to its model's defaults."""
    bases = tuple(e.settings for e in entries if e.inline and e.settings is not None)
    sections: dict[str, Any] = {
        e.name: (e.settings, Field(default_factory=e.settings))
        for e in entries
        if e.settings is not None and not e.inline
    }
    return create_model(  # type: ignore[no-any-return, call-overload]
        "FiltersConfig",
        __base__=bases or (Strict,),
        __module__=__name__,
        __doc__=FILTERS_DOC,
        **sections,
    )


def _changed() -> None:
    """Retype the owners' fields (once one has embedded the section) by the new model."""
    for owner, name in _REGISTRY.owners:
        _follow(owner, name, filters_model())


def _follow(owner: type[BaseModel], name: str, model: type[Strict]) -> None:
    if owner.__pydantic_fields__[name].annotation is model:
        return
    owner.__pydantic_fields__[name] = FieldInfo(annotation=model, default_factory=model)
    owner.model_rebuild(force=True)


def per_candidate(fn: Callable[[Candidate], Reject | None]) -> Check:
    """A check written for one candidate, applied to a batch."""
    return lambda candidates: [fn(c) for c in candidates]


def reasons_table() -> str:
    """The README's table of the checks and their reject reasons, in chain order."""
    lines = ["| stage | settings | family `checks` | reasons |", "|---|---|---|---|"]
    for entry in filters():
        keys = ", ".join(f"`filters.{key}`" for key in _keys(entry)) or "-"
        names = ", ".join(f"`{name}`" for name in entry.checks) or "(every family)"
        reasons = "<br>".join(f"`{code}`: {meaning}" for code, meaning in entry.reasons.items())
        cells = [f"`{entry.name}`", keys, names, reasons]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)
