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
    for command in ("synth", "train", "evaluate"):
        assert command in top.stdout


@pytest.mark.parametrize("command, options", [
    ("synth", ["--preset", "--out", "--seed", "--height", "--width", "--quality"]),
    ("train", ["--config", "--out", "--resume", "--no-resume", "--device", "--epochs"]),
    ("evaluate", ["--config", "--checkpoint", "--dataset", "--root", "--preset", "--flip", "--rerank",
                  "--metric", "--out"]),
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
