"""BDB's and PMM's per-stage loss, and CutMix's label mixing, on hand-made numbers."""

import math

import pytest
import torch

from reidlib.losses.per_stage import PerStageLoss, mixed_cross_entropy
from reidlib.losses.triplet import batch_hard_triplet_loss
from reidlib.models.output import ReIDOutput


def _out(logits, features, **extras):
    return ReIDOutput(logits=logits, features=features, feature_maps=[], embedding=torch.cat(features, 1),
                      extras=extras)


def test_stages_are_summed_without_weights():
    torch.manual_seed(0)
    pids = torch.tensor([0, 0, 1, 1])
    logits = [torch.randn(4, 3) for _ in range(3)]
    feats = [torch.randn(4, 5) for _ in range(3)]
    loss, logs = PerStageLoss(label_smoothing=0.0)(_out(logits, feats), {"pid": pids})
    ce = sum(torch.nn.functional.cross_entropy(s, pids) for s in logits)
    tp = sum(batch_hard_triplet_loss(f, pids, margin=None)[0] for f in feats)
    assert torch.isclose(loss, ce + tp) and logs["id"] == pytest.approx(float(ce), rel=1e-6)


def test_mixed_cross_entropy_weights_both_labels_by_area():
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    own = torch.tensor([0, 1])
    other = torch.tensor([1, 0])
    keep = torch.tensor([0.75, 1.0])
    lse = math.log(math.exp(2.0) + 1.0)
    expected = (0.75 * (lse - 2.0) + 0.25 * lse + math.log(2.0)) / 2
    assert mixed_cross_entropy(logits, own, other, keep).item() == pytest.approx(expected, rel=1e-6)
    assert mixed_cross_entropy(logits, own, other, torch.ones(2)).item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits, own).item())
    with pytest.raises(ValueError, match="keep must be in"):
        mixed_cross_entropy(logits, own, other, torch.tensor([1.5, 0.0]))


def test_per_stage_loss_reads_the_mix_from_the_output():
    pids = torch.tensor([0, 0, 1, 1])
    logits = [torch.randn(4, 2)]
    feats = [torch.randn(4, 3)]
    mixed = _out(logits, feats, mix_pids=torch.tensor([1, 1, 0, 0]), mix_keep=torch.full((4,), 0.5))
    loss, _ = PerStageLoss(label_smoothing=0.0, triplet_weight=0.0)(mixed, {"pid": pids})
    expected = 0.5 * (torch.nn.functional.cross_entropy(logits[0], pids)
                      + torch.nn.functional.cross_entropy(logits[0], torch.tensor([1, 1, 0, 0])))
    assert torch.isclose(loss, expected)
    with pytest.raises(ValueError, match="one logit and one feature per stage"):
        PerStageLoss()(_out(logits, feats + feats), {"pid": pids})
