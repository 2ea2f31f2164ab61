import json
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from reidlib.engine.callbacks import Callback, FreezeParameters, PeriodicEvaluation, SetProgress
from reidlib.engine.config import OptimizerConfig, ScheduleConfig, TrainConfig
from reidlib.engine.trainer import Trainer
from reidlib.models.output import ReIDOutput

from .conftest import TinyReID, ce_loss, shuffled_loader


class LinearReID(nn.Module):
    """No BN, no dropout: the gradient of a batch is the mean of its samples' gradients."""

    def __init__(self) -> None:
        super().__init__()
        self.classifier = nn.Linear(24, 4)

    def forward(self, x):
        f = x.flatten(1)
        return ReIDOutput(logits=[self.classifier(f)], features=[f], feature_maps=[x], embedding=f)


def cfg(epochs=2, **kw) -> TrainConfig:
    kw.setdefault("optimizer", OptimizerConfig(name="sgd", lr=0.1, weight_decay=0.0, momentum=0.0))
    return TrainConfig(epochs=epochs, progress="none", **kw)


def tensor_loader(batch_size: int) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(24, 3, 4, 2, generator=g)
    y = torch.arange(24) % 4
    return DataLoader(TensorDataset(x, y, torch.zeros(24, dtype=torch.long)), batch_size=batch_size)


def test_gradient_accumulation_matches_large_batch(tmp_path):
    torch.manual_seed(0)
    big = Trainer(LinearReID(), ce_loss, tensor_loader(8), cfg(), tmp_path / "big")
    torch.manual_seed(0)
    small = Trainer(LinearReID(), ce_loss, tensor_loader(4), cfg(grad_accum_steps=2), tmp_path / "small")
    big.fit()
    small.fit()
    assert small.global_step == big.global_step == 6
    torch.testing.assert_close(small.model.classifier.weight, big.model.classifier.weight)


def test_accumulation_with_short_last_group(tmp_path):
    # 24 samples in batches of 4 = 6 batches, accumulated by 4 -> steps of 4 and 2 batches
    torch.manual_seed(0)
    t = Trainer(LinearReID(), ce_loss, tensor_loader(4), cfg(epochs=1, grad_accum_steps=4), tmp_path)
    t.fit()
    assert t.global_step == 2 and t.steps_per_epoch == 2


def test_learns_and_writes_history(tmp_path):
    torch.manual_seed(0)
    c = cfg(epochs=10, optimizer=OptimizerConfig(lr=5e-2))
    t = Trainer(TinyReID(), ce_loss, shuffled_loader(), c, tmp_path)
    history = t.fit()
    assert history.epochs[-1]["loss"] < 0.5 * history.epochs[0]["loss"]
    saved = json.loads((tmp_path / "history.json").read_text())
    assert [e["epoch"] for e in saved] == list(range(1, 11))
    assert {"loss", "ce", "lr", "time_s", "images_per_s", "iterations"} <= set(saved[0])
    assert saved[0]["iterations"] == 4


def test_per_iteration_schedule_and_max_iters(tmp_path):
    sched = ScheduleConfig(kind="log_decay", final_lr=1e-3, per_iteration=True)
    lrs = []

    class RecordLR(Callback):
        def on_step_end(self, trainer, step, logs):
            lrs.append(logs["lr"])

    torch.manual_seed(0)
    t = Trainer(TinyReID(), ce_loss, shuffled_loader(), cfg(epochs=2, schedule=sched, max_iters_per_epoch=3),
                tmp_path, callbacks=[RecordLR()])
    t.fit()
    assert t.global_step == 6 and len(lrs) == 6
    # lr after the last step has moved past final_lr's step; the 5th step ran at final_lr
    assert t.history.epochs[1]["lr"] == pytest.approx(0.1 * (1e-2) ** (3 / 5))
    assert lrs[-2] == pytest.approx(1e-3)


def test_freeze_phase_trains_only_classifier_first(tmp_path):
    torch.manual_seed(0)
    model = TinyReID()
    body0 = model.body[1].weight.detach().clone()
    seen = {}

    class Snapshot(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            seen[epoch] = trainer.model.body[1].weight.detach().clone()

    freeze = FreezeParameters(model, trainable=lambda n: n.startswith("classifier"), epochs=1)
    t = Trainer(model, ce_loss, shuffled_loader(), cfg(epochs=2), tmp_path, callbacks=[freeze, Snapshot()])
    t.fit()
    assert torch.equal(seen[0], body0)
    assert not torch.equal(seen[1], body0)
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError, match="no parameter"):
        FreezeParameters(model, trainable=lambda n: False, epochs=1)


