import matplotlib.pyplot as plt
import pytest
from matplotlib.figure import Figure

from reidlib.figures.pretrain import training_curve
from reidlib.results.store import RunRecord


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _record(name, history, scale="cpu"):
    return RunRecord(chapter="pretrain", run=name, scale=scale, dataset="synthreid_market", seed=0,
                     metrics={"train_acc": 0.5}, config={}, wall_time_s=1.0, history=history)


HISTORY = [{"epoch": 1, "loss": 6.0, "acc": 0.1, "lr": 1e-3}, {"epoch": 2, "loss": 4.5, "acc": 0.4},
           {"epoch": 3, "loss": 3.0, "acc": 0.75}]


def test_loss_and_accuracy_per_epoch_one_line_per_trunk():
    fig = training_curve({"resnet18w16": _record("resnet18w16", HISTORY),
                          "resnet10w16": _record("resnet10w16", HISTORY[:2])})
    assert isinstance(fig, Figure)
    loss_ax, acc_ax = fig.axes
    assert [line.get_label() for line in loss_ax.lines] == ["resnet18w16 (cpu)", "resnet10w16 (cpu)"]
    assert list(loss_ax.lines[0].get_xdata()) == [1, 2, 3]
    assert list(loss_ax.lines[0].get_ydata()) == [6.0, 4.5, 3.0]
    assert list(acc_ax.lines[0].get_ydata()) == pytest.approx([10.0, 40.0, 75.0])  # percent
    assert list(acc_ax.lines[1].get_xdata()) == [1, 2]
    assert acc_ax.get_ylabel() == "training accuracy (%)" and "loss" in loss_ax.get_ylabel()
    assert loss_ax.get_xlabel() == "epoch" and acc_ax.get_ylim() == (0, 100)


def test_entries_without_a_value_are_skipped_and_empty_records_give_none():
    partial = [{"epoch": 1, "loss": 2.0}, {"epoch": 2, "loss": 1.0, "acc": 0.5}]
    fig = training_curve({"a": _record("a", partial), "b": _record("b", None)})
    loss_ax, acc_ax = fig.axes
    assert len(loss_ax.lines) == 1 and list(acc_ax.lines[0].get_xdata()) == [2]
    assert training_curve({}) is None
    assert training_curve({"b": _record("b", [])}) is None
