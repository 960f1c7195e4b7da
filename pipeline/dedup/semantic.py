"""Semantic dedup: a query whose embedding is within `threshold` cosine of a kept query
says the same thing in other words (a paraphrase that MinHash cannot see)."""

import numpy as np

CHUNK = 65_536  # kept vectors searched at once: a batch's table is at most batch x CHUNK


class SemanticDuplicates:
    """Unit vectors of kept queries; `check` keeps the first of each close group.

    The kept vectors are held in blocks of about CHUNK rows, so a batch is compared block by
    block (memory bounded however many queries were kept) and a batch's new vectors are
    appended without copying the earlier ones."""

    def __init__(self, threshold: float, dimension: int) -> None:
        self.threshold = threshold
        self.blocks: list[np.ndarray] = []  # full blocks of about CHUNK rows
        self.tail: list[np.ndarray] = []  # the parts added since the last full block
        self.keys: list[str] = []

    def add(self, vectors: np.ndarray, keys: list[str]) -> None:
        """Index vectors as already kept (earlier versions)."""
        if len(keys):
            self.tail.append(vectors.astype(np.float32))
            self.keys.extend(keys)
        if sum(len(part) for part in self.tail) >= CHUNK:
            self.blocks.append(np.concatenate(self.tail))
            self.tail = []

    def nearest(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each vector's most similar kept vector: (cosine, its index in `keys`; the first
        of equals), or (-1, -1) while none is kept."""
        best = np.full(len(vectors), -1.0, dtype=np.float32)
        where = np.full(len(vectors), -1, dtype=np.int64)
        offset = 0
        for block in [*self.blocks, *self.tail]:
            table = vectors @ block.T
            column = table.argmax(axis=1)
            score = table[np.arange(len(vectors)), column]
            better = (score > best) | (where < 0)
            best[better], where[better] = score[better], column[better] + offset
            offset += len(block)
        return best, where

    def check(self, vectors: np.ndarray, keys: list[str]) -> list[tuple[str, float] | None]:
        """For each vector: (key of the kept query it repeats, cosine), or None if new
        (then it is kept, so later vectors of the same batch are checked against it)."""
        earlier, matches = self.nearest(vectors)
        accepted: list[int] = []
        found: list[tuple[str, float] | None] = []
        for i in range(len(keys)):
            best, match = -1.0, ""
            if matches[i] >= 0:
                best, match = float(earlier[i]), self.keys[matches[i]]
            if accepted:
                within = vectors[accepted] @ vectors[i]
                j = int(within.argmax())
                if within[j] > best:
                    best, match = float(within[j]), keys[accepted[j]]
            if best >= self.threshold:
                found.append((match, best))
            else:
                accepted.append(i)
                found.append(None)
        self.add(vectors[accepted], [keys[i] for i in accepted])
        return found
