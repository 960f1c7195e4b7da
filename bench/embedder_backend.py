"""The job's embedder on a corpus, by backend: documents a second of `embedder.backend: torch`
(our Embedder, float32) and `vllm` (vLLM's pooling runner, bf16 where the CPU has it)
against sentence-transformers' `SentenceTransformer.encode` on the same model and texts.

Embedding the corpus is most of what a job does per document besides the LLM (37 ms a
document of the scale bench's corpus here, with torch), so the backend decides how long the
first run on a large corpus takes. Prints each backend's documents a second, its ratio
against sentence-transformers, and how far its vectors are from sentence-transformers'
(largest cosine gap of a document with itself, and the share of each query's top 10
documents that both find).

    python bench/embedder_backend.py [--documents 2000] [--queries 200]
"""

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

from scale import documents  # noqa: E402

from pipeline.corpus.embedder import BUNDLED, embedder_path  # noqa: E402
from pipeline.embedding.inference import Embedder  # noqa: E402


def timed(encode: Callable[[list[str]], np.ndarray], texts: list[str]) -> tuple[np.ndarray, float]:
    """(vectors, documents a second), after a warm-up batch (a backend's first call pays
    its one-off set-up, which a corpus of any size pays once)."""
    encode(texts[:64])
    start = time.perf_counter()
    vectors = encode(texts)
    return vectors, len(texts) / (time.perf_counter() - start)


def agreement(vectors: np.ndarray, reference: np.ndarray, queries: int) -> tuple[float, float]:
    """(largest |cos(v, r) - 1| over the documents, mean share of top-10 found by both when
    the first `queries` documents are searched against all)."""
    gap = float(np.abs(np.einsum("ij,ij->i", vectors, reference) - 1).max())
    mine = np.argsort(-(vectors[:queries] @ vectors.T), axis=1)[:, :10]
    theirs = np.argsort(-(reference[:queries] @ reference.T), axis=1)[:, :10]
    shared = [len(set(a) & set(b)) / 10 for a, b in zip(mine, theirs, strict=True)]
    return gap, float(np.mean(shared))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=2000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    from sentence_transformers import SentenceTransformer

    texts = list(documents(args.documents))
    path = embedder_path(BUNDLED)
    model = SentenceTransformer(str(path), device="cpu")
    reference, base = timed(lambda t: model.encode(t, batch_size=64, normalize_embeddings=True),
                            texts)  # fmt: skip
    print(f"sentence-transformers: {base:.1f} documents/s ({args.documents} documents)")
    for backend in ("torch", "vllm"):
        embedder = Embedder(path, backend=backend)
        vectors, rate = timed(embedder.encode_documents, texts)
        gap, top10 = agreement(vectors, reference, args.queries)
        print(f"{backend}: {rate:.1f} documents/s, ratio {rate / base:.2f} against "
              f"sentence-transformers; largest cosine gap {gap:.1e}, top-10 shared "
              f"{top10:.3f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
