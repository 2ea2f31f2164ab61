"""The BN neck's batch norm: ``BatchNorm1d`` whose shift (bias) is fixed at zero.

In the BNNeck design (Luo et al., "Bag of tricks", 2019) the triplet loss sees the pooled feature and the
classifier sees ``BN(feature)``; the BN's bias is frozen at 0 so the normalised features stay centred,
which suits the bias-free, angle-like decision boundaries of the classifier.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["FrozenBiasBatchNorm1d"]


class FrozenBiasBatchNorm1d(nn.BatchNorm1d):
    """``BatchNorm1d(num_features)`` with ``weight = 1`` at init and ``bias = 0`` not trained.

    ``forward``: ``(B, D) -> (B, D)``. The bias stays a parameter (so state dicts look like any BN's)
    with ``requires_grad = False``; optimisers built from ``model.parameters()`` skip it as it never
    gets a gradient.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        if num_features < 1:
            raise ValueError(f"num_features must be >= 1, got {num_features}")
        super().__init__(num_features, eps=eps, momentum=momentum)
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)
        self.bias.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.num_features:
            raise ValueError(f"FrozenBiasBatchNorm1d expects (B, {self.num_features}), got {tuple(x.shape)}")
        return super().forward(x)
