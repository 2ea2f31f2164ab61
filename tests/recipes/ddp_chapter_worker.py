"""One process of tests/recipes/test_chapter_ddp.py: a chapter run (PMM at smoke, with its in-training
Grad-CAM) through chapter.train_run under torchrun; every rank writes the record it got."""

import json
import sys
from pathlib import Path

from reidlib.engine import distributed
from reidlib.recipes import chapter, pmm


def main(root: Path) -> None:
    distributed.init_from_env("cpu")
    base = pmm.config_for("smoke", pretrained=False)
    ctx = pmm.context(chapter.load_data(base), results_root=root / "results", runs_dir=root / "runs")
    runs = pmm.run_all(base, ctx, ["pmm"])
    record = runs["pmm"].record
    (root / f"record_rank{distributed.rank()}.json").write_text(
        json.dumps({"mAP": record.metrics["mAP"], "reused": record.reused,
                    "history": [e["loss"] for e in record.history]}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
