"""Identity-balanced ``P x K`` batch sampling for metric losses (Hermans et al., 2017).

A batch-hard triplet loss needs every anchor to have positives and negatives in the same batch. The
sampler builds each batch of ``P * K`` indices from ``P`` distinct identities with ``K`` images each.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

from reidlib.data.records import Record

__all__ = ["DistributedIdentitySampler", "RandomIdentitySampler", "pk_batch_indices"]


class RandomIdentitySampler(Sampler[int]):
    """Yield dataset indices in batches of ``P = batch_size // num_instances`` identities x ``K`` images.

    Each epoch, every identity's images are shuffled and cut into groups of ``K`` (an identity with fewer
    than ``K`` images gets one group: all its images, topped up by repeats drawn with replacement; a
    trailing partial group is dropped). An identity with ``n >= K`` images thus has ``n // K`` groups.
    The epoch has ``sum(groups) // P`` batches; each batch draws ``P`` *distinct* identities, each with
    probability proportional to its groups still unused, and takes one group from each. An identity
    whose groups are used up is drawn only when fewer than ``P`` identities have groups left, and then
    gets a freshly sampled group. So the length is exact, and every identity appears about as often as
    its image count allows.

    Use with ``DataLoader(dataset, batch_size=batch_size, sampler=sampler)`` (no shuffle); consecutive
    ``batch_size`` indices form one ``P x K`` batch.

    Args:
        records: the training records (``Record`` or ``(path, pid, camid)``), or a plain sequence of pids.
        batch_size: ``P * K``; must be a multiple of ``num_instances``.
        num_instances: ``K`` images per identity.
        seed: base seed; the order of epoch ``e`` depends only on ``(seed, e)``.

    Call :meth:`set_epoch` before each epoch (as with ``DistributedSampler``); otherwise every epoch
    repeats the same order.
    """

    def __init__(
        self, records: Sequence[Record | tuple | int], batch_size: int, num_instances: int, seed: int = 0
    ) -> None:
        if num_instances < 1:
            raise ValueError(f"num_instances (K) must be >= 1, got {num_instances}")
        if batch_size < num_instances or batch_size % num_instances != 0:
            raise ValueError(
                f"batch_size ({batch_size}) must be a positive multiple of num_instances ({num_instances}) "
                f"so that a batch is P identities x K images"
            )
        pids = [int(r) if isinstance(r, (int, np.integer)) else int(r[1]) for r in records]
        self.batch_size = batch_size
        self.num_instances = num_instances
        self.num_pids_per_batch = batch_size // num_instances
        self.seed = int(seed)
        self.epoch = 0
        index_of: dict[int, list[int]] = defaultdict(list)
        for idx, pid in enumerate(pids):
            index_of[pid].append(idx)
        self.pids = sorted(index_of)
        self.index_of = {pid: np.asarray(index_of[pid], dtype=np.int64) for pid in self.pids}
        if len(self.pids) < self.num_pids_per_batch:
            raise ValueError(
                f"a batch needs P = {batch_size} // {num_instances} = {self.num_pids_per_batch} distinct "
                f"identities but the records hold only {len(self.pids)}"
            )
        self._groups_per_pid = np.array(
            [max(1, len(self.index_of[p]) // num_instances) for p in self.pids], dtype=np.int64
        )
        self.num_batches = int(self._groups_per_pid.sum()) // self.num_pids_per_batch
        if self.num_batches == 0:  # cannot happen with >= P identities, each having >= 1 group
            raise ValueError("the records are too few for a single batch")

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order the next ``iter(sampler)`` produces."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_batches * self.batch_size

    def _draw_group(self, rng: np.random.Generator, pid: int) -> np.ndarray:
        """A group of K indices of ``pid``: all of them plus repeats when it has fewer than K images."""
        idxs = self.index_of[pid]
        k = self.num_instances
        if len(idxs) >= k:
            return rng.choice(idxs, size=k, replace=False)
        extra = rng.choice(idxs, size=k - len(idxs), replace=True)
        return rng.permutation(np.concatenate([idxs, extra]))

    def _groups(self, rng: np.random.Generator, pid: int) -> list[np.ndarray]:
        idxs = self.index_of[pid]
        k = self.num_instances
        if len(idxs) < k:
            return [self._draw_group(rng, pid)]
        shuffled = rng.permutation(idxs)
        return [shuffled[i * k : (i + 1) * k] for i in range(len(idxs) // k)]

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        groups = {pid: self._groups(rng, pid) for pid in self.pids}
        remaining = np.array([len(groups[p]) for p in self.pids], dtype=np.float64)
        p = self.num_pids_per_batch
        out: list[int] = []
        for _ in range(self.num_batches):
            # A tiny weight keeps exhausted identities drawable, so P distinct ones always exist.
            weights = remaining + 1e-6
            chosen = rng.choice(len(self.pids), size=p, replace=False, p=weights / weights.sum())
            for j in chosen:
                pid = self.pids[j]
                if remaining[j] >= 1:
                    remaining[j] -= 1
                    group = groups[pid].pop()
                else:
                    group = self._draw_group(rng, pid)
                out.extend(int(i) for i in group)
        return iter(out)


class DistributedIdentitySampler(RandomIdentitySampler):
    """One rank's share of :class:`RandomIdentitySampler`'s epoch, for data-parallel training.

    Every rank draws the same single-process order (same ``seed`` and epoch) of global batches of
    ``batch_size = P x K`` and keeps the ``r``-th of ``world_size`` consecutive slices of each: whole
    identities, ``P / world_size`` of them, so the ranks see distinct identities at every step and the
    union of their batches is the single-process epoch. Use with ``DataLoader(..., batch_size=
    batch_size // world_size, sampler=sampler)``.

    Raises:
        ValueError: ``P`` not a multiple of ``world_size``, or a rank outside ``[0, world_size)``.
    """

    def __init__(self, records: Sequence[Record | tuple | int], batch_size: int, num_instances: int,
                 seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        super().__init__(records, batch_size, num_instances, seed)
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        if self.num_pids_per_batch % world_size:
            raise ValueError(f"P = {self.num_pids_per_batch} identities per batch cannot be split over "
                             f"{world_size} ranks; use a batch_size whose P is a multiple of it")
        self.rank, self.world_size = int(rank), int(world_size)
        self.local_batch_size = batch_size // world_size

    def __len__(self) -> int:
        return self.num_batches * self.local_batch_size

    def __iter__(self) -> Iterator[int]:
        order = list(super().__iter__())
        b, lb = self.batch_size, self.local_batch_size
        return iter([i for start in range(0, len(order), b)
                     for i in order[start + self.rank * lb:start + (self.rank + 1) * lb]])


def pk_batch_indices(pids: Sequence[int], p: int, k: int, generator: torch.Generator | None = None
                     ) -> list[int]:
    """Indices of one ``P x K`` batch drawn with ``generator``: ``p`` distinct identities (uniformly among
    the identities of ``pids``, the per-index identity labels), ``k`` images each (without replacement,
    or with replacement for an identity with fewer than ``k`` images), grouped by identity.

    Raises:
        ValueError: ``p`` or ``k`` below 1, or fewer than ``p`` identities.
    """
    if p < 1 or k < 1:
        raise ValueError(f"P and K must be >= 1, got P={p}, K={k}")
    by_pid: dict[int, list[int]] = defaultdict(list)
    for i, pid in enumerate(pids):
        by_pid[int(pid)].append(i)
    ids = sorted(by_pid)
    if len(ids) < p:
        raise ValueError(f"a P x K batch needs P = {p} identities, the records hold {len(ids)}")
    idx: list[int] = []
    for c in torch.randperm(len(ids), generator=generator)[:p].tolist():
        pool = by_pid[ids[c]]
        if len(pool) >= k:
            pick = torch.randperm(len(pool), generator=generator)[:k].tolist()
        else:
            pick = torch.randint(len(pool), (k,), generator=generator).tolist()
        idx += [pool[j] for j in pick]
    return idx
