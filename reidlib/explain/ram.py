"""Ranking activation maps, RAM (seed 000, Sec. 3.4, Eq. 9-10).

CAM needs a class, and test identities have none. RAM explains a *ranking* instead. With
``f = GAP(F)``, the distance of L2-normalised features is ``d = sqrt(2 - 2 <f_q, f_g>/(|f_q| |f_g|))``
(Eq. 9), so for a fixed query the ranking follows ``<f_q, f_g> / |f_g|``, which splits over the
gallery image's positions (Eq. 10)::

    <f_q, f_g> / |f_g| = 1/(h w) sum_{x,y} R^q_g(x, y),      R^q_g(x, y) = <f_q, F_g(x, y)> / |f_g|

``R^q_g(x, y)`` is what position ``(x, y)`` of ``g`` adds to its similarity with ``q``; ``R^q_q`` puts the
query in place of the gallery image. Per branch (Fig. 8) ``f_q`` is replaced by the branch feature
``f^i_q``; for the concatenated descriptor ``f = [f^1/|f^1|; ...; f^N/|f^N|]`` (Sec. 3.3) the same
identity holds with ``F(x, y) = [F^1(x, y)/|f^1|; ...]``, because each ``|f^i|`` is a constant per image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from reidlib.explain.model_state import as_batch, explaining, forward, model_device

__all__ = [
    "ranking_activation_map",
    "combine_branch_maps",
    "RankingMaps",
    "RAMResult",
    "model_ram",
    "self_ranking_maps",
]


def ranking_activation_map(query_feature: Tensor, gallery_maps: Tensor, eps: float = 1e-12) -> Tensor:
    """``R^q_g(x, y) = <f_q, F_g(x, y)> / |f_g|`` with ``f_g = GAP(F_g)`` (seed 000, Eq. 10).

    Args:
        query_feature: ``(d,)`` one query feature ``f_q`` for all maps, or ``(B, d)`` one per map.
        gallery_maps: ``(B, d, h, w)`` feature maps ``F_g`` of the images to explain.

    Returns:
        ``(B, h, w)`` maps (signed; similarity units). Their spatial mean is ``<f_q, f_g> / |f_g|``.
    """
    if gallery_maps.dim() != 4:
        raise ValueError(f"gallery_maps must be (B, d, h, w); got {tuple(gallery_maps.shape)}")
    batch, dim = gallery_maps.shape[:2]
    if query_feature.dim() == 1:
        query_feature = query_feature.unsqueeze(0).expand(batch, -1)
    if query_feature.shape != (batch, dim):
        raise ValueError(
            f"query_feature must be (d={dim},) or (B={batch}, d={dim}); got {tuple(query_feature.shape)}"
        )
    gallery_norm = gallery_maps.mean(dim=(2, 3)).norm(dim=1).clamp_min(eps)
    return torch.einsum("bd,bdhw->bhw", query_feature, gallery_maps) / gallery_norm[:, None, None]


def combine_branch_maps(feature_maps: list[Tensor], normalize: bool = True, eps: float = 1e-12) -> Tensor:
    """Concatenate branch maps so that their GAP is the concatenated descriptor (seed 000, Sec. 3.3).

    Args:
        feature_maps: per branch ``(B, d_i, h, w)``; all branches need the same ``h, w``.
        normalize: divide branch ``i`` by ``|GAP(F^i)|`` per image, so ``GAP`` of the result is
            ``[f^1/|f^1|; ...; f^N/|f^N|]``, the paper's test descriptor.

    Returns:
        ``(B, sum_i d_i, h, w)``.
    """
    sizes = {tuple(m.shape[2:]) for m in feature_maps}
    if len(sizes) != 1:
        raise ValueError(f"branch maps have different spatial sizes {sorted(sizes)}; cannot concatenate")
    if normalize:
        feature_maps = [
            m / m.mean(dim=(2, 3)).norm(dim=1).clamp_min(eps)[:, None, None, None] for m in feature_maps
        ]
    return torch.cat(feature_maps, dim=1)


@dataclass
class RankingMaps:
    """RAMs of one query against a set of gallery images, for one descriptor.

    Attributes:
        query: ``(h, w)`` the query's own map ``R^q_q``.
        gallery: ``(G, h, w)`` maps ``R^q_g``, one per gallery image, in the given order.
        similarity: ``(G,)`` ``<f_q, f_g> / |f_g|``, what the ranking follows (Eq. 10, left side).
    """

    query: Tensor
    gallery: Tensor
    similarity: Tensor


@dataclass
class RAMResult:
    """Per-branch RAMs (Fig. 8) and those of the concatenated descriptor (``None`` if the branches'
    maps differ in size)."""

    branches: list[RankingMaps]
    combined: RankingMaps | None


def _maps_for(feature_maps: list[Tensor], normalize: bool) -> tuple[list[Tensor], Tensor | None]:
    sizes = {tuple(m.shape[2:]) for m in feature_maps}
    combined = combine_branch_maps(feature_maps, normalize) if len(sizes) == 1 else None
    return feature_maps, combined


@torch.no_grad()
def model_ram(
    model: nn.Module,
    query: Tensor,
    gallery: Tensor,
    *,
    branch_normalize: bool = True,
    batch_size: int = 64,
) -> RAMResult:
    """RAMs of one query image against gallery images, per branch and for the concatenated descriptor.

    Args:
        model: a reidlib model; RAM uses ``output.feature_maps`` (``f = GAP(F)`` as in the paper).
        query: ``(3, H, W)`` normalised query image.
        gallery: ``(G, 3, H, W)`` normalised gallery images (e.g. the top-k of the ranking).
        branch_normalize: L2-normalise each branch before concatenation (seed 000's descriptor).
        batch_size: gallery images per forward pass.

    Returns:
        :class:`RAMResult` on the model's device; model mode, hooks and gradients are unchanged.
    """
    if query.dim() != 3:
        raise ValueError(f"query must be one image (3, H, W); got {tuple(query.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    with explaining(model):
        device = model_device(model)
        q_maps, q_comb = _maps_for(forward(model, as_batch(query, device)).feature_maps, branch_normalize)
        gallery = as_batch(gallery, device)
        if gallery.shape[0] == 0:
            raise ValueError("model_ram needs at least one gallery image; got an empty batch")
        g_maps: list[list[Tensor]] = [[] for _ in q_maps]
        g_comb: list[Tensor] = []
        for start in range(0, gallery.shape[0], batch_size):
            maps, comb = _maps_for(forward(model, gallery[start : start + batch_size]).feature_maps,
                                   branch_normalize)
            for i, m in enumerate(maps):
                g_maps[i].append(m)
            if comb is not None:
                g_comb.append(comb)

        def rank_maps(qm: Tensor, gm: Tensor) -> RankingMaps:
            f_q = qm.mean(dim=(2, 3))[0]
            gallery_maps = ranking_activation_map(f_q, gm)
            return RankingMaps(
                query=ranking_activation_map(f_q, qm)[0],
                gallery=gallery_maps,
                similarity=gallery_maps.mean(dim=(1, 2)),
            )

        branches = [rank_maps(qm, torch.cat(gm)) for qm, gm in zip(q_maps, g_maps, strict=True)]
        combined = rank_maps(q_comb, torch.cat(g_comb)) if q_comb is not None else None
        return RAMResult(branches=branches, combined=combined)


@torch.no_grad()
def self_ranking_maps(
    model: nn.Module, images: Tensor, *, branch_normalize: bool = True
) -> tuple[list[Tensor], Tensor | None]:
    """Each image's own RAM ``R^q_q`` (the query column of seed 000's Fig. 4), for a batch.

    ``R^q_q(x, y) = <f_q, F_q(x, y)> / |f_q|``: what each position adds to the image's similarity with
    itself, i.e. where its descriptor comes from. Its spatial mean is ``|f_q|``.

    Returns:
        Per branch ``(B, h_i, w_i)``, and ``(B, h, w)`` for the concatenated descriptor (``None`` if the
        branches' maps differ in size). On the model's device; the model is left as it was.
    """
    with explaining(model):
        maps = forward(model, as_batch(images, model_device(model))).feature_maps
        branches = [ranking_activation_map(m.mean(dim=(2, 3)), m) for m in maps]
        _, combined = _maps_for(maps, branch_normalize)
        if combined is not None:
            combined = ranking_activation_map(combined.mean(dim=(2, 3)), combined)
        return branches, combined
