"""Data-parallel training with torchrun on the CPU (gloo): two processes give the single-process run's
first gradients and loss curve (a BN-free model, the same global batch; with a batch-hard triplet loss
too), see distinct identities per step, write from rank 0 only, and resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reidlib.engine import distributed

WORKER = Path(__file__).with_name("ddp_worker.py")
PIDS = [p for p in range(8) for _ in range(4)]


def _run(out: Path, epochs: int, processes: int, *extra: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    done = subprocess.run([*launcher, str(WORKER), str(out), str(epochs), *extra], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    _run(root / "single", 2, 1)
    _run(root / "ddp", 2, 2)
    _run(root / "resumed", 1, 2)
    _run(root / "resumed", 2, 2)  # continues the 1-epoch run's latest.pt to 2 epochs
    _run(root / "separate", 1, 2, "--separate")
    _run(root / "single_triplet", 2, 1, "--triplet")
    _run(root / "ddp_triplet", 2, 2, "--triplet")
    _run(root / "single_freeze", 2, 1, "--freeze")
    _run(root / "ddp_freeze", 2, 2, "--freeze")
    return root


def _load(path: Path):
    return torch.load(path, weights_only=True)


def test_two_processes_match_one(runs):
    single, ddp = _load(runs / "single/first_grads_epochs2.pt"), _load(runs / "ddp/first_grads_epochs2.pt")
    assert single.keys() == ddp.keys()
    for name in single:
        assert torch.allclose(single[name], ddp[name], atol=1e-6, rtol=1e-5), name
    h1 = json.loads((runs / "single/history_epochs2.json").read_text())
    h2 = json.loads((runs / "ddp/history_epochs2.json").read_text())
    assert [e["loss"] for e in h1] == pytest.approx([e["loss"] for e in h2], rel=1e-5)
    assert h2[0]["iterations"] == h1[0]["iterations"] == 2
    w1, w2 = _load(runs / "single/weights_epochs2.pt"), _load(runs / "ddp/weights_epochs2.pt")
    assert all(torch.allclose(w1[k], w2[k], atol=1e-6) for k in w1)


def test_a_batch_hard_triplet_loss_is_mined_in_the_global_batch(runs):
    single = _load(runs / "single_triplet/first_grads_epochs2.pt")
    ddp = _load(runs / "ddp_triplet/first_grads_epochs2.pt")
    for name in single:
        assert torch.allclose(single[name], ddp[name], atol=1e-6, rtol=1e-5), name
    h1 = json.loads((runs / "single_triplet/history_epochs2.json").read_text())
    h2 = json.loads((runs / "ddp_triplet/history_epochs2.json").read_text())
    assert [e["triplet"] for e in h1] == pytest.approx([e["triplet"] for e in h2], rel=1e-5)
    assert min(e["triplet"] for e in h1) > 0  # the triplet term is active, so the test shows something
    plain = _load(runs / "single/first_grads_epochs2.pt")
    assert not torch.allclose(plain["conv.weight"], single["conv.weight"], atol=1e-6)


def test_a_phase_that_freezes_parameters_trains_as_in_one_process(runs):
    # CAMA's warm-up: only the classifier trains in epoch 1, then everything; DDP must not wait for the
    # gradients of the frozen convolution
    single = _load(runs / "single_freeze/first_grads_epochs2.pt")
    ddp = _load(runs / "ddp_freeze/first_grads_epochs2.pt")
    assert single.keys() == ddp.keys() == {"fc.weight", "fc.bias"}  # the convolution was frozen
    for name in single:
        assert torch.allclose(single[name], ddp[name], atol=1e-6, rtol=1e-5), name
    w1, w2 = _load(runs / "single_freeze/weights_epochs2.pt"), _load(runs / "ddp_freeze/weights_epochs2.pt")
    assert all(torch.allclose(w1[k], w2[k], atol=1e-6) for k in w1)
    h1 = json.loads((runs / "single_freeze/history_epochs2.json").read_text())
    h2 = json.loads((runs / "ddp_freeze/history_epochs2.json").read_text())
    assert [e["loss"] for e in h1] == pytest.approx([e["loss"] for e in h2], rel=1e-5)
    plain = _load(runs / "single/weights_epochs2.pt")
    assert not torch.allclose(plain["conv.weight"], w1["conv.weight"], atol=1e-6)  # the phase mattered


def test_gathering_without_a_process_group_is_the_identity():
    from reidlib.losses.gather import gather_across_ranks

    x, pids = torch.randn(4, 3), torch.arange(4)
    gx, gp = gather_across_ranks(x, pids)
    assert gx is x and gp is pids


def test_ranks_see_distinct_identities_whose_union_is_the_batch(runs):
    single = json.loads((runs / "single/pids_rank0_epochs2.json").read_text())
    shares = [json.loads((runs / f"ddp/pids_rank{r}_epochs2.json").read_text()) for r in range(2)]
    assert len(single) == len(shares[0]) == len(shares[1]) == 4  # 2 epochs x 2 steps
    for whole, a, b in zip(single, *shares, strict=True):
        assert len(a) == len(b) == 8 and not set(a) & set(b)
        assert a + b == whole


def test_only_rank0_writes(runs):
    assert (runs / "separate/rank0/latest.pt").is_file() and (runs / "separate/rank0/history.json").is_file()
    assert not (runs / "separate/rank1").exists()  # rank 1 trained into its own folder and wrote nothing


def test_resume_under_ddp_continues_the_same_run(runs):
    whole, resumed = _load(runs / "ddp/weights_epochs2.pt"), _load(runs / "resumed/weights_epochs2.pt")
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    state = torch.load(runs / "resumed/latest.pt", weights_only=False)
    assert len(state["ranks"]) == 2 and state["epoch"] == 2


def test_helpers_without_a_process_group():
    assert distributed.world_size() == 1 and distributed.rank() == 0 and distributed.is_main_process()
    assert distributed.all_reduce_sum([1.0, 2.0], torch.device("cpu")) == [1.0, 2.0]
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap_model(model, torch.device("cpu")) is model
    assert distributed.init_from_env("cpu") is None  # WORLD_SIZE unset
