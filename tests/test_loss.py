"""InfoNCE against a small case computed by hand: which terms enter each denominator."""

import math

import pytest
import torch

from pipeline.embedding.loss import LossTerms, info_nce, margin_mse, matryoshka

TAU = 0.5


def unit(degrees: float) -> list[float]:
    return [math.cos(math.radians(degrees)), math.sin(math.radians(degrees))]


def s(a: float, b: float) -> float:
    """Cosine of two unit vectors at angles a and b."""
    return math.cos(math.radians(a - b))


# q0 at 0 deg, q1 at 80; positives p0 at 30 and p1 at 90; hard negatives n0 (60) and n1 (5)
# belong to q0, n2 (at 90, the same text as p1) to q1.
QUERIES = torch.tensor([unit(0), unit(80)])
DOCUMENTS = torch.tensor([unit(30), unit(90), unit(60), unit(5), unit(90)])
OWNERS = torch.tensor([0, 1, 0, 0, 1])
KEYS = ["p0", "p1", "n0", "n1", "p1"]


def nll(positive: float, others: list[float]) -> float:
    terms = [positive, *others]
    return -math.log(math.exp(positive / TAU) / sum(math.exp(t / TAU) for t in terms))


def loss(**switches: bool) -> float:
    terms = LossTerms(temperature=TAU, margin=0.1, **switches)
    return float(info_nce(QUERIES, DOCUMENTS, OWNERS, KEYS, terms))


def test_all_terms_with_the_false_negative_mask() -> None:
    # q0: n1 scores cos5 = 0.996 > cos30 + 0.1 = 0.966, so it is masked as a likely positive.
    row0 = nll(s(0, 30), [s(0, 90), s(0, 60), s(0, 90), s(0, 80), s(30, 90)])
    # q1: n2 is the same text as its positive p1, so it is masked; q0's n1 is not.
    row1 = nll(s(80, 90), [s(80, 30), s(80, 60), s(80, 5), s(80, 0), s(90, 30)])
    assert loss() == pytest.approx((row0 + row1) / 2, rel=1e-6)


def test_switching_terms_off() -> None:
    # Without in-batch documents a query keeps only its positive and its own negatives.
    row0 = nll(s(0, 30), [s(0, 60)])
    row1 = nll(s(80, 90), [])
    assert loss(in_batch=False, query_query=False, doc_doc=False) == pytest.approx(
        (row0 + row1) / 2, rel=1e-6
    )
    row0 = nll(s(0, 30), [s(0, 90), s(0, 60), s(0, 90), s(0, 80)])
    row1 = nll(s(80, 90), [s(80, 30), s(80, 60), s(80, 5), s(80, 0)])
    assert loss(doc_doc=False) == pytest.approx((row0 + row1) / 2, rel=1e-6)


def test_duplicate_positive_in_the_batch_is_not_a_negative() -> None:
    # Two queries of the same document: each other's positive is masked as the same text,
    # in the query-document and the document-document terms alike.
    queries = torch.tensor([unit(0), unit(20)])
    documents = torch.tensor([unit(10), unit(10)])
    got = info_nce(queries, documents, torch.tensor([0, 1]), ["d", "d"], LossTerms(TAU))
    expected = (nll(s(0, 10), [s(0, 20)]) + nll(s(20, 10), [s(20, 0)])) / 2
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_matryoshka_averages_the_truncated_losses() -> None:
    torch.manual_seed(0)
    queries = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    documents = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    owners, keys, terms = torch.arange(4), ["a", "b", "c", "d"], LossTerms(TAU)
    half = info_nce(
        torch.nn.functional.normalize(queries[:, :4], dim=-1),
        torch.nn.functional.normalize(documents[:, :4], dim=-1),
        owners,
        keys,
        terms,
    )
    full = info_nce(queries, documents, owners, keys, terms)
    got = matryoshka(queries, documents, owners, keys, terms, [4])
    assert float(got) == pytest.approx(float(full + half) / 2, rel=1e-6)
    assert float(half) != pytest.approx(float(full))


