"""Eq. 4 of seed 003: mean identity loss over the classifiers plus mean triplet loss over the groups."""

from __future__ import annotations

import math

import pytest
import torch

from reidlib.losses.multi_part import MultiPartLoss, group_by_level, triplet_groups
from reidlib.models.output import ReIDOutput

PIDS = torch.tensor([0, 0, 1, 1])
LOGITS = [
    torch.tensor([[2.0, 0.0, -1.0], [1.0, 0.5, 0.0], [0.0, 3.0, 0.0], [-1.0, 0.5, 2.0]]),
    torch.tensor([[0.0, 1.0, 0.0], [2.0, -2.0, 1.0], [0.5, 0.2, 0.4], [1.0, 2.0, 0.0]]),
]
# Three parts: part 0 on level 0, parts 1 and 2 on level 1.
FEATURES = [
    torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [2.0, 2.0]]),
    torch.tensor([[0.0], [0.5], [3.0], [0.2]]),
    torch.tensor([[1.0], [1.0], [0.0], [4.0]]),
]


def _output() -> ReIDOutput:
    return ReIDOutput(logits=LOGITS, features=FEATURES, feature_maps=[], embedding=torch.cat(FEATURES, dim=1),
                      extras={"part_levels": torch.tensor([0, 1, 1])})


def _smoothed_ce(rows: list[list[float]], labels: list[int], eps: float = 0.1) -> float:
    total = 0.0
    for row, y in zip(rows, labels, strict=True):
        log_z = math.log(sum(math.exp(v) for v in row))
        q = [(1 - eps) * (c == y) + eps / len(row) for c in range(len(row))]
        total -= sum(qc * (v - log_z) for qc, v in zip(q, row, strict=True))
    return total / len(rows)


def _batch_hard(x: list[list[float]], labels: list[int], margin: float = 1.0) -> float:
    losses = []
    for a, (xa, ya) in enumerate(zip(x, labels, strict=True)):
        pos = max(math.dist(xa, xp) for p, (xp, yp) in enumerate(zip(x, labels, strict=True))
                  if yp == ya and p != a)
        neg = min(math.dist(xa, xn) for xn, yn in zip(x, labels, strict=True) if yn != ya)
        losses.append(max(0.0, margin + pos - neg))
    return sum(losses) / len(losses)


def test_loss_is_eq4_with_one_triplet_per_level():
    labels = PIDS.tolist()
    ce = [_smoothed_ce(s.tolist(), labels) for s in LOGITS]
    level0 = FEATURES[0].tolist()
    level1 = torch.cat(FEATURES[1:], dim=1).tolist()
    triplets = [_batch_hard(level0, labels), _batch_hard(level1, labels)]
    assert all(t > 0 for t in triplets)  # the hinge is active, so the margin matters
    loss, logs = MultiPartLoss()(_output(), {"pid": PIDS})
    expected = sum(ce) / 2 + sum(triplets) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert logs["id"] == pytest.approx(sum(ce) / 2, rel=1e-5)
    assert logs["triplet"] == pytest.approx(sum(triplets) / 2, rel=1e-5)
    # argmax per classifier: (0, 0, 1, 2) and (1, 0, 0, 1) against (0, 0, 1, 1): 3/4 and 2/4 correct
    assert logs["acc"] == pytest.approx(0.625)
    assert set(logs) == {"id", "triplet", "acc"}


def test_grouping_changes_the_triplet_term():
    labels = PIDS.tolist()
    per_part = sum(_batch_hard(f.tolist(), labels) for f in FEATURES) / 3
    _, by_part = MultiPartLoss(triplet_on="parts")(_output(), {"pid": PIDS})
    _, by_level = MultiPartLoss(triplet_on="levels")(_output(), {"pid": PIDS})
    assert by_part["triplet"] == pytest.approx(per_part, rel=1e-5)
    assert by_part["triplet"] != pytest.approx(by_level["triplet"], rel=1e-3)
    embedding = _batch_hard(torch.cat(FEATURES, dim=1).tolist(), labels)
    _, on_embedding = MultiPartLoss(triplet_on="embedding")(_output(), {"pid": PIDS})
    assert on_embedding["triplet"] == pytest.approx(embedding, rel=1e-5)
    # A smaller margin lowers every active hinge by the same amount.
    _, small = MultiPartLoss(margin=0.5, triplet_on="parts")(_output(), {"pid": PIDS})
    assert small["triplet"] < by_part["triplet"]


def test_groups_and_fallback_without_levels():
    groups = group_by_level(FEATURES, [1, 0, 1])
    assert [tuple(g.shape) for g in groups] == [(4, 1), (4, 3)]
    assert torch.equal(groups[1], torch.cat([FEATURES[0], FEATURES[2]], dim=1))
    plain = ReIDOutput(logits=LOGITS, features=FEATURES, feature_maps=[], embedding=FEATURES[0])
    assert len(triplet_groups(plain, "levels")) == 3  # no part_levels: one group per feature
    with pytest.raises(ValueError, match="3 features but 2"):
        group_by_level(FEATURES, [0, 1])


def test_without_triplet_term_only_identity():
    labels = PIDS.tolist()
    loss, logs = MultiPartLoss(triplet_weight=0.0)(_output(), {"pid": torch.tensor([0, 1, 2, 0])})
    assert "triplet" not in logs  # not computed: this batch has an identity with one image only
    expected = sum(_smoothed_ce(s.tolist(), [0, 1, 2, 0]) for s in LOGITS) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss2, _ = MultiPartLoss(label_smoothing=0.0, triplet_weight=0.0)(_output(), {"pid": PIDS})
    plain = sum(_smoothed_ce(s.tolist(), labels, eps=0.0) for s in LOGITS) / 2
    assert loss2.item() == pytest.approx(plain, rel=1e-5)
    with pytest.raises(ValueError, match="triplet_on"):
        MultiPartLoss(triplet_on="stripes")
