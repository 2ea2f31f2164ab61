"""ResNets split into the stages the papers build on: one contract for full and narrow widths.

Every paper in the book starts from an ImageNet-pretrained ResNet (mostly ResNet-50; seed 001 also uses
101/152) and reads its stages: CAMA (seed 000) copies stage 4 per branch, the hybrid-attention model
(seed 003) fuses stages 1-4, PMM (seed 004) puts several heads on stage 4. :func:`build_backbone` is the
one way to make such a network:

* ``width=64``: :class:`ResNetBackbone`, a torchvision ResNet (depths 18-152) with ImageNet weights
  from disk when ``pretrained``;
* any other width: :class:`NarrowResNet`, a randomly initialised ResNet of ``BasicBlock`` s with
  ``width * (1, 2, 4, 8)`` channels (depths 10/18/34), for the ``cpu`` scale of the chapters, where no
  ImageNet weights exist and a full ResNet-50 is too slow on two CPU cores (a quarter-width ResNet-18,
  ``width=16``, needs about 1/16 of the multiply-adds).

Both are :class:`StagedBackbone` s: ``stem`` and ``layer1..layer4``, ``stage_channels``,
``out_channels``, ``depth``, ``last_stride``, ``forward(x)`` (stage-4 maps) and ``forward_stages(x)``
(every stage). ``last_stride=1`` (as in PCB) removes the last down-sampling, which doubles the stage-4
map: a 256x128 image gives 16x8 maps, a 384x128 image 24x8.

**Weights never download.** torchvision is asked for an untrained network (``weights=None``); ImageNet
weights are read with ``torch.load(..., weights_only=True)`` from a file you name, or from torch's hub
cache (``torch.hub.get_dir()/checkpoints``, i.e. ``$TORCH_HOME/hub/checkpoints``) under torchvision's own
file names. When the file is missing, :class:`PretrainedWeightsNotFound` says where it looked and how to
provide it; only with ``allow_random_init=True`` does the model warn and start from random weights.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections import OrderedDict
from pathlib import Path

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock

__all__ = [
    "NARROW_DEPTHS",
    "RESNET_DEPTHS",
    "STAGE_NAMES",
    "TORCHVISION_WEIGHT_FILES",
    "NarrowResNet",
    "PretrainedWeightsNotFound",
    "RandomInitWarning",
    "ResNetBackbone",
    "StagedBackbone",
    "build_backbone",
    "check_backbone",
    "check_num_classes",
    "clone_stage",
    "find_pretrained_file",
    "load_imagenet_state_dict",
    "load_trunk",
]

STAGE_NAMES = ("stem", "layer1", "layer2", "layer3", "layer4")

RESNET_DEPTHS = {
    18: torchvision.models.resnet18,
    34: torchvision.models.resnet34,
    50: torchvision.models.resnet50,
    101: torchvision.models.resnet101,
    152: torchvision.models.resnet152,
}

#: BasicBlocks per stage of the narrow ResNets (:class:`NarrowResNet`); 10/18/34 let a chapter scale a
#: depth ablation (seed 001, Table 3b: ResNet-50/101/152) down to the ``cpu`` scale.
NARROW_DEPTHS: dict[int, tuple[int, int, int, int]] = {10: (1, 1, 1, 1), 18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}

#: The width of torchvision's ResNets (channels of the stem and of stage 1), the only one with weights.
FULL_WIDTH = 64

# torchvision's checkpoint file names (the hash suffix is part of the name); newest first. For 50/101/152
# the "V2" recipe files come first, then V1, then the legacy pre-0.13 names.
TORCHVISION_WEIGHT_FILES: dict[int, tuple[str, ...]] = {
    18: ("resnet18-f37072fd.pth", "resnet18-5c106cde.pth"),
    34: ("resnet34-b627a593.pth", "resnet34-333f7ec4.pth"),
    50: ("resnet50-11ad3fa6.pth", "resnet50-0676ba61.pth", "resnet50-19c8e357.pth"),
    101: ("resnet101-cd907fc2.pth", "resnet101-63fe2227.pth", "resnet101-5d3b4d8f.pth"),
    152: ("resnet152-f82ba261.pth", "resnet152-394f9c45.pth", "resnet152-b121ed2d.pth"),
}


class PretrainedWeightsNotFound(FileNotFoundError):
    """ImageNet weights were requested but no file was found (nothing is ever downloaded)."""


class RandomInitWarning(UserWarning):
    """Pretrained weights were requested, not found, and the model starts from random weights instead."""


def _hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_pretrained_file(depth: int, pretrained: bool | str | os.PathLike) -> tuple[Path | None, list[Path]]:
    """Resolve ``pretrained`` to a weights file.

    Args:
        depth: ResNet depth (18, 34, 50, 101, 152).
        pretrained: a path to a state-dict file, or ``True`` to look in torch's hub cache under
            torchvision's file names (:data:`TORCHVISION_WEIGHT_FILES`).

    Returns:
        ``(path or None, every path that was tried)``.
    """
    if depth not in TORCHVISION_WEIGHT_FILES:
        raise ValueError(f"ResNet depth must be one of {sorted(TORCHVISION_WEIGHT_FILES)}, got {depth}")
    if pretrained is True:
        candidates = [_hub_checkpoint_dir() / name for name in TORCHVISION_WEIGHT_FILES[depth]]
    elif isinstance(pretrained, (str, os.PathLike)):
        candidates = [Path(pretrained).expanduser()]
    else:
        raise ValueError(f"pretrained must be True, False or a file path, got {pretrained!r}")
    for path in candidates:
        if path.is_file():
            return path, candidates
    return None, candidates


def _missing_message(depth: int, tried: list[Path]) -> str:
    names = ", ".join(TORCHVISION_WEIGHT_FILES[depth])
    looked = "\n".join(f"  - {p}" for p in tried)
    return (
        f"ImageNet weights for ResNet-{depth} not found. Looked for:\n{looked}\n"
        f"reidlib never downloads. Provide the file in one of these ways:\n"
        f"  * copy torchvision's checkpoint ({names}) into {_hub_checkpoint_dir()} "
        f"(set TORCH_HOME to use another cache), or\n"
        f"  * pass pretrained='/path/to/resnet{depth}.pth' (a torchvision ResNet state dict), or\n"
        f"  * pass allow_random_init=True to train from random weights\n"
        f"    (results will then be far below the papers')."
    )


def load_imagenet_state_dict(path: str | os.PathLike) -> OrderedDict[str, Tensor]:
    """Read a torchvision ResNet state dict from ``path`` (CPU, ``weights_only=True``) without ``fc.*``.

    Accepts a bare state dict or one wrapped as ``{"state_dict": ...}`` / ``{"model": ...}``, and strips a
    ``module.`` prefix left by ``DataParallel``.
    """
    path = Path(path)
    if not path.is_file():
        raise PretrainedWeightsNotFound(f"weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or non-torch file: say which one
        raise ValueError(f"cannot read weights file {path} as a torch state dict: {err}") from err
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"weights file {path} does not hold a state dict of tensors")
    out: OrderedDict[str, Tensor] = OrderedDict()
    for name, value in state.items():
        name = name.removeprefix("module.")
        if name.startswith("fc."):  # the ImageNet classifier is replaced by re-ID heads
            continue
        out[name] = value
    return out


def _set_first_block_stride(stage: nn.Sequential, stride: int) -> None:
    """Set the down-sampling stride of a ResNet stage (its first block's strided conv and shortcut)."""
    block = stage[0]
    # BasicBlock strides conv1; torchvision's Bottleneck (ResNet v1.5) strides conv2 (the 3x3).
    conv = block.conv2 if isinstance(block, torchvision.models.resnet.Bottleneck) else block.conv1
    conv.stride = (stride, stride)
    if block.downsample is not None:
        block.downsample[0].stride = (stride, stride)


def _check_last_stride(last_stride: int) -> None:
    if last_stride not in (1, 2):
        raise ValueError(f"last_stride must be 1 or 2, got {last_stride}")


class StagedBackbone(nn.Module):
    """What every reidlib backbone is: a ResNet split into ``stem`` and ``layer1..layer4``.

    Subclasses (:class:`ResNetBackbone`, :class:`NarrowResNet`) build the five stages; this class holds
    what models and explainers read from any of them.

    Attributes:
        depth: the ResNet depth.
        width: channels of the stem and stage 1 (64 for torchvision's ResNets).
        last_stride: stride of stage 4 (2, or 1 as in PCB).
        stage_channels: ``{"stem": C0, "layer1": C1, ..., "layer4": C4}``, the channels each stage of
            :meth:`forward_stages` returns.
        out_channels: ``stage_channels["layer4"]``, the channels of :meth:`forward`'s maps.
        weights_path: the file the ImageNet weights came from, or ``None`` (random init).
    """

    stem: nn.Module
    layer1: nn.Module
    layer2: nn.Module
    layer3: nn.Module
    layer4: nn.Module

    def __init__(self, depth: int, width: int, last_stride: int, stage_channels: dict[str, int]) -> None:
        super().__init__()
        self.depth = depth
        self.width = width
        self.last_stride = last_stride
        self.stage_channels: dict[str, int] = {name: stage_channels[name] for name in STAGE_NAMES}
        self.out_channels: int = self.stage_channels["layer4"]
        self.weights_path: Path | None = None

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"{type(self).__name__} expects images (B, 3, H, W), got {tuple(x.shape)}")

    def forward(self, x: Tensor) -> Tensor:
        """Stage-4 maps: ``(B, 3, H, W) -> (B, out_channels, H/32, W/32)`` (``H/16, W/16`` with
        ``last_stride=1``; sizes round up for odd inputs)."""
        self._check_input(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))

    def forward_stages(self, x: Tensor) -> dict[str, Tensor]:
        """Every stage's output, keyed by :data:`STAGE_NAMES`: ``stem`` ``(B, C0, H/4, W/4)``, ``layer1``
        ``(B, C1, H/4, W/4)``, ``layer2`` ``(B, C2, H/8, W/8)``, ``layer3`` ``(B, C3, H/16, W/16)``,
        ``layer4`` ``(B, C4, H/32 or H/16, ...)`` with ``Ci = stage_channels[...]``."""
        self._check_input(x)
        out: dict[str, Tensor] = {}
        for name in STAGE_NAMES:
            x = getattr(self, name)(x)
            out[name] = x
        return out

    def extra_repr(self) -> str:
        source = str(self.weights_path) if self.weights_path is not None else "random init"
        return f"depth={self.depth}, width={self.width}, last_stride={self.last_stride}, weights={source}"


