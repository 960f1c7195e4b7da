"""The quality filters, each with crafted pairs that must pass and must fail."""

import pytest

from pipeline.corpus.embedder import embedder_path
from pipeline.corpus.index import CorpusIndex
from pipeline.dataset.records import Candidate, Document
from pipeline.embedding.inference import Embedder
from pipeline.quality.consistency import (
    ConsistencyFilter,
    RoundTripFilter,
    check_consistency,
    check_round_trip,
    embed_queries,
)
from pipeline.quality.heuristics import HeuristicsFilter, check_heuristics, ngram_overlap
from pipeline.quality.language import LanguageFilter, check_languages
from pipeline.quality.length import LengthFilter, allowed_words, check_length

PASSAGES = {
    "danube": "The Danube is the second-longest river in Europe. It rises in the Black Forest "
    "and flows through ten countries, including Austria, Hungary and Romania, before "
    "reaching the Black Sea.",
    "bread": "To bake a sourdough loaf, mix flour, water and salt with an active starter, let "
    "the dough rise for several hours, shape it, and bake it in a very hot oven.",
    "chess": "In the opening, chess players aim to control the centre, develop their knights "
    "and bishops quickly and castle early to keep the king safe.",
    "vaccine": "Vaccines train the immune system by exposing it to a harmless piece or a "
    "weakened form of a pathogen, so that it can respond quickly to a later infection.",
}


def candidate(query: str, doc: str = "danube", language: str = "en", words: int = 5) -> Candidate:
    return Candidate(
        doc=Document(doc, PASSAGES[doc], language="en"),
        task="retrieval",
        query_language=language,
        query_words=words,
        personas=[],
        query=query,
    )


def test_length_compliance_uses_the_tolerance() -> None:
    config = LengthFilter(tolerance=0.5, slack=1)
    assert allowed_words(6, config) == (2, 10)
    assert check_length(candidate("how long is the danube river", words=6), config) is None
    assert check_length(candidate("danube length", words=6), config) is None
    long = candidate("how long is the danube river and which countries does it flow", words=6)
    reject = check_length(long, config)
    assert reject is not None and reject.reason == "length_mismatch" and reject.score == 12
    assert check_length(candidate("danube", words=8), config).reason == "length_mismatch"


def test_language_match_rejects_only_confident_mismatches() -> None:
    config = LanguageFilter(min_confidence=0.5, min_words=3)
    batch = [
        candidate("wie lang ist die Donau in Europa", language="de"),  # right language
        candidate("how long is the Danube in Europe", language="de"),  # English instead
        candidate("Donau Länge", language="en"),  # two words: not judged
        candidate("quelle est la longueur du Danube", language="en"),  # French instead
    ]
    verdicts = check_languages(batch, config, ["en", "de", "fr", "es"])
    assert verdicts[0] is None and verdicts[2] is None
    assert verdicts[1].reason == "wrong_language" and "lingua says en" in verdicts[1].detail
    assert verdicts[3].reason == "wrong_language" and verdicts[3].score >= 0.5
    assert batch[0].scores["language_confidence"] >= 0.5
    # A job whose queries are all English has nothing to tell apart.
    assert check_languages(batch, config, ["en"]) == [None] * 4


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("As an AI, I cannot write that query", "refusal_or_meta"),
        ("I'm sorry, but the passage is unclear", "refusal_or_meta"),
        ("Here is a search query about rivers", "refusal_or_meta"),
        ("Query: danube length", "refusal_or_meta"),
        ("{{ query }}", "placeholder"),
        ("[insert query here]", "placeholder"),
        ("<|im_start|>assistant", "placeholder"),
        ("According to the text, how long is the river?", "passage_dependent"),
        ("what does the passage say about the Black Sea", "passage_dependent"),
        ("Laut dem Text, wie lang ist die Donau?", "passage_dependent"),
        ("rises in the Black Forest and flows through ten countries", "ngram_overlap"),
    ],
)
def test_heuristics_reject(query: str, reason: str) -> None:
    reject = check_heuristics(candidate(query), HeuristicsFilter())
    assert reject is not None and reject.reason == reason, query


@pytest.mark.parametrize(
    "query",
    [
        "how long is the danube river",
        "which countries does the Danube flow through",
        "Danube Black Sea",  # short keyword queries may reuse the passage's words
        "json schema validation in python",  # "json" is a topic, not meta text
        "does the danube reach the black sea",
    ],
)
def test_heuristics_pass(query: str) -> None:
    assert check_heuristics(candidate(query), HeuristicsFilter()) is None


def test_ngram_overlap() -> None:
    passage = ["a", "b", "c", "d", "e", "f"]
    assert ngram_overlap(["a", "b", "c", "d"], passage, 3) == 1.0
    assert ngram_overlap(["a", "b", "x", "d", "e", "f"], passage, 3) == pytest.approx(1 / 4)
    assert ngram_overlap(["a", "b", "c"], passage, 3) == 0.0  # too short to judge


@pytest.fixture(scope="module")
def minilm() -> Embedder:
    return Embedder(embedder_path("all-MiniLM-L6-v2"))


@pytest.fixture(scope="module")
def index(minilm: Embedder) -> CorpusIndex:
    docs = [Document(doc_id, text) for doc_id, text in PASSAGES.items()]
    return CorpusIndex.build(docs, minilm)


def test_consistency_and_round_trip(minilm: Embedder, index: CorpusIndex) -> None:
    on_topic = candidate("which countries does the Danube flow through")
    off_topic = candidate("how to bake sourdough bread at home")  # written for the wrong passage
    batch = [on_topic, off_topic]
    embed_queries(batch, minilm)
    consistency = check_consistency(batch, index, ConsistencyFilter(min_cosine=0.3))
    assert consistency[0] is None and on_topic.scores["consistency"] > 0.5
    assert consistency[1].reason == "low_consistency" and consistency[1].score < 0.3
    trip = check_round_trip(batch, index, RoundTripFilter(top_k=1))
    assert trip[0] is None and on_topic.scores["round_trip_rank"] == 1
    assert trip[1].reason == "round_trip_miss" and off_topic.scores["round_trip_rank"] > 1
