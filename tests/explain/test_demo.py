from __future__ import annotations

import json

import pandas as pd
import pytest

from reidlib.data import synthetic
from reidlib.explain.demo import demo_figures

from .conftest import make_model


@pytest.mark.slow
def test_demo_writes_every_figure(tmp_path):
    synth = synthetic.SynthReID("tiny", seed=0, height=64, width=32)
    model = make_model(branches=2, num_classes=synth.splits.num_train_pids)
    paths = demo_figures(model, synth, tmp_path, top_k=4, max_score_images=6, query_index=1)
    expected = {"cam", "ram_ranked_list", "ranked_lists", "gradcam_matching", "gradcam_implicit", "tsne",
                "scores", "scores_csv", "choices"}
    assert set(paths) == expected
    for name, path in paths.items():
        assert path.exists() and (name == "choices" or path.stat().st_size > 1000)
    # pictures are stored as JPEG, the score bars as PNG
    assert {paths[n].suffix for n in ("cam", "ram_ranked_list", "ranked_lists", "tsne")} == {".jpg"}
    assert paths["scores"].suffix == ".png"
    assert json.loads(paths["choices"].read_text())["query_index"] == 1
    summary = pd.read_csv(paths["scores_csv"])
    assert set(summary["method"]) == {"cam", "ram", "gradcam"}
    assert set(summary["map"]) == {"branch 1", "branch 2", "all"}
    assert model.training  # the demo left the model in its mode