class ResNetBackbone(StagedBackbone):
    """A torchvision ResNet without its classifier, split into ``stem`` and ``layer1..layer4``.

    Args:
        depth: 18, 34, 50, 101 or 152.
        last_stride: stride of stage 4: 2 (torchvision) or 1 (PCB-style; the maps of stage 4 keep the
            size of stage 3's, 1/16 of the input).
        pretrained: ``False`` (random init, on purpose), ``True`` (torchvision's file in torch's hub
            cache) or a path to a torchvision ResNet state dict.
        allow_random_init: when ``pretrained`` is requested but the file is missing, warn
            (:class:`RandomInitWarning`) and continue from random weights instead of raising
            :class:`PretrainedWeightsNotFound`.

    ``stage_channels`` is ``{"stem": 64, "layer1": 64|256, ..., "layer4": 512|2048}`` (BasicBlock |
    Bottleneck); see :class:`StagedBackbone` for the rest of the interface.
    """

    def __init__(
        self,
        depth: int = 50,
        last_stride: int = 2,
        pretrained: bool | str | os.PathLike = False,
        allow_random_init: bool = False,
    ) -> None:
        if depth not in RESNET_DEPTHS:
            raise ValueError(f"ResNet depth must be one of {sorted(RESNET_DEPTHS)}, got {depth}")
        _check_last_stride(last_stride)
        expansion = 4 if depth >= 50 else 1  # Bottleneck blocks output 4x their width
        channels = {"stem": FULL_WIDTH}
        channels.update({f"layer{i + 1}": FULL_WIDTH * 2**i * expansion for i in range(4)})
        super().__init__(depth, FULL_WIDTH, last_stride, channels)
        net = RESNET_DEPTHS[depth](weights=None)  # weights=None: torchvision must never download
        if pretrained is not False and pretrained is not None:
            path, tried = find_pretrained_file(depth, pretrained)
            if path is None:
                message = _missing_message(depth, tried)
                if not allow_random_init:
                    raise PretrainedWeightsNotFound(message)
                warnings.warn(
                    f"{message}\\nallow_random_init=True: continuing with a RANDOMLY INITIALISED "
                    f"ResNet-{depth}.",
                    RandomInitWarning,
                    stacklevel=2,
                )
            else:
                net.fc = nn.Identity()
                result = net.load_state_dict(load_imagenet_state_dict(path), strict=False)
                if result.missing_keys or result.unexpected_keys:
                    raise ValueError(
                        f"weights file {path} does not match torchvision ResNet-{depth}: "
                        f"missing {result.missing_keys[:5]}{'...' if len(result.missing_keys) > 5 else ''}, "
                        f"unexpected {result.unexpected_keys[:5]}"
                        f"{'...' if len(result.unexpected_keys) > 5 else ''}"
                    )
                self.weights_path = path
        self.stem = nn.Sequential(
            OrderedDict(conv1=net.conv1, bn1=net.bn1, relu=net.relu, maxpool=net.maxpool)
        )
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        if last_stride != 2:
            _set_first_block_stride(self.layer4, last_stride)


