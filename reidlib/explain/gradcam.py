"""Grad-CAM for any layer of a reidlib model and any scalar target (Selvaraju et al., 2017).

Grad-CAM weights each channel ``k`` of a layer's activations ``A`` by the spatial mean of the gradient
of a scalar ``y`` and keeps the positive part: ``L = ReLU(sum_k alpha_k A^k)``, ``alpha_k =
mean_{ij} dy/dA^k_{ij}`` (:func:`reidlib.layers.gradcam.gradcam_from_gradients`).

The layer is a module name of ``model.named_modules()`` (its output is captured by a forward hook
that is removed afterwards) or an ``int`` ``i`` meaning ``output.feature_maps[i]``. The gradient is
taken with :func:`torch.autograd.grad` on the captured activation, so no parameter's ``.grad`` is
written; the model runs in eval mode, so the samples of a batch do not interact.

Seed 001 (Sec. 4.4) uses Grad-CAM on the embedding in two ways, both here:
:func:`matching_regions` (Fig. 5) and :func:`implicit_attention` (Fig. 6).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reidlib.explain.model_state import as_batch, explaining, forward, model_device, run
from reidlib.explain.targets import Target, embedding_dim_target
from reidlib.layers.gradcam import gradcam_from_gradients, normalize_maps

__all__ = ["GradCAMResult", "grad_cam", "grad_cam_layers", "MatchingRegions", "matching_regions",
           "implicit_attention"]

Layer = str | int


@dataclass
class GradCAMResult:
    """Grad-CAM of one layer for a batch.

    Attributes:
        maps: ``(B, h, w)`` maps (after the ReLU unless ``relu=False``; not normalised).
        scores: ``(B,)`` the target's value for each image.
        layer: the layer explained (module name or feature-map branch index).
    """

    maps: Tensor
    scores: Tensor
    layer: Layer

    def normalized(self) -> Tensor:
        """``(B, h, w)`` maps scaled to ``[0, 1]`` by each map's maximum."""
        return normalize_maps(self.maps.clamp_min(0))


def _resolve_modules(model: nn.Module, layers: Sequence[Layer]) -> dict[str, nn.Module]:
    modules = dict(model.named_modules())
    found = {}
    for layer in layers:
        if isinstance(layer, str):
            if layer not in modules or layer == "":
                names = [n for n in modules if n]
                shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
                raise ValueError(f"{type(model).__name__} has no layer named {layer!r}; layers: {shown}")
            found[layer] = modules[layer]
        elif not isinstance(layer, int) or isinstance(layer, bool):
            raise TypeError(
                f"a layer is a module name (str) or a feature-map branch index (int); got {layer!r}"
            )
    return found


def grad_cam_layers(
    model: nn.Module,
    images: Tensor,
    target: Target,
    layers: Sequence[Layer],
    *,
    relu: bool = True,
) -> list[GradCAMResult]:
    """Grad-CAM of several layers for one target, with one forward and one gradient computation.

    Args:
        model: a reidlib model (returns ``ReIDOutput``).
        images: ``(B, 3, H, W)`` normalised images (or one ``(3, H, W)``), any device.
        target: ``target(output) -> (B,)`` scalar per image (see :mod:`reidlib.explain.targets`).
        layers: module names of ``model.named_modules()`` and/or branch indices into
            ``output.feature_maps``; each must yield a ``(B, C, h, w)`` tensor, computed once per forward.
        relu: keep Grad-CAM's ReLU (``False`` gives the signed map).

    Returns:
        One :class:`GradCAMResult` per layer, detached, on the model's device. The model's mode, hooks
        and gradients are as before the call.
    """
    if len(layers) == 0:
        raise ValueError("grad_cam_layers needs at least one layer")
    modules = _resolve_modules(model, layers)
    captured: dict[str, list[Tensor]] = {name: [] for name in modules}
    handles = []

    def make_hook(name: str):
        def hook(module: nn.Module, inputs: tuple, output: object) -> None:
            if not isinstance(output, Tensor):
                raise ValueError(
                    f"layer {name!r} returns {type(output).__name__}; Grad-CAM needs a layer whose output "
                    "is one (B, C, h, w) tensor"
                )
            captured[name].append(output)

        return hook

    try:
        with explaining(model), torch.enable_grad():
            device = model_device(model)
            # Gradients flow from the input, so Grad-CAM also works on a model with frozen parameters.
            x = as_batch(images, device).detach().requires_grad_(True)
            handles = [module.register_forward_hook(make_hook(name)) for name, module in modules.items()]
            output = forward(model, x)
            scores = target(output)
            if not isinstance(scores, Tensor) or scores.shape != (x.shape[0],):
                raise ValueError(
                    f"a Grad-CAM target must return a (B,)=({x.shape[0]},) tensor; got "
                    f"{tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__}"
                )
            activations = []
            for layer in layers:
                if isinstance(layer, str):
                    calls = captured[layer]
                    if len(calls) != 1:
                        raise ValueError(
                            f"layer {layer!r} ran {len(calls)} times in one forward pass; Grad-CAM needs a "
                            "layer that runs exactly once (pick a branch-specific module)"
                        )
                    act = calls[0]
                else:
                    n = len(output.feature_maps)
                    if not -n <= layer < n:
                        raise ValueError(
                            f"feature-map branch {layer} out of range: the model has {n} branches"
                        )
                    act = output.feature_maps[layer]
                if act.dim() != 4:
                    raise ValueError(f"layer {layer!r} gives shape {tuple(act.shape)}; need (B, C, h, w)")
                activations.append(act)
            grads = torch.autograd.grad(scores.sum(), activations, allow_unused=True)
            results = []
            for layer, act, grad in zip(layers, activations, grads, strict=True):
                if grad is None:
                    raise ValueError(f"the target does not depend on layer {layer!r}; no Grad-CAM exists")
                maps = gradcam_from_gradients(act.detach(), grad.detach(), relu=relu)
                results.append(GradCAMResult(maps=maps, scores=scores.detach(), layer=layer))
            return results
    finally:
        for handle in handles:
            handle.remove()


