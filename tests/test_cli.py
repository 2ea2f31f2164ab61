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


# ------------------------------------------------------------------------------------ bad inputs
# Each case runs the command as a user would and checks three things: the exit status, one line on
# stderr that names the culprit (no traceback), and that no file outside the command's own outputs changed.
FAST_CONFIG = """\
name: fast
out_dir: {out}
device: cpu
data: {{preset: tiny, height: 32, width: 16, batch_size: 16, num_instances: 4, test_batch_size: 64, pad: 2}}
model: {{arch: bnneck, depth: 18, last_stride: 1}}
loss: {{}}
train: {{epochs: 1, seed: {seed}, max_iters_per_epoch: 2, progress: none}}
eval: {{untrained: true}}
"""


def _config(folder: Path, name: str = "fast.yaml", seed: int = 0, out: str = "runs/fast") -> Path:
    path = folder / name
    path.write_text(FAST_CONFIG.format(seed=seed, out=out))
    return path


def _digests(*folders: Path) -> dict[str, str]:
    import hashlib

    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for folder in folders for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A config and the run folder that `train` made from it (one epoch of two batches)."""
    home = tmp_path_factory.mktemp("trained")
    config = _config(home)
    assert main(["train", "--config", str(config), "--out", str(home / "run")]) == 0
    return config, home / "run"


@pytest.fixture()
def run_copy(trained, tmp_path):
    import shutil

    config, run = trained
    shutil.copytree(run, tmp_path / "run")
    return config, tmp_path / "run"


def test_evaluate_out_never_overwrites_the_checkpoint_or_the_training_summary(run_copy, capsys):
    config, run = run_copy
    before = _digests(run)
    for target in ("latest.pt", "metrics.json"):  # both used to be replaced by 1 KB of JSON
        assert main(["evaluate", "--config", str(config), "--checkpoint", str(run / "latest.pt"),
                     "--out", str(run / target)]) == 2
        err = _one_line_error(capsys)
        assert f"--out {run / target} is a file; --out names a folder" in err
    assert _digests(run) == before


def test_evaluate_out_is_a_folder_checked_before_the_evaluation(run_copy, capsys):
    config, run = run_copy
    ckpt = run / "latest.pt"
    assert main(["evaluate", "--config", str(config), "--checkpoint", str(ckpt), "--out", str(run)]) == 0
    out = capsys.readouterr().out
    written = run / "evaluation_latest_synthreid-tiny.json"
    assert f"metrics written to {written}" in out
    import json

    again = json.loads(written.read_text())
    trained = json.loads((run / "metrics.json").read_text())["metrics"]
    assert again["mAP"] == pytest.approx(trained["mAP"], abs=1e-6)
    # a file of that name that evaluate did not write stops the command before it loads anything
    written.write_text("my notes, written over evaluate's file")
    before = _digests(run)
    assert main(["evaluate", "--config", str(config), "--checkpoint", str(ckpt), "--out", str(run)]) == 2
    err = _one_line_error(capsys)
    assert f"{written} exists and was changed after reidlib wrote it" in err
    assert "untrained" not in capsys.readouterr().out and _digests(run) == before


def test_train_no_resume_with_a_changed_config_recomputes_the_untrained_metrics(run_copy, tmp_path, capsys):
    import json

    _, run = run_copy
    stale = json.loads((run / "untrained_metrics.json").read_text())["metrics"]["mAP"]
    changed = _config(tmp_path, "seed1.yaml", seed=1)  # other initial weights: another untrained model
    assert main(["train", "--config", str(changed), "--out", str(run), "--no-resume"]) == 0
    out = capsys.readouterr().out
    assert "untrained_metrics.json was computed for other model" not in out  # the seed changed, not the model
    assert "untrained_metrics.json was computed for other seed; evaluating the untrained model again" in out
    fresh_run = tmp_path / "fresh"
    assert main(["train", "--config", str(changed), "--out", str(fresh_run)]) == 0
    capsys.readouterr()
    recomputed = json.loads((run / "metrics.json").read_text())["untrained"]["mAP"]
    truth = json.loads((fresh_run / "metrics.json").read_text())["untrained"]["mAP"]
    assert recomputed == pytest.approx(truth, abs=1e-9) and recomputed != pytest.approx(stale, abs=1e-9)


def test_train_refuses_a_folder_whose_files_it_did_not_write(tmp_path, capsys):
    config = _config(tmp_path)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "metrics.json").write_text("results of another tool")
    (mine / "notes.txt").write_text("keep")
    before = _digests(tmp_path)
    assert main(["train", "--config", str(config), "--out", str(mine)]) == 2
    err = _one_line_error(capsys)
    assert f"{mine / 'metrics.json'} exists and is not recorded in .reidlib-outputs.json" in err
    assert _digests(tmp_path) == before


def test_train_into_a_dataset_folder_is_refused(tmp_path, capsys):
    config = tmp_path / "market.yaml"
    data = tmp_path / "market"
    for split in ("bounding_box_train", "query", "bounding_box_test"):
        (data / split).mkdir(parents=True)
    text = FAST_CONFIG.format(seed=0, out="x").replace("preset: tiny", f"name: market1501, root: {data}")
    config.write_text(text)
    before = _digests(tmp_path)
    assert main(["train", "--config", str(config), "--out", str(data / "run")]) == 2
    assert f"inside the dataset folder {data.resolve()}" in _one_line_error(capsys)
    assert _digests(tmp_path) == before and not (data / "run").exists()


def test_leftovers_of_an_interrupted_write_are_cleaned_by_the_next_run(run_copy, capsys):
    config, run = run_copy
    leftover = run / ".latest.pt.abc12_xy.tmp"
    leftover.write_bytes(b"half a checkpoint")
    assert main(["train", "--config", str(config), "--out", str(run), "--epochs", "2"]) == 0
    assert f"removed {leftover}, left by an interrupted write" in capsys.readouterr().out
    assert not leftover.exists()


@pytest.mark.parametrize("text, culprit", [
    ("", "is empty; it must set at least data, model, train"),
    ("data: {preset: tiny}\ntrain: {epochs: 1}\n", "section(s) model missing"),
    ("data: {preset: tiny}\nmodel: {depth: 18}\ntrain: {epochs: 1}\neval: {metric: manhattan}\n",
     "eval.metric='manhattan'"),
    ("data: {preset: tiny}\nmodel: {depth: 18}\ntrain: [1, 2]\n", "train"),
    ("data: [unclosed\n", "not valid YAML"),
])
def test_train_refuses_bad_configs_before_any_work(tmp_path, capsys, text, culprit):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "run")]) == 2
    err = _one_line_error(capsys)
    assert culprit in err and str(path) in err
    assert not (tmp_path / "run").exists()  # refused before the run folder was made


def test_bad_devices_are_one_line_errors(tmp_path, capsys):
    config = _config(tmp_path)
    assert main(["train", "--config", str(config), "--device", "gpu", "--out", str(tmp_path / "r")]) == 2
    assert "--device='gpu' is not a device" in _one_line_error(capsys)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("make, culprit", [
    (lambda p: p.write_bytes(b""), "empty"),
    (lambda p: p.write_text('{"mAP": 0.5}'), "not a PyTorch checkpoint"),
    (lambda p: p.mkdir(), "folder"),
])
def test_evaluate_reports_bad_checkpoints_in_one_line(trained, tmp_path, capsys, make, culprit):
    config, _ = trained
    ckpt = tmp_path / "latest.pt"
    make(ckpt)
    assert main(["evaluate", "--config", str(config), "--checkpoint", str(ckpt)]) == 2
    err = _one_line_error(capsys)
    assert str(ckpt) in err and culprit in err and "weights_only" not in err


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        main(["train", "--config", str(tmp_path / "missing.yaml"), "--debug"])
    with pytest.raises(FileNotFoundError):
        main(["--debug", "train", "--config", str(tmp_path / "missing.yaml")])


def test_synth_config_writes_the_split_the_config_evaluates(tmp_path, capsys):
    from reidlib.data.market1501 import load_market1501
    from reidlib.recipes.baseline import build_eval_data, load_baseline_config

    config = Path(__file__).resolve().parents[1] / "configs" / "baseline_synth_tiny.yaml"
    out = tmp_path / "synth"
    assert main(["synth", "--config", str(config), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["synth", "--config", str(config), "--preset", "tiny", "--out", str(tmp_path / "x")]) == 2
    assert "--config sets the dataset; drop --preset" in _one_line_error(capsys)
    cfg = load_baseline_config(config, notice=None)
    memory, _, _ = build_eval_data(cfg.data, progress=False)
    disk = load_market1501(out)

    def identities(records):
        return sorted((r.pid, r.camid) for r in records if r.pid != -1)  # -1: junk, written to disk only

    assert identities(disk.query) == identities(memory.query)
    assert identities(disk.gallery) == identities(memory.gallery)
    assert disk.num_train_pids == memory.num_train_pids == 120
    from PIL import Image

    first = Image.open(next((out / "query").iterdir()))
    assert first.size == (cfg.data.width, cfg.data.height)


def test_evaluate_on_a_folder_with_broken_images_names_them_before_any_work(trained, tmp_path, capsys):
    from tests.data.fixtures import make_market1501_with_broken_images, tree_checksums

    config, run = trained
    root, broken = make_market1501_with_broken_images(tmp_path)
    before = tree_checksums(root)
    assert main(["evaluate", "--config", str(config), "--checkpoint", str(run / "latest.pt"),
                 "--dataset", "market1501", "--root", str(root), "--out", str(tmp_path / "eval")]) == 2
    err = _one_line_error(capsys)
    assert "market1501: 3 of the" in err
    for path, reason in broken.items():
        assert f"{path}: {reason}" in err
    assert tree_checksums(root) == before and not (tmp_path / "eval").exists()


def test_non_finite_embeddings_stop_the_evaluation_naming_the_images(trained, tmp_path, capsys):
    import torch

    config, run = trained
    state = torch.load(run / "latest.pt", weights_only=True)
    bias = "neck.bias"  # the BN neck after pooling: its output is the embedding
    state["model"][bias][0] = float("nan")  # one embedding dimension is NaN for every image
    poisoned = tmp_path / "nan.pt"
    torch.save(state, poisoned)
    assert main(["evaluate", "--config", str(config), "--checkpoint", str(poisoned)]) == 2
    err = _one_line_error(capsys)
    assert "query embeddings of batch 0 (rows 0..23): 24 of 24 image rows hold NaN" in err
    assert "row 0: synth/query/000000" in err


def test_weights_that_do_not_fit_the_config_are_one_line(trained, tmp_path, capsys):
    config, run = trained
    other = tmp_path / "resnet34.yaml"
    other.write_text(config.read_text().replace("depth: 18", "depth: 34"))
    assert main(["evaluate", "--config", str(other), "--checkpoint", str(run / "latest.pt")]) == 2
    err = _one_line_error(capsys)
    assert f"weights in {run / 'latest.pt'} do not fit the config's model (bnneck, ResNet-34)" in err
    assert len(err) < 400


def test_evaluate_within_a_memory_bound(run_copy, capsys):
    import json

    config, run = run_copy
    ckpt = run / "latest.pt"
    # 24 queries + 84 gallery items of dimension 512: 1 MB holds the re-ranking's fixed parts and some rows
    assert main(["evaluate", "--config", str(config), "--checkpoint", str(ckpt), "--out", str(run),
                 "--max-memory", "1MB", "--rerank"]) == 0
    bounded = json.loads((run / "evaluation_latest_synthreid-tiny.json").read_text())
    assert main(["evaluate", "--config", str(config), "--checkpoint", str(ckpt), "--out", str(run),
                 "--rerank"]) == 0
    free = json.loads((run / "evaluation_latest_synthreid-tiny.json").read_text())
    assert bounded["mAP"] == pytest.approx(free["mAP"], abs=1e-9)
    capsys.readouterr()
    assert main(["evaluate", "--config", str(config), "--checkpoint", str(ckpt), "--max-memory", "lots"]) == 2
    assert "--max-memory" in _one_line_error(capsys)
    assert main(["evaluate", "--config", str(config), "--checkpoint", str(ckpt), "--max-memory", "1KB"]) == 2
    err = _one_line_error(capsys)
    assert "max_memory=" in err and "queries against" in err
