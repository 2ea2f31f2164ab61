"""Pairwise distances between query and gallery embeddings."""

from __future__ import annotations

import torch

from reidlib.evaluation.arrays import ArrayLike, as_float_matrix, check_finite

METRICS = ("euclidean", "sqeuclidean", "cosine")
_ALIASES = {"squared_euclidean": "sqeuclidean", "sq_euclidean": "sqeuclidean", "l2": "euclidean"}


def check_metric(metric: str) -> str:
    """The canonical metric name; raises ``ValueError`` for unknown names."""
    name = _ALIASES.get(metric, metric)
    if name not in METRICS:
        raise ValueError(f"metric: expected one of {METRICS} (or {tuple(_ALIASES)}), got {metric!r}")
    return name


def pairwise_distance(
    q: ArrayLike, g: ArrayLike, metric: str = "euclidean", chunk_size: int = 4096
) -> torch.Tensor:
    """Distances between every query and every gallery embedding.

    Args:
        q: query embeddings ``(Q, D)`` (numpy array or tensor; the result lives on its device).
        g: gallery embeddings ``(G, D)``.
        metric: ``"euclidean"`` (``||q - g||``), ``"sqeuclidean"`` (``||q - g||^2``) or ``"cosine"``
            (``1 - cos(q, g)``, in ``[0, 2]``; an all-zero vector has cosine 0 to everything).
        chunk_size: query rows per matrix product, bounding the temporary memory.

    Returns:
        ``(Q, G)`` tensor in the inputs' floating dtype (integer inputs become float64). Squared
        distances use ``|q|^2 + |g|^2 - 2 q.g`` clamped at 0, so a vector's distance to itself is 0
        up to rounding (about ``1e-7 * |q - mean|^2`` in float32, the inputs being centred on the
        query mean first; the Euclidean distance is its square root, so about ``3e-4 * |q - mean|``).

    Raises:
        NonFiniteError: (a ``ValueError``) a row of ``q`` or ``g`` holds NaN or inf; the message names
            the rows. One such query row would otherwise make every distance NaN (through the mean).
    """
    metric = check_metric(metric)
    qt = as_float_matrix(q, "q")
    gt = as_float_matrix(g, "g", device=qt.device)
    if qt.shape[1] != gt.shape[1]:
        raise ValueError(f"q and g: feature dimensions differ ({qt.shape[1]} vs {gt.shape[1]})")
    if chunk_size < 1:
        raise ValueError(f"chunk_size: expected >= 1, got {chunk_size}")
    check_finite(qt, "q", "query")
    check_finite(gt, "g", "gallery")
    dtype = torch.promote_types(qt.dtype, gt.dtype)
    qt, gt = qt.to(dtype), gt.to(dtype)
    # The query mean is the centre, so that gallery chunks (topk_search, evaluate_blocks) see the same.
    prepared = PreparedGallery(gt, metric, qt.mean(0) if qt.shape[0] else None)
    out = torch.empty(qt.shape[0], gt.shape[0], dtype=dtype, device=qt.device)
    for s in range(0, qt.shape[0], chunk_size):
        prepared.rows(qt[s : s + chunk_size], out=out[s : s + chunk_size])
    return out


class PreparedGallery:
    """A gallery made ready for distance rows against any number of query chunks: centred (or, for the
    cosine, normalised) once, with its squared norms, so each chunk costs one matrix product.

    Centring changes no distance but shrinks the norms, and with them the cancellation error of
    ``|q|^2 + |g|^2 - 2 q.g`` (large for the all-positive embeddings that ReLU networks produce).

    Args:
        g: ``(G, D)`` floating gallery embeddings (finite; checked by the callers).
        metric: a canonical metric name (:func:`check_metric`).
        centre: ``(D,)`` point subtracted from queries and gallery (``None``: none); unused for the cosine.

    Memory: one ``(G, D)`` copy of the gallery and ``(G,)`` norms.
    """

    def __init__(self, g: torch.Tensor, metric: str, centre: torch.Tensor | None = None) -> None:
        self.metric, self.dtype = metric, g.dtype
        self.num, self.dim = g.shape
        if metric == "cosine":
            self.centre = None
            self.g = torch.nn.functional.normalize(g, dim=1)
            self.g_sq = None
        else:
            self.centre = centre
            self.g = g - centre if centre is not None else g.clone()
            self.g_sq = (self.g * self.g).sum(1)

    @property
    def nbytes(self) -> int:
        """Bytes this object holds (the gallery copy and its norms)."""
        return (self.g.numel() + self.num) * self.g.element_size()

    def rows(self, q: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """``(R, G)`` distances from the query chunk ``q`` ``(R, D)`` (written into ``out`` if given)."""
        q = q.to(self.dtype)
        if out is None:
            out = torch.empty(q.shape[0], self.num, dtype=self.dtype, device=q.device)
        if self.metric == "cosine":
            torch.mm(torch.nn.functional.normalize(q, dim=1), self.g.T, out=out)
            return out.neg_().add_(1.0).clamp_(0.0, 2.0)
        if self.centre is not None:
            q = q - self.centre
        torch.mm(q, self.g.T, out=out)
        out.mul_(-2.0).add_(self.g_sq[None, :]).add_((q * q).sum(1, keepdim=True)).clamp_(min=0.0)
        if self.metric == "euclidean":
            out.sqrt_()
        return out
