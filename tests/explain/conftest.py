"""Tiny reidlib-style models for the explain tests (backbone stages + per-branch head + ReIDOutput)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reidlib.layers.cam import bias_free_weights
from reidlib.models.output import ReIDOutput


class TinyReID(nn.Module):
    """conv-BN-ReLU stem, one 1x1 conv + BN per branch (the maps F^i), bias-free classifiers on GAP(F^i)."""

    def __init__(self, num_classes: int = 5, branches: int = 1, channels: int = 6) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(),
        )
        self.branches = nn.ModuleList(
            nn.Sequential(nn.Conv2d(8, channels, 1), nn.BatchNorm2d(channels)) for _ in range(branches)
        )
        self.classifiers = nn.ModuleList(
            nn.Linear(channels, num_classes, bias=False) for _ in range(branches)
        )

    def forward(self, x: torch.Tensor) -> ReIDOutput:
        shared = self.stem(x)
        maps = [branch(shared) for branch in self.branches]
        feats = [m.mean(dim=(2, 3)) for m in maps]
        logits = [clf(f) for clf, f in zip(self.classifiers, feats, strict=True)]
        embedding = torch.cat([F.normalize(f, dim=1) for f in feats], dim=1)
        return ReIDOutput(logits=logits, features=feats, feature_maps=maps, embedding=embedding,
                          class_weights=bias_free_weights(self.classifiers))


def make_model(branches: int = 1, seed: int = 0, num_classes: int = 5) -> TinyReID:
    torch.manual_seed(seed)
    model = TinyReID(num_classes=num_classes, branches=branches)
    # A few training-mode forwards give the BN layers non-trivial running statistics.
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(4, 3, 32, 16) * 2 + 0.5)
    return model.train()


@pytest.fixture
def model() -> TinyReID:
    return make_model(branches=1)


@pytest.fixture
def model3() -> TinyReID:
    return make_model(branches=3, seed=1)


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(4, 3, 32, 16, generator=torch.Generator().manual_seed(7))


def snapshot(model: nn.Module) -> dict:
    """Everything an explainer must leave as it found it."""
    return {
        "training": [m.training for m in model.modules()],
        "hooks": [
            (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
            for m in model.modules()
        ],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "buffers": [b.clone() for b in model.buffers()],
    }


def assert_same_state(before: dict, after: dict) -> None:
    assert before["training"] == after["training"]
    assert before["hooks"] == after["hooks"]
    assert before["requires_grad"] == after["requires_grad"]
    for g0, g1 in zip(before["grads"], after["grads"], strict=True):
        assert (g0 is None and g1 is None) or torch.equal(g0, g1)
    for b0, b1 in zip(before["buffers"], after["buffers"], strict=True):
        assert torch.equal(b0, b1)  # BN running statistics not updated
