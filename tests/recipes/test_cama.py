import dataclasses

import numpy as np
import pytest
import torch

from reidlib.explain.scores import branch_overlap
from reidlib.losses.oap import CamaLoss, target_class_maps
from reidlib.models.backbone import build_backbone
from reidlib.models.cama import CAMA
from reidlib.recipes import cama, cama_report, chapter
from reidlib.recipes.cama import CamaConfig, config_for


def test_scale_configs_keep_the_papers_k_as_a_share_of_the_cells():
    full, cpu = cama.SCALE_CONFIGS["full"], cama.SCALE_CONFIGS["cpu"]
    assert full.map_size == (16, 8) and full.k == 13  # the paper's k on its 16x8 map
    h, w = cpu.map_size
    assert (h, w) == (cpu.height // 16, cpu.width // 16)
    assert cpu.k == round(13 / 128 * h * w) or abs(cpu.k - 13 / 128 * h * w) <= 1


def test_full_config_is_the_papers_recipe():
    c = cama.SCALE_CONFIGS["full"]
    assert (c.depth, c.pretrained, c.height, c.width, c.batch_size) == (50, True, 256, 128, 32)
    assert (c.warmup_epochs, c.epochs, c.warmup_start_lr, c.lr) == (10, 60, 3e-6, 3e-4)
    assert c.lr_milestones == [30, 50] and c.lr_gamma == 0.1 and c.alpha == 1.0


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("scale", "huge", "scale"),
        ("dataset", "viper", "dataset"),
        ("num_branches", 0, "num_branches"),
        ("k_fraction", 0.0, "k_fraction"),
        ("k_fraction", 1.5, "k_fraction"),
        ("oap_mode", "sideways", "oap_mode"),
        ("alpha", -1.0, "alpha"),
        ("height", 100, "multiples of 16"),
        ("test_branches", [3], "test_branches"),
        ("warmup_epochs", 60, "warmup_epochs"),
    ],
)
def test_bad_config_names_the_field(field, value, match):
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(cama.SCALE_CONFIGS["full"], **{field: value})


def test_config_for_rejects_unknown_override(monkeypatch):
    monkeypatch.delenv("REIDLIB_SCALE", raising=False)
    with pytest.raises(ValueError, match="num_branch"):
        config_for("smoke", num_branch=3)
    assert config_for("smoke", num_branches=4).num_branches == 4


def test_scale_environment_variable_wins(monkeypatch):
    monkeypatch.setenv("REIDLIB_SCALE", "smoke")
    assert config_for("cpu").scale == "smoke"


def test_runs_cover_every_table_and_figure():
    runs = cama.RUNS
    assert runs["ide_bn"] == {"num_branches": 1, "alpha": 0.0}
    assert runs["mltb_lid"]["alpha"] == 0.0 and runs["mltb_lid"]["num_branches"] == 3
    for n in cama.BRANCH_SWEEP[1:]:
        assert runs[f"cama_n{n}"]["num_branches"] == n
    k_runs = {cama.k_run_name(f) for f in cama.K_SWEEP_FRACTIONS}
    assert len(k_runs) == len(cama.K_SWEEP_FRACTIONS) and k_runs <= set(runs)
    assert f"cama_n3_{cama.other_mode()}" in runs
    for name in runs:
        cama.run_config(name, cama.SCALE_CONFIGS["smoke"])  # every run's config is valid
    with pytest.raises(ValueError, match="unknown run"):
        cama.run_config("nope", cama.SCALE_CONFIGS["smoke"])


def test_cpu_backbone_is_a_narrow_resnet_without_last_stride():
    # without the trunk: loading it would pre-train the cpu trunk (minutes) inside a unit test
    cfg = dataclasses.replace(cama.SCALE_CONFIGS["cpu"], pretrained=False)
    model = cama.build_model(cfg, num_classes=5)
    maps = model(torch.randn(2, 3, cfg.height, cfg.width)).feature_maps
    assert all(m.shape == (2, 8 * cfg.base_width, *cfg.map_size) for m in maps)


