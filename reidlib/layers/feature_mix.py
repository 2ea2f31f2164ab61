"""Attention-guided feature and image mixing (seed 004, PMM, Sec. 2.2-2.3; Table 3's alternatives).

PMM's Attentive feature Hard-Mix (A-Hard-Mix) hides what a stage found most salient from the next stage:

* **Block ranking** (Eq. 1): a Grad-CAM map ``G`` ``(h, w)`` is cut into non-overlapping blocks of
  ``bh x bw`` cells (``h`` and ``w`` must be multiples of them), each block's values are summed into its
  score ``s_b``, and the ``K`` blocks with the highest scores are set to 0 in a binary mask ``M``, every
  other cell to 1 (:func:`top_block_mask`). Equations 1-2 lost their symbols in the text; this is the
  prose's construction, the same as the public code's (3x2 blocks on 24x8, K = 3).
* **Feature Hard-Mix** (Eq. 2): ``F_mix = M * F_a + (1 - M) * F_n``, the anchor's feature map ``F_a``
  ``(C, h, w)`` with its masked blocks replaced by those of a negative ``F_n`` (a random image of another
  identity in the batch, :func:`negative_partners`) at the same positions (:func:`hard_mix`). Labels are
  not mixed.

Table 3 compares it with three alternatives, each at the place its own paper puts it (PMM's Table 1):
**CutOut** on the features (the selected blocks zeroed, no partner: :func:`cutout_blocks`), **CutMix** on
the images (a random box from another image of the batch, labels mixed by area: :func:`cutmix_boxes`) and
**attentive CutMix** on the images (the partner's most salient grid cells pasted at their place, labels
mixed by area: :func:`attentive_cutmix`). Beyond the paper, :func:`random_block_mask` (random blocks
instead of Grad-CAM's) and :func:`hardest_negative_partners` (the closest other identity instead of a
random one) separate the attention from the mixing.

All masks are float tensors of 0 and 1, ``(B, h, w)``, and never carry gradients.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["attentive_cutmix", "block_scores", "cutmix_boxes", "cutout_blocks", "hard_mix",
           "hardest_negative_partners", "negative_partners", "random_block_mask", "top_block_mask"]


def _check_blocks(height: int, width: int, block: tuple[int, int], k: int) -> tuple[int, int]:
    bh, bw = block
    if bh < 1 or bw < 1:
        raise ValueError(f"block size must be positive, got {block}")
    if height % bh or width % bw:
        raise ValueError(f"a {height}x{width} map cannot be cut into {bh}x{bw} blocks: its height and width "
                         "must be multiples of the block's (PMM, Sec. 2.2)")
    blocks = (height // bh) * (width // bw)
    if not 0 <= k <= blocks:
        raise ValueError(f"k = {k} blocks requested, but a {height}x{width} map has {blocks} blocks of "
                         f"{bh}x{bw}")
    return height // bh, width // bw


def block_scores(cam: Tensor, block: tuple[int, int]) -> Tensor:
    """Each block's summed map value (Eq. 1's ranking evidence): ``(B, h, w)`` -> ``(B, h/bh, w/bw)``."""
    if cam.dim() != 3:
        raise ValueError(f"block_scores expects maps (B, h, w), got {tuple(cam.shape)}")
    rows, cols = _check_blocks(cam.shape[1], cam.shape[2], block, 0)
    bh, bw = block
    return cam.reshape(cam.shape[0], rows, bh, cols, bw).sum(dim=(2, 4))


def _mask_from_blocks(chosen: Tensor, rows: int, cols: int, block: tuple[int, int]) -> Tensor:
    """``(B, k)`` chosen block indices (row-major) -> ``(B, rows*bh, cols*bw)`` mask, 0 on them."""
    batch = chosen.shape[0]
    keep = torch.ones(batch, rows * cols, device=chosen.device)
    keep.scatter_(1, chosen, 0.0)
    keep = keep.reshape(batch, rows, cols)
    return keep.repeat_interleave(block[0], dim=1).repeat_interleave(block[1], dim=2)


@torch.no_grad()
def top_block_mask(cam: Tensor, block: tuple[int, int], k: int) -> Tensor:
    """Eq. 1: the binary mask ``(B, h, w)`` with the ``k`` highest-scoring blocks of ``cam`` ``(B, h, w)``
    set to 0 and everything else to 1 (ties: the lower row-major block index first, as ``torch.topk``
    on a stable sort).

    Raises:
        ValueError: maps that are not multiples of ``block``, or more blocks than the map has.
    """
    scores = block_scores(cam.detach().float(), block)
    batch, rows, cols = scores.shape
    _check_blocks(cam.shape[1], cam.shape[2], block, k)
    order = torch.sort(scores.reshape(batch, -1), dim=1, descending=True, stable=True).indices
    return _mask_from_blocks(order[:, :k], rows, cols, block)


@torch.no_grad()
def random_block_mask(batch: int, height: int, width: int, block: tuple[int, int], k: int,
                      generator: torch.Generator | None = None, device: torch.device | str | None = None
                      ) -> Tensor:
    """Like :func:`top_block_mask`, but ``k`` blocks drawn uniformly without replacement per image
    (beyond the paper: is it the attention or the mixing that helps?)."""
    rows, cols = _check_blocks(height, width, block, k)
    noise = torch.rand(batch, rows * cols, generator=generator)
    chosen = noise.argsort(dim=1)[:, :k].to(device)
    return _mask_from_blocks(chosen, rows, cols, block).to(device)


@torch.no_grad()
def negative_partners(pids: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """For every sample, the index of a uniformly random sample of *another* identity in the batch
    (PMM's negative ``F_n``; a new draw on every call). ``pids`` ``(B,)`` -> ``(B,)`` int64.

    Raises:
        ValueError: a sample whose identity is the only one in the batch.
    """
    pids = pids.reshape(-1).cpu()
    other = pids[None, :] != pids[:, None]
    if not bool(other.any(dim=1).all()):
        raise ValueError("every identity in the batch needs a negative: the batch has a single identity "
                         "(sample P x K batches with P >= 2)")
    weights = other.float()
    return torch.multinomial(weights, 1, generator=generator).reshape(-1)


@torch.no_grad()
def hardest_negative_partners(features: Tensor, pids: Tensor) -> Tensor:
    """For every sample, the index of the closest sample (Euclidean, on ``features`` ``(B, D)``) of another
    identity: the hardest negative of the batch (beyond the paper)."""
    dist = torch.cdist(features.detach().float(), features.detach().float())
    same = pids.reshape(-1, 1) == pids.reshape(1, -1)
    if bool(same.all(dim=1).any()):
        raise ValueError("every identity in the batch needs a negative: the batch has a single identity")
    return dist.masked_fill(same.to(dist.device), float("inf")).argmin(dim=1).cpu()


def hard_mix(anchor: Tensor, mask: Tensor, partners: Tensor) -> Tensor:
    """Eq. 2: ``M * F_a + (1 - M) * F_n`` with ``F_n = anchor[partners]``.

    Args:
        anchor: ``(B, C, h, w)`` feature maps (gradients flow to both the anchor's and the partner's
            cells that are kept).
        mask: ``(B, h, w)`` 0/1 (:func:`top_block_mask`).
        partners: ``(B,)`` index of each sample's negative (:func:`negative_partners`).
    """
    if mask.shape != (anchor.shape[0], *anchor.shape[2:]):
        raise ValueError(f"mask {tuple(mask.shape)} does not match the maps {tuple(anchor.shape)}")
    m = mask.to(anchor.dtype).unsqueeze(1)
    return m * anchor + (1 - m) * anchor[partners.to(anchor.device)]


def cutout_blocks(anchor: Tensor, mask: Tensor) -> Tensor:
    """Table 3's CutOut on the features: the masked blocks set to zero, no partner (``M * F_a``)."""
    if mask.shape != (anchor.shape[0], *anchor.shape[2:]):
        raise ValueError(f"mask {tuple(mask.shape)} does not match the maps {tuple(anchor.shape)}")
    return anchor * mask.to(anchor.dtype).unsqueeze(1)


@torch.no_grad()
def cutmix_boxes(images: Tensor, generator: torch.Generator | None = None, alpha: float = 1.0
                 ) -> tuple[Tensor, Tensor, Tensor]:
    """CutMix (Yun et al., 2019) on images ``(B, 3, H, W)``: ``lambda ~ Beta(alpha, alpha)``, a box of
    area ``(1 - lambda) H W`` at a uniform centre (clipped to the image) is pasted from a random
    permutation partner.

    Returns:
        ``(mixed, partners, keep)``: the images, each sample's partner index ``(B,)`` and the share of the
        anchor's own pixels ``(B,)`` (the label weight of the anchor; the partner's is ``1 - keep``).
    """
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    b, _, h, w = images.shape
    partners = torch.randperm(b, generator=generator)
    lam = _beta_draw(alpha, generator)
    cut_h, cut_w = int(round(h * (1 - lam) ** 0.5)), int(round(w * (1 - lam) ** 0.5))
    cy = int(torch.randint(h, (1,), generator=generator))
    cx = int(torch.randint(w, (1,), generator=generator))
    y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h - cut_h // 2, h)
    x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w - cut_w // 2, w)
    mixed = images.clone()
    mixed[:, :, y0:y1, x0:x1] = images[partners][:, :, y0:y1, x0:x1]
    keep = torch.full((b,), 1.0 - (y1 - y0) * (x1 - x0) / (h * w))
    return mixed, partners, keep


def _beta_draw(alpha: float, generator: torch.Generator | None) -> float:
    """One ``Beta(alpha, alpha)`` draw that depends only on ``generator`` (torch's Beta sampler takes no
    generator: numpy's, seeded from the generator's next integer)."""
    seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


@torch.no_grad()
def attentive_cutmix(images: Tensor, saliency: Tensor, partners: Tensor, grid: tuple[int, int], k: int
                     ) -> tuple[Tensor, Tensor]:
    """Attentive CutMix (Walawalkar et al., 2020) on images ``(B, 3, H, W)``: each partner's saliency map
    ``(B, h, w)`` is cut into a ``grid`` of cells, its ``k`` most salient cells are pasted onto the anchor
    at the same place, and the label is mixed by the pasted area.

    Args:
        saliency: maps of the *images* (e.g. a Grad-CAM of the true class), at any resolution that the
            grid divides; indexed by sample (the partner's own map is used).
        partners: ``(B,)`` partner of each sample.
        grid: ``(rows, cols)`` cells over the image (the images' height and width must be multiples).
        k: cells pasted.

    Returns:
        ``(mixed, keep)``: the images and the share of the anchor's own pixels ``(B,)``.
    """
    b, _, h, w = images.shape
    rows, cols = grid
    if h % rows or w % cols:
        raise ValueError(f"{h}x{w} images cannot be cut into a {rows}x{cols} grid")
    sal_h, sal_w = saliency.shape[1:]
    if sal_h % rows or sal_w % cols:
        raise ValueError(f"a {sal_h}x{sal_w} saliency map cannot be cut into a {rows}x{cols} grid")
    cell_mask = top_block_mask(saliency[partners.to(saliency.device)], (sal_h // rows, sal_w // cols), k)
    # cell_mask is 0 on the partner's salient cells at saliency resolution; bring it to pixels.
    keep_cells = cell_mask[:, :: sal_h // rows, :: sal_w // cols]  # (B, rows, cols)
    pixel_keep = keep_cells.repeat_interleave(h // rows, dim=1).repeat_interleave(w // cols, dim=2)
    m = pixel_keep.to(images.dtype).unsqueeze(1).to(images.device)
    mixed = m * images + (1 - m) * images[partners.to(images.device)]
    return mixed, pixel_keep.flatten(1).mean(dim=1).cpu()
