import subprocess
import sys
from pathlib import Path

import pytest

from reidlib.cli import build_parser, main


def test_help_is_fast_and_light():
    out = subprocess.run([sys.executable, "-c", "import sys, reidlib.cli; print('torch' in sys.modules)"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    top = subprocess.run([sys.executable, "-m", "reidlib", "--help"], capture_output=True, text=True,
                         check=True)
    for command in ("synth", "train", "evaluate", "pretrain"):
        assert command in top.stdout


@pytest.mark.parametrize("command, options", [
    ("synth", ["--preset", "--out", "--seed", "--height", "--width", "--quality"]),
    ("train", ["--config", "--out", "--resume", "--no-resume", "--device", "--epochs"]),
    ("evaluate", ["--config", "--checkpoint", "--dataset", "--root", "--preset", "--flip", "--rerank",
                  "--metric", "--out"]),
    ("pretrain", ["--scale", "--depth", "--width", "--rebuild", "--device"]),
])
def test_every_option_is_explained(command, options, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text
    for opt in options:
        assert opt in text
    parser = build_parser()
    sub = next(a for a in parser._subparsers._group_actions[0].choices.items() if a[0] == command)[1]
    for action in sub._actions:
        assert action.help, f"{command} {action.option_strings} has no help text"


def test_synth_writes_market_layout(tmp_path, capsys):
    out = tmp_path / "synth"
    assert main(["synth", "--preset", "tiny", "--out", str(out), "--height", "32"]) == 0
    train = list((out / "bounding_box_train").glob("*.jpg"))
    query = list((out / "query").glob("*.jpg"))
    assert len(train) == 108 and len(query) == 24
    assert (out / "synthreid.json").is_file()
    from reidlib.data.market1501 import load_market1501

    splits = load_market1501(out)
    assert splits.num_train_pids == 18 and len(splits.query) == 24
    # a second write into the same folder is refused with a one-line error
    assert main(["synth", "--preset", "tiny", "--out", str(out), "--height", "32"]) == 2
    assert "not empty" in capsys.readouterr().err


def test_train_and_evaluate_report_bad_inputs(tmp_path, capsys):
    assert main(["train", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochz: 3\n")
    assert main(["train", "--config", str(bad)]) == 2
    assert "epochz" in capsys.readouterr().err
    config = Path(__file__).resolve().parents[1] / "configs" / "baseline_synth_tiny.yaml"
    assert main(["evaluate", "--config", str(config), "--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert "none.pt" in capsys.readouterr().err
    assert main(["evaluate", "--config", str(config), "--checkpoint", "x.pt", "--root", "data"]) == 2
    assert "--dataset" in capsys.readouterr().err


@pytest.fixture()
def pretrain_env(tmp_path, monkeypatch):
    """Trunk cache and results files under ``tmp_path``; no scale forced from outside."""
    monkeypatch.setenv("REIDLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("REIDLIB_RESULTS", str(tmp_path / "results"))
    monkeypatch.delenv("REIDLIB_SCALE", raising=False)
    return tmp_path


def test_pretrain_builds_reuses_rebuilds_and_repairs(pretrain_env, capsys):
    from reidlib.recipes import pretrain

    cfg = pretrain.SCALE_CONFIGS["smoke"]
    trunk = pretrain_env / "cache" / "pretrain" / f"smoke-{cfg.name}-{cfg.key}" / "trunk.pt"
    assert main(["pretrain", "--scale", "smoke"]) == 0
    assert f"{cfg.name} (smoke, key {cfg.key}): building (not cached yet)" in capsys.readouterr().out
    assert trunk.is_file()
    assert (pretrain_env / "results" / "pretrain" / "smoke" / f"{cfg.name}.json").is_file()
    built = trunk.stat().st_mtime_ns

    assert main(["pretrain", "--scale", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "reused from the cache" in out and str(trunk) in out and "building" not in out
    assert trunk.stat().st_mtime_ns == built

    assert main(["pretrain", "--scale", "smoke", "--rebuild"]) == 0
    assert "building (--rebuild)" in capsys.readouterr().out
    assert pretrain.cache_problem(cfg) is None

    with trunk.open("ab") as f:
        f.write(b"junk")
    assert main(["pretrain", "--scale", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "cache unusable" in out and str(trunk) in out
    assert pretrain.cache_problem(cfg) is None


def test_pretrain_one_trunk_by_depth_and_width(pretrain_env, capsys):
    assert main(["pretrain", "--scale", "smoke", "--depth", "10"]) == 0
    assert "resnet10w8 (smoke" in capsys.readouterr().out
    folders = [p.name for p in (pretrain_env / "cache" / "pretrain").iterdir()]
    assert len(folders) == 1 and folders[0].startswith("smoke-resnet10w8-")


def test_pretrain_reports_bad_scales_and_widths(pretrain_env, capsys):
    assert main(["pretrain", "--scale", "full"]) == 2
    err = capsys.readouterr().err
    assert "'full'" in err and "smoke" in err and "cpu" in err
    assert main(["pretrain", "--scale", "full", "--depth", "10"]) == 2
    assert "'full'" in capsys.readouterr().err
    assert main(["pretrain", "--scale", "large"]) == 2
    assert "'large'" in capsys.readouterr().err
    assert main(["pretrain", "--scale", "cpu", "--width", "64"]) == 2
    assert "ImageNet" in capsys.readouterr().err
    assert not (pretrain_env / "cache").exists()


def test_pretrain_follows_the_forced_scale(pretrain_env, monkeypatch, capsys):
    monkeypatch.setenv("REIDLIB_SCALE", "smoke")  # as for the notebooks: CI forces smoke everywhere
    assert main(["pretrain", "--scale", "cpu", "--depth", "10"]) == 0
    out = capsys.readouterr().out
    assert "REIDLIB_SCALE=smoke overrides --scale cpu" in out and "resnet10w8 (smoke" in out


def test_chapter_trunks(monkeypatch):
    from reidlib.cli import chapter_trunks
    from reidlib.recipes import pretrain

    monkeypatch.delattr(pretrain, "CHAPTER_TRUNKS", raising=False)
    assert chapter_trunks("cpu") == [pretrain.SCALE_CONFIGS["cpu"]]
    assert chapter_trunks("smoke") == [pretrain.SCALE_CONFIGS["smoke"]]
    with pytest.raises(ValueError, match="'full'"):
        chapter_trunks("full")
    # (depth, width) pairs are taken at the scale asked for; duplicates are built once
    monkeypatch.setattr(pretrain, "CHAPTER_TRUNKS", ((10, 8), (18, 8), (10, 8)), raising=False)
    assert [c.name for c in chapter_trunks("smoke")] == ["resnet10w8", "resnet18w8"]
    assert {c.scale for c in chapter_trunks("cpu")} == {"cpu"}
    # configs of another scale are left out; a mapping is read per scale
    monkeypatch.setattr(pretrain, "CHAPTER_TRUNKS", (pretrain.SCALE_CONFIGS["cpu"],
                                                     pretrain.trunk_config("smoke", 34, 4)))
    assert [c.name for c in chapter_trunks("smoke")] == ["resnet34w4"]
    monkeypatch.setattr(pretrain, "CHAPTER_TRUNKS", {"cpu": ((10, 16),)})
    assert [c.name for c in chapter_trunks("cpu")] == ["resnet10w16"]
    assert chapter_trunks("smoke") == [pretrain.SCALE_CONFIGS["smoke"]]
