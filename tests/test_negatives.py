"""Hard-negative mining: negatives come from the corpus ranking, never the positive or its
twin, and the false-negative guard drops a planted paraphrase of the positive."""

from pipeline.config.job import NegativesConfig
from pipeline.corpus.embedder import embedder_path
from pipeline.corpus.index import CorpusIndex
from pipeline.dataset.records import Candidate, Document
from pipeline.embedding.inference import Embedder
from pipeline.negatives.mining import mine
from pipeline.quality.consistency import embed_queries

POSITIVE = (
    "Vaccines train the immune system by exposing it to a harmless piece or a weakened form "
    "of a pathogen, so that it can respond quickly to a later infection."
)
CORPUS = {
    "pos": POSITIVE,
    "twin": POSITIVE,  # an exact copy under another id
    "paraphrase": "A vaccine teaches the body's immune defences with a harmless fragment or a "
    "weakened version of a germ, so they react fast when a real infection comes later.",
    "antibodies": "Antibodies are proteins made by B cells that bind to specific antigens on "
    "viruses and bacteria and mark them for destruction by the immune system.",
    "herd": "Herd immunity arises when enough of a population is immune to an infectious "
    "disease that its spread from person to person becomes unlikely.",
    "antibiotics": "Antibiotics kill bacteria or stop their growth, but they have no effect on "
    "viruses such as those that cause colds and influenza.",
    "bread": "To bake a sourdough loaf, mix flour, water and salt with an active starter and "
    "let the dough rise for several hours.",
    "chess": "In the opening, chess players aim to control the centre and develop their pieces.",
}


def test_planted_false_negative_is_not_mined() -> None:
    embedder = Embedder(embedder_path("all-MiniLM-L6-v2"))
    index = CorpusIndex.build([Document(k, v) for k, v in CORPUS.items()], embedder)
    pair = Candidate(
        Document("pos", POSITIVE),
        "retrieval",
        "en",
        6,
        [],
        query="how vaccines work",
    )
    embed_queries([pair], embedder)
    scores = dict(zip(index.doc_ids, index.scores(pair.vector[None])[0].tolist(), strict=True))
    assert scores["paraphrase"] > 0.95 * scores["pos"]  # the plant is a real false negative

    config = NegativesConfig(count=3, rank_start=0, rank_end=8)  # default guard: 0.95
    assert mine([pair], index, config) == 0
    assert CORPUS["paraphrase"] not in pair.negatives and POSITIVE not in pair.negatives
    assert len(pair.negatives) == 3
    assert pair.negatives[0] in (CORPUS["antibodies"], CORPUS["herd"], CORPUS["antibiotics"])
    assert pair.negative_scores == sorted(pair.negative_scores, reverse=True)
    assert all(s <= 0.95 * scores["pos"] for s in pair.negative_scores)

    # Without the guard the paraphrase would be the first negative: the guard is what stops it.
    unguarded = NegativesConfig(count=1, rank_start=0, rank_end=8, max_score_ratio=1.0)
    mine([pair], index, unguarded)
    assert pair.negatives == [CORPUS["paraphrase"]]

    # A window that starts past the candidates leaves the pair without negatives (kept).
    assert mine([pair], index, NegativesConfig(count=1, rank_start=8, rank_end=9)) == 1
