"""LossSum: the weighted sum of its terms, their logs merged, weight-0 terms skipped, clear errors."""

from __future__ import annotations

import pytest
import torch

from reidlib.losses import BatchHardTripletLoss, IdentityLoss, LossSum
from reidlib.models.output import ReIDOutput


def _batch():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(6, 4, generator=g, requires_grad=True)
    logits = torch.randn(6, 3, generator=g, requires_grad=True)
    out = ReIDOutput(logits=[logits], features=[feats], feature_maps=[], embedding=feats)
    return out, {"pid": torch.tensor([0, 0, 1, 1, 2, 2])}


def test_sum_is_the_weighted_sum_of_the_terms_and_merges_logs():
    out, batch = _batch()
    ce, tri = IdentityLoss(0.1), BatchHardTripletLoss(0.3)
    total, logs = LossSum([(2.0, ce), (0.5, tri)])(out, batch)
    ce_value, ce_logs = ce(out, batch)
    tri_value, tri_logs = tri(out, batch)
    torch.testing.assert_close(total, 2.0 * ce_value + 0.5 * tri_value)
    assert logs == {**ce_logs, **tri_logs, "loss": pytest.approx(float(total.detach()))}
    total.backward()
    assert out.features[0].grad is not None and out.logits[0].grad is not None


def test_weight_zero_terms_are_not_computed():
    def broken(output, batch):
        raise AssertionError("a weight-0 term was evaluated")

    out, batch = _batch()
    total, logs = LossSum([(1.0, IdentityLoss()), (0.0, broken)], log_total=False)(out, batch)
    assert set(logs) == {"ce", "acc"}
    assert total.item() == pytest.approx(logs["ce"])


def test_nested_sums_keep_one_total():
    out, batch = _batch()
    inner = LossSum([(1.0, IdentityLoss())])
    total, logs = LossSum([(3.0, inner), (1.0, BatchHardTripletLoss())])(out, batch)
    assert logs["loss"] == pytest.approx(float(total.detach()))
    assert total.item() == pytest.approx(3.0 * logs["ce"] + logs["triplet"], rel=1e-6)


def test_errors():
    out, batch = _batch()
    with pytest.raises(ValueError, match="positive weight"):
        LossSum([(0.0, IdentityLoss())])
    with pytest.raises(ValueError, match="positive weight"):
        LossSum([])
    with pytest.raises(ValueError, match=">= 0"):
        LossSum([(-1.0, IdentityLoss())])
    with pytest.raises(TypeError, match="callable"):
        LossSum([(1.0, "ce")])
    with pytest.raises(ValueError, match="two loss terms log 'ce'"):
        LossSum([(1.0, IdentityLoss()), (1.0, IdentityLoss(0.1))])(out, batch)
    no_logits = ReIDOutput(logits=[], features=out.features, feature_maps=[], embedding=out.embedding)
    with pytest.raises(ValueError, match="needs logits"):
        LossSum([(1.0, IdentityLoss()), (1.0, BatchHardTripletLoss())])(no_logits, batch)
