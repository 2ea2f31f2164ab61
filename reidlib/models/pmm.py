"""Batch DropBlock (BDB, Dai et al. 2019) and the Progressive Multi-stage feature Mix network (PMM, seed
004) on one stage-4 map of a :class:`~reidlib.models.backbone.StagedBackbone`.

**BDB** (:class:`BDBNet`), the baseline PMM builds on: a *global branch* (global average pooling, a 1x1
convolution to 512 + BN + ReLU, a classifier) and a *part branch* (an extra ResNet Bottleneck, Batch
DropBlock: one band of a third of the height, the full width, the same band for the whole batch, in
training only; global max pooling; a linear reduction to 1,024 + BN + ReLU; a classifier). The test
descriptor is the two reduced features side by side (512 + 1,024).

**PMM** (:class:`PMMNet`, Sec. 2.1-2.2): three stages on the same backbone map ``F``.

* Stage I: BDB's global branch on ``F``.
* Stages II and III: one extra Bottleneck shared by both, global max pooling, their own linear reduction
  to 512 + BN + ReLU and classifier.
* In training, stage II's input is ``F`` mixed under the guidance of stage I's Grad-CAM (of the true
  class, on ``F``), and stage III's is a fresh copy of ``F`` mixed under the guidance of stage II's
  Grad-CAM (on stage II's mixed input): :func:`reidlib.layers.gradcam.batch_gradcam`, which takes the
  gradient with :func:`torch.autograd.grad` with respect to the maps only, so no parameter's gradient is
  written and the maps are detached (only the earlier stage steers the later one). The mixing is
  :mod:`reidlib.layers.feature_mix`: the ``k`` highest Grad-CAM blocks (Eq. 1) replaced by a random
  negative's (A-Hard-Mix, Eq. 2), or zeroed (CutOut), or left alone (``mix="none"``, for the image-level
  CutMix variants of Table 3 and for the plain multi-stage network).
* At test time nothing is mixed; the descriptor is the three 512-d features side by side.

Both models return a :class:`~reidlib.models.output.ReIDOutput` with one logit and one feature per branch
or stage (the inputs of the per-stage identity and triplet losses). PMM's ``extras`` hold, in training,
``"cams"`` ``(B, S-1, h, w)`` (the guiding Grad-CAMs), ``"masks"`` ``(B, S-1, h, w)`` (Eq. 1's masks)
and ``"partners"`` ``(B, S-1)`` (each sample's negative), so a step can be replayed with them as constants
(``forward(x, pids, masks=..., partners=...)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.resnet import Bottleneck

from reidlib.layers.batch_drop import BatchDropBlock
from reidlib.layers.feature_mix import (
    cutout_blocks,
    hard_mix,
    hardest_negative_partners,
    negative_partners,
    random_block_mask,
    top_block_mask,
)
from reidlib.layers.gradcam import batch_gradcam
from reidlib.layers.init import init_classifier, init_kaiming
from reidlib.models.backbone import StagedBackbone, check_backbone, check_num_classes
from reidlib.models.output import ReIDOutput

__all__ = ["GUIDANCES", "MIXES", "PARTNERS", "BDBNet", "PMMNet"]

#: What stages II and III do with their input in training.
MIXES = ("hard_mix", "cutout", "none")
#: Where the mixed blocks come from: Grad-CAM's top blocks (the paper) or random blocks (beyond it).
GUIDANCES = ("gradcam", "random")
#: Which negative gives its blocks: a random other identity (the paper) or the hardest one (beyond it).
PARTNERS = ("random", "hardest")


def _bottleneck(channels: int) -> Bottleneck:
    """An extra ResNet Bottleneck that keeps ``channels`` (BDB's part branch, PMM's stages II-III)."""
    if channels % 4:
        raise ValueError(f"a Bottleneck needs a channel count divisible by 4, got {channels}")
    block = Bottleneck(channels, channels // 4)
    block.apply(init_kaiming)
    return block


class _GlobalHead(nn.Module):
    """GAP -> 1x1 conv to ``dim`` -> BN -> ReLU -> classifier: BDB's global branch and PMM's stage I."""

    def __init__(self, channels: int, dim: int, num_classes: int) -> None:
        super().__init__()
        self.reduce = nn.Sequential(nn.Conv2d(channels, dim, 1, bias=False), nn.BatchNorm2d(dim),
                                    nn.ReLU(inplace=True))
        self.classifier = nn.Linear(dim, num_classes, bias=False)
        self.reduce.apply(init_kaiming)
        init_classifier(self.classifier)

    def forward(self, maps: Tensor) -> tuple[Tensor, Tensor]:
        feature = self.reduce(F.adaptive_avg_pool2d(maps, 1)).flatten(1)
        return feature, self.classifier(feature)


class _MaxHead(nn.Module):
    """GMP -> linear to ``dim`` -> BN -> ReLU -> classifier: BDB's part branch and PMM's stages II-III."""

    def __init__(self, channels: int, dim: int, num_classes: int) -> None:
        super().__init__()
        self.reduce = nn.Sequential(nn.Linear(channels, dim, bias=False), nn.BatchNorm1d(dim),
                                    nn.ReLU(inplace=True))
        self.classifier = nn.Linear(dim, num_classes, bias=False)
        self.reduce.apply(init_kaiming)
        init_classifier(self.classifier)

    def forward(self, maps: Tensor) -> tuple[Tensor, Tensor]:
        feature = self.reduce(F.adaptive_max_pool2d(maps, 1).flatten(1))
        return feature, self.classifier(feature)


class BDBNet(nn.Module):
    """Batch DropBlock network (Dai et al., 2019): a global and a part branch on stage 4 (module docstring).

    Args:
        num_classes: training identities.
        backbone: a stride-1 stage 4 in the papers (24x8 maps at 384x128).
        global_dim, part_dim: the branches' feature widths (512 and 1,024).
        drop_height_ratio, drop_width_ratio: the dropped band (1/3 of the height, the full width).

    ``forward(x)`` returns ``logits`` ``[global, part]``, ``features`` the two reduced features,
    ``feature_maps`` ``[stage-4 map, part branch's map after the drop]``, ``embedding`` both features
    concatenated ``(B, global_dim + part_dim)``; ``extras["drop_mask"]`` ``(h, w)`` in training.
    """

    def __init__(self, num_classes: int, backbone: StagedBackbone, global_dim: int = 512,
                 part_dim: int = 1024, drop_height_ratio: float = 1 / 3, drop_width_ratio: float = 1.0
                 ) -> None:
        super().__init__()
        check_num_classes(num_classes)
        check_backbone(backbone)
        channels = backbone.out_channels
        self.backbone = backbone
        self.global_head = _GlobalHead(channels, global_dim, num_classes)
        self.bottleneck = _bottleneck(channels)
        self.drop = BatchDropBlock(drop_height_ratio, drop_width_ratio)
        self.part_head = _MaxHead(channels, part_dim, num_classes)

    def forward(self, x: Tensor) -> ReIDOutput:
        maps = self.backbone(x)
        g_feat, g_logits = self.global_head(maps)
        part_maps = self.drop(self.bottleneck(maps))
        p_feat, p_logits = self.part_head(part_maps)
        extras = {}
        if self.training and self.drop.last_mask is not None:
            extras["drop_mask"] = self.drop.last_mask
        return ReIDOutput(logits=[g_logits, p_logits], features=[g_feat, p_feat],
                          feature_maps=[maps, part_maps], embedding=torch.cat([g_feat, p_feat], dim=1),
                          extras=extras)


class PMMNet(nn.Module):
    """Progressive Multi-stage feature Mix network (seed 004, Fig. 2; module docstring).

    Args:
        num_classes: training identities.
        backbone: a :class:`~reidlib.models.backbone.StagedBackbone` (stride-1 stage 4).
        stages: 1, 2 or 3 (the paper: 3; "Effectiveness of each stage").
        dim: every stage's feature width (512).
        k: blocks mixed per image (the paper: 3 / 6 / 8 on Market / Duke / CUHK03 at 24x8).
        block: ``(rows, cols)`` of a block in map cells (the public code: 3x2 on 24x8).
        mix: :data:`MIXES`. guidance: :data:`GUIDANCES`. partner: :data:`PARTNERS`.
        per_sample_cam: one Grad-CAM backward per sample (exact under BatchNorm) instead of one for the
            batch (the paper's code; see :func:`reidlib.layers.gradcam.batch_gradcam`).

    ``forward(x, pids=None, masks=None, partners=None, generator=None)``: in training with ``pids``
    ``(B,)`` and ``mix != "none"``, stages II-III see mixed inputs; ``masks`` ``(B, S-1, h, w)`` and
    ``partners`` ``(B, S-1)`` replace the Grad-CAM-derived ones (a replay with constants). Returns
    ``logits`` and ``features`` per stage, ``feature_maps`` ``[F, stage II's input, stage III's input]``,
    ``embedding`` the stages' features side by side ``(B, stages * dim)``.
    """

    def __init__(self, num_classes: int, backbone: StagedBackbone, stages: int = 3, dim: int = 512,
                 k: int = 3, block: Sequence[int] = (3, 2), mix: str = "hard_mix", guidance: str = "gradcam",
                 partner: str = "random", per_sample_cam: bool = False) -> None:
        super().__init__()
        check_num_classes(num_classes)
        check_backbone(backbone)
        if stages not in (1, 2, 3):
            raise ValueError(f"stages must be 1, 2 or 3, got {stages}")
        for name, value, allowed in (("mix", mix, MIXES), ("guidance", guidance, GUIDANCES),
                                     ("partner", partner, PARTNERS)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        self.block = (int(block[0]), int(block[1]))
        self.k, self.mix, self.guidance, self.partner = k, mix, guidance, partner
        self.per_sample_cam = per_sample_cam
        self.num_stages = stages
        channels = backbone.out_channels
        self.backbone = backbone
        self.stage1 = _GlobalHead(channels, dim, num_classes)
        self.bottleneck = _bottleneck(channels) if stages > 1 else None
        self.later = nn.ModuleList(_MaxHead(channels, dim, num_classes) for _ in range(stages - 1))

    def _mask(self, guide_maps: Tensor, guide_logits: Tensor, pids: Tensor,
              generator: torch.Generator | None) -> tuple[Tensor, Tensor | None]:
        """Eq. 1's mask for the next stage and the Grad-CAM that chose it (``None`` for random blocks)."""
        b, _, h, w = guide_maps.shape
        if self.guidance == "random":
            return random_block_mask(b, h, w, self.block, self.k, generator, guide_maps.device), None
        cam = batch_gradcam(guide_maps, guide_logits, pids, per_sample=self.per_sample_cam)
        return top_block_mask(cam, self.block, self.k), cam

    def _partners(self, features: Tensor, pids: Tensor, generator: torch.Generator | None) -> Tensor:
        if self.partner == "hardest":
            return hardest_negative_partners(features, pids)
        return negative_partners(pids, generator)

    def forward(self, x: Tensor, pids: Tensor | None = None, masks: Tensor | None = None,
                partners: Tensor | None = None, generator: torch.Generator | None = None) -> ReIDOutput:
        maps = self.backbone(x)
        feature, logits = self.stage1(maps)
        features, all_logits, inputs = [feature], [logits], [maps]
        mixing = self.training and self.mix != "none" and self.num_stages > 1
        if mixing and pids is None and masks is None:
            raise ValueError("PMMNet mixes stages II-III in training and needs the batch's pids: "
                             "call model(images, pids) (or set mix='none')")
        cams, used_masks, used_partners = [], [], []
        guide_maps, guide_logits = maps, logits
        for s, head in enumerate(self.later):
            stage_input = maps
            if mixing:
                if masks is not None:
                    mask, cam = masks[:, s].to(maps.device), None
                else:
                    mask, cam = self._mask(guide_maps, guide_logits, pids, generator)
                if self.mix == "cutout":
                    stage_input, partner = cutout_blocks(maps, mask), None
                else:
                    partner = (partners[:, s] if partners is not None
                               else self._partners(feature, pids, generator))
                    stage_input = hard_mix(maps, mask, partner)
                used_masks.append(mask)
                if cam is not None:
                    cams.append(cam)
                if partner is not None:
                    used_partners.append(partner.reshape(-1).cpu())
            assert self.bottleneck is not None
            feature, logits = head(self.bottleneck(stage_input))
            features.append(feature)
            all_logits.append(logits)
            inputs.append(stage_input)
            guide_maps, guide_logits = stage_input, logits
        extras: dict[str, Tensor] = {}
        if used_masks:
            extras["masks"] = torch.stack(used_masks, dim=1)
        if cams:
            extras["cams"] = torch.stack(cams, dim=1)
        if used_partners:
            extras["partners"] = torch.stack(used_partners, dim=1)
        return ReIDOutput(logits=all_logits, features=features, feature_maps=inputs,
                          embedding=torch.cat(features, dim=1), extras=extras)
