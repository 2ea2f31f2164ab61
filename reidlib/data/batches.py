"""Batches drawn per optimizer update, for training loops that are counted in iterations, not epochs.

Seed 001's ranking stage draws each update's images itself (triplets mined from a pool, or a P x K batch)
and may feed them in several passes with accumulated gradients (one triplet at a time in the paper).
:class:`UpdateBatches` is that loader: an "epoch" is ``updates`` draws, each split into ``passes``
micro-batches, so the engine's :class:`~reidlib.engine.trainer.Trainer` runs it with
``grad_accum_steps = passes`` like any other loader (checkpoints, resume, non-finite stop).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from reidlib.data.dataset import ImageDataset

__all__ = ["UpdateBatches"]


class UpdateBatches:
    """``updates`` optimizer updates per epoch; each draws its dataset indices with ``draw(generator)`` and
    yields them as ``passes`` equal micro-batches.

    Args:
        dataset: gives ``{"image", "pid", "camid", "index"}`` per index (its transform is applied when a
            micro-batch is loaded; every image of an update is loaded before its first micro-batch is
            yielded, so augmentation order does not depend on ``passes``).
        draw: ``generator -> indices`` of one update, always of the same length, a multiple of ``passes``.
        updates: draws per epoch.
        passes: micro-batches per draw.
        generator: the torch generator the draws use; the Trainer checkpoints its state (attribute
            ``generator``), so a resumed run draws the same batches.

    A micro-batch is ``{"image": [(3, H_i, W_i)] list (sizes may differ), "pid": (n,), "camid": (n,),
    "index": (n,)}``; train with :func:`reidlib.engine.extract.forward_any_size`.
    """

    def __init__(self, dataset: ImageDataset, draw: Callable[[torch.Generator], Sequence[int]], updates: int,
                 passes: int = 1, generator: torch.Generator | None = None) -> None:
        if updates < 1 or passes < 1:
            raise ValueError(f"updates and passes must be >= 1, got {updates} and {passes}")
        self.dataset = dataset
        self.draw = draw
        self.updates = updates
        self.passes = passes
        self.generator = generator if generator is not None else torch.Generator()

    def __len__(self) -> int:
        return self.updates * self.passes

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for _ in range(self.updates):
            indices = [int(i) for i in self.draw(self.generator)]
            if not indices or len(indices) % self.passes:
                raise ValueError(f"an update drew {len(indices)} images, not a positive multiple of "
                                 f"passes={self.passes}")
            items = [self.dataset[i] for i in indices]
            size = len(items) // self.passes
            for s in range(0, len(items), size):
                part = items[s : s + size]
                yield {"image": [it["image"] for it in part],
                       "pid": torch.tensor([it["pid"] for it in part]),
                       "camid": torch.tensor([it["camid"] for it in part]),
                       "index": torch.tensor([it["index"] for it in part])}
