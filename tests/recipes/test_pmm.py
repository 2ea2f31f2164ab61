"""The PMM recipe (seed 004): configs, the run table, the training forward of every Table 3 variant and the
whole run table end to end at smoke."""

import dataclasses

import pytest
import torch

from reidlib.losses.per_stage import PerStageLoss
from reidlib.models.pmm import BDBNet, PMMNet
from reidlib.recipes import chapter, pmm

CPU = pmm.SCALE_CONFIGS["cpu"]


def test_configs_keep_the_papers_block_share():
    full = pmm.SCALE_CONFIGS["full"]
    assert full.map_size == (24, 8) and full.block == [3, 2] and full.batch_size == 64
    assert CPU.map_size == (8, 4) and CPU.block == [1, 1]  # 32 blocks of the same relative size
    for cfg in (full, CPU):
        h, w = cfg.map_size
        assert (h // cfg.block[0]) * (w // cfg.block[1]) == 32


@pytest.mark.parametrize("overrides, match", [
    ({"model": "pcb"}, "model 'pcb'"),
    ({"block": [3, 1]}, "block \\[3, 1\\] must divide the 4x2 map"),
    ({"k": 9}, "k = 9"),
    ({"image_mix": "mixup"}, "image_mix 'mixup'"),
])
def test_config_errors_name_the_field(overrides, match):
    with pytest.raises(ValueError, match=match):
        pmm.config_for("smoke", **overrides)


def test_run_table():
    names = pmm.runs_for(CPU)
    assert "pmm_k3" not in names and {"pmm_k6", "pmm_k8", "bdb", "cutout", "cutmix", "acutmix"} <= set(names)
    assert pmm.run_config("bdb", CPU).model == "bdb"
    assert pmm.run_config("cutmix", CPU).mix == "none" and pmm.run_config("cutmix", CPU).image_mix == "cutmix"
    for arm in pmm.CLAIM_ARMS:
        assert pmm.run_config(f"{arm}_seed2", CPU) == dataclasses.replace(pmm.run_config(arm, CPU), seed=2)
    for (rows, cols), k in pmm.BLOCK_SWEEP:  # about the same mixed area as 3 one-cell blocks
        cfg = pmm.run_config(pmm.block_run_name((rows, cols)), CPU)
        assert cfg.block == [rows, cols] and cfg.k == k and 3 <= rows * cols * k <= 4
        assert pmm.block_run_name((rows, cols)) in names


def test_salient_blocks_zeroed_hides_the_most_active_blocks():
    cfg = pmm.config_for("smoke", pretrained=False)
    model = pmm.build_model(cfg, 4).eval()
    seen = []
    model.stage1.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    x = torch.rand(2, 3, cfg.height, cfg.width)
    with torch.no_grad():
        plain = model.backbone(x)
        with pmm.salient_blocks_zeroed(model, [1, 1], 2):
            model(x)
        model(x)
    zeroed, after = seen
    activity = plain.sum(dim=1).flatten(1)  # (B, cells)
    top = activity.topk(2, dim=1).indices
    flat = zeroed.flatten(2)
    for b in range(2):
        assert (flat[b][:, top[b]] == 0).all()
        rest = [i for i in range(activity.shape[1]) if i not in top[b].tolist()]
        assert torch.equal(flat[b][:, rest], plain.flatten(2)[b][:, rest])
    assert torch.equal(after, plain)  # the hook is gone
    assert not model.backbone._forward_hooks


@pytest.mark.parametrize("run", ["bdb", "pmm", "cutout", "cutmix", "acutmix"])
def test_training_forward_of_each_variant(run):
    cfg = pmm.run_config(run, pmm.config_for("smoke", pretrained=False))
    model = pmm.build_model(cfg, 4).train()
    assert isinstance(model, BDBNet if run == "bdb" else PMMNet)
    saliency = pmm._backbone(cfg) if cfg.image_mix == "attentive_cutmix" else None
    forward = pmm.TrainingForward(cfg, saliency)
    batch = {"image": torch.randn(8, 3, cfg.height, cfg.width), "pid": torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])}
    out = forward(model, batch)
    if cfg.image_mix != "none":
        keep = out.extras["mix_keep"]
        assert keep.shape == (8,) and bool(((keep > 0) & (keep <= 1)).all())
        if cfg.image_mix == "attentive_cutmix":  # partners are other identities; k cells of the 4x2 grid
            assert bool((out.extras["mix_pids"] != batch["pid"]).all())
            assert torch.allclose(keep, torch.full((8,), 1 - cfg.k / 8))
    elif run in ("pmm", "cutout"):
        assert out.extras["masks"].shape == (8, 2, 4, 2)
    loss, logs = PerStageLoss()(out, batch)
    loss.backward()
    assert torch.isfinite(loss) and "triplet" in logs


def test_smoke_runs_and_reuse(tmp_path):
    base = pmm.config_for("smoke")
    ctx = pmm.context(chapter.load_data(base), results_root=tmp_path / "results", runs_dir=tmp_path / "runs")
    names = ["bdb", "pmm", "acutmix"]
    runs = pmm.run_all(base, ctx, names)
    assert list(runs) == names
    assert {"mAP", "rank1", "truncated50_mAP", "family", "occluded"} <= set(runs["pmm"].metrics)
    occluded = runs["pmm"].metrics["occluded"]
    assert occluded["retained"] == pytest.approx(occluded["mAP"] / runs["pmm"].metrics["mAP"])
    assert runs["pmm"].metrics["truncated50_mAP"] <= runs["pmm"].metrics["mAP"] + 1e-9
    again = pmm.run_all(base, dataclasses.replace(ctx, reuse=True), names)
    assert all(r.record.reused for r in again.values())
    assert again["pmm"].metrics == runs["pmm"].metrics


def test_map_scores_per_stage(tmp_path):
    cfg = pmm.config_for("smoke", pretrained=False)
    data = chapter.load_data(cfg)
    model = pmm.build_model(cfg, data.num_classes).train()
    scores = pmm.map_scores(model, cfg, data)
    assert model.training  # left in the mode it had
    assert set(scores) == {"cue_area", "body_area", "stage1", "stage2", "stage3", "overlap"}
    for s in ("stage1", "stage2", "stage3"):
        stage = scores[s]
        assert stage["body"] + stage["background"] == pytest.approx(1.0, abs=1e-6)
        assert 0 <= stage["cues"] <= stage["body"] and 0 <= stage["area"] <= 1
    assert 0 <= scores["overlap"] <= 1
    assert all(p.grad is None for p in model.parameters())
    bdb = pmm.map_scores(pmm.build_model(pmm.run_config("bdb", cfg), data.num_classes), cfg, data)
    assert {"stage1", "stage2", "overlap"} <= set(bdb) and "stage3" not in bdb