def _basic_stage(cin: int, cout: int, blocks: int, stride: int) -> nn.Sequential:
    """``blocks`` BasicBlocks; the first is strided, with a 1x1 conv + BN shortcut when the shape changes."""
    down = None
    if stride != 1 or cin != cout:
        # Built before the first block (it then owns it as `downsample`): the order in which convs draw
        # their default init from the RNG is part of what the committed cpu results depend on.
        down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
    rest = [BasicBlock(cout, cout) for _ in range(blocks - 1)]
    return nn.Sequential(BasicBlock(cin, cout, stride, down), *rest)


class NarrowResNet(StagedBackbone):
    """A randomly initialised ResNet of ``BasicBlock`` s with ``width * (1, 2, 4, 8)`` channels.

    The layout is torchvision's (7x7 stride-2 stem conv, max pool, four stages, the first three
    down-sampling by 2), and so is the init (He-normal ``fan_out`` convs, unit BN), at any width.

    Args:
        depth: 10, 18 or 34 (:data:`NARROW_DEPTHS`: 1, 2 and 3-4-6-3 blocks per stage).
        width: channels of the stem and stage 1 (>= 4).
        last_stride: stride of stage 4 (2 as in torchvision, 1 as in PCB).

    ``stage_channels`` is ``{"stem": w, "layer1": w, "layer2": 2w, "layer3": 4w, "layer4": 8w}``; see
    :class:`StagedBackbone` for the rest of the interface. No ImageNet weights exist for it.
    """

    def __init__(self, depth: int = 18, width: int = 16, last_stride: int = 2) -> None:
        if depth not in NARROW_DEPTHS:
            raise ValueError(f"narrow ResNets exist for depths {sorted(NARROW_DEPTHS)}, got {depth}")
        if width < 4:
            raise ValueError(f"width must be >= 4, got {width}")
        _check_last_stride(last_stride)
        w, blocks = width, NARROW_DEPTHS[depth]
        super().__init__(depth, width, last_stride,
                         {"stem": w, "layer1": w, "layer2": 2 * w, "layer3": 4 * w, "layer4": 8 * w})
        self.stem = nn.Sequential(OrderedDict(
            conv1=nn.Conv2d(3, w, 7, 2, 3, bias=False), bn1=nn.BatchNorm2d(w), relu=nn.ReLU(inplace=True),
            maxpool=nn.MaxPool2d(3, 2, 1),
        ))
        self.layer1 = _basic_stage(w, w, blocks[0], 1)
        self.layer2 = _basic_stage(w, 2 * w, blocks[1], 2)
        self.layer3 = _basic_stage(2 * w, 4 * w, blocks[2], 2)
        self.layer4 = _basic_stage(4 * w, 8 * w, blocks[3], last_stride)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


