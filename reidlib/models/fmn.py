"""FMN: the Feature Mask Network (seed 002, Ding et al., "Let Features Decide for Themselves", 2017).

Three parts (Sec. 3.1, Fig. 2):

* the **Global Representation Network** (:class:`GRN`): a ResNet fine-tuned for identity classification
  (stage 1 of Algorithm 1); its global feature ``g`` drives the mask and is half of the test descriptor;
* the **Mixing Network** (:class:`MixingNetwork`): an FC layer ``g -> h*w`` with a ReLU (Eq. 1), a reshape
  and an element-wise ``exp`` (Eq. 2), giving a spatial mask ``m`` that multiplies every channel of a
  low-level GRN map ``f`` (Eq. 3);
* the **Locally Attentive Network** (the LAN of :class:`FMN`): its own copy of the ResNet stages after
  the masked layer, fed with the masked map, with its own classifier; its global feature ``l`` is the
  other half of the descriptor (Eq. 6, :func:`fmn_descriptor`).

Stage 2 of Algorithm 1 keeps the GRN fixed and trains the MN and the LAN with Eq. 4 (cross-entropy on the
LAN's scores) plus Eq. 5 (a hinge on the true-class probabilities); both live in
:mod:`reidlib.losses.fmn_rank`.

No code was published; the paper is the only source. Where it is silent or inconsistent we read it as
follows (each reading is a choice a chapter can question):

1. **What ``g`` is.** Sec. 3.2 takes ``g`` from the "final fully connected layer", Sec. 3.4 builds the
   descriptor from "the last FC layer features", and Table 1 gives the GRN descriptor 2048 dimensions.
   The FC's *output* has one unit per identity (751 on Market-1501), so 2048 can only be its *input*:
   the global average pooling of the last stage (ResNet-50's pool5). We use that vector as ``g`` for the
   descriptor and as the MN's input; likewise ``l`` is the LAN's pooled stage-4 vector.
2. **Which layer is masked.** Sec. 3.2 says "output from first residual block", Table 5 says the main
   model masks Pool1 ("for the case of Res1, we apply masking on the output of the pooling layer"), and
   Table 1's FMN row equals Table 5's Pool1 row; the LAN has "four residual blocks", which fits Pool1.
   So the default is ``"pool1"``: the stem's output after max pooling (56x56 at 224x224). The other rows
   of Table 5 are :data:`MASK_LAYERS` (Res2..Res4 = the outputs of ``layer1..layer3``); the LAN is then
   the stages after that layer.
3. **The reshape of Eq. 2.** ``j = floor(k/h) + 1, i = k - h(j - 1)`` runs ``k`` down the columns first
   (column-major, MATLAB's and so MatConvNet's ``reshape`` order). Read literally the rule mixes a
   0-based ``i`` with a 1-based ``j``; we take its evident intent, 0-based ``m[i, j] = exp(m'[j*h + i])``
   with ``i`` the row (``0..h-1``) and ``j`` the column (``0..w-1``). Because the FC is randomly
   initialised, a row-major reshape would only relabel its output units; the order matters when reading
   ``W``'s columns as cells or porting weights.
4. **Eq. 1 has no bias.** ``m' = ReLU(W^T g)`` is implemented as written (``bias=False``); an FC with a
   bias (MatConvNet's default layer) is ``MixingNetwork(..., bias=True)``.
5. **Initialising the MN** ("random initialization for theta_m"): ``W ~ N(0, init_std^2)`` with
   ``init_std = 1e-3``, so ``m'`` starts near 0 and the mask near ``exp(0) = 1``: the LAN starts from its
   pre-trained weights seeing (almost) unmasked features. ``W = 0`` would not do: the ReLU would sit at
   0, where its gradient is 0, and the MN would never train. A cell whose pre-activation is negative for
   an image gets mask 1 and no gradient from that image (the ReLU's zero region); a cell negative for
   every image stays at 1.
6. **Guarding the exponential.** ``exp`` of a ReLU output is ``>= 1`` and unbounded; ``exp(89)``
   overflows float32 and ``exp(11.1)`` float16 (max 65504), which the engine's mixed precision uses. We
   clamp ``m'`` at ``max_log_mask`` (:data:`MAX_LOG_MASK` = 8) before ``exp``: the mask is then at most
   ``e^8 ~ 2981``, finite in float32 and float16, and the masked map ``f * m`` stays finite in float16
   for ``|f| < 22``. Below the cap nothing changes (the mask is exactly Eq. 1-2); above it the mask is
   the constant ``e^8`` and, like the ReLU's zero region, passes no gradient. A mask ratio of ~3000
   between two cells already is all-or-nothing attention; ``extras["mask_clamped"]`` reports the share
   of cells the guard acts on, so a run can show that it never (or rarely) binds.
7. **The GRN** is a ResNet with the ImageNet classifier replaced by one over the training identities
   (Sec. 4.2): GAP then a linear layer, no BN head or dropout, plain last stride 2. The one deviation is a
   bias-free classifier, so that ``ReIDOutput.class_weights`` gives class activation maps with
   ``S = GAP(M)`` (:mod:`reidlib.layers.cam`) for the GRN/LAN heat maps of Fig. 4. Classifier weights
   start at ``N(0, 0.001^2)`` (:func:`reidlib.layers.init.init_classifier`, the book's convention; the
   paper gives none).
8. **The LAN's start.** Algorithm 1 initialises ``theta_l`` from ``theta_o``, the *pre-trained* model,
   not from the fine-tuned GRN: :class:`FMN` copies the stages after the masked layer from
   ``lan_backbone``, which the caller builds with the weights the GRN started from.
9. **Keeping the GRN fixed** in stage 2 means its parameters get no gradient *and* its BatchNorm layers
   use their running statistics: :meth:`FMN.train` keeps the GRN in eval mode, so ``g`` and ``f`` are
   the same functions of the image in training and at test time (the paper, on MatConvNet, does not say
   how its batch norm behaved while "feed-forwarding" the fixed GRN).
10. **Input size.** The MN's output size ``h*w`` is fixed by the masked map, hence by the image size
    (the paper: 224x224, Table 5's 56x56 Pool1 mask; the book: 256x128, a 64x32 mask). :class:`FMN`
    takes ``input_size`` and rejects other sizes.
"""

