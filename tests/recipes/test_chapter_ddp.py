"""Chapter runs under torchrun (2 CPU processes, gloo): PMM's in-training Grad-CAM and CAMA's classifier
warm-up (a phase that freezes the trunk) work inside DDP, rank 0 alone writes the results file and weights,
and every rank gets the same record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("ddp_chapter_worker.py")


@pytest.mark.parametrize(("chapter", "run", "epochs", "files"), [
    ("pmm", "pmm", 1, ["pmm.json"]),
    ("cama", "cama_n3", 2, ["cama_n3.json", "cama_n3_test_1.json", "cama_n3_test_12.json"]),  # + Table 5
])
def test_a_chapter_run_under_torchrun(tmp_path, chapter, run, epochs, files):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER),
           str(tmp_path), chapter]
    done = subprocess.run(cmd, env=os.environ | {"OMP_NUM_THREADS": "1", "REIDLIB_SCALE": "smoke"},
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-4000:]
    records = [json.loads((tmp_path / f"record_rank{r}.json").read_text()) for r in range(2)]
    assert records[0] == records[1] and not records[0]["reused"]
    assert 0.0 <= records[0]["mAP"] <= 1.0 and len(records[0]["history"]) == epochs
    assert sorted(p.name for p in (tmp_path / f"results/{chapter}/smoke").iterdir()) == files
    assert (tmp_path / f"runs/{chapter}/smoke/{run}/model.pt").is_file()
    assert done.stdout.count("mAP") == 1  # the run's log line comes from rank 0 only
