"""The hybrid-attention guided network with multiple resolution features (seed 003, Sec. 3, Fig. 2).

``image -> ResNet stages 1-4 -> MFF (max-pool to stage 4's size) -> spatial attention per stage ->
concatenation -> channel attention on the fused map -> MGO (parts of several granularities) -> one MPFE
head per part``. The pieces:

* **MFF** (Sec. 3.1): the maps of the selected stages of a backbone whose stage 4 has stride 1
  (``last_stride=1``) are max-pooled to stage 4's size (kernel = stride = the size ratio: 4 for stage 1,
  2 for stage 2, 1 for stages 3-4) and concatenated along channels. A ResNet-50 at 384x128 gives
  256x96x32, 512x48x16, 1024x24x8 and 2048x24x8, fused into 3,840x24x8; a narrow ResNet of width ``w``
  gives ``15w`` channels (``stage_channels``). ``stages`` selects the stages of Table 10.
* **Hybrid attention** (Sec. 3.2, Table 9): :class:`~reidlib.layers.attention.SpatialAttention` (the
  paper's SAM, Eq. 1) and :class:`~reidlib.layers.attention.ChannelAttention` (the paper's CAM, Eq. 2),
  in the order a string names (:func:`build_attention_plan`); the paper's model is ``"S+(c)+C"``.
* **MGO** (Sec. 3.3, Eq. 3): parts cut from the fused map along its height (:func:`stripe_parts`).
* **MPFE** (Sec. 3.4): :class:`MultiPoolHeads`, every part's head at once; without it,
  :class:`AvgPoolHeads`.

:class:`HybridAttentionNet` assembles them; ``stages=(4,), attention="none", local="global",
mpfe=False`` is the plain ResNet baseline of Table 6 (stage 4, global average pooling, a classifier).
The objective (Eq. 4) is :class:`reidlib.losses.multi_part.MultiPartLoss`.

**Readings** (where the paper is silent or garbled; each is a choice a chapter can question):

1. **Alignment target.** Sec. 2.1: "we keep the size of feature maps from previous stages the same as
   that of the last stage". Every selected stage is brought to stage 4's size, also when stage 4 itself
   is not selected (Table 10's "stage 1", "stage 1-2", ...), so every row of Table 10 feeds MGO maps of
   one size. Only the stages up to the deepest selected one are run; stage 4's size is then derived from
   the ResNet geometry (each stride-2 stage maps ``n`` rows to ``ceil(n/2)``). The pooling is
   ``adaptive_max_pool2d`` to that size, which is exactly kernel = stride = ratio pooling when the ratio
   is an integer (every input size divisible by 16 or 32) and still defined when it is not.
2. **Attention order** (Table 9): the characters of the string say the order in which the operations
   run. ``"S"`` and ``"C"`` act per stage (one module per stage, with that stage's channels) when placed
   before ``"(c)"``, on the fused map after it. An order without ``"(c)"`` (``"S"``, ``"C"``: Table 9's
   second part, "using the feature map of Stage 4 only") needs a single stage (``stages=(4,)``);
   ``"none"`` only concatenates. Spatial attention acts on the aligned maps, as Sec. 3.1 says ("SAM ...
   of the spatial-aligned feature maps").
3. **MGO's parts** (:func:`stripe_parts`): the public code's reading, every run of contiguous stripes,
   is the default (``"contiguous"``, 21 parts for 6 stripes); ``"pyramid"`` and ``"uniform"`` (PCB) are
   the alternatives (see :func:`stripe_parts` for what Eq. 3 supports). Stripe ``i`` of ``n`` covers
   rows ``[round(i h / n), round((i + 1) h / n))`` of a map of height ``h``, rounding halves up
   (:func:`piece_bounds`); at ``h = 24`` every stripe has 4 rows, at ``h = 16`` the rows are 3, 2, 3, 3,
   2, 3.
4. **MPFE's activation.** The paper says ReLU; the public code uses LeakyReLU with slope 0.1. ReLU is the
   default, ``mpfe_negative_slope=0.1`` gives the public code's. The 1x1 convolution and the 256 -> 512
   FC have no bias (each is followed by a BN, and a constant shift cancels in triplet distances).
5. **Heads without MPFE** (Table 6's "Baseline" and "+ Bag of Tricks", Table 7's single-component rows):
   the paper's baseline is a plain ResNet-50, so a part head is global average pooling and a bias-free
   classifier; the triplet loss and the test descriptor see the pooled vector. ``head_bn=True`` puts a BN
   between pooling and classifier (IDE+BN / BNNeck: the triplet loss sees the pooled vector, the
   classifier and the test descriptor its BN).
6. **Triplet groups.** The public code computes one triplet loss per pyramid level, on the concatenated
   features of that level's parts (6 losses for 21 parts). The model reports each part's level in
   ``extras["part_levels"]``; :class:`reidlib.losses.multi_part.MultiPartLoss` groups by it.
7. **Classifiers** are bias-free (one ``(num_classes, D)`` weight per part, stacked) with
   ``N(0, 0.001^2)`` weights (the book's convention), so ``ReIDOutput.class_weights`` has them; for the
   baseline the classifier sees the global average pooling of ``feature_maps[0]``, so its class
   activation maps are exact (seed 000's Eq. 4).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reidlib.layers.attention import ChannelAttention, SpatialAttention
from reidlib.models.backbone import StagedBackbone, check_backbone, check_num_classes
from reidlib.models.output import ReIDOutput

__all__ = [
    "ATTENTION_ORDERS",
    "GRANULARITIES",
    "LOCAL_MODES",
    "AvgPoolHeads",
    "HybridAttentionNet",
    "MultiPoolHeads",
    "Part",
    "build_attention_plan",
    "piece_bounds",
    "part_rows",
    "pool_parts",
    "stripe_parts",
]

#: The attention orders of Table 9, in its row order (``"none"`` is BaselineBMM without attention).
ATTENTION_ORDERS = ("none", "S", "C", "(c)+C+S", "C+S+(c)", "C+(c)+S", "(c)+S+C", "S+C+(c)", "S+(c)+C")

#: Readings of MGO's parts (:func:`stripe_parts`).
GRANULARITIES = ("contiguous", "pyramid", "uniform")

#: Local branches of :class:`HybridAttentionNet`: MGO, PCB (Table 7) and one global part (the baseline).
LOCAL_MODES = ("mgo", "pcb", "global")

_STAGE_KEYS = {1: "layer1", 2: "layer2", 3: "layer3", 4: "layer4"}
_CONCAT_TOKENS = ("(c)", "©")  # the paper prints a circled c


# --------------------------------------------------------------------------------------------- MGO


class Part(NamedTuple):
    """One part of MGO (seed 003, Sec. 3.3): pieces ``first..last`` (0-based, inclusive) of the map's
    height cut into ``pieces`` equal pieces; ``level`` is the 0-based level of the pyramid it belongs to
    (0 = the top level, the whole map)."""

    first: int
    last: int
    pieces: int
    level: int


def stripe_parts(num_stripes: int = 6, granularity: str = "contiguous") -> list[Part]:
    """MGO's parts (seed 003, Sec. 3.3, Eq. 3), top level first.

    Eq. 3 is garbled in the text, ``M_P = F_{1~P}`` with rows ``((k-1) H/n + 1) : ((k-1) H/n + l H/n)``,
    ``l = 1..p``, ``n = 1..k``: the rows of ``l`` consecutive pieces, starting at piece ``k``, of the
    height cut into ``n`` equal pieces. The prose fixes only the ends: the top level is one global part,
    the bottom level the ``k`` stripes of height ``H/k``, and the levels between "reorganize" the map
    into "relaxed" parts. Two readings fit:

    * ``"contiguous"`` (the public code, the default): ``n`` is always the number of stripes, and level
      ``p`` (``p = 1..k``) holds every run of ``k - p + 1`` contiguous stripes, ``p`` parts that overlap
      (the "relaxed" parts, which "gently expand" the bottom level's stripes); 1+2+...+6 = 21 parts
      for 6 stripes: ``(0, 5); (0, 4), (1, 5); ...; (0, 0), ..., (5, 5)``.
    * ``"pyramid"``: ``l = 1`` and ``n = p``: level ``p`` cuts the height into ``p`` equal,
      non-overlapping pieces (a horizontal pyramid); also 21 parts for 6 levels, but levels 4 and 5 do not
      fall on stripe boundaries (at ``h = 24``, a fifth is 4.8 rows).

    ``"uniform"`` is PCB (Table 7's alternative): the ``num_stripes`` stripes only, one level.

    Args:
        num_stripes: ``k``, the stripes of the bottom level (6 in the paper).
        granularity: one of :data:`GRANULARITIES`.

    Returns:
        :class:`Part` s, ordered by level, then from the top of the image down.
    """
    if not isinstance(num_stripes, int) or num_stripes < 1:
        raise ValueError(f"num_stripes must be a positive int, got {num_stripes!r}")
    n = num_stripes
    if granularity == "contiguous":
        # Level p (0-based) holds the p + 1 runs of n - p stripes.
        return [Part(start, start + n - p - 1, n, p) for p in range(n) for start in range(p + 1)]
    if granularity == "pyramid":
        return [Part(j, j, p + 1, p) for p in range(n) for j in range(p + 1)]
    if granularity == "uniform":
        return [Part(i, i, n, 0) for i in range(n)]
    raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")


def piece_bounds(pieces: int, height: int) -> list[int]:
    """Row boundaries of ``pieces`` equal pieces of ``height`` rows: ``b_i = round(i * height / pieces)``
    for ``i = 0..pieces``, halves rounded up (integer arithmetic, so no float ties). Piece ``i`` covers rows
    ``[b_i, b_{i+1})``.

    Raises:
        ValueError: ``height < pieces`` (some piece would be empty).
    """
    if pieces < 1:
        raise ValueError(f"pieces must be >= 1, got {pieces}")
    if height < pieces:
        raise ValueError(f"a map of height {height} cannot be cut into {pieces} non-empty pieces; use larger "
                         "images or fewer stripes")
    return [(2 * i * height + pieces) // (2 * pieces) for i in range(pieces + 1)]


def part_rows(part: Part, height: int) -> tuple[int, int]:
    """The rows ``[start, stop)`` that ``part`` covers on a map of ``height`` rows (:func:`piece_bounds`)."""
    bounds = piece_bounds(part.pieces, height)
    return bounds[part.first], bounds[part.last + 1]


# ----------------------------------------------------------------------------------------- attention


def _parse_order(order: str) -> list[str]:
    if not isinstance(order, str):
        raise TypeError(f"attention must be a string such as 'S+(c)+C', got {order!r}")
    text = order.replace(" ", "")
    if text.lower() == "none":
        return []
    tokens = ["(c)" if t in _CONCAT_TOKENS else t for t in text.split("+")]
    if any(t not in ("S", "C", "(c)") for t in tokens) or len(set(tokens)) != len(tokens):
        raise ValueError(f"attention must be 'none' or 'S', 'C' and '(c)', each at most once, joined by '+' "
                         f"(Table 9: {', '.join(ATTENTION_ORDERS)}), got {order!r}")
    return tokens


def build_attention_plan(order: str, num_stages: int) -> list[tuple[str, str]]:
    """The operations an attention order (Table 9) runs, in order.

    Args:
        order: ``"none"`` or ``"S"`` (spatial attention), ``"C"`` (channel attention) and ``"(c)"`` (the
            concatenation; ``"©"`` also reads as it), each at most once, joined by ``"+"``.
        num_stages: how many stages are fused.

    Returns:
        ``[(op, where), ...]`` with ``op`` in ``"S"``, ``"C"``, ``"concat"`` and ``where`` ``"per stage"``
        (one module per stage, before the concatenation) or ``"fused"`` (on the concatenated map). E.g.
        ``"S+(c)+C"`` gives ``[("S", "per stage"), ("concat", "fused"), ("C", "fused")]``; ``"none"``
        gives ``[("concat", "fused")]`` for several stages and ``[]`` for one.

    Raises:
        ValueError: an unknown token, a repeated one, or several stages with an order that never
            concatenates (``"S"``, ``"C"`` are Table 9's stage-4-only rows: use ``stages=(4,)``).
    """
    if num_stages < 1:
        raise ValueError(f"num_stages must be >= 1, got {num_stages}")
    tokens = _parse_order(order)
    if not tokens:
        return [("concat", "fused")] if num_stages > 1 else []
    if "(c)" not in tokens and num_stages > 1:
        raise ValueError(f"attention {order!r} never concatenates, so it needs a single stage (Table 9's "
                         f"'S' and 'C' rows use stage 4 only: stages=(4,)); got {num_stages} stages. Add "
                         "'(c)' to say where the stages are concatenated.")
    plan: list[tuple[str, str]] = []
    where = "per stage"
    for token in tokens:
        if token == "(c)":
            plan.append(("concat", "fused"))
            where = "fused"
        else:
            plan.append((token, where))
    return plan


# ------------------------------------------------------------------------------------------- heads


def pool_parts(fused: Tensor, rows: Sequence[tuple[int, int]]) -> tuple[Tensor, Tensor]:
    """Global max and average pooling of every part: ``(B, P, C)`` each, for parts covering ``rows``
    (``[start, stop)`` of ``fused`` ``(B, C, h, w)``). Rows are reduced first, so each part costs a
    reduction over ``(B, C, rows)`` instead of ``(B, C, rows, w)``."""
    row_max, row_sum = fused.amax(dim=3), fused.sum(dim=3)
    width = fused.shape[3]
    maxes = torch.stack([row_max[:, :, a:b].amax(dim=2) for a, b in rows], dim=1)
    means = torch.stack([row_sum[:, :, a:b].sum(dim=2) / ((b - a) * width) for a, b in rows], dim=1)
    return maxes, means


class MultiPoolHeads(nn.Module):
    """MPFE, the multi-pool feature extractor (seed 003, Sec. 3.4, Fig. 5), of ``P`` parts at once.

    Per part ``p``: ``[GMP(x_p); GAP(x_p)]`` ``(B, 2C)`` -> 1x1 conv to ``reduce_dim`` -> BN -> ReLU (or
    LeakyReLU) -> FC to ``feat_dim`` = the triplet feature -> BN = the test vector -> bias-free classifier
    = the identity scores. The parts' weights are stacked (``reduce`` ``(P, reduce_dim, 2C)``, ``fc``
    ``(P, feat_dim, reduce_dim)``, ``classifier`` ``(P, num_classes, feat_dim)``) and applied with one
    batched product each: the same arithmetic as ``P`` separate heads (a 1x1 convolution of a 1x1 map is
    a matrix product, and a BatchNorm over ``P * d`` channels normalises each part's channels on their
    own), but a handful of operations instead of ``P`` times as many, which is what the CPU pays for with
    21 small heads. The 1x1 conv and the FC have no bias (each is followed by a BN).

    Args:
        in_channels: ``C``.
        num_parts: ``P``.
        num_classes: training identities.
        reduce_dim: output channels of the 1x1 conv (256 in the paper).
        feat_dim: the FC's output (512 in the paper).
        negative_slope: 0 = ReLU (the paper), 0.1 = the public code's LeakyReLU.
        classifier_std: std of the classifiers' initial weights.

    ``forward(fused, rows)`` returns ``(features, vectors, logits)``: ``(B, P, feat_dim)``,
    ``(B, P, feat_dim)``, ``(B, P, num_classes)``.
    """

    def __init__(self, in_channels: int, num_parts: int, num_classes: int, reduce_dim: int = 256,
                 feat_dim: int = 512, negative_slope: float = 0.0, classifier_std: float = 0.001) -> None:
        super().__init__()
        if min(in_channels, num_parts, num_classes, reduce_dim, feat_dim) < 1:
            raise ValueError("in_channels, num_parts, num_classes, reduce_dim and feat_dim must be >= 1")
        if negative_slope < 0:
            raise ValueError(f"negative_slope must be >= 0, got {negative_slope}")
        if classifier_std <= 0:
            raise ValueError(f"classifier init std must be > 0, got {classifier_std}")
        self.num_parts, self.feat_dim, self.negative_slope = num_parts, feat_dim, negative_slope
        # He-normal as reidlib.layers.init.init_kaiming: fan_in for the (1x1) convolution, fan_out for the FC.
        self.reduce = nn.Parameter(torch.randn(num_parts, reduce_dim, 2 * in_channels)
                                   * (2.0 / (2 * in_channels)) ** 0.5)
        self.reduce_bn = nn.BatchNorm1d(num_parts * reduce_dim)
        self.fc = nn.Parameter(torch.randn(num_parts, feat_dim, reduce_dim) * (2.0 / feat_dim) ** 0.5)
        self.bn = nn.BatchNorm1d(num_parts * feat_dim)
        self.classifier = nn.Parameter(torch.randn(num_parts, num_classes, feat_dim) * classifier_std)

    def forward(self, fused: Tensor, rows: Sequence[tuple[int, int]]) -> tuple[Tensor, Tensor, Tensor]:
        if len(rows) != self.num_parts:
            raise ValueError(f"{len(rows)} part row ranges for {self.num_parts} heads")
        maxes, means = pool_parts(fused, rows)
        pooled = torch.cat([maxes, means], dim=2)
        b, p = pooled.shape[:2]
        reduced = torch.einsum("bpc,prc->bpr", pooled, self.reduce)
        reduced = F.leaky_relu(self.reduce_bn(reduced.reshape(b, -1)), self.negative_slope).reshape(b, p, -1)
        features = torch.einsum("bpr,pdr->bpd", reduced, self.fc)
        vectors = self.bn(features.reshape(b, -1)).reshape(b, p, -1)
        return features, vectors, torch.einsum("bpd,pkd->bpk", vectors, self.classifier)

    def class_weights(self) -> list[Tensor]:
        """Each part's ``(num_classes, feat_dim)`` classifier weight (views of the parameter, so a loss on
        them trains it)."""
        return list(self.classifier.unbind(0))


class AvgPoolHeads(nn.Module):
    """Part heads without MPFE (module docstring, reading 5), ``P`` at once: per part ``GAP(x_p)``, an
    optional BN, a bias-free classifier (weights stacked as ``(P, num_classes, C)``).

    Args:
        in_channels: ``C``.
        num_parts: ``P``.
        num_classes: training identities.
        bn: put a BN between pooling and classifier (IDE+BN); without it (the default) a head is a plain
            ResNet's.
        classifier_std: std of the classifiers' initial weights.

    ``forward(fused, rows)`` returns ``(features, vectors, logits)``: ``GAP(x_p)`` ``(B, P, C)``, the test
    vectors (``BN(GAP(x_p))`` or ``GAP(x_p)``) ``(B, P, C)`` and ``(B, P, num_classes)`` scores of them.
    """

    def __init__(self, in_channels: int, num_parts: int, num_classes: int, bn: bool = False,
                 classifier_std: float = 0.001) -> None:
        super().__init__()
        if min(in_channels, num_parts, num_classes) < 1:
            raise ValueError("in_channels, num_parts and num_classes must be >= 1")
        if classifier_std <= 0:
            raise ValueError(f"classifier init std must be > 0, got {classifier_std}")
        self.num_parts, self.feat_dim = num_parts, in_channels
        self.bn: nn.Module | None = nn.BatchNorm1d(num_parts * in_channels) if bn else None
        self.classifier = nn.Parameter(torch.randn(num_parts, num_classes, in_channels) * classifier_std)

    def forward(self, fused: Tensor, rows: Sequence[tuple[int, int]]) -> tuple[Tensor, Tensor, Tensor]:
        if len(rows) != self.num_parts:
            raise ValueError(f"{len(rows)} part row ranges for {self.num_parts} heads")
        features = pool_parts(fused, rows)[1]
        vectors = features
        if self.bn is not None:
            vectors = self.bn(features.flatten(1)).reshape(features.shape)
        return features, vectors, torch.einsum("bpc,pkc->bpk", vectors, self.classifier)

    def class_weights(self) -> list[Tensor]:
        """Each part's ``(num_classes, C)`` classifier weight (views of the parameter)."""
        return list(self.classifier.unbind(0))


# ------------------------------------------------------------------------------------------- model


def _check_stages(stages: Sequence[int]) -> tuple[int, ...]:
    stages = tuple(stages)
    if not stages or any(s not in _STAGE_KEYS for s in stages) or list(stages) != sorted(set(stages)):
        raise ValueError(f"stages must be increasing, distinct stage numbers from 1-4 (Table 10: (1,), "
                         f"(1, 2), (2, 3, 4), (1, 2, 3, 4), ...), got {stages}")
    return stages


class HybridAttentionNet(nn.Module):
    """The hybrid-attention guided network (seed 003, Fig. 2); the module docstring lists its readings.

    Args:
        num_classes: training identities.
        backbone: a :class:`~reidlib.models.backbone.StagedBackbone`; the paper's is an ImageNet
            ResNet-50 with ``last_stride=1`` (:func:`~reidlib.models.backbone.build_backbone`).
        stages: the stages MFF fuses (Table 10), increasing; ``(4,)`` = no fusion.
        attention: an order of Table 9 (:data:`ATTENTION_ORDERS`, :func:`build_attention_plan`).
        local: ``"mgo"`` (Sec. 3.3), ``"pcb"`` (uniform stripes, Table 7) or ``"global"`` (one part, the
            whole map).
        mpfe: MPFE heads (:class:`MultiPoolHeads`); ``False``: :class:`AvgPoolHeads`.
        num_stripes: ``k``, the stripes of MGO's bottom level and of PCB (6).
        granularity: MGO's reading (:func:`stripe_parts`); only for ``local="mgo"``.
        sam_kernel: kernel of every spatial attention (7; Eq. 1).
        reduction: ``r`` of every channel attention (16; Eq. 2).
        reduce_dim, feat_dim: MPFE's widths (256, 512).
        mpfe_negative_slope: MPFE's activation (0 = ReLU, the paper; 0.1 = the public code).
        head_bn: a BN in the heads without MPFE (reading 5).
        classifier_std: std of every classifier's initial weights.

    Attributes:
        attention_plan: ``[(op, where), ...]`` (:func:`build_attention_plan`), what ``forward`` runs.
        parts: the :class:`Part` s, one head each; ``part_levels`` their levels.
        stage_channels: channels of the fused stages; ``fused_channels`` their sum.

    ``forward(x)``, ``x`` ``(B, 3, H, W)``, returns a :class:`~reidlib.models.output.ReIDOutput` with,
    per part ``i`` (in :attr:`parts` order), ``logits[i]`` ``(B, num_classes)``, ``features[i]``
    ``(B, D)`` (the triplet input: MPFE's FC output, ``D = feat_dim``, or the pooled vector,
    ``D = fused_channels``) and ``class_weights[i]`` ``(num_classes, D)``; ``feature_maps`` ``[fused]``
    ``(B, fused_channels, h, w)`` (the attended map the parts are cut from); ``embedding`` the parts' test
    vectors concatenated, ``(B, len(parts) * D)``; ``extras``: ``"part_levels"`` ``(P,)`` int64,
    ``"part_rows"`` ``(P, 2)`` int64 (each part's rows ``[start, stop)`` on the fused map) and, when the
    plan has them, ``"spatial_attention"`` ``(B, K, h, w)`` (``K`` = one map per stage where spatial
    attention acts per stage, 1 on the fused map) and ``"channel_attention"`` ``(B, fused_channels)``
    (per-stage attentions concatenated in stage order, which is the fused map's channel order).
    """

    def __init__(
        self,
        num_classes: int,
        backbone: StagedBackbone,
        stages: Sequence[int] = (1, 2, 3, 4),
        attention: str = "S+(c)+C",
        local: str = "mgo",
        mpfe: bool = True,
        num_stripes: int = 6,
        granularity: str = "contiguous",
        sam_kernel: int = 7,
        reduction: int = 16,
        *,
        reduce_dim: int = 256,
        feat_dim: int = 512,
        mpfe_negative_slope: float = 0.0,
        head_bn: bool = False,
        classifier_std: float = 0.001,
    ) -> None:
        super().__init__()
        check_num_classes(num_classes)
        check_backbone(backbone)
        if local not in LOCAL_MODES:
            raise ValueError(f"local must be one of {LOCAL_MODES}, got {local!r}")
        self.num_classes = num_classes
        self.backbone = backbone
        self.stages = _check_stages(stages)
        self.attention = attention
        self.attention_plan = build_attention_plan(attention, len(self.stages))
        self.local = local
        self.stage_channels = [backbone.stage_channels[_STAGE_KEYS[s]] for s in self.stages]
        self.fused_channels = sum(self.stage_channels)

        # One module per stage for an operation before the concatenation, one for the fused map after it.
        self.spatial_attention = nn.ModuleList()
        self.channel_attention = nn.ModuleList()
        for op, where in self.attention_plan:
            widths = self.stage_channels if where == "per stage" else [self.fused_channels]
            if op == "S":
                self.spatial_attention.extend(SpatialAttention(sam_kernel) for _ in widths)
            elif op == "C":
                self.channel_attention.extend(ChannelAttention(c, reduction) for c in widths)

        if local == "mgo":
            self.parts = stripe_parts(num_stripes, granularity)
        elif local == "pcb":
            self.parts = stripe_parts(num_stripes, "uniform")
        else:
            self.parts = [Part(0, 0, 1, 0)]
        self.part_levels = [p.level for p in self.parts]
        self.mpfe = mpfe
        self.heads: MultiPoolHeads | AvgPoolHeads
        width, count = self.fused_channels, len(self.parts)
        if mpfe:
            self.heads = MultiPoolHeads(width, count, num_classes, reduce_dim, feat_dim, mpfe_negative_slope,
                                        classifier_std)
        else:
            self.heads = AvgPoolHeads(width, count, num_classes, head_bn, classifier_std)

    # -- MFF --------------------------------------------------------------------------------------

    def stage_maps(self, x: Tensor) -> list[Tensor]:
        """The selected stages' outputs, unaligned: ``[(B, C_s, h_s, w_s) for s in stages]``. Runs the
        backbone only up to the deepest selected stage."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"HybridAttentionNet expects images (B, 3, H, W), got {tuple(x.shape)}")
        out: dict[int, Tensor] = {}
        h = self.backbone.stem(x)
        for s in range(1, self.stages[-1] + 1):
            h = getattr(self.backbone, _STAGE_KEYS[s])(h)
            out[s] = h
        return [out[s] for s in self.stages]

    def _stage4_size(self, deepest: int, size: tuple[int, int]) -> tuple[int, int]:
        # Stages 2-3 and (with last_stride=2) stage 4 halve a map, rounding up, as a padded 3x3 stride-2
        # conv does; reading 1 aligns to stage 4 even when stage 4 is not run.
        h, w = size
        for s in range(deepest + 1, 5):
            stride = self.backbone.last_stride if s == 4 else 2
            h, w = -(-h // stride), -(-w // stride)
        return h, w

    def aligned_maps(self, x: Tensor) -> list[Tensor]:
        """MFF's alignment (Sec. 3.1): every selected stage max-pooled to stage 4's size ``(h, w)``:
        ``[(B, C_s, h, w) for s in stages]`` (module docstring, reading 1)."""
        maps = self.stage_maps(x)
        target = self._stage4_size(self.stages[-1], tuple(maps[-1].shape[2:]))
        return [m if tuple(m.shape[2:]) == target else F.adaptive_max_pool2d(m, target) for m in maps]

    def fuse(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """MFF and hybrid attention: run :attr:`attention_plan` on the aligned maps.

        Returns:
            ``(fused, extras)``: the attended map ``(B, fused_channels, h, w)`` and the attention maps
            (``"spatial_attention"``, ``"channel_attention"``; see the class docstring).
        """
        maps = self.aligned_maps(x)
        fused = maps[0] if len(maps) == 1 else None
        spatial: list[Tensor] = []
        channel: list[Tensor] = []
        for op, where in self.attention_plan:
            if op == "concat":
                fused = torch.cat(maps, dim=1)
                continue
            # Each op appears once in a plan, so its modules are all of spatial_/channel_attention.
            modules = self.spatial_attention if op == "S" else self.channel_attention
            if where == "per stage":
                weights = [module.attention_map(m) for module, m in zip(modules, maps, strict=True)]
                maps = [m * a for m, a in zip(maps, weights, strict=True)]
                if len(maps) == 1:
                    fused = maps[0]
            else:
                assert fused is not None  # build_attention_plan puts "fused" ops after the concatenation
                weights = [modules[0].attention_map(fused)]
                fused = fused * weights[0]
            (spatial if op == "S" else channel).extend(weights)
        assert fused is not None
        extras: dict[str, Tensor] = {}
        if spatial:
            extras["spatial_attention"] = torch.cat(spatial, dim=1)
        if channel:
            extras["channel_attention"] = torch.cat(channel, dim=1).flatten(1)
        return fused, extras

    # -- forward ----------------------------------------------------------------------------------

    def forward(self, x: Tensor) -> ReIDOutput:
        fused, extras = self.fuse(x)
        height = fused.shape[2]
        rows = [part_rows(p, height) for p in self.parts]
        features, vectors, logits = self.heads(fused, rows)
        extras["part_levels"] = torch.tensor(self.part_levels, dtype=torch.long, device=x.device)
        extras["part_rows"] = torch.tensor(rows, dtype=torch.long, device=x.device)
        return ReIDOutput(
            logits=list(logits.unbind(1)),
            features=list(features.unbind(1)),
            feature_maps=[fused],
            embedding=vectors.flatten(1),
            extras=extras,
            class_weights=self.heads.class_weights(),
        )

    def extra_repr(self) -> str:
        return (f"stages={self.stages}, attention={self.attention!r}, local={self.local!r}, "
                f"parts={len(self.parts)}, mpfe={self.mpfe}, fused_channels={self.fused_channels}")
