import math

import pytest
import torch
from torch import nn

from reidlib.engine.config import OptimizerConfig, ScheduleConfig
from reidlib.engine.schedules import build_optimizer, build_scheduler, lr_curve


def run_scheduler(cfg: ScheduleConfig, lr: float, epochs: int, iters: int = 1) -> list[float]:
    opt = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=lr)
    sched = build_scheduler(opt, cfg, epochs, iters)
    lrs = []
    for _ in range(epochs * iters if cfg.per_iteration else epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_constant():
    assert run_scheduler(ScheduleConfig(), 0.1, 3) == pytest.approx([0.1] * 3)


def test_step_decay():
    lrs = run_scheduler(ScheduleConfig(kind="step", step_size=2, gamma=0.5), 1.0, 5)
    assert lrs == pytest.approx([1, 1, 0.5, 0.5, 0.25])


def test_multistep_counts_from_start_including_warmup():
    cfg = ScheduleConfig(kind="multistep", milestones=[3, 5], gamma=0.1, warmup=2, warmup_start_factor=0.5)
    lrs = run_scheduler(cfg, 1.0, 6)
    assert lrs == pytest.approx([0.5, 0.75, 1.0, 0.1, 0.1, 0.01])


def test_seed000_warmup_3e6_to_3e4():
    # seed 000: classifier phase, LR rises linearly from 3e-6 to 3e-4 over 10 epochs, then 0.1x every 20
    cfg = ScheduleConfig(kind="multistep", milestones=[30, 50], warmup=10, warmup_start_factor=0.01)
    lrs = lr_curve(cfg, 3e-4, 60)
    assert lrs[0] == pytest.approx(3e-6)
    assert all(b > a for a, b in zip(lrs[:10], lrs[1:11], strict=True))
    assert lrs[10:30] == pytest.approx([3e-4] * 20)
    assert lrs[30] == pytest.approx(3e-5) and lrs[59] == pytest.approx(3e-6)


def test_log_decay_reaches_final_lr_log_linearly():
    # seed 001: 1e-2 decreased to 1e-4 with a logarithmic rate, per iteration
    cfg = ScheduleConfig(kind="log_decay", final_lr=1e-4, per_iteration=True)
    lrs = run_scheduler(cfg, 1e-2, epochs=3, iters=7)
    assert len(lrs) == 21
    assert lrs[0] == pytest.approx(1e-2) and lrs[-1] == pytest.approx(1e-4)
    logs = [math.log(v) for v in lrs]
    diffs = [b - a for a, b in zip(logs[:-1], logs[1:], strict=True)]
    assert diffs == pytest.approx([diffs[0]] * len(diffs))  # constant ratio between consecutive steps


def test_log_decay_half_life():
    cfg = ScheduleConfig(kind="log_decay", half_life=4, unit="iteration", per_iteration=True)
    lrs = lr_curve(cfg, 1e-3, epochs=1, iters_per_epoch=9)
    assert lrs[4] == pytest.approx(5e-4) and lrs[8] == pytest.approx(2.5e-4)


def test_scheduler_state_is_plain_data(tmp_path):
    opt = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    sched = build_scheduler(opt, ScheduleConfig(kind="step", step_size=1), 4, 1)
    opt.step()
    sched.step()
    torch.save(sched.state_dict(), tmp_path / "s.pt")
    state = torch.load(tmp_path / "s.pt", weights_only=True)
    opt2 = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    sched2 = build_scheduler(opt2, ScheduleConfig(kind="step", step_size=1), 4, 1)
    sched2.load_state_dict(state)
    opt2.step()
    sched2.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.001)


@pytest.mark.parametrize("kwargs, match", [
    ({"kind": "cosine"}, "kind"),
    ({"kind": "step"}, "step_size"),
    ({"kind": "multistep", "milestones": [5, 2]}, "increasing"),
    ({"kind": "log_decay"}, "exactly one"),
    ({"warmup_start_factor": 0.0}, "warmup_start_factor"),
])
def test_bad_schedule_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ScheduleConfig(**kwargs)


def test_epoch_counts_with_per_iteration_updates():
    # warm-up over half an epoch and a decay after epoch 2, with 4 steps per epoch, updated every step
    cfg = ScheduleConfig(kind="multistep", milestones=[2], gamma=0.1, warmup=0.5, warmup_start_factor=0.5,
                         per_iteration=True)
    lrs = lr_curve(cfg, 1.0, epochs=3, iters_per_epoch=4)
    assert lrs == pytest.approx([0.5, 0.75] + [1.0] * 6 + [0.1] * 4)
    with pytest.raises(ValueError, match="per_iteration"):
        ScheduleConfig(unit="iteration")


def test_warmup_longer_than_run_is_rejected():
    with pytest.raises(ValueError, match="warmup"):
        lr_curve(ScheduleConfig(warmup=5), 0.1, epochs=5)


def test_optimizer_param_groups_and_lr_mult():
    backbone, head = nn.Linear(2, 2), nn.Linear(2, 1)
    cfg = OptimizerConfig(name="sgd", lr=0.01, momentum=0.9, weight_decay=5e-5)
    groups = [{"params": backbone.parameters()}, {"params": head.parameters(), "lr_mult": 10}]
    opt = build_optimizer(groups, cfg)
    assert isinstance(opt, torch.optim.SGD)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.01, 0.1])
    assert opt.param_groups[0]["momentum"] == 0.9
    sched = build_scheduler(opt, ScheduleConfig(kind="step", step_size=1, gamma=0.5), 3, 1)
    opt.step()
    sched.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.005, 0.05])
    with pytest.raises(ValueError, match="unknown keys"):
        build_optimizer([{"params": head.parameters(), "momentun": 0.5}], cfg)
    assert isinstance(build_optimizer(head, OptimizerConfig(name="adam")), torch.optim.Adam)
