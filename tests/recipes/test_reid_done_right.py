import dataclasses
import json

import pytest
import torch

from reidlib.data.batches import UpdateBatches
from reidlib.data.transforms import AspectPreservingResize
from reidlib.engine.bn import FrozenBatchNorm
from reidlib.engine.config import OptimizerConfig, TrainConfig
from reidlib.engine.extract import descriptors, forward_any_size
from reidlib.engine.trainer import Trainer
from reidlib.losses import TripletRankingLoss
from reidlib.recipes import chapter
from reidlib.recipes import reid_done_right as R


def _model(dim=16):
    torch.manual_seed(0)
    cfg = R.config_for("smoke", dim=dim)
    return R.build_model(cfg)


class _Images:
    """A dataset of fixed images (no augmentation), sizes as given."""

    def __init__(self, images):
        self.images = images

    def __getitem__(self, i):
        pid = i // 3 if i % 3 < 2 else 1000 + i  # rows (q, p, n): q and p share an identity
        return {"image": self.images[i], "pid": pid, "camid": 0, "index": i}


def _one_update(images, triplets_per_pass, tmp_path):
    """Weights after one SGD update on all triplets (rows q, p, n of ``images``), fed
    ``triplets_per_pass`` at a time with accumulated gradients and frozen BN, as stage 2 trains."""
    model = _model()
    n = len(images) // 3
    loader = UpdateBatches(_Images(images), lambda g: list(range(len(images))), updates=1,
                           passes=n // triplets_per_pass)
    cfg = TrainConfig(epochs=1, grad_accum_steps=loader.passes, progress="none",
                      optimizer=OptimizerConfig(name="sgd", lr=0.5, momentum=0.0, weight_decay=0.0))
    trainer = Trainer(model, TripletRankingLoss(margin=0.5), loader, cfg, tmp_path / str(triplets_per_pass),
                      callbacks=[FrozenBatchNorm()], forward_fn=forward_any_size)
    trainer.fit(resume=False)
    return [p.detach().clone() for p in model.parameters()], trainer.history.epochs[0]["loss"]


def test_one_triplet_at_a_time_equals_one_batch_with_frozen_bn_at_any_sizes(tmp_path):
    resize = AspectPreservingResize(48)
    g = torch.Generator().manual_seed(2)
    sizes = [(100, 50), (60, 50), (120, 40)]  # three aspect ratios: three input sizes
    images = [resize(torch.rand(3, *s, generator=g)) for s in sizes * 4]
    assert {tuple(i.shape[1:]) for i in images} == {(48, 24), (48, 40), (48, 16)}
    start = [p.detach().clone() for p in _model().parameters()]
    one, loss_one = _one_update(images, 1, tmp_path)
    batched, loss_all = _one_update(images, 4, tmp_path)
    assert loss_one == pytest.approx(loss_all, rel=1e-5)
    assert any(not torch.equal(a, b) for a, b in zip(start, batched, strict=True))  # it did train
    for a, b in zip(one, batched, strict=True):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)
    model = _model().eval()  # a descriptor does not depend on what it is batched with
    assert torch.allclose(descriptors(model, images)[4], descriptors(model, [images[4]])[0], atol=1e-6)


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
    with pytest.raises(ValueError, match="triplets_per_pass"):
        R.config_for("cpu", batch_triplets=16, triplets_per_pass=5)
    with pytest.raises(ValueError, match="pool_updates"):
        R.config_for("cpu", iterations=60)
    full = R.config_for("full")
    assert (full.max_side, full.dim, full.margin, full.pool_size, full.pool_updates, full.num_hard) == (
        416, 2048, 0.1, 5000, 16, 25)
    assert R.config_for("cpu", data_seed=3, seed=1).synth_seed == 3  # one SynthReID for every seed