def build_backbone(
    depth: int,
    width: int = FULL_WIDTH,
    pretrained: bool | str | os.PathLike = False,
    last_stride: int = 2,
    allow_random_init: bool = False,
) -> StagedBackbone:
    """The one way to make a backbone: a torchvision ResNet at ``width=64``, a narrow ResNet otherwise.

    Args:
        depth: 18, 34, 50, 101 or 152 at width 64 (:data:`RESNET_DEPTHS`); 10, 18 or 34 at any other
            width (:data:`NARROW_DEPTHS`).
        width: channels of the stem and stage 1; stages have ``width * (1, 2, 4, 8)`` channels
            (times 4 for the Bottleneck ResNets 50-152). At least 4.
        pretrained: ``False``, ``True`` (torch's hub cache, width 64 only) or a weights file: an ImageNet
            state dict at width 64, a pre-trained SynthReID trunk (:func:`load_trunk`) otherwise.
        last_stride: stride of stage 4, 2 or 1 (PCB-style, twice the map size).
        allow_random_init: width 64 only: warn and continue from random weights when the requested
            ImageNet file is missing (a narrow ResNet is random by construction).

    Returns:
        A :class:`ResNetBackbone` (width 64) or :class:`NarrowResNet`; both map ``(B, 3, H, W)`` to
        ``(B, out_channels, H/32, W/32)`` (``H/16, W/16`` with ``last_stride=1``).

    Raises:
        ValueError: ``width < 4``, ``pretrained`` with a width other than 64 (ImageNet weights exist for
            torchvision's width only), a depth that does not exist at that width, ``last_stride`` not
            1 or 2.
    """
    if width < 4:
        raise ValueError(f"width must be >= 4, got {width}")
    if width == FULL_WIDTH:
        if depth not in RESNET_DEPTHS:
            raise ValueError(f"width {FULL_WIDTH} (torchvision's ResNet) has depths {sorted(RESNET_DEPTHS)}, "
                             f"got {depth}; narrow widths have depths {sorted(NARROW_DEPTHS)}")
        return ResNetBackbone(depth=depth, last_stride=last_stride, pretrained=pretrained,
                              allow_random_init=allow_random_init)
    if pretrained is True:
        raise ValueError(f"ImageNet weights exist for width {FULL_WIDTH} only, got width={width} with "
                         "pretrained=True; pass the file of a SynthReID trunk "
                         "(reidlib.recipes.pretrain.trunk_file) instead")
    if depth not in NARROW_DEPTHS:
        raise ValueError(f"narrow ResNets (width != {FULL_WIDTH}) have depths {sorted(NARROW_DEPTHS)}, "
                         f"got {depth}; width {FULL_WIDTH} has depths {sorted(RESNET_DEPTHS)}")
    backbone = NarrowResNet(depth=depth, width=width, last_stride=last_stride)
    if pretrained is not False and pretrained is not None:
        load_trunk(backbone, pretrained)
    return backbone


