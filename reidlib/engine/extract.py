"""Test-time feature extraction and retrieval evaluation of a model.

``extract_features`` runs the model in eval mode over a loader and keeps ``ReIDOutput.embedding``;
``evaluate_model`` extracts query and gallery features and ranks them with :mod:`reidlib.evaluation`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from reidlib.engine.trainer import as_batch_dict
from reidlib.evaluation.arrays import all_finite, check_finite
from reidlib.models.output import ReIDOutput

if TYPE_CHECKING:
    from reidlib.data.records import Record
    from reidlib.evaluation.rank import RankResult

#: What a descriptor is read from: ``output -> (B, D)``; the default is the test embedding.
OutputFn = Callable[[ReIDOutput], Tensor]


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


#: Appended to the error for a non-finite embedding.
_NON_FINITE_HINT = "the model's output is not finite for these images (diverged weights, or a broken image?)"


def _check_embeddings(emb: Tensor, name: str, offset: int, paths: Callable[[], Sequence[str] | None]) -> None:
    """Raise :class:`~reidlib.evaluation.arrays.NonFiniteError` naming the rows (and image paths) of
    ``emb`` ``(B, D)`` that hold NaN or inf; ``paths`` is only called when there are some."""
    if all_finite(emb):  # one reduction per batch: the common case costs nothing measurable
        return
    check_finite(emb, name, "image", paths=paths(), offset=offset, hint=_NON_FINITE_HINT)


def _batch_paths(batch: dict[str, Any], records: Sequence[Any] | None) -> list[str] | None:
    """Image path of each row of ``batch``, when the dataset has ``records`` and batches carry
    ``"index"`` (:class:`reidlib.data.dataset.ImageDataset`); else ``None``."""
    if records is None or "index" not in batch:
        return None
    try:
        return [str(getattr(records[i], "path", records[i]))
                for i in torch.as_tensor(batch["index"]).reshape(-1).tolist()]
    except (IndexError, TypeError):  # not an index into these records: fall back to row numbers
        return None


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
        NonFiniteError: (a ``ValueError``) the model returned NaN or inf for some images, raised at the
            batch that holds them; the message names their rows and, when the loader's dataset has
            ``records`` (:class:`reidlib.data.dataset.ImageDataset`), their image paths.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    feats, pids, camids = [], [], []
    records = getattr(getattr(loader, "dataset", None), "records", None)
    row = 0
    try:
        disable = (not progress) if progress is not None else None  # None: tqdm decides (terminal or not)
        for b, raw in enumerate(tqdm(loader, desc=desc, disable=disable, leave=False)):
            batch = as_batch_dict(raw)
            images = batch["image"].to(device)
            emb = _embed(model, images)
            if flip:
                emb = (emb + _embed(model, torch.flip(images, dims=[3]))) / 2
            # Checked before normalising: F.normalize turns an inf row into NaN and hides a huge one.
            _check_embeddings(emb, f"{desc} embeddings of batch {b} (rows {row}..{row + len(emb) - 1})",
                              row, lambda batch=batch: _batch_paths(batch, records))
            row += len(emb)
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
    max_memory: int | str | None = None,
) -> RankResult:
    """CMC and mAP of ranking ``gallery`` for every ``query`` (standard protocol of
    :func:`reidlib.evaluation.rank.evaluate`: same-pid same-camera gallery entries are ignored).

    With ``rerank``, distances are k-reciprocal re-ranked (``rerank_params = (k1, k2, lambda)``).
    ``ap_mode`` picks the AP definition (``"full"``, ``"trapezoid"``, ``"truncated50"``); ``max_memory``
    bounds what the ranking holds (bytes or ``"6GB"``; :func:`reidlib.evaluation.evaluate_features`).
    """
    from reidlib.evaluation.features import evaluate_features

    k1, k2, lam = rerank_params
    return evaluate_features(query.feats, gallery.feats, query.pids, gallery.pids, query.camids,
                             gallery.camids, metric=metric, rerank=rerank, k1=k1, k2=k2, lambda_=lam,
                             ap_mode=ap_mode, max_memory=max_memory)


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
    max_memory: int | str | None = None,
) -> RankResult:
    """Extract query and gallery features with ``model`` and evaluate retrieval (mAP, CMC); the options
    are those of :func:`extract_features` and :func:`rank_features`."""
    q = extract_features(model, query_loader, device, flip=flip, normalize=normalize, desc="query")
    g = extract_features(model, gallery_loader, device, flip=flip, normalize=normalize, desc="gallery")
    return rank_features(q, g, metric=metric, rerank=rerank, ap_mode=ap_mode, max_memory=max_memory)


# ------------------------------------------------------------------------ images of different sizes


def size_groups(images: Sequence[Tensor], batch_size: int) -> list[tuple[tuple[int, ...], list[int]]]:
    """Indices of ``images`` grouped by shape, in chunks of at most ``batch_size`` (first-seen order)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, img in enumerate(images):
        groups.setdefault(tuple(img.shape), []).append(i)
    out = []
    for shape, idx in groups.items():
        out.extend((shape, idx[s : s + batch_size]) for s in range(0, len(idx), batch_size))
    return out


