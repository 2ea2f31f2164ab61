"""Scalar targets for Grad-CAM: functions ``target(output: ReIDOutput) -> (B,)``.

Grad-CAM explains one scalar per image. In re-ID the interesting scalars are a class logit (a training
identity), one or several embedding dimensions (seed 001's matching regions and implicit attention),
or the similarity to another image's embedding. Each builder checks its indices against the output it
receives, so a wrong index fails with a message rather than with an opaque indexing error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from reidlib.models.output import ReIDOutput

__all__ = ["Target", "class_target", "embedding_dim_target", "similarity_target"]

#: A Grad-CAM target: maps the model's output for a batch of B images to B scalars.
Target = Callable[[ReIDOutput], Tensor]


def _index_tensor(values: int | Sequence[int] | Tensor, name: str) -> Tensor:
    tensor = torch.as_tensor(values)
    if tensor.is_floating_point() or tensor.is_complex():
        raise ValueError(f"{name} must be integer indices; got dtype {tensor.dtype}")
    return tensor.long()


def class_target(classes: int | Sequence[int] | Tensor, branch: int | None = None) -> Target:
    """The logit of a class: ``logits[branch][b, classes[b]]``, or summed over branches if ``branch`` is None.

    Args:
        classes: one class for all images, or ``(B,)`` one per image (training identities ``0..C-1``).
        branch: which branch's logits; ``None`` sums the branches (the multi-branch model's total score).
    """
    classes_t = _index_tensor(classes, "classes")

    def target(output: ReIDOutput) -> Tensor:
        if not output.logits:
            raise ValueError("class_target needs a model that returns logits; this output has none")
        if branch is not None and not -len(output.logits) <= branch < len(output.logits):
            raise ValueError(f"branch {branch} out of range: the model has {len(output.logits)} branches")
        logits = output.logits[branch] if branch is not None else torch.stack(output.logits).sum(dim=0)
        batch, num_classes = logits.shape
        cls = classes_t.to(logits.device).reshape(-1)
        if cls.numel() == 1:
            cls = cls.expand(batch)
        if cls.numel() != batch:
            raise ValueError(f"class_target got {cls.numel()} classes for a batch of {batch} images")
        bad = (cls < 0) | (cls >= num_classes)
        if bool(bad.any()):
            raise ValueError(
                f"class {int(cls[bad][0])} out of range: the classifier has {num_classes} classes"
            )
        return logits.gather(1, cls[:, None]).squeeze(1)

    return target


def embedding_dim_target(dims: int | Sequence[int] | Tensor, normalize: bool = False) -> Target:
    """The sum of some embedding dimensions: ``sum_{d in dims} e_b[d]``.

    Args:
        dims: one dimension, a list of dimensions (the same for every image), or a ``(B, k)`` tensor of
            ``k`` dimensions per image (seed 001's implicit attention takes each image's 50 strongest).
        normalize: use the L2-normalised embedding ``e / |e|`` (seed 001's descriptor is normalised).
    """
    dims_t = _index_tensor(dims, "dims")

    def target(output: ReIDOutput) -> Tensor:
        emb = F.normalize(output.embedding, dim=1) if normalize else output.embedding
        batch, dim = emb.shape
        idx = dims_t.to(emb.device)
        idx = idx.reshape(1, -1).expand(batch, -1) if idx.dim() <= 1 else idx
        if idx.shape[0] != batch:
            raise ValueError(
                f"embedding_dim_target got dims for {idx.shape[0]} images; the batch has {batch}"
            )
        bad = (idx < 0) | (idx >= dim)
        if bool(bad.any()):
            raise ValueError(f"embedding dimension {int(idx[bad][0])} out of range: the embedding has {dim}")
        return emb.gather(1, idx).sum(dim=1)

    return target


def similarity_target(other_embedding: Tensor, normalize: bool = True) -> Target:
    """The dot product of each image's embedding with another embedding (cosine if ``normalize``).

    Args:
        other_embedding: ``(D,)`` one embedding for all images, or ``(B, D)`` one per image.
        normalize: L2-normalise both sides (cosine similarity, what re-ID ranks by).
    """
    other = other_embedding.detach()

    def target(output: ReIDOutput) -> Tensor:
        emb = output.embedding
        ref = other.to(emb.device, emb.dtype)
        ref = ref.unsqueeze(0).expand(emb.shape[0], -1) if ref.dim() == 1 else ref
        if ref.shape != emb.shape:
            raise ValueError(
                f"similarity_target: other embedding has shape {tuple(other.shape)}; the model's embedding "
                f"is {tuple(emb.shape)} (need (D,) or (B, D))"
            )
        if normalize:
            emb, ref = F.normalize(emb, dim=1), F.normalize(ref, dim=1)
        return (emb * ref).sum(dim=1)

    return target
