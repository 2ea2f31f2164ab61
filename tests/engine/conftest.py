"""Tiny models and datasets for the engine tests: a linear "re-ID model" over random vectors."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from reidlib.engine.seeding import make_generator
from reidlib.models.output import ReIDOutput


class TinyReID(nn.Module):
    """A two-layer net over (B, 3, 4, 2) "images" that returns a ReIDOutput."""

    def __init__(self, num_classes: int = 4, dim: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(24, dim), nn.BatchNorm1d(dim), nn.ReLU(),
                                  nn.Dropout(0.2))
        self.classifier = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> ReIDOutput:
        f = self.body(x)
        return ReIDOutput(logits=[self.classifier(f)], features=[f], feature_maps=[x], embedding=f)


class ToyDataset(Dataset):
    """Images whose mean depends on the identity, so a model can learn them."""

    def __init__(self, n: int = 32, num_classes: int = 4, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.pids = torch.arange(n) % num_classes
        self.camids = (torch.arange(n) // num_classes) % 2
        self.images = torch.randn(n, 3, 4, 2, generator=g) + self.pids.view(-1, 1, 1, 1).float()

    def __len__(self) -> int:
        return len(self.pids)

    def __getitem__(self, i: int) -> dict:
        # random noise per access: training consumes the global RNG, as real augmentation does
        noise = 0.1 * torch.randn(3, 4, 2)
        return {"image": self.images[i] + noise, "pid": int(self.pids[i]), "camid": int(self.camids[i]),
                "index": i}


def ce_loss(output: ReIDOutput, batch: dict):
    loss = F.cross_entropy(output.logits[0], batch["pid"])
    return loss, {"ce": loss.item()}


def shuffled_loader(batch_size: int = 8, seed: int = 0, n: int = 32) -> DataLoader:
    return DataLoader(ToyDataset(n), batch_size=batch_size, shuffle=True, generator=make_generator(seed))