from __future__ import annotations

import operator
from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reidlib.layers.cam import bias_free_weights
from reidlib.layers.init import init_classifier
from reidlib.models.backbone import (
    STAGE_NAMES,
    StagedBackbone,
    check_backbone,
    check_num_classes,
    clone_stage,
)
from reidlib.models.output import ReIDOutput

__all__ = ["FMN", "GRN", "MASK_LAYERS", "MAX_LOG_MASK", "MixingNetwork", "feature_mask", "fmn_descriptor"]

#: Table 5's layer names -> the backbone stage whose output is masked (Pool1 = the stem after max
#: pooling, 56x56 at 224x224; Res2 = ``layer1`` 56x56; Res3 = ``layer2`` 28x28; Res4 = ``layer3`` 14x14).
MASK_LAYERS: dict[str, str] = {"pool1": "stem", "res2": "layer1", "res3": "layer2", "res4": "layer3"}

#: Default cap on ``m'`` before the exponential of Eq. 2: ``e^8 ~ 2981`` is finite in float16 (max 65504)
#: with a factor 22 to spare for the product with the features (see the module docstring, reading 6).
MAX_LOG_MASK = 8.0

#: Std of the MN's initial weights: small, so that the mask starts near ``exp(0) = 1`` (reading 5).
MASK_INIT_STD = 1e-3


def _check_max_log_mask(max_log_mask: float | None) -> None:
    if max_log_mask is not None and not max_log_mask > 0:
        raise ValueError(f"max_log_mask must be > 0 (or None for no guard), got {max_log_mask}")


def _transitional_mask(g: Tensor, weight: Tensor, bias: Tensor | None, height: int, width: int) -> Tensor:
    """``m' = ReLU(W^T g)`` (Eq. 1) laid out column-major as ``(B, h, w)`` (Eq. 2's index rule)."""
    if g.dim() != 2:
        raise ValueError(f"g must be (B, m), got {tuple(g.shape)}")
    if height < 1 or width < 1:
        raise ValueError(f"mask size must be positive, got {height}x{width}")
    if weight.dim() != 2 or weight.shape != (height * width, g.shape[1]):
        raise ValueError(f"weight must be (h*w, m) = ({height * width}, {g.shape[1]}) for a {height}x{width} "
                         f"mask over {g.shape[1]}-d g, got {tuple(weight.shape)}")
    if bias is not None and bias.shape != (height * width,):
        raise ValueError(f"bias must be ({height * width},), got {tuple(bias.shape)}")
    flat = F.relu(F.linear(g, weight, bias))  # (B, h*w), Eq. 1
    # k = j*h + i: consecutive k walk down a column, so the (B, w, h) view is the transpose of the mask.
    return flat.view(g.shape[0], width, height).transpose(1, 2)


