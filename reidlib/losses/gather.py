"""Batch-level losses under data-parallel training: every rank's rows of the batch, gathered.

A batch-hard triplet loss mines each anchor's hardest positive and negative in the batch. Under ``torchrun``
each rank holds ``1/W`` of the global ``P x K`` batch; mining only there would see ``P/W`` identities and give
another loss than one process on the whole batch. So the embeddings of all ranks are gathered first (the
approach of fast-reid's triplet loss), and every rank computes the loss of the global batch.

Gradients: ``torch.distributed.nn.functional.all_gather`` sends back to each rank the sum over ranks of the
gradients of its own rows, i.e. ``W`` times the gradient of the (identical) global loss; DDP then averages
the parameter gradients over the ``W`` ranks, which leaves exactly the single-process gradient.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def is_data_parallel() -> bool:
    """Whether a process group of more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_across_ranks(x: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Every rank's ``x`` ``(B, D)`` and ``labels`` ``(B,)``, concatenated in rank order ``(W B, D)``; the
    gradient reaches each rank's own rows. Without a process group of several processes: ``(x, labels)``.

    Raises:
        ValueError: the ranks' batches differ in size (the distributed identity sampler gives every rank
            ``batch_size / W`` images).
    """
    if not is_data_parallel():
        return x, labels
    world = dist.get_world_size()
    sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([x.shape[0]], device=x.device))
    if len({int(s) for s in sizes}) > 1:
        raise ValueError(f"gather_across_ranks: the ranks hold batches of {[int(s) for s in sizes]} rows; "
                         "every rank needs the same local batch size")
    from torch.distributed.nn.functional import all_gather  # with autograd; only where distributed exists

    rows = all_gather(x.contiguous())
    gathered = [torch.empty_like(labels) for _ in range(world)]
    dist.all_gather(gathered, labels.contiguous())
    return torch.cat(rows), torch.cat(gathered)
