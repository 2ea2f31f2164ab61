import itertools

import pytest
import torch
import torch.nn.functional as F

from reidlib.losses.mining import TripletPool, hardest_triplets, query_triplet_losses


def _features():
    """Hand-made pool on the unit circle: identity 0 at angles 0, 0.2, 1.2; identity 1 at 0.1, 0.4;
    identity 2 at 3.0 (far away)."""
    angles = torch.tensor([0.0, 0.2, 1.2, 0.1, 0.4, 3.0])
    feats = torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    pids = torch.tensor([0, 0, 0, 1, 1, 2])
    return feats, pids


def _brute_force(feats, pids, q, margin):
    rows = []
    for p, n in itertools.product(range(len(pids)), repeat=2):
        if p != q and pids[p] == pids[q] and pids[n] != pids[q]:
            loss = max(0.0, margin + float(feats[q] @ feats[n]) - float(feats[q] @ feats[p]))
            rows.append((loss, p, n))
    return sorted(rows, key=lambda r: (-r[0], r[1], r[2]))


def test_hardest_triplets_on_hand_made_features():
    feats, pids = _features()
    triplets, losses = hardest_triplets(feats, pids, query=0, num_hard=2, margin=0.1)
    # Hardest: the far positive (index 2, angle 1.2) against the closest negative (index 3, angle 0.1).
    assert triplets[0].tolist() == [2, 3]
    expected = 0.1 + torch.cos(torch.tensor(0.1)) - torch.cos(torch.tensor(1.2))
    assert losses[0] == pytest.approx(float(expected), abs=1e-6)
    assert triplets[1].tolist() == [2, 4]
    assert losses[0] >= losses[1]


@pytest.mark.parametrize("num_hard", [1, 3, 25])
def test_hardest_triplets_match_brute_force(num_hard):
    torch.manual_seed(0)
    feats = F.normalize(torch.randn(30, 5), dim=1)
    pids = torch.randint(0, 4, (30,))
    for q in range(0, 30, 7):
        triplets, losses = hardest_triplets(feats, pids, q, num_hard, margin=0.2)
        ref = _brute_force(feats, pids, q, 0.2)[:num_hard]
        assert losses.tolist() == pytest.approx([r[0] for r in ref], abs=1e-5)
        all_losses, pos, neg = query_triplet_losses(feats, pids, q, 0.2)
        assert all_losses.numel() == len(_brute_force(feats, pids, q, 0.2))
        assert float(all_losses.max()) == pytest.approx(ref[0][0], abs=1e-5)


def test_pool_hard_samples_only_top_triplets():
    feats, pids = _features()
    pool = TripletPool(torch.arange(100, 106), feats, pids, mode="hard", num_hard=1, margin=0.1)
    g = torch.Generator().manual_seed(0)
    drawn = pool.sample(200, g)
    assert drawn.shape == (200, 3)
    allowed = set()
    for q in pool.queries.tolist():
        t, _ = hardest_triplets(feats, pids, q, 1, 0.1)
        allowed.add((100 + q, 100 + int(t[0, 0]), 100 + int(t[0, 1])))
    assert {tuple(r) for r in drawn.tolist()} <= allowed
    # identity 2 has a single image: never a query
    assert 105 not in drawn[:, 0].tolist()


def test_pool_random_mode_draws_valid_triplets():
    feats, pids = _features()
    pool = TripletPool(torch.arange(6), feats, pids, mode="random")
    drawn = pool.sample(300, torch.Generator().manual_seed(1))
    for q, p, n in drawn.tolist():
        assert q != p and pids[q] == pids[p] and pids[q] != pids[n]
    assert len({tuple(r) for r in drawn.tolist()}) > 5  # not only the hardest ones
    assert pool.mean_hard_loss() > 0


def test_pool_errors():
    feats, pids = _features()
    with pytest.raises(ValueError, match="mode"):
        TripletPool(torch.arange(6), feats, pids, mode="semi")
    with pytest.raises(ValueError, match="no query"):
        TripletPool(torch.arange(3), feats[:3], torch.tensor([0, 1, 2]))
    assert hardest_triplets(feats, torch.tensor([0, 1, 2, 3, 4, 5]), 0)[0].shape == (0, 2)
