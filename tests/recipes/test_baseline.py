from pathlib import Path

import pytest
import torch

from reidlib.engine.config import ConfigError, from_dict
from reidlib.models.output import ReIDOutput
from reidlib.recipes.baseline import (
    BaselineConfig,
    LossConfig,
    baseline_loss,
    build_model,
    load_baseline_config,
    num_classes_in,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("name", ["baseline_synth_tiny.yaml", "baseline_synth_small.yaml"])
def test_shipped_configs_load(name):
    cfg = load_baseline_config(CONFIGS / name)
    assert cfg.data.name == "synthreid" and cfg.model.depth == 18
    assert cfg.train.epochs >= 1


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="model.*arch"):
        from_dict(BaselineConfig, {"model": {"arch": "vit"}})
    with pytest.raises(ConfigError, match="root"):
        from_dict(BaselineConfig, {"data": {"name": "market1501"}})
    with pytest.raises(ConfigError, match="loss.*mergin"):
        from_dict(BaselineConfig, {"loss": {"mergin": 0.3}})


def _output(features, logits):
    return ReIDOutput(logits=[logits], features=[features], feature_maps=[], embedding=features)


def test_loss_is_weighted_sum_of_ce_and_triplet():
    torch.manual_seed(0)
    pids = torch.tensor([0, 0, 1, 1])
    feats, logits = torch.randn(4, 5, requires_grad=True), torch.randn(4, 3, requires_grad=True)
    loss_fn = baseline_loss(LossConfig(ce_weight=2.0, label_smoothing=0.0, triplet_weight=0.5, margin=0.3))
    total, terms = loss_fn(_output(feats, logits), {"pid": pids})
    ce = torch.nn.functional.cross_entropy(logits, pids)
    d = torch.cdist(feats, feats)
    hardest_pos = torch.stack([d[0, 1], d[1, 0], d[2, 3], d[3, 2]])
    hardest_neg = torch.stack([d[0, 2:].min(), d[1, 2:].min(), d[2, :2].min(), d[3, :2].min()])
    triplet = torch.relu(hardest_pos - hardest_neg + 0.3).mean()
    torch.testing.assert_close(total, 2.0 * ce + 0.5 * triplet, rtol=1e-5, atol=1e-5)
    assert terms["ce"] == pytest.approx(ce.item(), rel=1e-5)
    assert terms["triplet"] == pytest.approx(triplet.item(), rel=1e-4)
    assert set(terms) == {"ce", "acc", "triplet", "active_fraction"}
    total.backward()
    assert feats.grad is not None and logits.grad is not None


def test_ce_only_and_model_classes():
    loss_fn = baseline_loss(LossConfig(triplet_weight=0.0))
    total, terms = loss_fn(_output(torch.randn(2, 4), torch.randn(2, 3)), {"pid": torch.tensor([0, 1])})
    assert "triplet" not in terms and total.ndim == 0
    model = build_model(load_baseline_config(CONFIGS / "baseline_synth_tiny.yaml").model, num_classes=7)
    assert num_classes_in(model.state_dict()) == 7
    with pytest.raises(ValueError, match="classifiers"):
        num_classes_in({"w": torch.zeros(2)})
