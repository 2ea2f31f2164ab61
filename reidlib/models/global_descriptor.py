"""The global descriptor of "Re-ID done right" (seed 001, Almazán et al., 2018, Sec. 3.1, Fig. 2).

``image (any size) -> ResNet conv layers -> global max (or average) pooling -> FC -> L2 normalisation``.

Every step is differentiable and independent of the image size, so one network takes images of any size
and aspect ratio (Sec. 3.2: images are resized so their largest side is ``M`` pixels, without distortion)
and returns a ``dim``-dimensional unit vector whose dot product with another is the similarity the
ranking loss (Eq. 1, :func:`reidlib.losses.triplet.ranking_triplet_loss`) and the retrieval use.

The paper's first training stage fine-tunes the convolutional layers for identity classification
(Sec. 3.3) and then "randomly initialize[s] the fully-connected layer". :class:`GlobalDescriptor` with
``num_classes`` is that classification network (the backbone, global average pooling and a linear
classifier, as a standard ResNet); :meth:`GlobalDescriptor.load_backbone_from` copies its convolutional
weights into the ranking network.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from reidlib.layers.cam import bias_free_weights
from reidlib.layers.pooling import GlobalPool
from reidlib.models.output import ReIDOutput

__all__ = ["GlobalDescriptor"]


class GlobalDescriptor(nn.Module):
    """Seed 001's image representation (Fig. 2): backbone, global pooling, FC, L2 normalisation.

    Args:
        backbone: a module mapping ``(B, 3, H, W)`` to maps ``(B, C, h, w)`` with ``out_channels = C``
            (:func:`reidlib.models.backbone.build_backbone`).
        dim: output dimension of the FC layer (2,048 in the paper).
        pool: ``"max"`` (the paper's choice, Table 3a) or ``"avg"``.
        num_classes: if given, the model is the identity-classification network of the first training
            stage: ``logits = W * GAP(maps)`` (a bias-free linear classifier over average-pooled maps,
            like a standard ResNet) are returned as well. The descriptor path is unchanged.

    ``forward(x, mask=None)``: ``x`` ``(B, 3, H, W)`` of any size; ``mask`` ``(B, 1, H, W)`` bool marks
    real pixels of images zero-padded to a common size (:func:`reidlib.data.transforms.pad_collate`), so
    pooling ignores the padding. Returns :class:`ReIDOutput` with ``embedding`` and ``features[0]`` the
    L2-normalised descriptor ``(B, dim)``, ``feature_maps[0]`` the backbone maps ``(B, C, h, w)`` (what
    Grad-CAM explains, Sec. 4.4), ``logits`` ``[(B, num_classes)]`` or ``[]``, ``class_weights`` the
    classifier's ``[(num_classes, C)]`` or ``[]``, and ``extras["pooled"]`` ``(B, C)``.
    """

    def __init__(self, backbone: nn.Module, dim: int = 2048, pool: str = "max",
                 num_classes: int | None = None) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        if pool not in ("max", "avg"):
            raise ValueError(f"pool must be 'max' or 'avg' (Table 3a), got {pool!r}")
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"num_classes must be >= 1 or None, got {num_classes}")
        channels = getattr(backbone, "out_channels", None)
        if not isinstance(channels, int):
            raise ValueError("backbone must have an int attribute out_channels (channels of its maps)")
        self.backbone = backbone
        self.pool_mode = pool
        self.pool = GlobalPool(pool)
        self.fc = nn.Linear(channels, dim)
        self.dim = dim
        self.classifiers = nn.ModuleList()
        if num_classes is not None:
            self.classifiers.append(nn.Linear(channels, num_classes, bias=False))
            nn.init.normal_(self.classifiers[0].weight, std=0.01)
        self.num_classes = num_classes

    def forward(self, x: Tensor, mask: Tensor | None = None) -> ReIDOutput:
        maps = self.backbone(x)
        pooled = self.pool(maps, mask)
        desc = F.normalize(self.fc(pooled), dim=1)
        logits = []
        if self.classifiers:
            logits = [self.classifiers[0](GlobalPool("avg")(maps, mask))]
        return ReIDOutput(logits=logits, features=[desc], feature_maps=[maps], embedding=desc,
                          extras={"pooled": pooled}, class_weights=bias_free_weights(self.classifiers))

    def load_backbone_from(self, other: nn.Module) -> None:
        """Copy the convolutional (backbone) weights and BN statistics of ``other`` (e.g. the stage-1
        classification network) into this model; the FC layer keeps its random initialisation."""
        source = other.backbone if hasattr(other, "backbone") else other
        self.backbone.load_state_dict(source.state_dict())

    def extra_repr(self) -> str:
        return f"dim={self.dim}, pool={self.pool_mode!r}, num_classes={self.num_classes}"
