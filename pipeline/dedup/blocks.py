"""Rows of one width appended batch by batch into fixed blocks: what dedup keeps per kept
query (a MinHash digest, an embedding) without a Python object per row and without copying
the earlier rows when more come; a block's untouched tail costs address space, not memory.
"""

from collections.abc import Iterator

import numpy as np

BLOCK = 65_536  # rows per block: a batch compared block by block makes at most batch x BLOCK


class RowBlocks:
    """A growing table of `width` columns of `dtype`, held in blocks of `block` rows."""

    def __init__(self, width: int, dtype: type, block: int = BLOCK) -> None:
        self.width = width
        self.dtype = dtype
        self.block = block
        self.blocks: list[np.ndarray] = []
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, row: int) -> np.ndarray:
        return self.blocks[row // self.block][row % self.block]

    def append(self, rows: np.ndarray) -> None:
        """Copy `rows` (n x width) in after the last row."""
        done = 0
        while done < len(rows):
            at = self.count % self.block
            if at == 0 and self.count // self.block == len(self.blocks):
                self.blocks.append(np.empty((self.block, self.width), self.dtype))
            take = min(self.block - at, len(rows) - done)
            self.blocks[-1][at : at + take] = rows[done : done + take]
            done += take
            self.count += take

    def parts(self) -> Iterator[np.ndarray]:
        """The filled part of each block, in row order (views, not copies)."""
        for number, block in enumerate(self.blocks):
            yield block[: min(self.block, self.count - number * self.block)]
