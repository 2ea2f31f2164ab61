"""One process of the DDP tests (tests/engine/test_distributed.py), started by torchrun or plainly.

``python ddp_worker.py OUT EPOCHS [--separate] [--triplet] [--freeze]``: trains a BN-free model on random
images with the engine's Trainer (2 ranks when torchrun starts it), global batch 16 from a P x K sampler,
plain SGD, and writes into OUT what the test compares: every rank's pids per step, rank 0's final weights
and history. With ``--separate`` each rank trains into its own folder ``OUT/rank<r>`` (to see who
writes); with ``--triplet`` a batch-hard triplet loss is added to the cross-entropy; with ``--freeze`` only
the classifier trains in the first epoch (:class:`~reidlib.engine.callbacks.FreezeParameters`, CAMA's
warm-up phase).
"""

import json
import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from reidlib.data.samplers import DistributedIdentitySampler
from reidlib.engine import distributed
from reidlib.engine.callbacks import FreezeParameters
from reidlib.engine.config import OptimizerConfig, ScheduleConfig, TrainConfig
from reidlib.engine.trainer import Trainer
from reidlib.losses.triplet import BatchHardTripletLoss
from reidlib.models.output import ReIDOutput

PIDS = [p for p in range(8) for _ in range(4)]


class Images(Dataset):
    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.images = torch.randn(len(PIDS), 3, 8, 4, generator=g)

    def __len__(self):
        return len(PIDS)

    def __getitem__(self, i):
        return {"image": self.images[i], "pid": PIDS[i], "camid": 0, "index": i}


class NoBatchNorm(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.fc = nn.Linear(6, 8)

    def forward(self, x):
        f = torch.relu(self.conv(x)).mean(dim=(2, 3))
        return ReIDOutput(logits=[self.fc(f)], features=[f], feature_maps=[x], embedding=f)


class RecordingTrainer(Trainer):
    """Keeps the gradients of the first optimizer step (after DDP's all-reduce; a frozen parameter has
    none)."""

    first_grads = None

    def _optimizer_step(self):
        if self.first_grads is None:
            self.first_grads = {n: p.grad.clone() for n, p in self.model.named_parameters()
                                if p.grad is not None}
        super()._optimizer_step()


def main(out: Path, epochs: int, separate: bool, with_triplet: bool, freeze: bool) -> None:
    distributed.init_from_env("cpu")
    rank = distributed.rank()
    sampler = DistributedIdentitySampler(PIDS, 16, 4, seed=1, rank=rank, world_size=distributed.world_size())
    loader = DataLoader(Images(), batch_size=sampler.local_batch_size, sampler=sampler, drop_last=True)
    seen = []

    triplet = BatchHardTripletLoss(margin=0.3)

    def loss_fn(output, batch):
        seen.append(batch["pid"].tolist())
        loss = nn.functional.cross_entropy(output.logits[0], batch["pid"])
        terms = {"ce": float(loss)}
        if with_triplet:  # a batch-level loss: mined in the global batch under DDP too
            t, stats = triplet(output, batch)
            loss = loss + t
            terms |= {"triplet": stats["triplet"]}
        return loss, terms

    cfg = TrainConfig(epochs=epochs, optimizer=OptimizerConfig(name="sgd", lr=0.5, momentum=0.0,
                                                               weight_decay=0.0),
                      schedule=ScheduleConfig(kind="constant"), seed=0, progress="none")
    folder = out / f"rank{rank}" if separate else out
    model = NoBatchNorm()
    warmup = FreezeParameters(model, trainable=lambda name: name.startswith("fc."), epochs=1)
    callbacks = [warmup] if freeze else []
    trainer = RecordingTrainer(model, loss_fn, loader, cfg, folder, callbacks=callbacks)
    trainer.fit(resume=True)
    (out / f"pids_rank{rank}_epochs{epochs}.json").write_text(json.dumps(seen))
    if rank == 0:
        torch.save(trainer.model.state_dict(), out / f"weights_epochs{epochs}.pt")
        torch.save(trainer.first_grads, out / f"first_grads_epochs{epochs}.pt")
        (out / f"history_epochs{epochs}.json").write_text(json.dumps(trainer.history.to_list()))


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), "--separate" in sys.argv, "--triplet" in sys.argv,
         "--freeze" in sys.argv)