def load_trunk(backbone: NarrowResNet, path: str | os.PathLike) -> None:
    """Load a pre-trained narrow trunk (a ``NarrowResNet`` state dict saved with ``torch.save``) into
    ``backbone``; the stride of stage 4 does not change the weights, so any ``last_stride`` loads it.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file does not hold a state dict of this depth and width (names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pre-trained trunk {path} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        backbone.load_state_dict(state)
    except (RuntimeError, ValueError, EOFError, AttributeError, TypeError) as err:
        raise ValueError(f"{path} is not a ResNet-{backbone.depth} trunk of width {backbone.width}: "
                         f"{str(err).splitlines()[0]}") from err
    backbone.weights_path = path


def clone_stage(
    source: nn.Module, name: str | None = None, n: int | None = None
) -> nn.Module | nn.ModuleList:
    """Independent (non-shared) copies of a backbone stage, for multi-branch models (CAMA, PMM).

    * ``clone_stage(stage)`` returns one deep copy of ``stage``.
    * ``clone_stage(backbone, "layer4", n)`` returns an ``nn.ModuleList`` of ``n`` deep copies of
      ``backbone.layer4``; every copy starts from the same (pretrained) weights and then trains on its own.
    """
    if name is None:
        if n is not None:
            raise ValueError("clone_stage(stage) makes one copy; pass a stage name to make n copies")
        return copy.deepcopy(source)
    if not hasattr(source, name) or not isinstance(getattr(source, name), nn.Module):
        raise ValueError(f"{type(source).__name__} has no stage {name!r}; expected one of {STAGE_NAMES}")
    count = 1 if n is None else n
    if count < 1:
        raise ValueError(f"number of copies must be >= 1, got {count}")
    stage = getattr(source, name)
    return nn.ModuleList([copy.deepcopy(stage) for _ in range(count)])


def check_num_classes(num_classes: int) -> None:
    """Raise ``ValueError`` unless ``num_classes`` (a model's training identities) is a positive int."""
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")


def check_backbone(backbone: object, name: str = "backbone") -> None:
    """Raise ``TypeError`` unless ``backbone`` (the argument ``name``) follows the stage contract."""
    if not isinstance(backbone, StagedBackbone):
        raise TypeError(f"{name} must be a StagedBackbone (build_backbone), got {type(backbone).__name__}")