def grad_cam(
    model: nn.Module,
    images: Tensor,
    target: Target,
    layer: Layer = 0,
    *,
    relu: bool = True,
) -> GradCAMResult:
    """Grad-CAM of one layer (module name, or branch index into ``feature_maps``; default the first
    branch's last maps) for a scalar target per image. See :func:`grad_cam_layers`."""
    return grad_cam_layers(model, images, target, [layer], relu=relu)[0]


@dataclass
class MatchingRegions:
    """Seed 001's matching regions of an image pair (Fig. 5).

    Attributes:
        dims: ``(k,)`` the embedding dimensions contributing most to the pair's similarity.
        contributions: ``(k,)`` their terms ``e_a[d] e_b[d]`` of the dot product.
        similarity: the full dot product ``<e_a, e_b>``.
        maps_a, maps_b: ``(k, h, w)`` Grad-CAM of each dimension in image a and in image b.
    """

    dims: Tensor
    contributions: Tensor
    similarity: float
    maps_a: Tensor
    maps_b: Tensor


def matching_regions(
    model: nn.Module,
    image_a: Tensor,
    image_b: Tensor,
    layer: Layer = 0,
    *,
    k: int = 5,
    normalize: bool = True,
) -> MatchingRegions:
    """Seed 001, Sec. 4.4: "given two images, we select the 5 dimensions that contribute the most to the
    dot-product similarity between their representations. Then, for each image, we propagate the
    gradients of these 5 dimensions individually" - one Grad-CAM per dimension per image.

    Args:
        image_a, image_b: ``(3, H, W)`` normalised images.
        layer: the layer to explain (module name or feature-map branch; default branch 0's last maps).
        k: number of dimensions.
        normalize: work with L2-normalised embeddings (the paper's descriptor).
    """
    emb = run(model, torch.stack([image_a, image_b])).embedding
    if normalize:
        emb = F.normalize(emb, dim=1)
    if not 1 <= k <= emb.shape[1]:
        raise ValueError(f"k must be in 1..{emb.shape[1]} (the embedding size); got {k}")
    terms = emb[0] * emb[1]
    contributions, dims = terms.topk(k)
    # One batch of 2k copies: row j explains dimension dims[j % k] in image a (j < k) or b.
    batch = torch.stack([image_a] * k + [image_b] * k)
    per_row = torch.cat([dims, dims]).unsqueeze(1)
    result = grad_cam(model, batch, embedding_dim_target(per_row, normalize=normalize), layer)
    return MatchingRegions(
        dims=dims,
        contributions=contributions,
        similarity=float(terms.sum()),
        maps_a=result.maps[:k],
        maps_b=result.maps[k:],
    )


def implicit_attention(
    model: nn.Module,
    images: Tensor,
    layer: Layer = 0,
    *,
    k: int = 50,
    normalize: bool = True,
) -> GradCAMResult:
    """Seed 001, Sec. 4.4: "given an image and its embedding, we select the first 50 dimensions with the
    strongest activations. We then propagate and accumulate the gradients of these dimensions".

    Accumulating the gradients of ``k`` dimensions is the gradient of their sum, so this is the Grad-CAM
    of ``sum_{d in top-k(e)} e[d]`` with each image's own top-``k`` (largest values) of the embedding.

    Args:
        images: ``(B, 3, H, W)`` normalised images.
        layer: the layer to explain (module name or feature-map branch index).
        k: number of dimensions (the paper uses 50).
        normalize: rank and differentiate the L2-normalised embedding.
    """
    emb = run(model, images).embedding
    if not 1 <= k <= emb.shape[1]:
        raise ValueError(f"k must be in 1..{emb.shape[1]} (the embedding size); got {k}")
    dims = emb.topk(k, dim=1).indices  # normalisation does not change the order within an image
    return grad_cam(model, images, embedding_dim_target(dims, normalize=normalize), layer)
