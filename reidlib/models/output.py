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
        extras: paper-specific tensors (attention maps, pooled features, ...).
        class_weights: per branch, the ``(C, d_i)`` weight ``W^i`` of the branch's bias-free classifier
            (the parameter itself, so losses on it train it); empty when the model has no classifier.
            This is the one way losses (the OAP of :mod:`reidlib.losses.oap`) and explainers
            (:mod:`reidlib.explain.cam`) get the weights of the class activation map
            ``M^i_c = sum_k W^i_{c,k} F^i_k`` (seed 000, Eq. 4). For IDE+BN, CAMA and the global
            descriptor the classifier's input is ``GAP(feature_maps[i])``, so ``S^i = GAP(M^i)``;
            BNNeck's classifier sees ``BN(GAP(feature_maps[0]))`` instead, and the CAM explainer's
            contract check rejects it.
    """

    logits: list[Tensor]
    features: list[Tensor]
    feature_maps: list[Tensor]
    embedding: Tensor
    extras: dict[str, Tensor] = field(default_factory=dict)
    class_weights: list[Tensor] = field(default_factory=list)
