"""The closed loop: generate from a BEIR collection's corpus, build dataset variants of the
same generations, train each with a recipe, evaluate each on the collection's real queries.

A row is a data variant (which filters, dedup, mining, teacher and queries per document the
job switches on) trained with a recipe (overrides of the training config). Generation runs
once: every data variant runs the job through one request cache in WORK/cache (the same
cache that makes `embsynth run` resumable), so the first generates, the others are answered
from the cache without loading the model. Each row is trained at one epoch and, so that
quality is not confounded with quantity, at an equal number of steps (smaller sets repeat
epochs). Zero-shot is the first row. Where the corpus has titles, reference rows train on
(title, text) pairs of the same documents: specific, on-topic queries by construction,
which tells a generator's limits apart from the trainer's. With --query-log, half the
collection's judged queries (alternate ones, their texts only) become the adapter's query
log and every row is evaluated on the other half: a user's unlabelled log, measured
without fitting the queries it is scored on.

    python bench/closed_loop.py ../shared/data/eval/cranfield --job configs/cranfield.yaml \\
        --train configs/train-cranfield.yaml --limit 300 --steps 30 --work out/loop-cranfield
"""

import argparse
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
os.environ["HF_HUB_OFFLINE"] = "1"

from pipeline.config.job import JobConfig, load_config
from pipeline.corpus.embedder import open_embedder
from pipeline.corpus.index import CorpusIndex
from pipeline.dataset.records import Candidate, Document
from pipeline.dataset.writer import versions
from pipeline.embedding.data import load_examples, write_version
from pipeline.embedding.evaluate import Collection, evaluate, load_collection
from pipeline.embedding.inference import Embedder
from pipeline.embedding.train_config import TrainConfig, load_train_config
from pipeline.embedding.trainer import UNADAPTED, UNMERGED, Trainer
from pipeline.generation.backends.vllm_offline import open_generator
from pipeline.generation.cache import CachingGenerator, RequestCache
from pipeline.negatives.mining import mine
from pipeline.quality.consistency import embed_queries
from pipeline.run.job import run_job
from pipeline.selection.choose import train_to_final
from pipeline.teacher.judge import judge_for

TEXT_FILTERS = ("length", "language", "heuristics")
EMBEDDING_FILTERS = ("consistency", "round_trip")
ALL = (*TEXT_FILTERS, *EMBEDDING_FILTERS)

# Data variants: what the job switches on. `queries` is queries per document.
UNFILTERED = {"filters": (), "dedup": False, "negatives": False, "queries": 1}
PIPELINE = {"filters": ALL, "dedup": True, "negatives": True, "queries": 1}
TEACHER = {"teacher": "drop_negative", "round_trip": "teacher"}
TEACHER_SCORES = {"teacher": "keep"}
TITLES = {"titles": True}  # the reference: the corpus's own titles as queries
# The same titles with the job's mined negatives and teacher scores (what a distilling
# recipe trains on).
TAUGHT_TITLES = {"titles": "taught"}