def _overlap_after_training(alpha: float, steps: int = 60) -> float:
    torch.manual_seed(0)
    images = torch.randn(16, 3, 128, 64)
    labels = torch.arange(16) % 4
    model = CAMA(num_classes=4, num_branches=2, backbone=build_backbone(18, 4))
    loss_fn = CamaLoss(k=3, alpha=alpha, mode="symmetric")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(steps):
        loss, _ = loss_fn(model(images), {"pid": labels})
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        out = model(images)
        maps = target_class_maps(out.feature_maps, out.class_weights, labels)
    return float(np.mean(branch_overlap(maps, 3)))


@pytest.mark.slow
def test_training_with_oap_reduces_branch_overlap():
    without, with_oap = _overlap_after_training(0.0), _overlap_after_training(5.0)
    assert with_oap < without - 0.1, (without, with_oap)


def test_chapter_settings_lists_paper_cpu_full_and_other_runs():
    settings = cama_report.chapter_settings(cama.SCALE_CONFIGS["cpu"])
    assert list(settings) == ["paper (Sec. 4.2, Market-1501)", "cpu", "full"]
    assert settings["paper (Sec. 4.2, Market-1501)"].dataset == "market1501"
    assert len(cama_report.chapter_settings(cama.SCALE_CONFIGS["smoke"])) == 4
    rows = cama_report.config_table(settings)
    assert rows[0]["k"].startswith("13 ") and rows[0]["input"] == "256x128"


def test_camaconfig_k_never_below_one():
    c = CamaConfig(scale="smoke", k_fraction=0.001, height=64, width=32, warmup_epochs=0, epochs=1)
    assert c.k == 1


@pytest.mark.slow
def test_a_run_does_not_depend_on_the_runs_before_it(tmp_path, monkeypatch):
    monkeypatch.delenv("REIDLIB_SCALE", raising=False)
    cfg = config_for("smoke", epochs=1, warmup_epochs=0, lr_milestones=[])
    data = chapter.load_data(cfg)
    ctx = cama.context(data, results_root=tmp_path / "results", runs_dir=tmp_path / "runs")
    first = cama.run_cama("a", cfg, ctx).model
    cama.run_cama("b", dataclasses.replace(cfg, seed=5), ctx)  # advances every global random state
    again = cama.run_cama("c", cfg, ctx).model
    for (name, p), q in zip(first.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(p, q), name


def test_every_claims_arm_is_trained_with_the_paired_seeds():
    from reidlib.results.claims import MIN_SEEDS, load_claims

    evaluated = {name: "cama_n3" for name in cama.TEST_BRANCH_RUNS}  # evaluations of cama_n3's seeds
    for claim in load_claims("cama"):
        for arm in (claim.winner, *claim.losers):
            trained = evaluated.get(arm, arm)
            assert trained in cama.CLAIM_ARMS, (claim.id, arm)
            seeds = {cama.run_config(n, cama.SCALE_CONFIGS["cpu"]).seed
                     for n in cama.RUNS if n == trained or n.startswith(f"{trained}_seed")}
            assert len(seeds) >= MIN_SEEDS, (claim.id, arm, seeds)


def test_a_smoke_run_starts_from_the_pretrained_trunk_and_records_its_key(tmp_path, monkeypatch):
    from reidlib.recipes import pretrain

    monkeypatch.delenv("REIDLIB_SCALE", raising=False)
    cfg = config_for("smoke", epochs=1, warmup_epochs=0, lr_milestones=[])
    assert cfg.pretrained and cama.SCALE_CONFIGS["cpu"].pretrained
    trunk = pretrain.trunk_file(pretrain.trunk_config("smoke", cfg.depth, cfg.base_width))
    assert chapter.backbone_weights(cfg) == trunk
    model = cama.build_model(cfg, num_classes=3)
    state = torch.load(trunk, weights_only=True)
    assert torch.equal(model.state_dict()["shared.0.conv1.weight"], state["stem.conv1.weight"])
    data = chapter.load_data(cfg)
    ctx = cama.context(data, results_root=tmp_path / "results", runs_dir=tmp_path / "runs")
    record = cama.run_cama("a", cfg, ctx).record
    assert record.config["pretrained_trunk"] == pretrain.trunk_config("smoke", 18, 8).key
