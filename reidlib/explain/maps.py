"""One entry point for the three map methods, per branch and for the whole model.

:func:`explanation_maps` returns, for a batch, a dict ``{"branch 1": (B, h, w), ..., "all": (B, h, w)}``:

- ``"cam"``: CAM of a class (seed 000, Eq. 4); ``"all"`` is the sum over branches, the CAM of the
  summed score.
- ``"ram"``: each image's own RAM ``R^q_q`` (seed 000, Eq. 10); ``"all"`` is the RAM of the
  concatenated, per-branch L2-normalised descriptor.
- ``"gradcam"``: Grad-CAM on each branch's last maps of seed 001's implicit attention target (the sum
  of the image's ``k`` strongest embedding dimensions) or of a class logit; ``"all"`` is Grad-CAM on
  all branches' maps taken together as one layer, ``ReLU(sum_i signed_i)``.

CAM and RAM maps are signed (score units); Grad-CAM maps are non-negative.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from reidlib.explain.cam import model_cam
from reidlib.explain.gradcam import grad_cam_layers
from reidlib.explain.model_state import run
from reidlib.explain.ram import self_ranking_maps
from reidlib.explain.targets import class_target, embedding_dim_target

__all__ = ["METHODS", "explanation_maps", "branch_key"]

METHODS = ("cam", "ram", "gradcam")
Method = Literal["cam", "ram", "gradcam"]


def branch_key(i: int) -> str:
    """Name of branch ``i`` (0-based) in map dicts and score tables: ``"branch 1"`` for ``i = 0``."""
    return f"branch {i + 1}"


def _with_total(branches: list[Tensor], total: Tensor | None) -> dict[str, Tensor]:
    maps = {branch_key(i): m for i, m in enumerate(branches)}
    if total is not None:
        maps["all"] = total
    return maps


def explanation_maps(
    model: nn.Module,
    images: Tensor,
    method: Method,
    *,
    classes: Tensor | None = None,
    gradcam_target: Literal["implicit", "class"] = "implicit",
    implicit_k: int = 50,
) -> dict[str, Tensor]:
    """Maps of one method for a batch, per branch and for the whole model (see the module docstring).

    Args:
        model: a reidlib model.
        images: ``(B, 3, H, W)`` normalised images.
        method: ``"cam"``, ``"ram"`` or ``"gradcam"``.
        classes: ``(B,)`` classes for CAM and class Grad-CAM; ``None`` takes the predicted class.
        gradcam_target: ``"implicit"`` (seed 001's implicit attention, works for unseen identities) or
            ``"class"`` (logit of ``classes``).
        implicit_k: number of strongest embedding dimensions for ``"implicit"`` (seed 001: 50; capped at
            the embedding size).

    Returns:
        ``{"branch 1": (B, h, w), ..., "all": (B, h, w)}`` on the model's device (``"all"`` is missing when
        the branches' maps have different sizes).
    """
    if method == "cam":
        result = model_cam(model, images, classes)
        sizes = {tuple(m.shape[1:]) for m in result.maps}
        return _with_total(result.maps, result.combined() if len(sizes) == 1 else None)
    if method == "ram":
        branches, combined = self_ranking_maps(model, images)
        return _with_total(branches, combined)
    if method == "gradcam":
        output = run(model, images)
        if gradcam_target == "implicit":
            dims = output.embedding.topk(min(implicit_k, output.embedding.shape[1]), dim=1).indices
            target = embedding_dim_target(dims, normalize=True)
        elif gradcam_target == "class":
            if classes is None:
                if not output.logits:
                    raise ValueError(
                        "the model returns no logits; pass `classes` or use gradcam_target='implicit'"
                    )
                classes = torch.stack(output.logits).sum(dim=0).argmax(dim=1)
            target = class_target(classes)
        else:
            raise ValueError(f"gradcam_target must be 'implicit' or 'class'; got {gradcam_target!r}")
        layers = list(range(len(output.feature_maps)))
        signed = [r.maps for r in grad_cam_layers(model, images, target, layers, relu=False)]
        sizes = {tuple(m.shape[1:]) for m in signed}
        total = torch.stack(signed).sum(dim=0).clamp_min(0) if len(sizes) == 1 else None
        return _with_total([m.clamp_min(0) for m in signed], total)
    raise ValueError(f"method must be one of {METHODS}; got {method!r}")
