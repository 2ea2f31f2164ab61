"""Re-ID models. Every model's ``forward`` returns :class:`reidlib.models.output.ReIDOutput`.

- :mod:`~reidlib.models.backbone`: :func:`~reidlib.models.backbone.build_backbone`, the one backbone
  contract (torchvision ResNets at width 64, random narrow ResNets otherwise), stage by stage.
- :mod:`~reidlib.models.baseline`: IDE+BN (seed 000, Eq. 2-3) and BNNeck.
- :mod:`~reidlib.models.cama`: CAMA's multi-branch model (seed 000).
- :mod:`~reidlib.models.global_descriptor`: the global descriptor of "Re-ID done right" (seed 001).
- :mod:`~reidlib.models.fmn`: FMN's GRN, mixing network and LAN (seed 002).
- :mod:`~reidlib.models.hybrid_attention`: the hybrid-attention network with multi-resolution features
  (seed 003).

There is no registry: each recipe builds its model from its own config (the command line's baseline
with :func:`reidlib.recipes.baseline.build_model`).
"""

from __future__ import annotations

from reidlib.models.baseline import IDEBN, BNNeck
from reidlib.models.output import ReIDOutput

__all__ = ["BNNeck", "IDEBN", "ReIDOutput"]
