"""Near-duplicate detection with MinHash-LSH from rensa (Rust), not hand-written hashing.

Candidates from the LSH bands are verified with the MinHash Jaccard estimate (the share of
equal digest values, as rensa's `jaccard`), so the threshold means what it says. The first
text of a group is kept; later ones are reported with the key of the text they duplicate.
Kept texts are held as their digests' rows (pipeline.dedup.blocks), 4 bytes a permutation,
not as RMinHash objects (about twice that).
"""

import numpy as np
from rensa import RMinHash, RMinHashLSH

from pipeline.dedup.blocks import RowBlocks
from pipeline.dedup.text import shingles

SEED = 1729  # fixed: digests of earlier versions are recomputed from text and must match


def lsh_bands(threshold: float, num_perm: int, recall: float = 0.9) -> int:
    """Bands for the LSH index: the fewest bands that still make a pair at the threshold a
    candidate with probability `recall` (0.95 at 0.8 with 128 permutations, 0.99 at 0.85).
    Every band costs a hash-table insert per text, the main cost of the stage; candidates
    are verified after, so false candidates only cost a comparison."""
    for bands in sorted(b for b in range(1, num_perm + 1) if num_perm % b == 0):
        rows = num_perm // bands
        if 1 - (1 - threshold**rows) ** bands >= recall:
            return bands
    return num_perm


class NearDuplicates:
    """An LSH index of kept texts; `check` keeps the first of each near-duplicate group."""

    def __init__(self, threshold: float, num_perm: int, shingle: int) -> None:
        self.threshold = threshold
        self.num_perm = num_perm
        self.shingle = shingle
        self.lsh = RMinHashLSH(threshold, num_perm, lsh_bands(threshold, num_perm))
        self.kept = RowBlocks(num_perm, np.uint32)  # digests, by LSH key
        self.keys: list[str] = []

    def _hashes(self, normalized: list[str]) -> list[RMinHash]:
        sets = [shingles(text, self.shingle) for text in normalized]
        return RMinHash.from_token_sets(sets, self.num_perm, SEED)

    def add(self, normalized: list[str], keys: list[str]) -> None:
        """Index texts as already kept (earlier versions), without checking them."""
        for minhash, key in zip(self._hashes(normalized), keys, strict=True):
            self._insert(minhash, np.asarray(minhash.digest(), np.uint32), key)

    def check(self, normalized: list[str], keys: list[str]) -> list[tuple[str, float] | None]:
        """For each text: (key of the kept text it duplicates, estimated Jaccard), or None
        when it is new, in which case it is indexed as kept."""
        found: list[tuple[str, float] | None] = []
        for minhash, key in zip(self._hashes(normalized), keys, strict=True):
            digest = np.asarray(minhash.digest(), np.uint32)
            best = max(
                ((self._jaccard(i, digest), i) for i in self.lsh.query(minhash)),
                default=(0.0, -1),
            )
            if best[0] >= self.threshold:
                found.append((self.keys[best[1]], best[0]))
            else:
                self._insert(minhash, digest, key)
                found.append(None)
        return found

    def _jaccard(self, row: int, digest: np.ndarray) -> float:
        return np.count_nonzero(self.kept[row] == digest) / self.num_perm

    def _insert(self, minhash: RMinHash, digest: np.ndarray, key: str) -> None:
        self.lsh.insert(len(self.kept), minhash)
        self.kept.append(digest[None])
        self.keys.append(key)