def test_set_progress_and_periodic_evaluation(tmp_path):
    class Curriculum:
        def __init__(self):
            self.values = []

        def set_progress(self, p):
            self.values.append(p)

    cur = Curriculum()
    evals = PeriodicEvaluation(lambda trainer: {"mAP": 0.5 + trainer.epoch}, every=2)
    torch.manual_seed(0)
    t = Trainer(TinyReID(), ce_loss, shuffled_loader(), cfg(epochs=3), tmp_path,
                callbacks=[SetProgress([cur], total_epochs=3), evals])
    t.fit()
    assert cur.values == [0.0, 0.5, 1.0]
    assert t.history.column("mAP") == [None, 1.5, 2.5]
    with pytest.raises(TypeError, match="set_progress"):
        SetProgress([object()], 3)


def test_summary_line_when_not_a_terminal(tmp_path, capsys):
    torch.manual_seed(0)
    c = cfg(epochs=2)
    c.progress = "auto"  # pytest's captured stderr is not a terminal
    Trainer(TinyReID(), ce_loss, shuffled_loader(), c, tmp_path).fit()
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("epoch")]
    assert len(lines) == 2 and "loss" in lines[0] and "img/s" in lines[0]


def test_bad_loss_return_and_custom_forward(tmp_path):
    torch.manual_seed(0)

    def vector_loss(output, batch):
        return F.cross_entropy(output.logits[0], batch["pid"], reduction="none"), {}

    with pytest.raises(TypeError, match="scalar"):
        Trainer(TinyReID(), vector_loss, shuffled_loader(), cfg(epochs=1), tmp_path).fit()

    seen_pids = []

    def forward(model, batch):
        seen_pids.append(batch["pid"])
        return model(batch["image"])

    Trainer(TinyReID(), ce_loss, shuffled_loader(), cfg(epochs=1), tmp_path / "f", forward_fn=forward).fit()
    assert len(seen_pids) == 4


def test_empty_loader_is_rejected(tmp_path):
    empty = DataLoader(TensorDataset(torch.zeros(3, 3, 4, 2), torch.zeros(3)), batch_size=4, drop_last=True)
    with pytest.raises(ValueError, match="no batches"):
        Trainer(TinyReID(), ce_loss, empty, cfg(), tmp_path)


