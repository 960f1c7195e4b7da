"""The loss modules against small cases computed by hand: which terms enter each InfoNCE
denominator, margin-MSE, the Matryoshka wrapper and the weighted sum."""

import math

import pytest
import torch

from pipeline.embedding.losses import Batch, InfoNCE, LossSum, MarginMSE, Matryoshka

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
    info_nce = InfoNCE(temperature=TAU, margin=0.1, **switches)
    return float(info_nce(Batch(QUERIES, DOCUMENTS, OWNERS, KEYS)))


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
    got = InfoNCE(TAU)(Batch(queries, documents, torch.tensor([0, 1]), ["d", "d"]))
    expected = (nll(s(0, 10), [s(0, 20)]) + nll(s(20, 10), [s(20, 0)])) / 2
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_matryoshka_averages_the_truncated_losses() -> None:
    torch.manual_seed(0)
    queries = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    documents = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    owners, keys, info_nce = torch.arange(4), ["a", "b", "c", "d"], InfoNCE(TAU)
    half = info_nce(
        Batch(
            torch.nn.functional.normalize(queries[:, :4], dim=-1),
            torch.nn.functional.normalize(documents[:, :4], dim=-1),
            owners,
            keys,
        )
    )
    full = info_nce(Batch(queries, documents, owners, keys))
    got = Matryoshka(info_nce, [4])(Batch(queries, documents, owners, keys))
    assert float(got) == pytest.approx(float(full + half) / 2, rel=1e-6)
    assert float(half) != pytest.approx(float(full))


def test_matryoshka_wraps_margin_mse_too() -> None:
    teacher = torch.tensor([0.9, 0.8, 0.4, float("nan"), 0.75])
    batch = Batch(QUERIES, DOCUMENTS, OWNERS, KEYS, teacher=teacher)
    margin_mse = MarginMSE(TAU)
    full, one = float(margin_mse(batch)), float(margin_mse(batch.truncated(1)))
    # At one component the queries, p0 and n0 are all +1 (margin 0 against the teacher's
    # 0.5), and n2 is p1's own text (margin 0 against 0.05).
    assert one == pytest.approx(((0 - 0.5) ** 2 + (0 - 0.05) ** 2) / TAU**2 / 2, rel=1e-6)
    wrapped = Matryoshka(margin_mse, [1])
    assert float(wrapped(batch)) == pytest.approx((full + one) / 2, rel=1e-6)
    assert wrapped.uses_teacher() and not Matryoshka(InfoNCE(TAU), [1]).uses_teacher()


def test_the_sum_weights_each_loss_in_order() -> None:
    teacher = torch.tensor([0.9, 0.8, 0.4, float("nan"), 0.75])
    batch = Batch(QUERIES, DOCUMENTS, OWNERS, KEYS, teacher=teacher)
    info_nce, margin_mse = InfoNCE(TAU), MarginMSE(TAU)
    total = LossSum([(2.0, info_nce), (0.25, margin_mse)])
    expected = 2.0 * float(info_nce(batch)) + 0.25 * float(margin_mse(batch))
    assert float(total(batch)) == pytest.approx(expected, rel=1e-6)
    assert total.uses_teacher() and not LossSum([(1.0, info_nce)]).uses_teacher()
    with pytest.raises(ValueError, match="at least one loss"):
        LossSum([])


def test_margin_masks_query_query_and_document_document_terms() -> None:
    # q0 at 0 and q1 at 3 deg; positives p0 at 45 and p1 at 30; no hard negatives.
    queries = torch.tensor([unit(0), unit(3)])
    documents = torch.tensor([unit(45), unit(30)])
    got = InfoNCE(TAU)(Batch(queries, documents, torch.tensor([0, 1]), ["p0", "p1"]))
    # q0: positive cos45 = 0.707; p1 (cos30 = 0.866), q1 (cos3) and p0-p1 (cos15 = 0.966)
    # all exceed 0.807, so every other term is masked.
    row0 = nll(s(0, 45), [])
    # q1: positive cos27 = 0.891; only q0 (cos3 = 0.999 > 0.991) is masked.
    row1 = nll(s(3, 30), [s(3, 45), s(30, 45)])
    assert float(got) == pytest.approx((row0 + row1) / 2, rel=1e-6)


def test_duplicate_query_text_is_not_a_negative() -> None:
    queries = torch.tensor([unit(0), unit(50)])
    documents = torch.tensor([unit(10), unit(60)])
    owners, keys, info_nce = torch.tensor([0, 1]), ["p0", "p1"], InfoNCE(TAU, doc_doc=False)
    distinct = info_nce(Batch(queries, documents, owners, keys, query_keys=["a", "b"]))
    same = info_nce(Batch(queries, documents, owners, keys, query_keys=["a", "a"]))
    with_qq = (nll(s(0, 10), [s(0, 60), s(0, 50)]) + nll(s(50, 60), [s(50, 10), s(50, 0)])) / 2
    without = (nll(s(0, 10), [s(0, 60)]) + nll(s(50, 60), [s(50, 10)])) / 2
    assert float(distinct) == pytest.approx(with_qq, rel=1e-6)
    assert float(same) == pytest.approx(without, rel=1e-6)


def test_masked_terms_get_no_gradient() -> None:
    queries = QUERIES.clone().requires_grad_()
    documents = DOCUMENTS.clone().requires_grad_()
    InfoNCE(TAU, query_query=False)(Batch(queries, documents, OWNERS, KEYS)).backward()
    assert documents.grad is not None
    # n1 (index 3) is masked for q0 (too close) but a live negative for q1; n2 (index 4) is
    # masked for q1 (same text as p1) but live for q0. Only fully masked rows get zero.
    assert documents.grad[3].abs().sum() > 0 and documents.grad[4].abs().sum() > 0
    lonely = torch.tensor([unit(0)]).requires_grad_()
    docs = torch.tensor([unit(30), unit(5)]).requires_grad_()
    InfoNCE(TAU)(Batch(lonely, docs, torch.tensor([0, 0]), ["p", "n"])).backward()
    assert docs.grad is not None and float(docs.grad[1].abs().sum()) == 0.0


def test_margin_mse_against_a_hand_computation() -> None:
    # q0 owns n0 and n1, q1 owns n2; the teacher scored p0, p1, n0 and n2 but not n1.
    teacher = torch.tensor([0.9, 0.8, 0.4, float("nan"), 0.75])
    got = float(MarginMSE(TAU)(Batch(QUERIES, DOCUMENTS, OWNERS, KEYS, teacher=teacher)))
    student_n0 = s(0, 30) - s(0, 60)
    student_n2 = s(80, 90) - s(80, 90)  # n2 is p1's own text: margin 0
    expected = (((student_n0 - 0.5) / TAU) ** 2 + ((student_n2 - 0.05) / TAU) ** 2) / 2
    assert got == pytest.approx(expected, rel=1e-6)
    # No teacher scores at all: zero, and still differentiable.
    queries = QUERIES.clone().requires_grad_()
    unscored = torch.full((5,), float("nan"))
    none = MarginMSE(TAU)(Batch(queries, DOCUMENTS, OWNERS, KEYS, teacher=unscored))
    none.backward()
    assert float(none.detach()) == 0.0 and queries.grad is not None
    with pytest.raises(ValueError, match="needs the batch's teacher scores"):
        MarginMSE(TAU)(Batch(QUERIES, DOCUMENTS, OWNERS, KEYS))
