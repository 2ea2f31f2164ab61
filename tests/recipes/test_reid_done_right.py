import dataclasses
import json

import pytest
import torch

from reidlib.data.transforms import AspectPreservingResize
from reidlib.recipes import reid_done_right as R


def _model(dim=16):
    torch.manual_seed(0)
    cfg = R.config_for("smoke", dim=dim)
    return R.build_model(cfg)


def _grads(model):
    return torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None])


def _triplets(n, size=(48, 24)):
    g = torch.Generator().manual_seed(1)
    return [tuple(torch.randn(3, *size, generator=g) for _ in range(3)) for _ in range(n)]


def test_accumulated_triplets_equal_one_batch_with_frozen_bn():
    model = _model()
    model.train()
    R.set_bn_eval(model)
    trips = _triplets(6)
    model.zero_grad()
    loss_one, active_one = R.accumulate_triplet_gradients(model, trips, 0.5, triplets_per_pass=1)
    one = _grads(model).clone()
    model.zero_grad()
    loss_all, active_all = R.accumulate_triplet_gradients(model, trips, 0.5, triplets_per_pass=6)
    assert loss_one == pytest.approx(loss_all, rel=1e-5) and active_one == active_all
    assert torch.allclose(one, _grads(model), atol=1e-6, rtol=1e-4)
    assert one.abs().sum() > 0


def test_aspect_preserving_inputs_of_different_sizes_accumulate_like_separate_passes():
    model = _model()
    model.train()
    R.set_bn_eval(model)
    resize = AspectPreservingResize(48)
    sizes = [(100, 50), (60, 50), (120, 40)]  # three aspect ratios: three different input sizes
    g = torch.Generator().manual_seed(2)
    images = [resize(torch.rand(3, *s, generator=g)) for s in sizes * 3]
    assert {tuple(i.shape[1:]) for i in images} == {(48, 24), (48, 40), (48, 16)}
    trips = [tuple(images[3 * i: 3 * i + 3]) for i in range(3)]
    model.zero_grad()
    R.accumulate_triplet_gradients(model, trips, 0.5, triplets_per_pass=3)
    batched = _grads(model).clone()
    model.zero_grad()
    for t in trips:  # one triplet per pass, each scaled by 1/3 as accumulation does
        R.accumulate_triplet_gradients(model, [t], 0.5, triplets_per_pass=1, normalizer=3)
    assert torch.allclose(batched, _grads(model), atol=1e-6, rtol=1e-4)
    # the descriptor of an image does not depend on what it is batched with
    d_all = R.descriptors(model.eval(), images)
    assert torch.allclose(d_all[4], R.descriptors(model, [images[4]])[0], atol=1e-6)


def test_cutout_schedules_of_the_runs():
    base = R.config_for("smoke")
    _, prog = R.ranking_transform(base)
    _, fixed = R.ranking_transform(dataclasses.replace(base, cutout="fixed"))
    _, none = R.ranking_transform(dataclasses.replace(base, cutout="none"))
    assert none is None
    areas = []
    for p in (0.0, 0.5, 1.0):
        prog.set_progress(p)
        fixed.set_progress(p)
        areas.append(prog.max_area())
        assert fixed.max_area() == pytest.approx(base.cutout_max_area)
    assert areas == pytest.approx([0.0, base.cutout_max_area / 2, base.cutout_max_area])
    prog.set_progress(0.0)
    img = torch.rand(3, 48, 24)
    assert torch.equal(prog(img), img)  # nothing is cut at the start of the curriculum


def test_runs_and_config_validation():
    base = R.config_for("cpu")
    assert R.run_config("size_small", base).max_side == base.size_sweep[0]
    assert R.run_config("depth_deep", base).depth == base.depth_sweep[2]
    assert R.run_config("rdr", base) == base
    assert set(R.TABLE1_RUNS.values()) <= set(R.RUNS)
    with pytest.raises(ValueError, match="unknown"):
        R.run_config("nope", base)
    with pytest.raises(ValueError, match="mining"):
        R.config_for("cpu", mining="semi_hard")
    with pytest.raises(ValueError, match="unknown RdrConfig"):
        R.config_for("cpu", epochs=3)
    full = R.config_for("full")
    assert (full.max_side, full.dim, full.margin, full.pool_size, full.pool_updates, full.num_hard) == (
        416, 2048, 0.1, 5000, 16, 25)


def test_calibrate_bn_sets_statistics():
    model = _model()
    images = [torch.rand(3, 48, 24) + 2.0 for _ in range(8)]
    R.calibrate_bn(model, images)
    bn = model.backbone.stem[1]
    assert bn.running_mean.abs().sum() > 0 and bn.momentum == 0.1


@pytest.mark.slow
def test_smoke_run_end_to_end(tmp_path):
    base = R.config_for("smoke")
    data = R.load_data(base)
    ctx = R.RunContext(data, results_root=tmp_path / "results", runs_dir=tmp_path / "runs")
    run = R.run_rdr("rdr", base, ctx)
    stored = json.loads((tmp_path / "results" / R.CHAPTER / "smoke" / "rdr.json").read_text())
    assert 0 <= stored["metrics"]["mAP"] <= 1 and "qe" in stored["metrics"] and "krr" in stored["metrics"]
    assert len(stored["history"]) == base.iterations
    assert (tmp_path / "results" / R.CHAPTER / "smoke" / "classification_r10.json").is_file()
    again = R.run_rdr("rdr", base, dataclasses.replace(ctx, reuse=True, classifiers={}))
    assert again.record.reused
    x = torch.rand(1, 3, 48, 24)
    with torch.no_grad():
        assert torch.allclose(again.model(x).embedding, run.model.eval()(x).embedding, atol=1e-6)
    rr = R.run_reranking(run, ctx)
    assert rr["qe"].metrics["mAP"] == pytest.approx(run.metrics["qe"]["mAP"])
    curve = R.run_distractors(run, ctx, [0, 10])
    assert set(curve.metrics["curve"]) == {"0", "10"}
    assert curve.metrics["curve"]["0"]["mAP"] == pytest.approx(run.metrics["mAP"], abs=1e-6)
    att = R.run_attention(run, ctx)
    assert 0 <= att["rdr"].metrics["energy_cues"] <= 1
