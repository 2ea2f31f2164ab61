"""The one output type every reidlib model returns.

Losses and explainers read these fields and need no special case per paper. A model with several
branches (CAMA's unshared stage-4 copies, PMM's stages) fills one list entry per branch, in branch
order; a single-branch model fills lists of length one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class ReIDOutput:
    """What ``model(images)`` returns.

    Attributes:
        logits: per branch, identity scores ``(B, num_classes)``. Empty when the model has no
            classifier (e.g. a pure metric-learning model).
        features: per branch, the global feature ``(B, D_i)`` that metric losses (triplet) see.
        feature_maps: per branch, the last convolutional maps ``(B, C_i, h, w)``. For models whose
            scores are a linear layer over the global pooling of these maps (IDE, CAMA), these are
            exactly the maps that pooling sees, so a class activation map is ``W_c . feature_maps``.
        embedding: the test descriptor ``(B, D)`` used for retrieval, before any L2 normalisation
            done by feature extraction (a model that normalises per branch does so itself).
        extras: paper-specific tensors (class activation maps for OAP, attention maps, ...).
    """

    logits: list[Tensor]
    features: list[Tensor]
    feature_maps: list[Tensor]
    embedding: Tensor
    extras: dict[str, Tensor] = field(default_factory=dict)
