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
    notices = []
    cfg = load_baseline_config(CONFIGS / name, notice=notices.append)
    assert cfg.data.name == "synthreid" and cfg.model.depth == 18
    assert cfg.train.epochs >= 1
    assert notices == []  # every section is written out


def test_an_empty_config_or_a_missing_section_is_refused(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match=r"empty\.yaml is empty; it must set at least data, model, train"):
        load_baseline_config(empty)
    no_model = tmp_path / "no_model.yaml"
    no_model.write_text("data: {preset: tiny}\ntrain: {epochs: 1}\n")
    with pytest.raises(ConfigError, match=r"no_model\.yaml: section\(s\) model missing"):
        load_baseline_config(no_model)
    (tmp_path / "folder.yaml").mkdir()
    with pytest.raises(ConfigError, match=r"folder\.yaml is a folder"):
        load_baseline_config(tmp_path / "folder.yaml")


def test_defaulted_sections_are_announced(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: {preset: tiny}\nmodel: {}\ntrain: {epochs: 1}\n")
    notices = []
    cfg = load_baseline_config(path, notice=notices.append)
    assert cfg.model.depth == 50
    assert any("'model' is empty; using its defaults (arch='bnneck', depth=50" in n for n in notices)
    assert any("no 'loss' section" in n for n in notices) and any("no 'eval' section" in n for n in notices)
    assert all(str(path) in n for n in notices)


@pytest.mark.parametrize("section, value, culprit", [
    ("data", {"height": 0}, "data.height must be >= 1, got 0"),
    ("data", {"batch_size": 30, "num_instances": 4},
     "data.batch_size=30 is not a multiple of data.num_instances=4"),
    ("data", {"random_erasing": 1.5}, "data.random_erasing"),
    ("data", {"preset": "huge"}, "data.preset='huge'"),
    ("data", {"name": "market"}, "data.name='market'"),
    ("model", {"depth": 19}, "model.depth=19"),
    ("model", {"last_stride": 3}, "model.last_stride=3"),
    ("model", {"pool": "mean"}, "model.pool='mean'"),
    ("model", {"arch": "idebn", "pool": "gem"}, "needs arch 'bnneck'"),
    ("model", {"pretrained": "missing_weights.pth"}, "missing_weights.pth"),
    ("loss", {"label_smoothing": 1.0}, "loss.label_smoothing"),
    ("loss", {"margin": -0.3}, "loss.margin"),
    ("loss", {"triplet_metric": "manhattan"}, "loss.triplet_metric='manhattan'"),
    ("eval", {"metric": "sqeuclidean"}, "eval.metric='sqeuclidean'"),
    ("eval", {"ap_mode": "11point"}, "eval.ap_mode='11point'"),
    ("eval", {"every": -1}, "eval.every must be >= 0"),
])
def test_values_out_of_range_are_refused_when_the_config_is_read(section, value, culprit):
    # eval.metric and eval.ap_mode used to be checked only after training
    with pytest.raises(ConfigError) as info:
        from_dict(BaselineConfig, {section: value})
    assert culprit in str(info.value)


def test_bad_device_name_in_a_config_is_refused():
    with pytest.raises(ConfigError, match="device='gpu0' is not a device"):
        from_dict(BaselineConfig, {"device": "gpu0"})


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