class ConvReID(nn.Module):
    """A conv layer whose input and weight a memory format can change."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.classifier = nn.Linear(6, 4)
        self.seen_channels_last: list[bool] = []
        self.seen_dtypes: list[torch.dtype] = []

    def forward(self, x):
        self.seen_channels_last.append(x.is_contiguous(memory_format=torch.channels_last))
        m = torch.relu(self.conv(x))
        self.seen_dtypes.append(m.dtype)
        f = m.mean((2, 3))
        return ReIDOutput(logits=[self.classifier(f)], features=[f], feature_maps=[m], embedding=f)


def test_channels_last_trains_the_same_and_restores_the_format(tmp_path):
    runs = {}
    for flag in (False, True):
        torch.manual_seed(0)
        t = Trainer(ConvReID(), ce_loss, tensor_loader(8), cfg(channels_last=flag), tmp_path / str(flag))
        t.fit()
        runs[flag] = t.model
    assert all(runs[True].seen_channels_last) and not any(runs[False].seen_channels_last)
    # after fit the weights are back in the default layout, so callers may view() them
    assert runs[True].conv.weight.is_contiguous()
    torch.testing.assert_close(runs[True].conv.weight, runs[False].conv.weight, rtol=1e-4, atol=1e-5)


def test_step_hooks_see_each_optimizer_step_once_with_the_mean_of_its_micro_batches(tmp_path):
    from reidlib.engine.callbacks import StepLog

    starts = []

    class Starts(Callback):
        def on_step_start(self, trainer, step):
            starts.append((step, trainer.global_step))

    log = StepLog()
    torch.manual_seed(0)
    t = Trainer(TinyReID(), ce_loss, shuffled_loader(batch_size=4), cfg(epochs=2, grad_accum_steps=3),
                tmp_path, callbacks=[Starts(), log])
    t.fit()
    per_epoch = 3  # 8 batches of 4 in groups of 3, 3, 2
    assert [s for s, _ in starts] == list(range(1, 2 * per_epoch + 1))
    assert all(step == done + 1 for step, done in starts)  # called before the step is taken
    assert [e["iteration"] for e in log.entries] == list(range(1, 2 * per_epoch + 1))
    # an epoch's loss is the mean over its batches: the step means weighted by their group sizes
    first = log.entries[:per_epoch]
    weighted = (3 * first[0]["loss"] + 3 * first[1]["loss"] + 2 * first[2]["loss"]) / 8
    assert t.history.epochs[0]["loss"] == pytest.approx(weighted)


def test_the_loader_is_run_to_its_end_like_a_for_loop(tmp_path):
    exhausted = []

    class Loader:
        def __init__(self, inner):
            self.inner = inner

        def __len__(self):
            return len(self.inner)

        def __iter__(self):
            yield from self.inner
            exhausted.append(True)  # a sampler that draws when it runs out does so here

    torch.manual_seed(0)
    t = Trainer(TinyReID(), ce_loss, Loader(shuffled_loader()), cfg(epochs=2), tmp_path)
    t.fit()
    assert exhausted == [True, True]


def test_epoch_start_and_step_progress_callbacks(tmp_path):
    from reidlib.engine.callbacks import EpochStart, StepProgress

    class Curriculum:
        def __init__(self):
            self.seen = []

        def set_progress(self, p):
            self.seen.append(p)

    cur = Curriculum()
    refresh = EpochStart(lambda trainer: {"pool": float(trainer.epoch)})
    torch.manual_seed(0)
    t = Trainer(TinyReID(), ce_loss, shuffled_loader(batch_size=16), cfg(epochs=3), tmp_path,
                callbacks=[refresh, StepProgress([cur], total_steps=6)])
    t.fit()
    assert cur.seen == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert refresh.entries == [{"iteration": 1, "pool": 0.0}, {"iteration": 3, "pool": 1.0},
                               {"iteration": 5, "pool": 2.0}]
    assert [e["pool"] for e in t.history.epochs] == [0.0, 1.0, 2.0]
    with pytest.raises(TypeError, match="set_progress"):
        StepProgress([object()], 3)


def test_autocast_type_follows_amp_dtype():
    from reidlib.engine.trainer import autocast_dtype

    cpu = torch.device("cpu")
    assert autocast_dtype("bfloat16", cpu) == torch.bfloat16
    assert autocast_dtype("float16", cpu) == torch.float16
    assert autocast_dtype("auto", cpu) == torch.float16  # no bf16 GPU here: AMP is off on CPU anyway
    with pytest.raises(ValueError, match="amp_dtype"):
        TrainConfig(amp_dtype="fp8")


def test_no_gradient_scaling_without_float16_autocast(tmp_path):
    t = Trainer(LinearReID(), ce_loss, tensor_loader(8), cfg(amp_dtype="bfloat16"), tmp_path)
    assert not t.use_amp and not t.scaler.is_enabled()  # CPU: no autocast, no scaler
    t.fit()
    again = Trainer(LinearReID(), ce_loss, tensor_loader(8), cfg(epochs=3, amp_dtype="bfloat16"), tmp_path)
    again.fit(resume=True)  # the saved (empty) scaler state loads
    assert again.epoch == 3


def test_cpu_bf16_runs_the_convolutions_in_bf16_and_keeps_float32_weights(tmp_path):
    runs = {}
    for flag in (False, True, "again"):
        torch.manual_seed(0)
        t = Trainer(ConvReID(), ce_loss, tensor_loader(8), cfg(cpu_bf16=bool(flag), channels_last=True),
                    tmp_path / str(flag))
        history = t.fit()
        assert t.use_amp == bool(flag) and not t.scaler.is_enabled()  # bf16 needs no gradient scaling
        assert set(t.model.seen_dtypes) == {torch.bfloat16 if flag else torch.float32}
        assert t.model.conv.weight.dtype == torch.float32
        assert all(torch.isfinite(torch.tensor(e["loss"])) for e in history.epochs)
        runs[flag] = t.model.conv.weight.detach()
    # the same training up to bf16's 8-bit mantissa, not another one
    torch.testing.assert_close(runs[True], runs[False], rtol=0.0, atol=2e-2)
    assert not torch.equal(runs[True], runs[False])
    assert torch.equal(runs[True], runs["again"])  # bf16 runs repeat exactly, as float32 ones do


def test_cpu_bf16_without_native_bf16_warns(tmp_path, monkeypatch):
    from reidlib.engine import trainer

    monkeypatch.setattr(trainer, "cpu_has_native_bf16", lambda: False)
    with pytest.warns(UserWarning, match="no native bfloat16"):
        Trainer(LinearReID(), ce_loss, tensor_loader(8), cfg(cpu_bf16=True), tmp_path)
    monkeypatch.setattr(trainer, "cpu_has_native_bf16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Trainer(LinearReID(), ce_loss, tensor_loader(8), cfg(cpu_bf16=True), tmp_path / "native")


def test_compiled_model_trains_like_the_plain_one(tmp_path):
    weights = {}
    for flag in (False, True):
        torch.manual_seed(0)
        t = Trainer(LinearReID(), ce_loss, tensor_loader(8), cfg(compile=flag), tmp_path / str(flag))
        t.fit()
        weights[flag] = t.model.classifier.weight.detach().clone()
        assert (t.trained_model is not t.model) == flag
        # the checkpoint holds the plain model's parameter names
        saved = torch.load(tmp_path / str(flag) / "latest.pt", weights_only=False)["model"]
        assert set(saved) == {"classifier.weight", "classifier.bias"}
    torch.testing.assert_close(weights[True], weights[False], rtol=1e-5, atol=1e-6)
