"""The FMN recipe: configs, the run table, both stages of Algorithm 1 end to end at smoke, the derived
evaluations the claims compare, reuse, and the chapter's tables read from the results files."""

import dataclasses

import matplotlib
import pytest
import torch

from reidlib.recipes import chapter, fmn, fmn_report
from reidlib.results.claims import evaluate_claims, load_claims

matplotlib.use("Agg")


def test_configs_and_run_table():
    for scale, cfg in fmn.SCALE_CONFIGS.items():
        assert cfg.scale == scale and cfg.mask_layer == "pool1" and cfg.alpha == 0.5
    assert fmn.SCALE_CONFIGS["full"].optimizer == "sgd" and fmn.SCALE_CONFIGS["full"].grn_lr == 0.1
    assert fmn.SCALE_CONFIGS["cpu"].pretrained and fmn.SCALE_CONFIGS["cpu"].base_width == 16
    assert {fmn.mask_run_name(m) for m in fmn.MASK_LAYER_SWEEP} <= set(fmn.RUNS)
    for arm in fmn.CLAIM_ARMS:
        for s in fmn.PAIRED_SEEDS:
            assert fmn.run_config(f"{arm}_seed{s}", fmn.SCALE_CONFIGS["cpu"]).seed == s
    assert fmn.run_config("fmn_no_rank", fmn.SCALE_CONFIGS["cpu"]).rank_weight == 0
    assert not fmn.run_config("lan_no_mask", fmn.SCALE_CONFIGS["cpu"]).use_mask
    assert len({fmn.margin_run_name(m) for m in fmn.MARGIN_SWEEP}) == len(fmn.MARGIN_SWEEP)
    with pytest.raises(ValueError, match="mask_layer 'res5'"):
        fmn.config_for("smoke", mask_layer="res5")
    with pytest.raises(ValueError, match="alpha"):
        fmn.config_for("smoke", alpha=1.5)


def test_every_claim_compares_runs_the_chapter_writes():
    written = set(fmn.RUNS) | {"grn", "fmn_lan", "fmn_krr"}
    for claim in load_claims("fmn"):
        arms = [claim.winner, *claim.losers]
        assert set(arms) <= written, claim.id
        for arm in arms:  # every arm of a claim has the paired seeds
            stem = "fmn" if arm in ("fmn_lan", "fmn_krr", "grn") else arm
            assert stem in fmn.CLAIM_ARMS, (claim.id, arm)


@pytest.mark.parametrize("layer", fmn.MASK_LAYER_SWEEP)
def test_mask_size_is_the_models(layer):
    cfg = dataclasses.replace(fmn.SCALE_CONFIGS["cpu"], mask_layer=layer, pretrained=False)
    grn = fmn.build_grn(cfg, 4)
    model = fmn.build_fmn(cfg, grn, 4)
    out = model(torch.randn(1, 3, cfg.height, cfg.width))
    assert tuple(out.extras["mask"].shape[1:]) == fmn.mask_size(cfg)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """Every run of the chapter at smoke (seconds), in temporary results and run folders."""
    root = tmp_path_factory.mktemp("fmn")
    base = fmn.config_for("smoke")
    data = chapter.load_data(base)
    ctx = fmn.context(data, results_root=root / "results", runs_dir=root / "runs")
    runs = fmn.run_all(base, ctx)
    return base, data, ctx, runs, fmn_report.chapter_records("smoke", root / "results")


def test_stage2_runs_of_a_seed_share_one_frozen_grn(smoke):
    _, _, _, runs, records = smoke
    assert {"grn", "grn_seed1", "grn_seed2"} <= set(records)
    assert not any(name.startswith("grn") for name in runs)  # stage 1 is stored, not a stage-2 run
    a, b = runs["fmn"].model.grn.state_dict(), runs["fmn_res4"].model.grn.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # same seed: the same stage 1, untouched by stage 2
    c = runs["fmn_seed1"].model.grn.state_dict()
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert records["fmn"].config["mask_layer"] == "pool1"
    assert records["fmn_res4"].config["mask_layer"] == "res4"


