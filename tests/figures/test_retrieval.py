import pandas as pd

from reidlib.figures.retrieval import rerank_scaling


def _table():
    rows = [("re-ranking, dense algorithm", 512, 746, 5254, 10.0, 1.0, "measured"),
            ("re-ranking, dense algorithm", 512, 1491, 10509, 40.0, 3.4, "measured"),
            ("re-ranking, dense algorithm", 512, 11659, 82161, 2400.0, 200.0, "extrapolated"),
            ("re-ranking, reidlib (matrix)", 512, 746, 5254, 1.0, 0.5, "measured"),
            ("re-ranking + evaluation, streamed", 512, 11659, 82161, 90.0, 3.0, "measured"),
            ("re-ranking + evaluation, streamed", 2048, 11659, 82161, 200.0, 5.0, "measured"),
            ("evaluation, query chunks", 2048, 11659, 82161, 35.0, 4.8, "measured")]
    return pd.DataFrame(rows, columns=["task", "dimension", "queries", "gallery", "wall time (s)",
                                       "peak memory (GB)", "how"])


def test_rerank_scaling_draws_dense_measured_extrapolated_and_ours_per_dimension():
    fig = rerank_scaling(_table(), machine_gb=24)
    time_ax, memory_ax = fig.axes
    assert time_ax.get_xscale() == "log" and memory_ax.get_yscale() == "log"
    labels = [t.get_text() for t in time_ax.get_legend().get_texts()]
    assert labels == ["dense algorithm, measured", "dense algorithm, extrapolated", "reidlib, dimension 512",
                      "reidlib, dimension 2048"]
    ours_512 = next(line for line in time_ax.get_lines() if line.get_label() == "reidlib, dimension 512")
    assert list(ours_512.get_xdata()) == [6000, 93820]  # the evaluation rows are not drawn
    assert any(t.get_text() == "this machine: 24 GB" for t in memory_ax.texts)


def test_no_rerank_rows_no_figure():
    table = _table()
    assert rerank_scaling(table[table["task"].str.startswith("evaluation")]) is None