@pytest.mark.slow
def test_smoke_run_end_to_end(tmp_path):
    base = dataclasses.replace(R.config_for("smoke"), cls_pretrain=True)  # trunk, then stage 1, then stage 2
    data = chapter.load_data(base)
    ctx = R.context(data, results_root=tmp_path / "results", runs_dir=tmp_path / "runs")
    run = R.run_rdr("rdr", base, ctx)
    stored = json.loads((tmp_path / "results" / R.CHAPTER / "smoke" / "rdr.json").read_text())
    assert 0 <= stored["metrics"]["mAP"] <= 1 and "qe" in stored["metrics"] and "krr" in stored["metrics"]
    history = stored["history"]
    assert [h["iteration"] for h in history] == list(range(1, base.iterations + 1))
    refreshed = [h["iteration"] for h in history if "pool_hard_loss" in h]
    assert refreshed == list(range(1, base.iterations + 1, base.pool_updates))  # every k updates
    assert history[0]["lr"] == pytest.approx(base.lr)  # the LR the first update used
    assert (tmp_path / "results" / R.CHAPTER / "smoke" / "classification_r10.json").is_file()
    again = R.run_rdr("rdr", base, dataclasses.replace(ctx, reuse=True, models={}))
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


@pytest.mark.slow
def test_stage_two_resumes_bit_exactly_after_a_crash(tmp_path, monkeypatch):
    from reidlib.engine.callbacks import StepLog

    base = R.config_for("smoke")  # 4 updates: 2 epochs of 2 updates (one pool refresh each)
    data = chapter.load_data(base)

    def fresh():
        torch.manual_seed(0)
        return R.initialise(R.build_model(base), base, data, None)

    whole = fresh()
    history = R.train_ranking(whole, base, data, tmp_path / "whole")

    original = StepLog.on_step_end

    def crash_at_step_3(self, trainer, step, logs):
        original(self, trainer, step, logs)
        if step == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(StepLog, "on_step_end", crash_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        R.train_ranking(fresh(), base, data, tmp_path / "crashed")
    monkeypatch.setattr(StepLog, "on_step_end", original)
    resumed = fresh()
    again = R.train_ranking(resumed, base, data, tmp_path / "crashed")  # resumes after epoch 1
    for p, q in zip(whole.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(p, q)
    assert again == history  # the same per-update losses, pool refreshes included


def test_with_a_trunk_table_3c_drops_it_3b_keeps_one_per_depth_and_claims_arms_have_paired_seeds():
    from reidlib.results.claims import MIN_SEEDS, load_claims

    base = R.config_for("cpu")
    assert R.uses_trunk(base) and not base.cls_pretrain
    assert R.run_config("no_cls_pretrain", base).pretrained is False
    shallow, deep = R.run_config("depth_shallow", base), R.run_config("depth_deep", base)
    assert (shallow.depth, deep.depth) == (base.depth_sweep[0], base.depth_sweep[2])
    assert R.uses_trunk(shallow) and R.uses_trunk(deep)  # each depth from its own trunk, like ImageNet
    full = R.config_for("full")
    assert R.run_config("no_cls_pretrain", full).cls_pretrain is False
    assert R.run_config("depth_deep", full).pretrained
    derived = {"rdr_qe": "rdr", "attention_rdr": "rdr", "attention_uniform": "rdr"}
    for claim in load_claims(R.CHAPTER):
        for arm in (claim.winner, *claim.losers):
            trained = derived.get(arm, arm)
            seeds = {R.run_config(n, base).seed for n in R.RUNS
                     if n == trained or n.startswith(f"{trained}_seed")}
            assert len(seeds) >= MIN_SEEDS, (claim.id, arm)


def test_derived_runs_keep_the_seed_suffix_last():
    assert R.derived_name("rdr_seed2", suffix="qe") == "rdr_qe_seed2"
    assert R.derived_name("rdr", suffix="krr") == "rdr_krr"
    assert R.derived_name("aug_none_seed1", "attention") == "attention_aug_none_seed1"
    assert R.derived_name("rdr_seedling", "attention") == "attention_rdr_seedling"