def feature_mask(
    g: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    height: int,
    width: int,
    max_log_mask: float | None = MAX_LOG_MASK,
) -> Tensor:
    """The feature mask of Eq. 1-2: ``m_{i,j} = exp(m'_k)``, ``m' = ReLU(W^T g)``, ``k = j*h + i``.

    Args:
        g: ``(B, m)`` global features.
        weight: ``(h*w, m)``, the FC layer's weight in ``nn.Linear``'s layout, i.e. ``W^T`` of Eq. 1.
        bias: ``(h*w,)`` or ``None`` (Eq. 1 as written has none).
        height, width: the mask size ``h x w`` (that of the map it multiplies).
        max_log_mask: ``m'`` is clamped at this value before ``exp`` so the mask stays finite (default
            :data:`MAX_LOG_MASK`: at most ``e^8``, finite in float16 and float32); it changes nothing
            where ``m' <= max_log_mask``. ``None`` = Eq. 2 unguarded.

    Returns:
        ``(B, h, w)`` mask, ``>= 1`` everywhere, exactly 1 where ``W^T g <= 0`` (ReLU's zero region);
        ``m[:, i, j] = exp(m'[:, j*h + i])`` (0-based; column-major, module docstring reading 3).
    """
    _check_max_log_mask(max_log_mask)
    return _guarded_exp(_transitional_mask(g, weight, bias, height, width), max_log_mask)


def _guarded_exp(log_mask: Tensor, max_log_mask: float | None) -> Tensor:
    if max_log_mask is not None:
        log_mask = log_mask.clamp(max=max_log_mask)
    return log_mask.exp()


class MixingNetwork(nn.Module):
    """The MN (Sec. 3.2): an FC layer ``g -> h*w`` with ReLU (Eq. 1), reshape and ``exp`` (Eq. 2), and a
    mixer that multiplies every channel of ``f`` by the same mask (Eq. 3).

    Args:
        in_features: ``m``, the size of ``g`` (2048 for ResNet-50).
        height, width: the size ``h x w`` of the masked map.
        bias: give the FC a bias (Eq. 1 has none; the default follows it).
        init_std: the FC's weights start at ``N(0, init_std^2)`` (bias at 0): a small value keeps the
            initial mask near 1 (module docstring, reading 5).
        max_log_mask: the exponential's guard (:func:`feature_mask`); ``None`` = none.

    ``forward(f, g)``: ``f`` ``(B, c, h, w)``, ``g`` ``(B, m)`` -> ``(o, mask)`` with ``o = f * mask``
    ``(B, c, h, w)`` and ``mask`` ``(B, h, w)``.
    """

    def __init__(
        self,
        in_features: int,
        height: int,
        width: int,
        bias: bool = False,
        init_std: float = MASK_INIT_STD,
        max_log_mask: float | None = MAX_LOG_MASK,
    ) -> None:
        super().__init__()
        if in_features < 1 or height < 1 or width < 1:
            raise ValueError(f"in_features, height and width must be >= 1, got "
                             f"{in_features}, {height}, {width}")
        if not init_std > 0:
            raise ValueError(f"init_std must be > 0 (a zero FC never leaves the ReLU's zero), got {init_std}")
        _check_max_log_mask(max_log_mask)
        self.in_features = in_features
        self.height = height
        self.width = width
        self.max_log_mask = max_log_mask
        self.fc = nn.Linear(in_features, height * width, bias=bias)
        nn.init.normal_(self.fc.weight, std=init_std)
        if self.fc.bias is not None:
            nn.init.zeros_(self.fc.bias)

    def log_mask(self, g: Tensor) -> Tensor:
        """``m'`` of Eq. 1 before the guard, laid out as the mask ``(B, h, w)``."""
        return _transitional_mask(g, self.fc.weight, self.fc.bias, self.height, self.width)

    def mask(self, g: Tensor) -> Tensor:
        """The mask ``m`` of Eq. 2, ``(B, m) -> (B, h, w)``."""
        return feature_mask(g, self.fc.weight, self.fc.bias, self.height, self.width, self.max_log_mask)

    def mix(self, f: Tensor, mask: Tensor) -> Tensor:
        """Eq. 3: ``o_i = f_i * m`` for every channel ``i``; ``(B, c, h, w), (B, h, w) -> (B, c, h, w)``."""
        if f.dim() != 4 or mask.dim() != 3 or f.shape[0] != mask.shape[0] or f.shape[2:] != mask.shape[1:]:
            raise ValueError(f"the mask {tuple(mask.shape)} does not fit the features {tuple(f.shape)}: "
                             "expected (B, c, h, w) and (B, h, w)")
        return f * mask.unsqueeze(1)

    def forward(self, f: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
        if f.dim() != 4 or tuple(f.shape[2:]) != (self.height, self.width):
            raise ValueError(f"this MN predicts {self.height}x{self.width} masks; features of shape "
                             f"{tuple(f.shape)} do not fit")
        mask = self.mask(g)
        return self.mix(f, mask), mask

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, mask={self.height}x{self.width}, "
                f"max_log_mask={self.max_log_mask}")


