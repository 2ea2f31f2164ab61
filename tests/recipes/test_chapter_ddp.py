"""A chapter run under torchrun (2 CPU processes, gloo): PMM's in-training Grad-CAM works inside DDP, rank 0
alone writes the results file and weights, and every rank gets the same record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

WORKER = Path(__file__).with_name("ddp_chapter_worker.py")


def test_pmm_run_under_torchrun(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER),
           str(tmp_path)]
    done = subprocess.run(cmd, env=os.environ | {"OMP_NUM_THREADS": "1", "REIDLIB_SCALE": "smoke"},
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-4000:]
    records = [json.loads((tmp_path / f"record_rank{r}.json").read_text()) for r in range(2)]
    assert records[0] == records[1] and not records[0]["reused"]
    assert 0.0 <= records[0]["mAP"] <= 1.0 and len(records[0]["history"]) == 1
    assert [p.name for p in (tmp_path / "results/pmm/smoke").iterdir()] == ["pmm.json"]
    assert (tmp_path / "runs/pmm/smoke/pmm/model.pt").is_file()
    assert done.stdout.count("mAP") == 1  # the run's log line comes from rank 0 only
