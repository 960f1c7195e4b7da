"""What the adapter stage teaches, whichever fit learns it (pipeline.adapt.linear or
pipeline.adapt.encoder): its own module so the stage and both fits share it without a
circle."""

from dataclasses import dataclass

import numpy as np

from pipeline.corpus.index import CorpusIndex


@dataclass(frozen=True)
class Lesson:
    """What the adapter learns from: the model's vectors of every corpus document and of
    each query (the given ones, the logged ones, then the corpus crops), and the teacher's
    scores of every document for each query."""

    index: CorpusIndex
    texts: list[str]
    vectors: np.ndarray
    targets: np.ndarray
    logged: int  # of the texts, how many came from the query files