def test_derived_runs_hold_the_trained_models_numbers(smoke):
    *_, records = smoke
    for suffix in ("", "_seed1", "_seed2"):
        fmn_rec, lan, krr = records[f"fmn{suffix}"], records[f"fmn_lan{suffix}"], records[f"fmn_krr{suffix}"]
        assert lan.metrics["mAP"] == fmn_rec.extra["lan"]["mAP"] and lan.seed == fmn_rec.seed
        assert krr.metrics["mAP"] == fmn_rec.metrics["krr"]["mAP"]
        # alpha = 0 of the sweep is the LAN alone, alpha = 1 the GRN alone
        assert fmn_rec.metrics["alpha"]["0"]["mAP"] == pytest.approx(lan.metrics["mAP"])
        assert fmn_rec.metrics["alpha"]["1"]["mAP"] == pytest.approx(records[f"grn{suffix}"].metrics["mAP"],
                                                                      abs=1e-6)
        assert 0 <= fmn_rec.metrics["cues"]["cam_energy"] <= 1
        mask = records[f"fmn_mask{suffix}"].metrics["cues"]
        assert mask["mask_energy"] == pytest.approx(fmn_rec.metrics["cues"]["mask_energy"], abs=1e-6)
        assert set(mask["mask_cue_type_energy"]) <= set(fmn_rec.metrics["cues"]["cue_type_area"])


def test_a_second_pass_reuses_every_run(smoke, capsys):
    base, data, ctx, _, records = smoke
    again = fmn.context(data, reuse=True, results_root=ctx.results_root, runs_dir=ctx.runs_dir)
    capsys.readouterr()
    runs = fmn.run_all(base, again, names=["fmn", "fmn_res4"])
    out = capsys.readouterr().out
    assert "epoch 1/1" not in out and "Reused fmn/smoke/grn" in out
    assert runs["fmn"].record.metrics == records["fmn"].metrics


def test_report_tables_read_the_results(smoke):
    base, *_, records = smoke
    t1 = fmn_report.table1(records)
    assert list(t1.index) == ["GRN", "LAN", "FMN"] and t1.loc["FMN", "paper mAP"] == 67.12
    assert t1.loc["GRN", "ours mAP"].endswith("(3)")
    t5 = fmn_report.table5(records, base)
    assert list(t5["paper mask"]) == ["56x56", "56x56", "28x28", "14x14"]
    assert list(t5["our mask"]) == ["16x8", "16x8", "8x4", "4x2"]  # 64x32 smoke input
    assert t5.loc["Res2", "ours mAP"].endswith("(1 seed)")
    points = fmn_report.alpha_points(records)
    assert len(points) == 3 * len(fmn.ALPHA_SWEEP) and points["mAP"].notna().all()
    half = points[points["alpha"] == 0.5].set_index("seed")["mAP"]
    assert half[0] == pytest.approx(100 * records["fmn"].metrics["mAP"])  # alpha = 0.5 is the model's own
    sota = fmn_report.paper_vs_ours(records, "DukeMTMC-reID")
    assert "DPFL (ICCV'17) (paper)" in sota.index and sota.loc["DPFL (ICCV'17) (paper)", "mAP"] == 60.6
    assert sota.index[-1].startswith("FMN+re-rank, ours on synthreid_tiny")
    assert sota["mAP"].iloc[-1].endswith("(3)")
    rr = fmn_report.rerank_table(records)
    assert rr.loc["FMN+re-rank", "paper mAP, Market-1501"] == 80.62
    assert "(3)" in fmn_report.explanation_table(records).loc["LAN's CAM", "energy on cues (%)"]
    fmn_report.plot_alpha(records)
    fmn_report.plot_table5(records)
    assert fmn_report.ranking_loss_table(records).loc["no ranking loss (Eq. 4 only)", "mAP"].endswith("(3)")


def test_claims_are_judged_from_the_smoke_results(smoke):
    _, _, ctx, _, _ = smoke
    claims = evaluate_claims("fmn", ["smoke"], root=ctx.results_root)
    assert len(claims) == len(load_claims("fmn"))
    assert set(claims["seeds"]) == {3}  # every claim's arms have three paired seeds


def test_figure4_picks_queries_the_grn_misses_and_the_fmn_gets(smoke):
    base, data, _, runs, _ = smoke
    model = runs["fmn"].model
    picks = fmn_report.figure4_queries(model, base, data, n=5)
    q, g = fmn.branch_features(model, base, data)
    for qi, grn_top, fmn_top in picks:
        assert g.pids[grn_top] != q.pids[qi] and g.pids[fmn_top] == q.pids[qi]
    fmn_report.figure4(model, base, data, n=2)
