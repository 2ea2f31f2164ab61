"""Grad-CAM as a building block inside a training step (seed 004, PMM; Selvaraju et al., 2017).

PMM computes a Grad-CAM of the correct class on the feature maps of one stage, in the forward pass of
every training step, and uses it (detached) to choose which feature blocks the next stage sees. This
module gives that computation without side effects on training: the gradient is taken with
:func:`torch.autograd.grad` with respect to the feature maps only, so no parameter's ``.grad`` is
written, and the graph is kept for the loss's own backward pass.

Grad-CAM (Selvaraju et al., Eq. 1-2): for a score ``y^c`` and feature maps ``A^k`` of size ``h x w``,

    alpha^c_k = 1/(h w) sum_{i,j} d y^c / d A^k_{ij}          (channel weights: pooled gradients)
    L^c      = ReLU( sum_k alpha^c_k A^k )                     (the map, h x w)

``reidlib.explain.gradcam`` re-uses :func:`gradcam_from_gradients` and :func:`normalize_maps`.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["batch_gradcam", "gradcam_from_gradients", "normalize_maps"]


def gradcam_from_gradients(activations: Tensor, gradients: Tensor, relu: bool = True) -> Tensor:
    """Grad-CAM maps from activations and the gradients of a score with respect to them.

    Args:
        activations: ``(B, C, h, w)`` feature maps ``A``.
        gradients: ``(B, C, h, w)`` gradients ``dy/dA`` of one scalar score per sample.
        relu: apply the ReLU of Grad-CAM's Eq. 2 (keep only positive evidence). ``False`` returns the
            signed map, useful to check the definition.

    Returns:
        ``(B, h, w)`` maps, in the units of ``A`` times the pooled gradient (not normalised).
    """
    if activations.dim() != 4 or activations.shape != gradients.shape:
        raise ValueError(
            "gradcam_from_gradients expects activations and gradients of the same shape (B, C, h, w); "
            f"got {tuple(activations.shape)} and {tuple(gradients.shape)}"
        )
    weights = gradients.mean(dim=(2, 3), keepdim=True)  # alpha_k: global-average-pooled gradients
    cam = (weights * activations).sum(dim=1)
    return cam.clamp_min(0) if relu else cam


def normalize_maps(maps: Tensor, eps: float = 1e-12) -> Tensor:
    """Scale each non-negative map of ``(B, h, w)`` to ``[0, 1]`` by its own maximum.

    Division by the maximum (not min-max) keeps zero meaning "no positive evidence"; an all-zero map
    stays all zero.
    """
    if maps.dim() != 3:
        raise ValueError(f"normalize_maps expects (B, h, w) maps; got shape {tuple(maps.shape)}")
    peak = maps.flatten(1).amax(dim=1).clamp_min(eps)
    return maps / peak[:, None, None]


def _check_targets(scores: Tensor, targets: Tensor, batch: int) -> Tensor:
    if scores.dim() != 2 or scores.shape[0] != batch:
        raise ValueError(
            f"batch_gradcam expects scores of shape (B={batch}, num_classes); got {tuple(scores.shape)}"
        )
    targets = torch.as_tensor(targets, device=scores.device)
    if targets.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise ValueError(f"batch_gradcam expects integer class targets; got dtype {targets.dtype}")
    targets = targets.long().reshape(-1)
    if targets.numel() != batch:
        raise ValueError(f"batch_gradcam expects {batch} targets (one per sample); got {targets.numel()}")
    num_classes = scores.shape[1]
    bad = (targets < 0) | (targets >= num_classes)
    if bool(bad.any()):
        raise ValueError(
            f"target class {int(targets[bad][0])} out of range: scores have {num_classes} classes "
            f"(valid 0..{num_classes - 1})"
        )
    return targets


def batch_gradcam(
    feature_maps: Tensor,
    scores: Tensor,
    targets: Tensor,
    *,
    per_sample: bool = False,
    normalize: bool = True,
) -> Tensor:
    """Grad-CAM of each sample's target class on a batch of feature maps, for use inside training.

    Args:
        feature_maps: ``(B, C, h, w)`` maps that ``scores`` were computed from, part of the autograd
            graph (``requires_grad``; usually the output of a backbone stage).
        scores: ``(B, num_classes)`` logits (or any class scores) computed from ``feature_maps``.
        targets: ``(B,)`` integer class of each sample (PMM: the ground-truth identity).
        per_sample: the default takes one gradient of ``sum_b scores[b, targets[b]]``, exact when the
            samples do not interact; with a head in training mode that holds BatchNorm, sample ``b``'s
            gradient then also holds a small term from the other samples through the batch statistics
            (what PMM's and BDB's code compute). ``True`` takes one gradient per sample (``B`` backward
            passes) and is exact.
        normalize: scale each map to ``[0, 1]`` by its maximum (:func:`normalize_maps`).

    Returns:
        ``(B, h, w)`` detached maps on the device of ``feature_maps``. No parameter's ``.grad`` is
        touched and the graph is retained, so the training loss can still be back-propagated.
    """
    if feature_maps.dim() != 4:
        raise ValueError(f"batch_gradcam expects feature_maps (B, C, h, w); got {tuple(feature_maps.shape)}")
    if not feature_maps.requires_grad:
        raise ValueError(
            "batch_gradcam needs feature_maps that are part of the autograd graph (requires_grad=True); "
            "call it inside the training forward pass, not under torch.no_grad()"
        )
    batch = feature_maps.shape[0]
    targets = _check_targets(scores, targets, batch)
    picked = scores.gather(1, targets[:, None]).squeeze(1)  # (B,) y^c of each sample
    try:
        if per_sample:
            grads = torch.stack(
                [
                    torch.autograd.grad(picked[b], feature_maps, retain_graph=True)[0][b]
                    for b in range(batch)
                ]
            )
        else:
            grads = torch.autograd.grad(picked.sum(), feature_maps, retain_graph=True)[0]
    except RuntimeError as err:
        raise ValueError(
            "batch_gradcam could not differentiate scores with respect to feature_maps: the scores must "
            f"be computed from these feature maps ({err})"
        ) from err
    with torch.no_grad():
        cams = gradcam_from_gradients(feature_maps.detach(), grads.detach())
        return normalize_maps(cams) if normalize else cams
