import math
import traceback

import pytest
import torch

from reidlib.engine.callbacks import Callback
from reidlib.engine.checkpoint import load_checkpoint, load_model_weights, save_checkpoint
from reidlib.engine.config import OptimizerConfig, ScheduleConfig, TrainConfig
from reidlib.engine.seeding import get_rng_state, set_rng_state
from reidlib.engine.trainer import NonFiniteLossError, Trainer

from .conftest import TinyReID, ce_loss, shuffled_loader


def make_cfg(epochs: int, **kw) -> TrainConfig:
    return TrainConfig(epochs=epochs, optimizer=OptimizerConfig(name="adam", lr=1e-2),
                       schedule=ScheduleConfig(kind="step", step_size=2, gamma=0.5, warmup=1),
                       progress="none", **kw)


class KillDuringEpoch(Callback):
    def __init__(self, epoch: int, step: int) -> None:
        self.epoch, self.step = epoch, step

    def on_step_end(self, trainer, step, logs):
        if trainer.epoch == self.epoch and step == self.step:
            raise KeyboardInterrupt


def make_trainer(out, epochs, **kw):
    torch.manual_seed(0)
    return Trainer(TinyReID(), ce_loss, shuffled_loader(), make_cfg(epochs, **kw), out)


def test_resume_after_kill_gives_identical_weights(tmp_path):
    full = make_trainer(tmp_path / "full", 4)
    full.fit()

    killed = make_trainer(tmp_path / "part", 4)
    killed.callbacks.append(KillDuringEpoch(epoch=2, step=10))  # dies in the middle of epoch 3
    with pytest.raises(KeyboardInterrupt):
        killed.fit()
    assert load_checkpoint(tmp_path / "part" / "latest.pt")["epoch"] == 2

    torch.manual_seed(123)  # the new process's own model init and RNG use must not matter
    resumed = Trainer(TinyReID(), ce_loss, shuffled_loader(seed=5), make_cfg(4), tmp_path / "part")
    history = resumed.fit(resume=True)

    assert len(history) == 4 and [h["epoch"] for h in history] == [1, 2, 3, 4]
    expected = full.model.state_dict()
    for name, value in resumed.model.state_dict().items():
        assert torch.equal(value, expected[name]), name
    assert [h["loss"] for h in history] == [h["loss"] for h in full.history]
    assert resumed.global_step == full.global_step == 16


def test_checkpoint_loads_with_weights_only(tmp_path):
    t = make_trainer(tmp_path, 2, checkpoint_every=1)
    t.fit()
    state = torch.load(tmp_path / "latest.pt", weights_only=True)
    assert state["epoch"] == 2 and (tmp_path / "epoch_001.pt").is_file()
    expected = {"model", "optimizer", "scheduler", "scaler", "rng", "history", "loader", "global_step"}
    assert set(state) >= expected
    model = TinyReID()
    load_model_weights(model, tmp_path / "latest.pt")
    assert torch.equal(model.classifier.weight, t.model.classifier.weight)
    assert not list(tmp_path.glob("*.tmp"))