def test_margin_masks_query_query_and_document_document_terms() -> None:
    # q0 at 0 and q1 at 3 deg; positives p0 at 45 and p1 at 30; no hard negatives.
    queries = torch.tensor([unit(0), unit(3)])
    documents = torch.tensor([unit(45), unit(30)])
    got = info_nce(queries, documents, torch.tensor([0, 1]), ["p0", "p1"], LossTerms(TAU))
    # q0: positive cos45 = 0.707; p1 (cos30 = 0.866), q1 (cos3) and p0-p1 (cos15 = 0.966)
    # all exceed 0.807, so every other term is masked.
    row0 = nll(s(0, 45), [])
    # q1: positive cos27 = 0.891; only q0 (cos3 = 0.999 > 0.991) is masked.
    row1 = nll(s(3, 30), [s(3, 45), s(30, 45)])
    assert float(got) == pytest.approx((row0 + row1) / 2, rel=1e-6)


def test_duplicate_query_text_is_not_a_negative() -> None:
    queries = torch.tensor([unit(0), unit(50)])
    documents = torch.tensor([unit(10), unit(60)])
    owners, keys, terms = torch.tensor([0, 1]), ["p0", "p1"], LossTerms(TAU, doc_doc=False)
    distinct = info_nce(queries, documents, owners, keys, terms, query_keys=["a", "b"])
    same = info_nce(queries, documents, owners, keys, terms, query_keys=["a", "a"])
    with_qq = (nll(s(0, 10), [s(0, 60), s(0, 50)]) + nll(s(50, 60), [s(50, 10), s(50, 0)])) / 2
    without = (nll(s(0, 10), [s(0, 60)]) + nll(s(50, 60), [s(50, 10)])) / 2
    assert float(distinct) == pytest.approx(with_qq, rel=1e-6)
    assert float(same) == pytest.approx(without, rel=1e-6)


def test_masked_terms_get_no_gradient() -> None:
    queries = QUERIES.clone().requires_grad_()
    documents = DOCUMENTS.clone().requires_grad_()
    info_nce(queries, documents, OWNERS, KEYS, LossTerms(TAU, query_query=False)).backward()
    assert documents.grad is not None
    # n1 (index 3) is masked for q0 (too close) but a live negative for q1; n2 (index 4) is
    # masked for q1 (same text as p1) but live for q0. Only fully masked rows get zero.
    assert documents.grad[3].abs().sum() > 0 and documents.grad[4].abs().sum() > 0
    lonely = torch.tensor([unit(0)]).requires_grad_()
    docs = torch.tensor([unit(30), unit(5)]).requires_grad_()
    info_nce(lonely, docs, torch.tensor([0, 0]), ["p", "n"], LossTerms(TAU)).backward()
    assert docs.grad is not None and float(docs.grad[1].abs().sum()) == 0.0


def test_margin_mse_against_a_hand_computation() -> None:
    # q0 owns n0 and n1, q1 owns n2; the teacher scored p0, p1, n0 and n2 but not n1.
    teacher = torch.tensor([0.9, 0.8, 0.4, float("nan"), 0.75])
    got = float(margin_mse(QUERIES, DOCUMENTS, OWNERS, teacher, TAU))
    student_n0 = s(0, 30) - s(0, 60)
    student_n2 = s(80, 90) - s(80, 90)  # n2 is p1's own text: margin 0
    expected = (((student_n0 - 0.5) / TAU) ** 2 + ((student_n2 - 0.05) / TAU) ** 2) / 2
    assert got == pytest.approx(expected, rel=1e-6)
    # No teacher scores at all: zero, and still differentiable.
    queries = QUERIES.clone().requires_grad_()
    none = margin_mse(queries, DOCUMENTS, OWNERS, torch.full((5,), float("nan")), TAU)
    none.backward()
    assert float(none) == 0.0 and queries.grad is not None