def deep(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`base` with `extra` merged in, nested dictionaries merged key by key."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = deep(out[key], value) if isinstance(out.get(key), dict) else value
    return out


# Training recipes: overrides of the training config. The old one is the recipe of the
# earlier loops (lr 2e-5, query-query and document-document terms, no merge).
OLD = {"learning_rate": 2e-5, "loss": {"query_query": True, "doc_doc": True}}
IN_BATCH_ONLY = {"loss": {"query_query": False, "doc_doc": False}}
DISTILL = {"loss": {"distill": "margin_mse"}}
DISTILL_ONLY = {"loss": {"distill": "margin_mse", "info_nce": False}}
MERGE = {"merge_with_base": 0.5}
# Distillation with room to move: 5x the learning rate, every mined negative's margin, half
# the batch (margin-MSE needs no in-batch negatives), two epochs.
FAST_DISTILL = deep(
    OLD, DISTILL_ONLY | {"learning_rate": 1e-4, "hard_negatives": 3, "batch_size": 16, "epochs": 2}
)
NEW: dict[str, Any] = {}  # the bundled training config as it is: the chosen defaults


def rows(log: Path | None = None) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Every row: (data variant, recipe). The old row is the old data (one query per
    document) with the old recipe; the training levers are each applied alone to the data
    of two queries per document, whose one epoch is the equal-steps budget where it can be
    (fewer runs on a slow machine). With a query `log`, rows whose adapter also learns from
    it (beside the corpus crops, and instead of them)."""
    two = PIPELINE | {"queries": 2}
    sampled = two | TEACHER | {"samples": 3}
    chosen = sampled | {"teacher_scale": "rank"}
    logged: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    if log is not None:
        logging = {"adapter": {"queries": [str(log)]}}
        no_crops = deep(logging, {"adapter": {"crops": 0}})
        logged = {
            "chosen defaults + query log": (chosen, logging),
            "chosen defaults + query log, no crops": (chosen, no_crops),
        }
    return logged | {
        "unfiltered, old recipe": (UNFILTERED, OLD),
        "old recipe (pipeline)": (PIPELINE, OLD),
        "+ 2 queries per doc": (two, OLD),
        "+ teacher judges filters": (two | TEACHER, OLD),
        "+ 3 samples per plan": (sampled, OLD),
        "+ in-batch q-d only": (two, deep(OLD, IN_BATCH_ONLY)),
        "+ lr 5e-6": (two, OLD | {"learning_rate": 5e-6}),
        "+ margin-MSE": (two | TEACHER_SCORES, deep(OLD, DISTILL)),
        "+ merge 0.5": (two, OLD | MERGE),
        "earlier defaults (old recipe)": (two | TEACHER, OLD),
        "chosen defaults": (chosen, NEW),
        "chosen defaults, seed 1": (chosen, NEW | {"seed": 1}),  # the spread of one seed
        # The adapter on the generated queries alone: the control of the query log's rows.
        "chosen defaults, adapter without crops": (chosen, {"adapter": {"crops": 0}}),
        "chosen defaults, 4 epochs": (chosen, NEW | {"epochs": 4}),  # does more training add?
        # More of the teacher's ranking per query instead of more passes over the queries.
        "chosen defaults, 7 negatives": (
            chosen | {"negatives_count": 7},
            NEW | {"hard_negatives": 7},
        ),
        "chosen defaults, negatives by the teacher": (chosen | {"negatives_by": "teacher"}, NEW),
        "chosen data, 4 epochs": (two | TEACHER, OLD | {"epochs": 4}),
        "chosen data, 8 epochs, margin-MSE alone": (
            two | TEACHER,
            deep(OLD, DISTILL_ONLY | {"epochs": 8}),
        ),
        "chosen data, 4 epochs, margin-MSE alone": (
            two | TEACHER,
            deep(OLD, DISTILL_ONLY | {"epochs": 4}),
        ),
        # GPL's recipe: every generated pair past the minimal filters (no judgement by the
        # student), the teacher's scores on the positive and the mined negatives, and the
        # margin-MSE loss alone: the teacher's margins, not the filters, weigh a weak query.
        "GPL: all pairs, teacher margins, 3 epochs, margin-MSE alone": (
            two | {"filters": ()} | TEACHER_SCORES,
            deep(OLD, DISTILL_ONLY | {"epochs": 3}),
        ),
        "samples data, margin-MSE alone, lr 1e-4, 3 negatives": (sampled, FAST_DISTILL),
        # The same, with the teacher's mix mapped onto the student's scale by rank: only the
        # teacher's reordering is taught, not a wider scale.
        "samples data, rank-scaled teacher, margin-MSE alone, lr 1e-4, 3 negatives": (
            chosen,
            FAST_DISTILL,
        ),
        "rank-scaled teacher, margin-MSE alone, lr 1e-4, 3 negatives, merge 0.5": (
            two | TEACHER | {"teacher_scale": "rank"},
            FAST_DISTILL | MERGE,
        ),
        "titles, old recipe": (TITLES, OLD),
        "titles, in-batch q-d only": (TITLES, deep(OLD, IN_BATCH_ONLY)),
        "titles, lr 5e-6": (TITLES, OLD | {"learning_rate": 5e-6}),
        "titles, merge 0.5": (TITLES, OLD | MERGE),
        "titles, new recipe": (TITLES, NEW),
        "titles with teacher scores, new recipe": (TAUGHT_TITLES, NEW),
    }


def job_for(base: Path, beir: Path, name: str, variant: dict[str, Any], work: Path) -> JobConfig:
    """The base job on the BEIR corpus, with the variant's switches."""
    raw = load_config(base).model_dump(mode="json")
    raw["name"] = name
    raw["input"] |= {"path": str(beir / "corpus.jsonl"), "id_column": "_id",
                     "title_column": "title", "language_column": None}  # fmt: skip
    raw["output"]["dir"] = str(work / "data")
    for check in ALL:
        raw["filters"][check]["enabled"] = check in variant["filters"]
    raw["filters"]["round_trip"]["judge"] = variant.get("round_trip", "student")
    dedup = raw["dedup"]
    dedup["exact"] = dedup["near"]["enabled"] = dedup["semantic"]["enabled"] = variant["dedup"]
    dedup["documents"] = {"exact": variant["dedup"], "near": variant["dedup"]}
    raw["negatives"]["enabled"] = variant["negatives"]
    raw["negatives"]["count"] = variant.get("negatives_count", raw["negatives"]["count"])
    raw["negatives"]["ranked_by"] = variant.get("negatives_by", raw["negatives"]["ranked_by"])
    for task in raw["tasks"]:
        task["queries_per_document"] = variant["queries"]
        task["samples"] = variant.get("samples", 1)
    teacher = variant.get("teacher")
    raw["teacher"] = {"kind": "fused", "on_preferred_negative": teacher} if teacher else {}
    if teacher and "teacher_scale" in variant:
        raw["teacher"]["scale"] = variant["teacher_scale"]
    return JobConfig.model_validate(raw)


def corpus_texts(beir: Path) -> list[dict[str, str]]:
    """The corpus's documents that have a title and a text (the titles rows' pool)."""
    docs = []
    with (beir / "corpus.jsonl").open(encoding="utf-8") as corpus:
        for line in corpus:
            doc = json.loads(line)
            if doc.get("title", "").strip() and doc.get("text", "").strip():
                docs.append({"doc_id": str(doc["_id"]), "title": doc["title"].strip(),
                             "text": doc["text"].strip()})  # fmt: skip
    return docs


def title_pairs(
    beir: Path, limit: int, work: Path, taught_by: JobConfig | None = None
) -> tuple[Path, int] | None:
    """The reference dataset: the first `limit` documents' titles as their queries. With
    `taught_by` (a job config) each pair also gets the job's mined negatives and its
    teacher's scores, as a generated pair would, so a distilling recipe trains on it."""
    docs = corpus_texts(beir)
    rows = [{"query": d["title"], "positive": d["text"], "doc_id": d["doc_id"]}
            for d in docs[:limit]]  # fmt: skip
    if not rows:
        return None
    folder = work / "data" / ("titles-taught" if taught_by else "titles")
    if (folder / "manifest.json").is_file():
        return folder, len(rows)
    if taught_by is not None:
        embedder = open_embedder(taught_by.embedder)
        index = CorpusIndex.build([Document(d["doc_id"], d["text"]) for d in docs], embedder)
        pairs = [Candidate(Document(r["doc_id"], r["positive"]), "retrieval", "en", 0, [],
                           query=r["query"]) for r in rows]  # fmt: skip
        embed_queries(pairs, embedder)
        mine(pairs, index, taught_by.negatives)
        judge = judge_for(taught_by.teacher, index, None, lambda c: "")
        assert judge is not None, "the job has no teacher"
        judge.score(pairs)
        for row, pair in zip(rows, pairs, strict=True):
            row |= {"negatives": pair.negatives, "negative_scores": pair.negative_scores,
                    "teacher_scores": pair.teacher_scores}  # fmt: skip
    write_version(folder, rows)
    return folder, len(rows)


def train_and_eval(
    train: TrainConfig, recipe: dict[str, Any], data: Path, out: Path, collection: Any,
    max_steps: int | None,
) -> tuple[dict[str, Any], int]:  # fmt: skip
    """Scores of the final model; a recipe that merges with the base also gets the scores
    of the model before the merge (`unmerged`), one with an adapter those of the model
    before it (`unadapted`), so one training gives every row. A training finished earlier
    in `out` is resumed at its end, not repeated (an adapter changed since is refitted)."""
    raw = deep(train.model_dump(mode="json"), recipe)
    if "merge_with_base" in recipe or "fit" in recipe.get("adapter", {}):
        raw["select"] = None  # a hand-made recipe of the earlier loops: no choosing
    if not any(e.teacher_scores for e in load_examples([data], 1)):
        # The titles have no negatives and no teacher scores: margin-MSE has no term there,
        # so their rows train the rest of the recipe.
        raw["loss"] |= {"distill": "none", "info_nce": True}
    raw |= {"data": [str(data)], "output_dir": str(out), "max_steps": max_steps,
            "epochs": 1000 if max_steps else raw["epochs"], "save_every": 0}  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(TrainConfig.model_validate(raw))
    trainer.resume()
    final = train_to_final(trainer)
    scores: dict[str, Any] = evaluate(Embedder(final), collection)
    for before in (UNMERGED, UNADAPTED):
        if (out / before).is_dir():
            scores[before] = evaluate(Embedder(out / before), collection)
    return scores, trainer.step


def split_queries(collection: Collection, work: Path) -> tuple[Collection, Path]:
    """The collection with every other judged query (the evaluated half), and a query log
    of the rest's texts (JSONL, no ids, no judgements) in `work`."""
    ids = list(collection.queries)  # the file's order
    log = work / "query-log.jsonl"
    log.write_text("".join(json.dumps({"query": collection.queries[q]}) + "\n" for q in ids[1::2]))
    return replace(collection, queries={q: collection.queries[q] for q in ids[::2]}), log


def slug(variant: dict[str, Any]) -> str:
    """A data variant's folder name: variants with the same switches share one dataset."""
    return hashlib.sha256(json.dumps(variant, sort_keys=True).encode()).hexdigest()[:10]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("beir", type=Path, help="BEIR folder: corpus.jsonl, queries.jsonl, qrels")
    parser.add_argument("--job", type=Path, required=True, help="job config (model, prompts)")
    parser.add_argument("--train", type=Path, required=True, help="training config (new recipe)")
    parser.add_argument("--limit", type=int, required=True, help="documents to generate from")
    parser.add_argument("--work", type=Path, required=True, help="folder for everything made")
    parser.add_argument("--steps", type=int, required=True, help="the equal-steps budget")
    parser.add_argument("--rows", nargs="*", help="subset of rows to run (default: all)")
    parser.add_argument("--title-docs", type=int, help="documents of the titles rows (--limit)")
    parser.add_argument("--query-log", action="store_true",
                        help="half the queries: the adapter's log, half: evaluated")  # fmt: skip
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    collection, log = load_collection(args.beir), None
    if args.query_log:
        collection, log = split_queries(collection, args.work)
    train = load_train_config(args.train)
    table = rows(log)
    chosen = args.rows or list(table)
    unknown = sorted(set(chosen) - set(table))
    if unknown:
        parser.error(f"unknown rows: {unknown}; rows are {list(table)}")

    base = job_for(args.job, args.beir, "generate", UNFILTERED, args.work)
    generations = CachingGenerator(
        RequestCache(args.work / "cache"),
        base.generator.model,
        base.seed,
        opener=lambda: open_generator(base.generator, base.seed),
    )
    results_file = args.work / ("results-query-log.json" if log else "results.json")
    results: dict[str, Any] = json.loads(results_file.read_text()) if results_file.is_file() else {}
    if "zero-shot" not in results:
        results["zero-shot"] = {
            "pairs": 0,
            "one epoch": evaluate(Embedder(train.model), collection),
        }
        results_file.write_text(json.dumps(results, indent=2))
    datasets: dict[str, Any] = results.setdefault("datasets", {})
    for name in chosen:
        variant, recipe = table[name]
        titles = variant.get("titles")
        key = ("titles-taught" if titles == "taught" else "titles") if titles else slug(variant)
        if key not in datasets:
            start = time.perf_counter()
            if titles:
                taught_by = load_config(args.job) if titles == "taught" else None
                made = title_pairs(args.beir, args.title_docs or args.limit, args.work, taught_by)
                if made is None:
                    continue
                datasets[key] = {"version": str(made[0]), "pairs": made[1]}
            elif versions(args.work / "data" / key):  # made by an interrupted earlier run
                version = versions(args.work / "data" / key)[-1]
                kept = json.loads((version / "manifest.json").read_text())["counts"]["kept"]
                datasets[key] = {"version": str(version), "pairs": kept}
            else:
                config = job_for(args.job, args.beir, key, variant, args.work)
                summary = run_job(config, generator=generations, limit=args.limit, progress=False)
                datasets[key] = {"version": str(summary.version_dir), "pairs": summary.kept,
                                 "generated": summary.requests_generated}  # fmt: skip
            results_file.write_text(json.dumps(results, indent=2))
            print(f"{name}: data {key}, {datasets[key]['pairs']} pairs "
                  f"in {time.perf_counter() - start:.0f} s")  # fmt: skip
        entry = results.setdefault(name, {})
        entry["pairs"] = datasets[key]["pairs"]
        data = Path(datasets[key]["version"])
        for mode, steps in (("one epoch", None), ("equal steps", args.steps)):
            if mode == "equal steps" and entry.get("one epoch n") == steps:
                entry |= {mode: entry["one epoch"], f"{mode} n": steps}  # the same run
            if mode not in entry:
                out = args.work / "train" / slug({"row": name, "mode": mode})
                scores, taken = train_and_eval(train, recipe, data, out, collection, steps)
                entry |= {mode: scores, f"{mode} n": taken}
            results_file.write_text(json.dumps(results, indent=2))
        print_table(results, args.steps)


def print_table(results: dict[str, Any], steps: int) -> None:
    print(f"\n{'row':<26} {'pairs':>6} | one epoch: steps nDCG@10 R@100 MRR@10 "
          f"| {steps} steps: nDCG@10 R@100 MRR@10")  # fmt: skip
    for name, entry in results.items():
        if name == "datasets":
            continue
        print_row(name, entry, lambda scores: scores)
        for before, label in ((UNADAPTED, "adapter"), (UNMERGED, "merge")):
            if any(before in (entry.get(mode) or {}) for mode in ("one epoch", "equal steps")):
                print_row(f"{name} (before the {label})", entry, lambda s, b=before: s[b])


def print_row(
    name: str, entry: dict[str, Any], pick: Callable[[dict[str, Any]], dict[str, Any]]
) -> None:
    cells = [f"{name:<26} {entry['pairs']:>6}"]
    for mode in ("one epoch", "equal steps"):
        s = entry.get(mode)
        if s is None:
            cells.append(" " * 30)
            continue
        s = pick(s)
        taken = f"{entry.get(f'{mode} n', 0):>5} " if mode == "one epoch" else ""
        cells.append(f"{taken}{s['ndcg@10']:.4f} {s['recall@100']:.4f} {s['mrr@10']:.4f}")
    print(" | ".join(cells))


if __name__ == "__main__":
    main()
