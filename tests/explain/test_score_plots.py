from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from reidlib.explain.score_plots import plot_explanation_scores


def _summary() -> pd.DataFrame:
    rows = []
    for method, cue in (("cam", 0.1), ("ram", 0.2)):
        rows.append({"method": method, "map": "all", "energy_cues": cue, "energy_body": 0.6,
                     "energy_background": 0.4, "area_cues": 0.05, "area_body": 0.3, "area_background": 0.7,
                     "energy_cue_logo": cue, "area_cue_logo": 0.02, "energy_cue_hat": np.nan,
                     "area_cue_hat": np.nan})
    return pd.DataFrame(rows)


def test_plot_explanation_scores_bars_and_lift():
    fig = plot_explanation_scores(_summary())
    left, right = fig.axes
    heights = [p.get_height() for p in left.patches]
    assert heights[:3] == pytest.approx([0.1, 0.6, 0.4])  # cam: cues, body, background
    lifts = [p.get_height() for p in right.patches]
    assert lifts == pytest.approx([5.0, 10.0])  # logo only: hat is shown by no image
    assert [t.get_text() for t in right.get_xticklabels()] == ["logo"]
    plt.close(fig)


def test_plot_explanation_scores_errors():
    with pytest.raises(ValueError, match="no rows for map 'branch 2'"):
        plot_explanation_scores(_summary(), map_name="branch 2")
    with pytest.raises(ValueError, match="lacks columns"):
        plot_explanation_scores(_summary().drop(columns=["area_body"]))
