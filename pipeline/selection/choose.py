"""`embsynth train` with `select`: train once, build the candidates the config names, measure
each and the base model on the validation split, and save the best as `final/`, or the
base model where none beats it by more than `min_gain`, with one line that says why.

The candidates: the trained model merged with the base at each share (share 0: unmerged),
and on each of those every adapter fit named (pipeline.adapt). Training is the costly
part and happens once; a merge is seconds, a fit minutes. The report (`selection.json`
beside the models) lists every candidate's figures on the split and the choice.
"""

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.adapt.stage import check_adapter, finish_training, fit_adapter, lesson
from pipeline.config.errors import UserError
from pipeline.corpus.index import CorpusIndex
from pipeline.dataset.manifest import write_json_atomic
from pipeline.embedding.merge import merge_models
from pipeline.embedding.split import document_key
from pipeline.embedding.train_config import SelectConfig
from pipeline.embedding.trainer import CANDIDATES, TRAINED, Trainer
from pipeline.models.folder import save_atomically
from pipeline.selection.validation import Split, Validator, validation_split

REPORT = "selection.json"
BASE = "base"


@dataclass
class ModelCandidate:
    """A model and its figures on the split (`fit`: its adapter fit's report, if any)."""

    name: str
    model: Path
    figures: dict[str, float]
    fit: dict[str, object] | None = field(default=None)


# Called with each candidate and its corpus vectors as it is measured (a benchmark scores
# the same vectors on the collection's real queries).
OnMeasured = Callable[[ModelCandidate, CorpusIndex], None]


def choose(
    candidates: list[ModelCandidate], metric: str, min_gain: float
) -> tuple[ModelCandidate, str]:
    """The candidate to save and the line saying why: the best on `metric` (the earlier on
    a tie) when it beats the base model (the first) by more than `min_gain`, else the base."""
    base, others = candidates[0], candidates[1:]
    if not others:
        return base, "kept the base model: there was no candidate"
    best = max(others, key=lambda c: c.figures[metric])
    gain = best.figures[metric] - base.figures[metric]
    if gain > min_gain:
        return best, (
            f"chose {best.name}: the best {metric} of {len(others)} candidates on the "
            f"validation split, {best.figures[metric]:.4f} against the base model's "
            f"{base.figures[metric]:.4f} ({gain:+.4f})"
        )
    return base, (
        f"kept the base model: no candidate beat it on the validation split by more than "
        f"{min_gain:g} {metric} (best {best.name} {best.figures[metric]:.4f}, base "
        f"{base.figures[metric]:.4f}); final/ is the base model"
    )


def train_to_final(trainer: Trainer) -> Path:
    """What `embsynth train` does after loading: train and choose with `select`, else train
    and run the configured merge and adapter; returns the final model."""
    if trainer.config.select is not None:
        return train_and_choose(trainer)
    return finish_training(trainer)


def train_and_choose(trainer: Trainer, on_measured: OnMeasured | None = None) -> Path:
    """Train (from the trainer's current step), build and measure the candidates, save the
    chosen one as the final model and write the report; returns the final model."""
    config, select = trainer.config, trainer.config.select
    assert select is not None, "train_and_choose needs the config's select section"
    base = Path(config.model)
    if not base.is_dir():
        raise UserError(f"select keeps the base model when nothing beats it: {base} must be "
                        "a local model folder")  # fmt: skip
    job = check_adapter(config.adapter) if config.adapter is not None else None
    split = validation_split(trainer.examples, trainer.held_out, job)  # refused before training
    trained = trainer.train()
    validator = Validator(split)

    def measured(candidate: ModelCandidate, index: CorpusIndex) -> ModelCandidate:
        candidate.figures = validator.measure(candidate.model, index)
        if on_measured is not None:
            on_measured(candidate, index)
        return candidate

    candidates = [measured(ModelCandidate(BASE, base, {}), validator.index(base))]
    for share in select.merge_with_base:
        candidates += _with_share(trainer, trained, share, validator, measured)
    chosen, why = choose(candidates, select.metric, select.min_gain)
    # The report first: final/ is what marks the run finished (`train --resume`).
    write_json_atomic(report(trainer, select, split, candidates, chosen, why),
                      config.output_dir / REPORT)  # fmt: skip
    return save_atomically(
        trainer.final_dir, lambda tmp: shutil.copytree(chosen.model, tmp, dirs_exist_ok=True)
    )


def _with_share(
    trainer: Trainer, trained: Path, share: float, validator: Validator,
    measured: Callable[[ModelCandidate, CorpusIndex], ModelCandidate],
) -> list[ModelCandidate]:  # fmt: skip
    """The candidates of one merge share: the merged model (when `none` is a fit) and each
    adapter fit on it."""
    select, settings = trainer.config.select, trainer.config.adapter
    assert select is not None
    folder = trainer.config.output_dir / CANDIDATES
    name = TRAINED if share == 0 else f"merge-{share:g}"
    model = trained if share == 0 else merge_models([trained, Path(trainer.config.model)],
                                                   folder / name, t=share)  # fmt: skip
    index = validator.index(model)
    out = [measured(ModelCandidate(name, model, {}), index)] if "none" in select.fits else []
    fits = [kind for kind in select.fits if kind != "none"]
    if not fits:
        return out
    assert settings is not None, "the config's check asks for adapter with a fit"
    queries = [example.query for example in trainer.examples]
    held = frozenset(document_key(e) for e in trainer.held_out)
    taught = lesson(model, queries, settings, trainer.config.seed, index=index, held_out=held)
    for kind in fits:
        path = folder / f"{name}+{kind}"
        fit = fit_adapter(model, taught, settings, kind, trainer, path)
        fitted = validator.through_head(index, path) if kind == "linear" else None
        candidate = ModelCandidate(f"{name}+{kind}", path, {}, fit)
        out.append(measured(candidate, fitted or validator.index(path)))
    return out


def report(
    trainer: Trainer, select: SelectConfig, split: Split, candidates: list[ModelCandidate],
    chosen: ModelCandidate, why: str,
) -> dict[str, object]:  # fmt: skip
    """What `selection.json` holds: the split, every candidate's figures, the choice."""
    return {
        "metric": select.metric,
        "min_gain": select.min_gain,
        "chosen": chosen.name,
        "kept_base": chosen.name == BASE,
        "why": why,
        "split": {
            "held_out": select.held_out,
            "training_pairs": len(trainer.examples),
            "held_out_pairs": len(trainer.held_out),
            "held_out_documents": len({document_key(e) for e in trainer.held_out}),
            "queries": len(split.queries),
            "not_in_corpus": split.unplaced,
            "corpus": len(split.documents),
            "corpus_source": split.source,
        },
        "candidates": [
            {"name": c.name, "model": str(c.model), **c.figures}
            | ({"adapter": c.fit} if c.fit else {})
            for c in candidates
        ],
    }