class GRN(nn.Module):
    """The Global Representation Network (Sec. 3.1, 4.2): ResNet, GAP, bias-free identity classifier.

    ``T = ResNet(x)`` ``(B, d, h, w)``; ``g = GAP(T)`` ``(B, d)`` (pool5: 2048-d for ResNet-50, the
    input of the last FC layer; module docstring, reading 1); ``S = W g`` ``(B, C)`` with a bias-free
    ``W`` ``(C, d)`` (reading 7), so ``S_c = GAP(M_c)`` for the CAM ``M_c = sum_k W_ck T_k``. Stage 1 of
    Algorithm 1 trains it alone with Eq. 4 (:class:`reidlib.losses.IdentityLoss`).

    Args:
        num_classes: training identities ``C``.
        backbone: a :class:`~reidlib.models.backbone.StagedBackbone`
            (:func:`~reidlib.models.backbone.build_backbone`; the paper: ImageNet ResNet-50, last stride 2).
        classifier_std: std of the classifier's initial weights.

    ``forward(x)``, ``x`` ``(B, 3, H, W)``: ``ReIDOutput(logits=[S], features=[g], feature_maps=[T],
    embedding=g, class_weights=[W])``.
    """

    def __init__(self, num_classes: int, backbone: StagedBackbone, classifier_std: float = 0.001) -> None:
        super().__init__()
        check_num_classes(num_classes)
        check_backbone(backbone)
        self.num_classes = num_classes
        self.backbone = backbone
        self.feat_dim: int = backbone.out_channels
        self.classifiers = nn.ModuleList([nn.Linear(self.feat_dim, num_classes, bias=False)])
        init_classifier(self.classifiers[0], classifier_std)

    def forward_with_stages(self, x: Tensor) -> tuple[ReIDOutput, dict[str, Tensor]]:
        """One pass that also returns every stage's output (``forward_stages``, keyed by
        :data:`~reidlib.models.backbone.STAGE_NAMES`), so the FMN can mask one without a second pass."""
        stages = self.backbone.forward_stages(x)
        fmap = stages["layer4"]
        g = fmap.mean(dim=(2, 3))
        logits = self.classifiers[0](g)
        out = ReIDOutput(logits=[logits], features=[g], feature_maps=[fmap], embedding=g,
                         class_weights=bias_free_weights(self.classifiers))
        return out, stages

    def forward(self, x: Tensor) -> ReIDOutput:
        return self.forward_with_stages(x)[0]