def _embedding(output: ReIDOutput) -> Tensor:
    return output.embedding


def descriptors(model: nn.Module, images: Sequence[Tensor], batch_size: int = 256,
                output_fn: OutputFn | None = None) -> Tensor:
    """Descriptors ``(N, D)`` of images ``(3, H_i, W_i)`` of any sizes, in input order.

    Images of equal size are batched together and nothing is padded, so each descriptor is exactly that of
    the image alone (in eval mode, or with frozen BN). Gradients flow when enabled. ``output_fn`` reads the
    descriptor from the model's :class:`ReIDOutput` (default: ``embedding``).
    """
    if len(images) == 0:
        raise ValueError("descriptors: no images")
    read = output_fn or _embedding
    parts, order = [], []
    device = next(model.parameters()).device
    for _, idx in size_groups(images, batch_size):
        parts.append(read(model(torch.stack([images[i] for i in idx]).to(device))))
        order.extend(idx)
    stacked = torch.cat(parts)
    inverse = torch.empty(len(order), dtype=torch.int64)
    inverse[torch.tensor(order)] = torch.arange(len(order))
    return stacked[inverse.to(stacked.device)]


def forward_any_size(model: nn.Module, batch: dict[str, Any]) -> ReIDOutput:
    """The Trainer's ``forward_fn`` for a batch whose ``"image"`` is a list of ``(3, H_i, W_i)`` tensors of
    different sizes: a :class:`ReIDOutput` whose ``embedding`` (and ``features[0]``) is :func:`descriptors`
    of the list, in batch order."""
    images = batch["image"]
    if torch.is_tensor(images):
        images = list(images)
    emb = descriptors(model, images)
    return ReIDOutput(logits=[], features=[emb], feature_maps=[], embedding=emb)


@torch.no_grad()
def extract_records(
    model: nn.Module,
    records: Sequence[Record],
    image_source: Callable[[str], Any],
    transform: Callable[[Any], Tensor],
    output_fn: OutputFn | None = None,
    chunk: int = 512,
    desc: str = "extract",
    progress: bool = False,
) -> Features:
    """Descriptors of ``records`` whose images may differ in size (eval mode, ``chunk`` images loaded at a
    time, a tqdm bar with ``progress``); the model's mode is restored. See :func:`descriptors`.

    Raises:
        NonFiniteError: (a ``ValueError``) a descriptor holds NaN or inf; the message names the
            records' rows and image paths.
    """
    was_training = model.training
    model.eval()
    try:
        feats = []
        for s in tqdm(range(0, len(records), chunk), desc=desc, leave=False, disable=not progress):
            images = [transform(image_source(r.path)) for r in records[s : s + chunk]]
            part = descriptors(model, images, output_fn=output_fn)
            _check_embeddings(part, f"{desc} descriptors of records {s}..{s + len(images) - 1}", s,
                              lambda s=s: [r.path for r in records[s : s + chunk]])
            feats.append(part.cpu())
    finally:
        model.train(was_training)
    if not feats:
        raise ValueError("extract_records: no records")
    return Features(torch.cat(feats).float(), np.array([r.pid for r in records], dtype=np.int64),
                    np.array([r.camid for r in records], dtype=np.int64))
