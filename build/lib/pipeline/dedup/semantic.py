"""Semantic dedup: a query whose embedding is within `threshold` cosine of a kept query
says the same thing in other words (a paraphrase that MinHash cannot see)."""

import numpy as np


class SemanticDuplicates:
    """Unit vectors of kept queries; `check` keeps the first of each close group."""

    def __init__(self, threshold: float, dimension: int) -> None:
        self.threshold = threshold
        self.parts: list[np.ndarray] = [np.zeros((0, dimension), dtype=np.float32)]
        self.keys: list[str] = []

    @property
    def vectors(self) -> np.ndarray:
        if len(self.parts) > 1:
            self.parts = [np.concatenate(self.parts)]
        return self.parts[0]

    def add(self, vectors: np.ndarray, keys: list[str]) -> None:
        """Index vectors as already kept (earlier versions)."""
        self.parts.append(vectors.astype(np.float32))
        self.keys.extend(keys)

    def check(self, vectors: np.ndarray, keys: list[str]) -> list[tuple[str, float] | None]:
        """For each vector: (key of the kept query it repeats, cosine), or None if new
        (then it is kept, so later vectors of the same batch are checked against it)."""
        earlier = vectors @ self.vectors.T if len(self.keys) else None
        accepted: list[int] = []
        found: list[tuple[str, float] | None] = []
        for i in range(len(keys)):
            best, match = -1.0, ""
            if earlier is not None and earlier.shape[1]:
                j = int(earlier[i].argmax())
                best, match = float(earlier[i, j]), self.keys[j]
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
