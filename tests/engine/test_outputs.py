import json

import pytest

from reidlib.engine.outputs import MANIFEST, OutputFolder, OutputPathError


def test_a_new_folder_is_claimed_and_its_files_replaced_by_the_same_command_only(tmp_path):
    run = tmp_path / "run"
    folder = OutputFolder(run, "train")
    folder.check(["latest.pt", "metrics.json"])
    folder.claim(["latest.pt", "metrics.json"], quiet=True)
    folder.write_json("metrics.json", {"mAP": 0.5})
    files = json.loads((run / MANIFEST).read_text())["files"]
    assert files["latest.pt"] == {"command": "train", "stamp": None}  # the Trainer rewrites it every epoch
    assert files["metrics.json"]["command"] == "train" and files["metrics.json"]["stamp"]
    folder.check(["metrics.json"])  # written by train before: may be replaced
    with pytest.raises(OutputPathError, match=r"metrics\.json exists and was written by `train`"):
        OutputFolder(run, "evaluate").check(["metrics.json"])


def test_a_file_reidlib_did_not_write_is_never_replaced(tmp_path):
    (tmp_path / "metrics.json").write_text("my own notes")
    with pytest.raises(OutputPathError, match=r"metrics\.json exists and is not recorded in \.reidlib-"):
        OutputFolder(tmp_path, "train").check(["latest.pt", "metrics.json"])
    assert (tmp_path / "metrics.json").read_text() == "my own notes"
    # an unreadable manifest vouches for nothing
    (tmp_path / MANIFEST).write_text("{not json")
    with pytest.raises(OutputPathError, match="is not recorded in"):
        OutputFolder(tmp_path, "train").check(["metrics.json"])


def test_the_output_is_a_folder_never_an_input_nor_inside_a_dataset(tmp_path):
    ckpt = tmp_path / "latest.pt"
    ckpt.write_bytes(b"weights")
    with pytest.raises(OutputPathError, match=r"--out .*latest\.pt is a file; --out names a folder"):
        OutputFolder(ckpt, "evaluate").check(["evaluation.json"])
    with pytest.raises(OutputPathError, match=r"would overwrite the input .*latest\.pt"):
        OutputFolder(tmp_path, "train").check(["latest.pt"], inputs=[ckpt])
    data = tmp_path / "market"
    (data / "query").mkdir(parents=True)
    for out in (data, data / "runs"):
        with pytest.raises(OutputPathError, match="inside the dataset folder"):
            OutputFolder(out, "train").check(["latest.pt"], input_folders=[data])
    (tmp_path / "x" / "metrics.json").mkdir(parents=True)
    with pytest.raises(OutputPathError, match="is a folder or a link"):
        OutputFolder(tmp_path / "x", "train").check(["metrics.json"])


def test_a_file_changed_after_reidlib_wrote_it_is_kept(tmp_path):
    folder = OutputFolder(tmp_path, "evaluate")
    folder.claim(["evaluation.json"], quiet=True)
    path = folder.write_json("evaluation.json", {"mAP": 0.5})
    folder.check(["evaluation.json"])
    path.write_text('{"mAP": 0.5, "my comment": "keep this"}')
    with pytest.raises(OutputPathError, match="was changed after reidlib wrote it"):
        folder.check(["evaluation.json"])
