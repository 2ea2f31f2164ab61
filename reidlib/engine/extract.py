"""Test-time feature extraction and retrieval evaluation of a model.

``extract_features`` runs the model in eval mode over a loader and keeps ``ReIDOutput.embedding``;
``evaluate_model`` extracts query and gallery features and ranks them with :mod:`reidlib.evaluation`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from reidlib.engine.trainer import as_batch_dict

if TYPE_CHECKING:
    from reidlib.evaluation.rank import RankResult


@dataclass
class Features:
    """Embeddings of a split with their labels.

    Attributes:
        feats: ``(N, D)`` float32 CPU tensor.
        pids: ``(N,)`` int64 identity labels.
        camids: ``(N,)`` int64 camera ids.
    """

    feats: Tensor
    pids: np.ndarray
    camids: np.ndarray

    def __len__(self) -> int:
        return int(self.feats.shape[0])


def _embed(model: nn.Module, images: Tensor) -> Tensor:
    out = model(images)
    emb = getattr(out, "embedding", None)
    if not torch.is_tensor(emb):
        raise TypeError(f"{type(model).__name__} returned {type(out).__name__}, expected a ReIDOutput with "
                        "an .embedding tensor")
    if emb.ndim != 2:
        raise ValueError(f"embedding must be (B, D), got shape {tuple(emb.shape)}")
    return emb.float()


@torch.no_grad()
def extract_features(
    model: nn.Module,
    loader: Iterable,
    device: str | torch.device = "cpu",
    flip: bool = False,
    normalize: bool = True,
    desc: str = "extract",
    progress: bool | None = None,
) -> Features:
    """Embeddings of every image of ``loader``, in loader order.

    Args:
        model: returns a ``ReIDOutput``; run in eval mode, its previous train/eval mode is restored.
        loader: yields batch dicts with ``"image"`` ``(B, 3, H, W)``, ``"pid"``, ``"camid"`` (or tuples).
        device: where the model runs; features come back on the CPU.
        flip: average the embedding of each image and of its horizontal mirror (before normalising).
        normalize: L2-normalise each embedding (so Euclidean ranking equals cosine ranking).
        progress: show a tqdm bar (``None``: only on a terminal).

    Returns:
        :class:`Features` with ``feats`` ``(N, D)`` float32.

    Raises:
        ValueError: the loader is empty.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    feats, pids, camids = [], [], []
    try:
        disable = (not progress) if progress is not None else None  # None: tqdm decides (terminal or not)
        for raw in tqdm(loader, desc=desc, disable=disable, leave=False):
            batch = as_batch_dict(raw)
            images = batch["image"].to(device)
            emb = _embed(model, images)
            if flip:
                emb = (emb + _embed(model, torch.flip(images, dims=[3]))) / 2
            if normalize:
                emb = F.normalize(emb, p=2, dim=1)
            feats.append(emb.cpu())
            pids.append(torch.as_tensor(batch["pid"]).reshape(-1).cpu())
            camids.append(torch.as_tensor(batch["camid"]).reshape(-1).cpu())
    finally:
        model.train(was_training)
    if not feats:
        raise ValueError("extract_features: the loader yielded no batches")
    return Features(torch.cat(feats).float(), torch.cat(pids).numpy().astype(np.int64),
                    torch.cat(camids).numpy().astype(np.int64))


def rank_features(
    query: Features, gallery: Features, metric: str = "euclidean", rerank: bool = False,
    rerank_params: tuple[int, int, float] = (20, 6, 0.3), ap_mode: str = "full",
) -> RankResult:
    """CMC and mAP of ranking ``gallery`` for every ``query`` (standard protocol of
    :func:`reidlib.evaluation.rank.evaluate`: same-pid same-camera gallery entries are ignored).

    With ``rerank``, distances are k-reciprocal re-ranked (``rerank_params = (k1, k2, lambda)``).
    ``ap_mode`` picks the AP definition (``"full"``, ``"trapezoid"``, ``"truncated50"``).
    """
    from reidlib.evaluation.features import evaluate_features

    k1, k2, lam = rerank_params
    return evaluate_features(query.feats, gallery.feats, query.pids, gallery.pids, query.camids,
                             gallery.camids, metric=metric, rerank=rerank, k1=k1, k2=k2, lambda_=lam,
                             ap_mode=ap_mode)


def evaluate_model(
    model: nn.Module,
    query_loader: Iterable,
    gallery_loader: Iterable,
    device: str | torch.device = "cpu",
    flip: bool = False,
    metric: str = "euclidean",
    rerank: bool = False,
    normalize: bool = True,
    ap_mode: str = "full",
) -> RankResult:
    """Extract query and gallery features with ``model`` and evaluate retrieval (mAP, CMC); the options
    are those of :func:`extract_features` and :func:`rank_features`."""
    q = extract_features(model, query_loader, device, flip=flip, normalize=normalize, desc="query")
    g = extract_features(model, gallery_loader, device, flip=flip, normalize=normalize, desc="gallery")
    return rank_features(q, g, metric=metric, rerank=rerank, ap_mode=ap_mode)
