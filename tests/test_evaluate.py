"""Retrieval metrics against pytrec_eval, and `embsynth eval` / `embsynth embed` end to end."""

import json
import random
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import pytrec_eval

from pipeline.embedding.data import INSTRUCTION
from pipeline.embedding.evaluate import metrics, search
from pipeline.embedding.inference import Embedder
from pipeline.embedding.model import EmbeddingModel
from pipeline.embedding.save import export_model
from tests.conftest import cli, write_jsonl


def random_case(seed: int) -> tuple[dict, dict]:
    rng = random.Random(seed)
    docs = [f"d{i}" for i in range(150)]
    qrels, run = {}, {}
    for q in range(20):
        judged = rng.sample(docs, rng.randint(1, 12))
        qrels[f"q{q}"] = {d: rng.choice([0, 1, 2, 3, 4]) for d in judged}
        qrels[f"q{q}"][judged[0]] = rng.randint(1, 4)  # at least one relevant
        run[f"q{q}"] = {d: rng.random() for d in rng.sample(docs, 100)}
    return qrels, run


def tied(run: dict) -> dict:
    """The run with scores rounded to one decimal: many ties, broken as trec_eval does."""
    return {q: {d: round(v, 1) for d, v in docs.items()} for q, docs in run.items()}


@pytest.mark.parametrize("seed", [0, 1, 2, "tied"])
def test_metrics_match_pytrec_eval(seed: int | str) -> None:
    qrels, run = random_case(3) if seed == "tied" else random_case(int(seed))
    if seed == "tied":
        run = tied(run)
    ours = metrics(qrels, run)
    measures = {"ndcg_cut.10", "recall.100"}
    reference = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    top10 = {
        q: dict(sorted(d.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)[:10])
        for q, d in run.items()
    }
    mrr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
    assert ours["ndcg@10"] == pytest.approx(np.mean([r["ndcg_cut_10"] for r in reference.values()]))
    assert ours["recall@100"] == pytest.approx(
        np.mean([r["recall_100"] for r in reference.values()])
    )
    assert ours["mrr@10"] == pytest.approx(np.mean([r["recip_rank"] for r in mrr.values()]))


def test_search_returns_the_top_k_by_cosine() -> None:
    queries = np.array([[1.0, 0.0]])
    docs = np.array([[0.0, 1.0], [1.0, 0.0], [0.6, 0.8]])
    run = search(queries, docs, ["q"], ["a", "b", "c"], k=2)
    assert run == {"q": {"b": pytest.approx(1.0), "c": pytest.approx(0.6)}}


@pytest.fixture(scope="module")
def saved_encoder(tiny_encoder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = EmbeddingModel(tiny_encoder).eval()
    return export_model(model, tmp_path_factory.mktemp("saved") / "model", INSTRUCTION)


def beir(root: Path) -> Path:
    """A small BEIR-layout collection: 30 documents, 5 judged queries."""
    (root / "qrels").mkdir(parents=True)
    corpus = [
        {"_id": f"d{i}", "title": f"Topic {i}", "text": f"Passage about subject {i} " * 3}
        for i in range(30)
    ]
    queries = [{"_id": f"q{i}", "text": f"subject {i}"} for i in range(6)]
    write_jsonl(root / "corpus.jsonl", corpus)
    write_jsonl(root / "queries.jsonl", queries)
    lines = ["query-id\tcorpus-id\tscore"] + [f"q{i}\td{i}\t1" for i in range(5)]
    (root / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n")
    return root


def test_eval_command_reports_the_metrics(saved_encoder: Path, tmp_path: Path) -> None:
    from pipeline.embedding.evaluate import evaluate, load_collection

    root = beir(tmp_path / "beir")
    done = cli("eval", str(saved_encoder), str(root))
    assert done.exit_code == 0, done.stderr
    scores = json.loads(done.stdout.strip().splitlines()[-1])
    assert scores["queries"] == 5  # q5 has no judgements and is left out
    expected = evaluate(Embedder(saved_encoder), load_collection(root))
    for name in ("ndcg@10", "recall@100", "mrr@10"):
        assert 0 < scores[name] <= 1
        assert scores[name] == pytest.approx(expected[name], abs=1e-4)


def test_eval_and_embed_bad_input(saved_encoder: Path, tmp_path: Path) -> None:
    root = beir(tmp_path / "beir")
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq0\td0\thigh\n")
    done = cli("eval", str(saved_encoder), str(root))
    assert done.exit_code == 2 and "test.tsv:2: score 'high' is not a number" in done.stderr
    (root / "qrels" / "test.tsv").unlink()
    done = cli("eval", str(saved_encoder), str(root))
    assert done.exit_code == 2
    assert done.stderr.strip().count("\n") == 0 and "qrels/test.tsv not found" in done.stderr
    done = cli("eval", str(tmp_path / "no-model"), str(beir(tmp_path / "complete")))
    assert done.exit_code == 2 and "model not found" in done.stderr
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "body": "x"}])
    done = cli("embed", str(saved_encoder), str(source), str(tmp_path / "v.parquet"))
    assert done.exit_code == 2 and "no field 'text'" in done.stderr
    assert not (tmp_path / "v.parquet").exists()
    good = write_jsonl(tmp_path / "ok.jsonl", [{"id": "a", "text": "x"}])
    done = cli("embed", str(saved_encoder), str(good), str(tmp_path / "no" / "v.parquet"))
    assert done.exit_code == 2 and "output folder not found" in done.stderr
    done = cli("embed", str(saved_encoder), str(good), str(tmp_path / "v.parquet"), "--dim", "999")
    assert done.exit_code == 2 and "dim 999 is outside 1..64" in done.stderr
    assert not (tmp_path / "v.parquet").exists()


def test_embed_command_writes_the_vectors(saved_encoder: Path, tmp_path: Path) -> None:
    rows = [{"id": "a", "text": "first text"}, {"id": "b", "text": ""}, {"id": "c", "text": "c"}]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "vectors.parquet"
    done = cli("embed", str(saved_encoder), str(source), str(out), "--kind", "query", "--dim", "16")
    assert done.exit_code == 0, done.stderr
    assert "2 vectors" in done.stdout and "1 empty" in done.stdout
    table = pq.read_table(out).to_pydict()
    assert table["id"] == ["a", "c"]
    expected = Embedder(saved_encoder).encode_queries(["first text", "c"], dim=16)
    np.testing.assert_allclose(np.array(table["vector"]), expected, atol=1e-5)