def test_rng_state_round_trip(tmp_path):
    import random

    import numpy as np

    save_checkpoint({"rng": get_rng_state()}, tmp_path / "r.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(load_checkpoint(tmp_path / "r.pt")["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")
    save_checkpoint({"model": {"w": torch.zeros(3)}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt"):
        load_model_weights(TinyReID(), tmp_path / "other.pt")


def test_non_finite_loss_saves_and_names_iteration(tmp_path):
    calls = {"n": 0}

    def exploding(output, batch):
        calls["n"] += 1
        loss, terms = ce_loss(output, batch)
        if calls["n"] == 7:  # epoch 2, iteration 3 (4 batches per epoch)
            loss = loss * math.inf
            terms["ce"] = math.inf
        return loss, terms

    torch.manual_seed(0)
    t = Trainer(TinyReID(), exploding, shuffled_loader(), make_cfg(3), tmp_path)
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, iteration 3 .*ce=inf") as err:
        t.fit()
    saved = list(tmp_path.glob("nonfinite_*.pt"))
    assert len(saved) == 1 and saved[0].name in str(err.value)
    state = load_checkpoint(saved[0])
    assert state["failure"]["iteration"] == 3 and state["failure"]["batch_index"].shape == (8,)
    assert load_checkpoint(tmp_path / "latest.pt")["epoch"] == 1  # last good epoch is kept for resuming


def test_resume_refuses_a_different_config_but_allows_more_epochs(tmp_path):
    make_trainer(tmp_path, 2).fit()
    longer = make_trainer(tmp_path, 3)
    longer.fit(resume=True)
    assert longer.epoch == 3 and len(longer.history) == 3
    changed = make_trainer(tmp_path, 4, grad_accum_steps=2)
    with pytest.raises(ValueError, match="grad_accum_steps: 1 -> 2"):
        changed.fit(resume=True)
    make_trainer(tmp_path, 2, grad_accum_steps=2).fit(resume=False)  # starting over is always allowed


def test_resume_refuses_a_different_record(tmp_path):
    def trainer(epochs, height):
        return Trainer(TinyReID(), ce_loss, shuffled_loader(), make_cfg(epochs), tmp_path,
                       record={"data": {"height": height}})

    trainer(2, 64).fit()
    other = trainer(3, 32)
    with pytest.raises(ValueError, match="data.height: 64 -> 32"):
        other.fit()


class _Custom:
    """A pickled class: what a checkpoint written with ``torch.save(model)`` (not its state_dict) holds."""


def _load_error(path) -> str:
    from reidlib.engine.checkpoint import CheckpointError

    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    # torch's own advice would run code from the file; reidlib never passes it on, not even in the
    # chained exceptions of a traceback.
    assert "weights_only" not in "".join(traceback.format_exception(err.value))
    assert isinstance(err.value, ValueError)  # the CLI prints ValueErrors as one line
    return message


def test_empty_file(tmp_path):
    (tmp_path / "latest.pt").write_bytes(b"")
    assert "the file is empty (0 bytes" in _load_error(tmp_path / "latest.pt")


def test_folder_instead_of_file_suggests_its_latest_checkpoint(tmp_path):
    run = tmp_path / "runs" / "x"
    save_checkpoint({"epoch": 1}, run / "latest.pt")
    message = _load_error(run)
    assert message == f"checkpoint {run} is a folder, not a file; did you mean {run / 'latest.pt'}?"
    other = tmp_path / "runs" / "y"
    save_checkpoint({"epoch": 1}, other / "epoch_002.pt")
    assert _load_error(other).endswith("a folder, not a file, and holds no latest.pt; it holds epoch_002.pt")
    (tmp_path / "empty").mkdir()
    assert _load_error(tmp_path / "empty").endswith("is a folder, not a file, and holds no .pt file")


def test_files_that_are_not_checkpoints(tmp_path):
    (tmp_path / "notes.pt").write_text("trained for 60 epochs\n")
    assert _load_error(tmp_path / "notes.pt").endswith(": a text file, not a PyTorch checkpoint")
    (tmp_path / "metrics.pt").write_text('{"mAP": 0.83, "rank1": 0.93}')
    assert _load_error(tmp_path / "metrics.pt").endswith(": a JSON or text file, not a PyTorch checkpoint")
    (tmp_path / "noise.pt").write_bytes(bytes(range(7, 256)) * 3)
    assert _load_error(tmp_path / "noise.pt").endswith(": not a PyTorch checkpoint (unreadable zip/pickle)")


def test_truncated_checkpoint(tmp_path):
    save_checkpoint({"model": {"w": torch.randn(64, 64)}, "epoch": 3}, tmp_path / "full.pt")
    data = (tmp_path / "full.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])  # a copy interrupted half-way
    message = _load_error(tmp_path / "cut.pt")
    reason = "a damaged or truncated PyTorch checkpoint (unreadable zip archive)"
    assert message == f"cannot read checkpoint {tmp_path / 'cut.pt'}: {reason}"
    torch.save({"w": torch.randn(8)}, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    data = (tmp_path / "legacy.pt").read_bytes()
    (tmp_path / "legacy_cut.pt").write_bytes(data[:-20])
    assert _load_error(tmp_path / "legacy_cut.pt").endswith("(unreadable pickle)")


def test_pickled_objects_are_refused_with_their_name(tmp_path):
    torch.save({"model": _Custom(), "epoch": 1}, tmp_path / "whole_model.pt")
    message = _load_error(tmp_path / "whole_model.pt")
    assert message.endswith(f"it holds objects other than tensors and plain data (such as "
                            f"{__name__}._Custom), which reidlib refuses to load")


def test_a_checkpoint_that_is_not_a_dict(tmp_path):
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    assert _load_error(tmp_path / "tensor.pt").endswith("tensor.pt holds a Tensor, expected a dict")
