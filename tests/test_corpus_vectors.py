"""The dataset's corpus vectors (pipeline.corpus.vectors): a rerun and a refresh embed only
the documents no earlier run embedded; vectors of another embedder are refused with one
line before anything is written; a kill between writing rows and naming them loses
nothing that was named."""

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline.config.job import load_config
from pipeline.corpus.columns import TEXTS, CorpusColumns
from pipeline.corpus.vectors import FOLDER, VectorStore
from pipeline.embedding.inference import Embedder
from pipeline.models.tiny_encoder import build_tiny_encoder
from pipeline.run.job import run_job
from tests.conftest import SAMPLE_CORPUS, cli, write_jsonl

IDENTITY = {"embedder": "e", "backend": "torch", "fingerprint": "f"}
NO_DEDUP = {"exact": False, "near": {"enabled": False}, "semantic": {"enabled": False}}


@pytest.fixture
def embedded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every text the embedder is asked for as a document, in order: a spy that records
    and then calls the real method."""
    seen: list[str] = []
    real = Embedder.encode_documents

    def spy(self: Embedder, texts: list[str], *args: Any, **kwargs: Any) -> np.ndarray:
        seen.extend(texts)
        return real(self, texts, *args, **kwargs)

    monkeypatch.setattr(Embedder, "encode_documents", spy)
    return seen


def test_reruns_and_refreshes_embed_only_what_no_run_embedded(
    generator: Any,
    job_file: Callable[..., Path],
    tiny_encoder: Path,
    tmp_path: Path,
    embedded: list[str],
) -> None:
    rows = [json.loads(line) for line in SAMPLE_CORPUS.read_text().splitlines()]
    corpus = write_jsonl(tmp_path / "corpus.jsonl", rows[:8])
    texts = {row["text"] for row in rows[:10]} | {rows[3]["text"] + " Revised in 2026."}

    def run(refresh: bool = False, embedder: Path = tiny_encoder, **job: Any) -> Any:
        embedded.clear()
        path = job_file(input={"path": str(corpus), "batch_size": 16}, dedup=NO_DEDUP,
                        embedder={"model": str(embedder)}, **job)  # fmt: skip
        return run_job(load_config(path), generator=generator, refresh=refresh, progress=True)

    first = run()
    root = first.version_dir.parent
    assert sorted(t for t in embedded if t in texts) == sorted(r["text"] for r in rows[:8])
    store = root / FOLDER
    assert len((store / "keys.txt").read_text().splitlines()) == 8
    # The corpus state's ids and texts, written once (pipeline.corpus.columns).
    (state,) = store.glob("state-8-*")
    columns = CorpusColumns.open(state / TEXTS)
    assert list(columns.doc_ids) == [r["id"] for r in rows[:8]]
    assert list(columns.texts) == [r["text"] for r in rows[:8]]
    written = (state / TEXTS).stat()

    # Another config over the same corpus (a new version of all 8 documents), the embedder
    # copied to another folder (a rebuilt environment): none embedded.
    moved = Path(shutil.copytree(tiny_encoder, tmp_path / "moved-encoder"))
    second = run(seed=11, embedder=moved)
    assert second.version_dir.name == "v0002" and second.documents == 8
    assert not [t for t in embedded if t in texts]
    kept = (state / TEXTS).stat()  # the same corpus state: its file not written again
    assert (kept.st_ino, kept.st_mtime_ns) == (written.st_ino, written.st_mtime_ns)

    # A refresh after 1 changed and 2 new documents: those 3 texts embedded, no other.
    changed = dict(rows[3], text=rows[3]["text"] + " Revised in 2026.")
    write_jsonl(corpus, [*rows[:3], changed, *rows[4:10]])
    third = run(refresh=True, seed=11)
    assert third.documents == 3
    fresh = sorted([changed["text"], rows[8]["text"], rows[9]["text"]])
    assert sorted(t for t in embedded if t in texts) == fresh
    (grown,) = store.glob("state-*")  # one state kept: the refreshed corpus's
    refreshed = [*rows[:3], changed, *rows[4:10]]
    assert list(CorpusColumns.open(grown / TEXTS).texts) == [r["text"] for r in refreshed]
    # Its 4th document's vector is the file's 9th row: the state keeps its own order.
    ordered = np.fromfile(grown / "vectors.f32", dtype=np.float32).reshape(10, -1)
    again = Embedder(tiny_encoder).encode_documents([r["text"] for r in refreshed])
    np.testing.assert_allclose(ordered, again, atol=1e-4)
    keys = (store / "keys.txt").read_text().splitlines()
    assert len(keys) == 11  # 8 + 3: the old text of the changed document stays stored
    # The stored rows are the embedder's vectors of the texts, in the order embedded.
    stored = np.fromfile(store / "vectors.f32", dtype=np.float32).reshape(11, -1)
    again = Embedder(tiny_encoder).encode_documents([r["text"] for r in rows[:8]])
    np.testing.assert_allclose(stored[:8], again, atol=1e-4)

    # Another embedder: refused with one line before anything is written (the dataset's
    # query dedup state refuses it too; switched off here so the vectors' check is seen).
    other = build_tiny_encoder(tmp_path / "other-encoder", seed=1)
    before = sorted(p.name for p in root.iterdir())
    path = job_file(input={"path": str(corpus), "batch_size": 16}, seed=12,
                    embedder={"model": str(other)}, dedup=NO_DEDUP)  # fmt: skip
    refused = cli("run", path)
    assert refused.exit_code == 2, refused.output
    assert refused.stderr.strip().count("\n") == 0
    assert "corpus vectors were made with embedder" in refused.stderr
    assert str(other) in refused.stderr
    assert sorted(p.name for p in root.iterdir()) == before
    assert len((store / "keys.txt").read_text().splitlines()) == 11


def test_a_kill_between_rows_and_keys_loses_no_named_vector(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    first = rng.normal(size=(3, 4)).astype(np.float32)
    store = VectorStore(tmp_path, IDENTITY, 4)
    store.add(["a", "b", "c"], first)
    # A kill after two more rows were written, before the key list named them.
    with open(tmp_path / FOLDER / "vectors.f32", "ab") as out:
        out.write(rng.normal(size=(2, 4)).astype(np.float32).tobytes())
    again = VectorStore(tmp_path, IDENTITY, 4)
    assert again.missing(["c", "d", "a", "d"]) == ["d"]
    second = rng.normal(size=(1, 4)).astype(np.float32)
    again.add(["d"], second)
    reread = VectorStore(tmp_path, IDENTITY, 4)
    np.testing.assert_array_equal(reread.vectors(["d", "a", "c"]),
                                  np.stack([second[0], first[0], first[2]]))  # fmt: skip
    assert (tmp_path / FOLDER / "vectors.f32").stat().st_size == 4 * 4 * 4


def test_a_job_past_exact_below_makes_the_exact_jobs_pairs_and_grows_its_state(
    generator: Any, job_file: Callable[..., Path], tmp_path: Path
) -> None:
    """The same job with `embedder.exact_below: 0` (searched as a large corpus is: the
    graph, the round trip within each query's top k, the fused teacher on candidates) makes
    the pairs, negatives and teacher scores of the exact job on a corpus smaller than the
    candidates; its refresh after new documents grows the stored graph."""
    rows = [json.loads(line) for line in SAMPLE_CORPUS.read_text().splitlines()]
    corpus = write_jsonl(tmp_path / "corpus.jsonl", rows[:12])
    off = ("length", "language", "heuristics", "consistency")
    filters = {name: {"enabled": False} for name in off}

    def run(name: str, exact_below: int, refresh: bool = False) -> Any:
        path = job_file(input={"path": str(corpus), "batch_size": 16}, dedup=NO_DEDUP,
                        filters={**filters, "round_trip": {"top_k": 6}},
                        teacher={"kind": "fused", "scale": "rank"},
                        embedder={"exact_below": exact_below},
                        output={"dir": str(tmp_path / name), "shard_size": 100})  # fmt: skip
        return run_job(load_config(path), generator=generator, refresh=refresh, progress=False)

    exact, graph = run("exact", 100_000), run("graph", 0)
    got, want = (pq.read_table(v.version_dir / "data").to_pylist() for v in (graph, exact))
    assert len(want) >= 4 and any(row["negatives"] for row in want)
    floats = ("teacher_scores", "negative_scores")
    scores = (
        [[row.pop(c) for c in floats] for row in got],
        [[row.pop(c) for c in floats] for row in want],
    )
    assert got == want  # the same pairs, in order, with the same mined negatives
    for mine, theirs in zip(*scores, strict=True):
        assert all(np.allclose(a, b, atol=1e-5) for a, b in zip(mine, theirs, strict=True))
    rejects = pq.read_table(exact.version_dir / "rejects").to_pylist()
    assert any(r["reason"] == "round_trip_miss" for r in rejects)  # the round trip decided
    states = tmp_path / "graph" / "t" / FOLDER
    first = next(states.glob("state-12-*"))
    assert {p.name for p in first.iterdir()} == {"graph.usearch", "bm25-english", "texts.arrow"}
    write_jsonl(corpus, rows[:14])
    refreshed = run("graph", 0, refresh=True)
    assert refreshed.documents == 2
    assert [p.name[:9] for p in states.glob("state-*")] == ["state-14-"]
    assert (next(states.glob("state-14-*")) / "graph.usearch").is_file()
