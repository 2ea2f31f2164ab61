"""One process of tests/recipes/test_chapter_ddp.py: a chapter run at smoke through chapter.train_run under
torchrun -- PMM's ``pmm`` (its in-training Grad-CAM) or CAMA's ``cama_n3`` (the OAP loss after a warm-up
epoch that trains only the classifiers); every rank writes the record it got.

``python ddp_chapter_worker.py ROOT CHAPTER``
"""

import json
import sys
from pathlib import Path

from reidlib.engine import distributed
from reidlib.recipes import cama, chapter, pmm

RUNS = {"pmm": (pmm, "pmm"), "cama": (cama, "cama_n3")}


def main(root: Path, chapter_name: str) -> None:
    distributed.init_from_env("cpu")
    recipe, run = RUNS[chapter_name]
    base = recipe.config_for("smoke", pretrained=False)
    ctx = recipe.context(chapter.load_data(base), results_root=root / "results", runs_dir=root / "runs")
    runs = recipe.run_all(base, ctx, [run])
    record = runs[run].record
    (root / f"record_rank{distributed.rank()}.json").write_text(
        json.dumps({"mAP": record.metrics["mAP"], "reused": record.reused,
                    "history": [e["loss"] for e in record.history]}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
