"""Data-parallel training across processes started by ``torchrun`` (``torch.distributed``, DDP).

``torchrun --nproc_per_node N -m reidlib train --config ...`` starts ``N`` processes and sets ``RANK``,
``LOCAL_RANK`` and ``WORLD_SIZE`` in their environment; :func:`init_from_env` joins them into one process
group (NCCL on CUDA, gloo on the CPU). Everything else reads the group through the helpers below, so a
single process (no ``torchrun``, or ``WORLD_SIZE=1``) runs exactly as before:

* the :class:`~reidlib.engine.trainer.Trainer` wraps the model in ``DistributedDataParallel`` (gradients
  averaged over ranks after every backward), averages the logged loss terms over ranks, and writes
  checkpoints and the history from rank 0 only, with every rank's random state in the checkpoint;
* :class:`reidlib.data.samplers.DistributedIdentitySampler` gives each rank distinct identities of every
  global ``P x K`` batch;
* results files and weights are written by rank 0 (:func:`is_main_process`).

No process is started or supervised here: that is ``torchrun``'s job.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["all_gather_objects", "all_reduce_sum", "barrier", "init_from_env", "is_distributed",
           "is_main_process", "rank", "world_size", "wrap_model"]


def is_distributed() -> bool:
    """A process group of more than one process is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """Processes in the group (1 without one)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    """Rank 0, the one process that writes files."""
    return rank() == 0


def init_from_env(device: str | torch.device | None = None) -> torch.device | None:
    """Join the process group ``torchrun`` describes in the environment (``WORLD_SIZE`` > 1), once.

    Args:
        device: the requested device; ``"cuda"`` becomes ``cuda:LOCAL_RANK`` (one GPU per process).

    Returns:
        the device this rank trains on (``None`` when the caller's device stands: a single process, or
        a CPU group).

    Raises:
        RuntimeError: ``WORLD_SIZE`` > 1 but torch has no distributed support, or a CUDA group with fewer
            GPUs than local ranks.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return None
    if not dist.is_available():
        raise RuntimeError(f"WORLD_SIZE={size} but this torch build has no torch.distributed")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device is not None and torch.device(device).type == "cuda"
    if cuda:
        if torch.cuda.device_count() <= local:
            raise RuntimeError(f"LOCAL_RANK={local} needs GPU {local}, but only {torch.cuda.device_count()} "
                               "are visible; start torchrun with --nproc_per_node <= the GPU count")
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return torch.device("cuda", local) if cuda else None


def barrier() -> None:
    """Wait for every rank (nothing without a process group)."""
    if is_distributed():
        dist.barrier()


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """The elementwise sum of ``values`` over ranks (``values`` itself in one process)."""
    if not is_distributed():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` in rank order (``[obj]`` in one process)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def wrap_model(model: nn.Module, device: torch.device, sync_batchnorm: bool = False,
               find_unused_parameters: bool = False) -> nn.Module:
    """``model`` as ``DistributedDataParallel`` on ``device`` in a process group, else ``model``.

    ``sync_batchnorm`` turns every BatchNorm into ``SyncBatchNorm`` (batch statistics over all ranks: the
    per-rank batch of a ``P x K`` sampler is small); torch supports it on CUDA only.

    Raises:
        ValueError: ``sync_batchnorm`` on a CPU group.
    """
    if not is_distributed():
        return model
    if sync_batchnorm:
        if device.type != "cuda":
            raise ValueError("sync_batchnorm needs CUDA (torch's SyncBatchNorm has no CPU/gloo kernel); "
                             "train without it on the CPU")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids,
                                               find_unused_parameters=find_unused_parameters)