def fmn_descriptor(g: Tensor, l: Tensor, alpha: float = 0.5) -> Tensor:
    """The test descriptor of Eq. 6: ``D = [alpha g/|g|_2, (1 - alpha) l/|l|_2]``.

    Args:
        g: ``(B, Dg)`` GRN features.
        l: ``(B, Dl)`` LAN features.
        alpha: the trade-off in ``[0, 1]`` (the paper: 0.5). ``alpha = 1`` zeroes the LAN block, so
            Euclidean distances (and rankings) are those of ``g/|g|`` alone, Table 1's GRN row;
            ``alpha = 0`` gives the LAN row. Every descriptor has the same norm
            ``sqrt(alpha^2 + (1-alpha)^2)``, so a final L2 normalisation (the engine's feature
            extraction) rescales all distances by one constant and leaves the ranking unchanged.

    Returns:
        ``(B, Dg + Dl)``.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if g.dim() != 2 or l.dim() != 2 or g.shape[0] != l.shape[0]:
        raise ValueError(f"g and l must be (B, Dg) and (B, Dl), got {tuple(g.shape)} and {tuple(l.shape)}")
    return torch.cat([alpha * F.normalize(g, dim=1), (1.0 - alpha) * F.normalize(l, dim=1)], dim=1)


def _masked_map_size(backbone: StagedBackbone, stage: str, input_size: tuple[int, int]) -> tuple[int, int]:
    """Spatial size of ``stage``'s output for ``input_size`` images, by a dummy pass up to that stage."""
    param = next(backbone.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    was_training = backbone.training
    backbone.eval()  # a train-mode pass would move the BN running statistics
    try:
        with torch.no_grad():
            x = torch.zeros(1, 3, *input_size, device=device, dtype=dtype)
            for name in STAGE_NAMES[: STAGE_NAMES.index(stage) + 1]:
                x = getattr(backbone, name)(x)
    finally:
        backbone.train(was_training)
    return int(x.shape[2]), int(x.shape[3])


class FMN(nn.Module):
    """The Feature Mask Network (Fig. 2): a fixed GRN, the MN and the LAN.

    ``g`` and ``f`` come from one pass of the GRN (``f`` = the output of ``MASK_LAYERS[mask_layer]``);
    ``o = f * m(g)`` (Eq. 1-3); the LAN (copies of the stages after that layer) maps ``o`` to ``L``,
    ``l = GAP(L)``, ``S^L = W_L l``. Stage 2 of Algorithm 1 trains the MN and the LAN
    (:class:`reidlib.losses.fmn_rank.FMNStage2Loss`); the GRN is frozen here, once and for all: its
    parameters get ``requires_grad=False`` and it stays in eval mode whatever ``train()`` is called
    (module docstring, reading 9). No graph is recorded through it unless the input itself requires
    gradient (an explainer), so it costs no activation memory in training.

    Args:
        grn: the GRN trained in stage 1 (frozen in place by this constructor).
        lan_backbone: a backbone built like the GRN's *before* stage 1 (same depth, width and pre-trained
            weights, theta_o of Algorithm 1; reading 8); the stages after the masked layer are copied from
            it, so it shares no tensor with the FMN afterwards.
        num_classes: training identities ``C`` (must equal the GRN's).
        mask_layer: a key of :data:`MASK_LAYERS` (Table 5); ``"pool1"`` is the paper's model.
        use_mask: ``False`` gives the LAN the unmasked ``f`` (mask = 1, no MN): the arm that separates
            "a second network" from "a second network that attends".
        alpha: Eq. 6's trade-off for ``embedding`` (0.5 in the paper; 1 = GRN alone, 0 = LAN alone).
        max_log_mask: the guard of the exponential (:func:`feature_mask`; ``None`` = none).
        input_size: ``(H, W)`` of every image; fixes the MN's output size. Other sizes raise.
        mask_bias, mask_init_std: the MN's FC (see :class:`MixingNetwork`).
        classifier_std: std of the LAN classifier's initial weights (as the GRN's).

    ``forward(x)``, ``x`` ``(B, 3, H, W)``: ``ReIDOutput(logits=[S^G, S^L]`` ``(B, C)`` each,
    ``features=[g, l]`` ``(B, Dg)``/``(B, Dl)``, ``feature_maps=[T^G, L]`` (stage-4 maps),
    ``embedding=fmn_descriptor(g, l, alpha)`` ``(B, Dg + Dl)``, ``class_weights=[W_G, W_L]``,
    ``extras={"mask": (B, h, w), "mask_clamped": share of mask cells where the guard acts (0-d)})``.
    """

    def __init__(
        self,
        grn: GRN,
        lan_backbone: StagedBackbone,
        num_classes: int,
        mask_layer: str = "pool1",
        use_mask: bool = True,
        alpha: float = 0.5,
        max_log_mask: float | None = MAX_LOG_MASK,
        *,
        input_size: tuple[int, int],
        mask_bias: bool = False,
        mask_init_std: float = MASK_INIT_STD,
        classifier_std: float = 0.001,
    ) -> None:
        super().__init__()
        if not isinstance(grn, GRN):
            raise TypeError(f"grn must be a GRN, got {type(grn).__name__}")
        check_backbone(lan_backbone, "lan_backbone")
        if num_classes != grn.num_classes:
            raise ValueError(f"num_classes={num_classes} but the GRN classifies {grn.num_classes} identities")
        if mask_layer not in MASK_LAYERS:
            raise ValueError(f"mask_layer must be one of {sorted(MASK_LAYERS)} (Table 5), got {mask_layer!r}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        _check_max_log_mask(max_log_mask)
        input_size = _check_size(input_size)
        stage = MASK_LAYERS[mask_layer]
        if lan_backbone.stage_channels[stage] != grn.backbone.stage_channels[stage]:
            raise ValueError(f"the LAN backbone's {stage} has {lan_backbone.stage_channels[stage]} channels, "
                             f"the GRN's {grn.backbone.stage_channels[stage]}: build both the same way")

        grn.requires_grad_(False)
        grn.eval()
        self.grn = grn
        self.num_classes = num_classes
        self.mask_layer = mask_layer
        self.masked_stage = stage
        self.use_mask = use_mask
        self.alpha = alpha
        self.max_log_mask = max_log_mask
        self.input_size = input_size
        self.mask_size = _masked_map_size(grn.backbone, stage, input_size)
        self.mixing: MixingNetwork | None = None
        if use_mask:
            self.mixing = MixingNetwork(grn.feat_dim, *self.mask_size, bias=mask_bias, init_std=mask_init_std,
                                        max_log_mask=max_log_mask)
        after = STAGE_NAMES[STAGE_NAMES.index(stage) + 1:]
        # Copies, so that nothing the caller still holds (lan_backbone, or the GRN's backbone passed by
        # mistake) shares a tensor with the LAN.
        self.lan = nn.Sequential(OrderedDict(
            (name, clone_stage(getattr(lan_backbone, name))) for name in after
        ))
        self.lan_dim: int = lan_backbone.out_channels
        self.lan_classifier = nn.Linear(self.lan_dim, num_classes, bias=False)
        init_classifier(self.lan_classifier, classifier_std)

    def train(self, mode: bool = True) -> FMN:
        """Set the MN and LAN to ``mode``; the GRN stays in eval mode (fixed BN statistics, Algorithm 1)."""
        super().train(mode)
        self.grn.eval()
        return self

    def stage2_parameters(self) -> list[nn.Parameter]:
        """What stage 2 of Algorithm 1 trains: the MN's and the LAN's parameters (not the GRN's)."""
        params = list(self.lan.parameters()) + list(self.lan_classifier.parameters())
        if self.mixing is not None:
            params = list(self.mixing.parameters()) + params
        return params

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"FMN expects images (B, 3, H, W), got {tuple(x.shape)}")
        if tuple(x.shape[2:]) != self.input_size:
            h, w = self.input_size
            mh, mw = self.mask_size
            raise ValueError(
                f"FMN was built for {h}x{w} images (its mixing network predicts a {mh}x{mw} mask for "
                f"{self.mask_layer}), got {x.shape[2]}x{x.shape[3]}; resize the images or build the FMN "
                f"with input_size=({x.shape[2]}, {x.shape[3]})"
            )

    def forward(self, x: Tensor) -> ReIDOutput:
        self._check_input(x)
        grn_out, stages = self.grn.forward_with_stages(x)
        g = grn_out.features[0]
        f = stages[self.masked_stage]
        if self.mixing is not None:
            # The MN's forward, unrolled to keep m' for the guard's statistics without a second FC pass.
            log_mask = self.mixing.log_mask(g)
            mask = _guarded_exp(log_mask, self.max_log_mask)
            o = self.mixing.mix(f, mask)
            if self.max_log_mask is None:
                clamped = log_mask.new_zeros(())
            else:
                clamped = (log_mask.detach() > self.max_log_mask).float().mean()
        else:
            o = f
            mask = f.new_ones(f.shape[0], f.shape[2], f.shape[3])
            clamped = f.new_zeros(())
        lan_map = self.lan(o)
        l = lan_map.mean(dim=(2, 3))
        lan_logits = self.lan_classifier(l)
        return ReIDOutput(
            logits=[grn_out.logits[0], lan_logits],
            features=[g, l],
            feature_maps=[grn_out.feature_maps[0], lan_map],
            embedding=fmn_descriptor(g, l, self.alpha),
            extras={"mask": mask, "mask_clamped": clamped},
            class_weights=grn_out.class_weights + bias_free_weights([self.lan_classifier]),
        )

    def extra_repr(self) -> str:
        h, w = self.mask_size
        return (f"mask_layer={self.mask_layer!r} ({self.masked_stage}, {h}x{w}), "
                f"use_mask={self.use_mask}, alpha={self.alpha}, input_size={self.input_size}")


def _check_size(size: Sequence[int]) -> tuple[int, int]:
    try:
        h, w = (operator.index(s) for s in size)
    except (TypeError, ValueError):
        raise ValueError(f"input_size must be (H, W) with positive ints, got {size!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"input_size must be (H, W) with positive ints, got {size!r}")
    return h, w
