"""What each Ray actor pays for the corpus index: its private memory (USS) once it has used
the index as the job's stages do, with the index as the Ray executor sends it (vectors in
the node's object store, ids and texts as the corpus state's memory-mapped columns, BM25
memory-mapped from the state) against the baseline of the same index with the Python lists
of ids, texts and keys it carried before (unpickled into every actor).

The corpus is N documents made as bench/scale.py makes them (real prose, seeded); the
vectors are seeded random unit vectors (what is measured is where the bytes live, not
search quality). Each actor searches the index (the exact scan reads every vector), reads
the texts and rows of what it found (mining, the teacher's pool) and scores BM25 against
the whole corpus (the teacher). Prints per actor USS and the node's object store use, then
`actor private memory ratio R` (columns / lists; lower is better).

With `--nodes K` (K > 1) the bench starts a local cluster of K Ray nodes (`ray.cluster_utils`:
each node its own raylet and object store, as separate machines have), places the actors
round-robin on them and prints, per node, the bytes and objects in its object store: the
index put once by the driver is copied to each node that uses it, once, and the actors
there read that copy.

    python bench/ray_index.py [--documents 100000] [--actors 4] [--nodes 1]
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from scale import write_corpus  # noqa: E402

from pipeline.config.input import InputConfig  # noqa: E402
from pipeline.corpus.columns import TEXTS, CorpusColumns, write_columns  # noqa: E402
from pipeline.corpus.index import CorpusIndex  # noqa: E402
from pipeline.corpus.reader import read_batches  # noqa: E402
from pipeline.teacher.lexical import Bm25Index  # noqa: E402

DIMENSION = 384
STEMMER = "english"


class IndexUser:
    """An actor that uses the index as a job's stages on an engine actor do."""

    def __init__(self, index: CorpusIndex, *carried: Any) -> None:
        self.index = index
        self.carried = carried  # the baseline's lists, unpickled here as they were before

    def work(self, queries: np.ndarray, words: list[str]) -> dict[str, Any]:
        import ray  # the driver's Ray starts in `measure`

        index = self.index
        rows, _ = index.top(queries, 30)
        found = [index.texts[r] for r in rows.ravel()]
        assert all(index.rows[index.doc_ids[r]] <= r for r in rows.ravel())
        bm25 = Bm25Index(index.texts, STEMMER, index.state / f"bm25-{STEMMER}")
        bm25.scores(words)
        info = psutil.Process().memory_full_info()
        return {"pid": os.getpid(), "uss": info.uss, "pss": info.pss, "found": len(found),
                "node": ray.get_runtime_context().get_node_id()}  # fmt: skip


def state(documents: int, folder: Path) -> CorpusIndex:
    """The corpus state a job would leave: columns, vectors file, BM25."""
    corpus = folder / "corpus.jsonl"
    write_corpus(corpus, documents)
    config = InputConfig(path=corpus, batch_size=8192)
    write_columns(folder / TEXTS, (docs for docs, _ in read_batches(config)))
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((documents, DIMENSION), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors.tofile(folder / "vectors.f32")
    table = np.memmap(folder / "vectors.f32", dtype=np.float32, mode="r",
                      shape=(documents, DIMENSION))  # fmt: skip
    index = CorpusIndex(CorpusColumns.open(folder / TEXTS), table, folder)
    Bm25Index(index.texts, STEMMER, folder / f"bm25-{STEMMER}")  # built and saved once
    return index


def measure(index: CorpusIndex, actors: int, baseline: bool, nodes: int) -> list[dict[str, Any]]:
    import ray
    from ray.cluster_utils import Cluster
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    cluster = None
    if nodes > 1:  # one CPU and a 1 GiB object store a node; the driver joins the head
        cluster = Cluster(initialize_head=True, head_node_args={"object_store_memory": 2**30})
        for _ in range(nodes - 1):
            cluster.add_node(object_store_memory=2**30)
        ray.init(address=cluster.address, logging_level="ERROR")
    else:
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR")
    try:
        carried = (list(index.doc_ids), list(index.texts), list(index.keys)) if baseline else ()
        shared = ray.put(index)
        extra = [ray.put(c) for c in carried]
        node_ids = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
        users = [
            ray.remote(IndexUser)
            .options(
                num_cpus=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(
                    node_ids[i % len(node_ids)], soft=False
                ),
            )
            .remote(shared, *extra)
            for i in range(actors)
        ]
        rng = np.random.default_rng(1)
        queries = rng.standard_normal((64, DIMENSION), dtype=np.float32)
        words = ["photosynthesis energy", "river delta sediment", "market prices"]
        done = ray.get([u.work.remote(queries, words) for u in users])
        for node, used, objects in store_use():
            print(f"  node {node[:8]}: object store {used / 2**20:.0f} MiB, {objects} objects",
                  flush=True)  # fmt: skip
        return done
    finally:
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()


def store_use() -> list[tuple[str, int, int]]:
    """Each live node's object store: its id, bytes in use and objects it holds (asked of
    the node's own raylet: Ray's public API sums the nodes)."""
    import ray
    from ray._private.internal_api import node_stats

    found = []
    for node in ray.nodes():
        if node["Alive"]:
            stats = node_stats(
                node["NodeManagerAddress"], node["NodeManagerPort"], include_memory_info=False
            ).store_stats
            found.append((node["NodeID"], stats.object_store_bytes_used, stats.num_local_objects))
    return sorted(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--actors", type=int, default=4)
    parser.add_argument("--nodes", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ray-index-") as tmp:
        index = state(args.documents, Path(tmp))
        text_bytes = index.columns.table.column("text").nbytes
        print(f"{args.documents} documents, texts {text_bytes / 2**20:.0f} MiB, "
              f"vectors {index.vectors.nbytes / 2**20:.0f} MiB", flush=True)  # fmt: skip
        results = {}
        for name, baseline in (("lists", True), ("columns", False)):
            print(f"{name}:", flush=True)
            results[name] = measure(index, args.actors, baseline, args.nodes)
            for actor in results[name]:
                print(f"  actor {actor['pid']} on node {actor['node'][:8]}: "
                      f"USS {actor['uss'] / 2**20:.0f} MiB, PSS {actor['pss'] / 2**20:.0f} MiB",
                      flush=True)  # fmt: skip
        mean = {k: np.mean([a["uss"] for a in v]) for k, v in results.items()}
        print(
            f"actor private memory ratio {mean['columns'] / mean['lists']:.2f} "
            f"({mean['columns'] / 2**20:.0f} MiB vs {mean['lists'] / 2**20:.0f} MiB)"
        )


if __name__ == "__main__":
    main()
