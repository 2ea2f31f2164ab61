"""Batch-hard triplet loss against an explicit loop; seed 001's ranking loss against its formula; their
Trainer-contract loss objects."""

from __future__ import annotations

import math

import pytest
import torch

from reidlib.losses.triplet import (
    BatchHardTripletLoss,
    TripletRankingLoss,
    batch_hard_triplet_loss,
    pairwise_distances,
    ranking_triplet_loss,
)
from reidlib.models.output import ReIDOutput


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


# ---- loss objects ---------------------------------------------------------------------------------------
def _output(features: torch.Tensor, embedding: torch.Tensor | None = None) -> ReIDOutput:
    return ReIDOutput(logits=[], features=[features], feature_maps=[],
                      embedding=features if embedding is None else embedding)


@pytest.mark.parametrize("margin", [0.3, None])
def test_batch_hard_object_on_features_matches_the_loop(margin):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(8, 5, generator=g, dtype=torch.float64)
    pids = [0, 0, 1, 1, 2, 2, 3, 3]
    loss, logs = BatchHardTripletLoss(margin)(_output(x.float(), torch.zeros(8, 2)),
                                              {"pid": torch.tensor(pids)})
    ref, *_ = _loop_batch_hard(x, pids, margin, "euclidean")
    assert loss.item() == pytest.approx(ref, rel=1e-5)
    assert set(logs) == {"triplet", "active_fraction"}
    assert logs["triplet"] == pytest.approx(ref, rel=1e-5) and 0.0 <= logs["active_fraction"] <= 1.0


def test_batch_hard_object_on_embedding_with_scale():
    g = torch.Generator().manual_seed(5)
    emb = torch.randn(6, 3, generator=g)
    pids = torch.tensor([0, 0, 1, 1, 2, 2])
    loss, logs = BatchHardTripletLoss(0.5, "sqeuclidean", on="embedding", scale=0.25)(
        _output(torch.zeros(6, 3), emb), {"pid": pids})
    direct, stats = batch_hard_triplet_loss(emb, pids, margin=0.5, metric="sqeuclidean")
    assert loss.item() == pytest.approx(0.25 * direct.item())
    assert logs["triplet"] == pytest.approx(0.25 * direct.item())
    assert logs["active_fraction"] == stats["active_fraction"]


def test_halved_sqeuclidean_batch_hard_with_twice_the_margin_is_eq1_on_unit_vectors():
    # |q - d|^2 = 2 - 2 q.d on unit vectors, so 0.5 * hinge(2m + d_ap - d_an) = max(0, m + q.n - q.p)
    g = torch.Generator().manual_seed(6)
    emb = torch.nn.functional.normalize(torch.randn(8, 4, generator=g, dtype=torch.float64), dim=1)
    pids = [0, 0, 1, 1, 2, 2, 3, 3]
    loss, _ = BatchHardTripletLoss(2 * 0.1, "sqeuclidean", on="embedding", scale=0.5)(
        _output(emb, emb), {"pid": torch.tensor(pids)})
    sims = emb @ emb.T
    expected = []
    for a in range(8):
        hardest_pos = min(float(sims[a, p]) for p in range(8) if pids[p] == pids[a] and p != a)
        hardest_neg = max(float(sims[a, n]) for n in range(8) if pids[n] != pids[a])
        expected.append(max(0.0, 0.1 + hardest_neg - hardest_pos))
    assert loss.item() == pytest.approx(sum(expected) / 8, rel=1e-5, abs=1e-7)


def test_batch_hard_object_errors():
    with pytest.raises(ValueError, match="on must be"):
        BatchHardTripletLoss(on="logits")
    with pytest.raises(ValueError, match="unknown metric"):
        BatchHardTripletLoss(metric="manhattan")
    with pytest.raises(ValueError, match="margin"):
        BatchHardTripletLoss(-1.0)
    with pytest.raises(ValueError, match="scale"):
        BatchHardTripletLoss(scale=0.0)
    empty = ReIDOutput(logits=[], features=[], feature_maps=[], embedding=torch.zeros(4, 2))
    with pytest.raises(ValueError, match="needs output.features"):
        BatchHardTripletLoss()(empty, {"pid": torch.tensor([0, 0, 1, 1])})


def _interleaved(q, p, n):
    return torch.stack([q, p, n], dim=1).reshape(-1, q.shape[1])  # rows q0, p0, n0, q1, ...


def test_triplet_ranking_object_is_mean_of_eq1_over_triplets():
    g = torch.Generator().manual_seed(7)
    q, p, n = (torch.nn.functional.normalize(torch.randn(4, 3, generator=g), dim=1) for _ in range(3))
    n[0] = q[0]  # a violated triplet ...
    p[1], n[1] = q[1], -q[1]  # ... and a satisfied one
    emb = _interleaved(q, p, n)
    pids = torch.tensor([0, 0, 1, 2, 2, 3, 4, 4, 5, 6, 6, 7])
    loss, logs = TripletRankingLoss(0.1)(_output(emb), {"pid": pids})
    per = [max(0.0, 0.1 + float(q[i] @ n[i]) - float(q[i] @ p[i])) for i in range(4)]
    assert loss.item() == pytest.approx(sum(per) / 4, abs=1e-6)
    assert set(logs) == {"ranking", "active"}
    assert logs["active"] == pytest.approx(sum(v > 0 for v in per) / 4)
    assert per[0] > 0 and per[1] == 0.0


def test_triplet_ranking_object_errors():
    emb = torch.randn(6, 3)
    with pytest.raises(ValueError, match=r"\(3T, D\)"):
        TripletRankingLoss()(_output(torch.randn(4, 3)), {})
    with pytest.raises(ValueError, match="not laid out"):
        TripletRankingLoss()(_output(emb), {"pid": torch.tensor([0, 1, 1, 2, 2, 3])})
    with pytest.raises(ValueError, match="margin"):
        TripletRankingLoss(-0.1)
    loss, _ = TripletRankingLoss()(_output(emb), {})  # without pids there is nothing to check
    assert loss.ndim == 0
