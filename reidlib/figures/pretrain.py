"""Figures of the pre-trained SynthReID trunks (the stand-in for ImageNet at ``smoke`` and ``cpu`` scale)."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from reidlib.figures.style import category_colors, use_book_style
from reidlib.results.store import RunRecord


def _series(record: RunRecord, key: str, factor: float = 1.0) -> tuple[list[int], list[float]]:
    """``(epochs, values)`` of ``key`` in the per-epoch history of ``record`` (entries without it skipped;
    epochs counted from 1 when the history does not number them)."""
    history = record.history if isinstance(record.history, list) else []
    points = [(int(entry.get("epoch", i + 1)), factor * float(entry[key]))
              for i, entry in enumerate(history) if isinstance(entry, Mapping) and entry.get(key) is not None]
    return [e for e, _ in points], [v for _, v in points]


def training_curve(records: Mapping[str, RunRecord]) -> Figure | None:
    """Training loss and accuracy per epoch of each pre-trained trunk.

    Args:
        records: ``{trunk name: results file}``, e.g. :func:`reidlib.results.overview.pretrain_records`;
            each history entry holds ``epoch``, ``loss`` (label-smoothed cross-entropy, nats) and ``acc``
            (accuracy on the augmented training images, a fraction).

    Returns:
        A figure with two axes side by side, loss then accuracy (percent), one line per trunk labelled with
        its name and scale, x the epoch (from 1); ``None`` when no record has a history.
    """
    curves = {name: (rec, _series(rec, "loss"), _series(rec, "acc", 100.0)) for name, rec in records.items()}
    curves = {name: c for name, c in curves.items() if c[1][0] or c[2][0]}
    if not curves:
        return None
    use_book_style()
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(9, 3.4), constrained_layout=True)
    for color, (name, (rec, loss, acc)) in zip(category_colors(len(curves)), curves.items(), strict=True):
        label = f"{name} ({rec.scale})"
        marker = "o" if max(len(loss[0]), len(acc[0])) < 30 else None
        loss_ax.plot(*loss, marker=marker, color=color, label=label)
        acc_ax.plot(*acc, marker=marker, color=color, label=label)
    loss_ax.set(xlabel="epoch", ylabel="training loss (cross-entropy, nats)", title="Loss per epoch")
    acc_ax.set(xlabel="epoch", ylabel="training accuracy (%)", title="Accuracy per epoch")
    acc_ax.set_ylim(0, 100)
    for ax in (loss_ax, acc_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    acc_ax.legend(loc="lower right")
    return fig
