"""Batch-hard triplet loss against an explicit loop; seed 001's ranking loss against its formula."""

from __future__ import annotations

import math

import pytest
import torch

from reidlib.losses.triplet import batch_hard_triplet_loss, pairwise_distances, ranking_triplet_loss


def _loop_batch_hard(x: torch.Tensor, pids: list[int], margin: float | None, metric: str):
    def dist(a: torch.Tensor, b: torch.Tensor) -> float:
        if metric == "euclidean":
            return math.sqrt(float(((a - b) ** 2).sum()))
        if metric == "sqeuclidean":
            return float(((a - b) ** 2).sum())
        return 1.0 - float(a @ b / (a.norm() * b.norm()))

    losses, pos_d, neg_d = [], [], []
    for i in range(len(pids)):
        pos = [dist(x[i], x[j]) for j in range(len(pids)) if pids[j] == pids[i] and j != i]
        neg = [dist(x[i], x[j]) for j in range(len(pids)) if pids[j] != pids[i]]
        if not pos or not neg:
            continue
        dp, dn = max(pos), min(neg)
        pos_d.append(dp)
        neg_d.append(dn)
        losses.append(math.log1p(math.exp(dp - dn)) if margin is None else max(0.0, margin + dp - dn))
    return sum(losses) / len(losses), sum(pos_d) / len(pos_d), sum(neg_d) / len(neg_d), len(losses)


@pytest.mark.parametrize("margin", [0.3, 1.0, None])
@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine"])
def test_batch_hard_matches_loop(margin, metric):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(12, 6, generator=g, dtype=torch.float64)
    pids = [0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 5]  # pids 4 and 5 have no positive: not anchors
    loss, stats = batch_hard_triplet_loss(x, torch.tensor(pids), margin=margin, metric=metric)
    ref_loss, ref_pos, ref_neg, n = _loop_batch_hard(x, pids, margin, metric)
    assert loss.item() == pytest.approx(ref_loss, rel=1e-6)
    assert stats["mean_pos_dist"] == pytest.approx(ref_pos, rel=1e-6)
    assert stats["mean_neg_dist"] == pytest.approx(ref_neg, rel=1e-6)
    assert stats["num_anchors"] == n == 10


def test_normalize_and_gradients():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 4, generator=g, requires_grad=True)
    pids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    loss, stats = batch_hard_triplet_loss(x, pids, margin=0.3, normalize=True)
    xn = torch.nn.functional.normalize(x.detach(), dim=1)
    ref, *_ = _loop_batch_hard(xn.double(), pids.tolist(), 0.3, "euclidean")
    assert loss.item() == pytest.approx(ref, rel=1e-5)
    loss.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert 0.0 <= stats["active_fraction"] <= 1.0


def test_active_fraction_zero_when_clusters_are_separated():
    x = torch.tensor([[0.0, 0.0], [0.0, 0.1], [10.0, 0.0], [10.0, 0.1]])
    loss, stats = batch_hard_triplet_loss(x, torch.tensor([0, 0, 1, 1]), margin=0.3)
    assert loss.item() == 0.0 and stats["active_fraction"] == 0.0


def test_batch_without_valid_anchor_raises():
    with pytest.raises(ValueError, match="RandomIdentitySampler"):
        batch_hard_triplet_loss(torch.randn(4, 3), torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="pids must be"):
        batch_hard_triplet_loss(torch.randn(4, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="unknown metric"):
        pairwise_distances(torch.randn(4, 3), "manhattan")


def test_ranking_triplet_loss_formula():
    g = torch.Generator().manual_seed(2)
    q, p, n = (torch.nn.functional.normalize(torch.randn(5, 4, generator=g), dim=1) for _ in range(3))
    per = ranking_triplet_loss(q, p, n, margin=0.1, reduction="none")
    for i in range(5):
        expected = max(0.0, 0.1 + float(q[i] @ n[i]) - float(q[i] @ p[i]))
        assert per[i].item() == pytest.approx(expected, abs=1e-6)
    assert ranking_triplet_loss(q, p, n).item() == pytest.approx(per.mean().item())
    assert ranking_triplet_loss(q, p, n, reduction="sum").item() == pytest.approx(per.sum().item())
    # A perfectly matched positive and an opposite negative cost nothing.
    assert ranking_triplet_loss(q, q, -q).item() == 0.0
    with pytest.raises(ValueError, match="equal shape"):
        ranking_triplet_loss(q, p[:3], n)


def test_ranking_triplet_loss_hinge_and_gradient_on_hand_made_triplet():
    q = torch.tensor([[1.0, 0.0]])
    pos = torch.tensor([[0.6, 0.8]], requires_grad=True)
    neg = torch.tensor([[0.8, 0.6]], requires_grad=True)
    loss = ranking_triplet_loss(q, pos, neg, margin=0.1)
    assert float(loss.detach()) == pytest.approx(0.1 + 0.8 - 0.6)
    loss.backward()
    assert pos.grad.tolist() == [[-1.0, 0.0]] and neg.grad.tolist() == [[1.0, 0.0]]
    satisfied = ranking_triplet_loss(q, neg.detach(), pos.detach(), margin=0.1)
    assert float(satisfied) == 0.0  # 0.1 + 0.6 - 0.8 < 0
