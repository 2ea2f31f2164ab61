"""Scores that say whether an explanation points at the right place.

The papers show heat maps and say "the model looks at the backpack". SynthReID renders every image with
ground-truth masks of body parts and of the identity cues that separate look-alike identities, so we can
measure it:

- :func:`energy_in_mask`: share of a map's positive energy ``sum max(M, 0)`` that falls inside a mask. A
  map spread uniformly scores the mask's area fraction, which is therefore reported as the chance level.
- :func:`pointing_game`: whether the map's maximum falls inside the mask (Zhang et al., 2016).
- :func:`branch_overlap`: mean pairwise IoU of the top-k cells of several branches' maps, the overlap that
  seed 000's Overlapped Activation Penalty (Eq. 5-6, ``a^i`` keeps the k largest cells) is meant to reduce.
- :func:`explanation_scores`: all of these, per image and per map (branch or whole model), for a model
  and a list of SynthReID samples; :func:`summarize_scores` averages them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from reidlib.explain.maps import METHODS, Method, explanation_maps
from reidlib.explain.overlay import image_to_tensor

__all__ = [
    "energy_in_mask",
    "pointing_game",
    "top_region",
    "branch_overlap",
    "cue_label_names",
    "body_label_values",
    "explanation_scores",
    "summarize_scores",
]

ArrayLike = np.ndarray | Tensor


def _as_float(values: ArrayLike) -> Tensor:
    if isinstance(values, Tensor):
        return values.detach().float().cpu()
    return torch.as_tensor(np.asarray(values, dtype=np.float32))


def _pair(heatmap: ArrayLike, mask: ArrayLike) -> tuple[Tensor, Tensor]:
    h = _as_float(heatmap)
    m = mask.detach().cpu() if isinstance(mask, Tensor) else torch.as_tensor(np.asarray(mask))
    if h.dim() not in (2, 3) or h.shape != m.shape:
        raise ValueError(
            f"heat map and mask must have the same shape, (H, W) or (B, H, W); got {tuple(h.shape)} and "
            f"{tuple(m.shape)} (upsample the map to the image first: reidlib.explain.overlay.upsample_map)"
        )
    return h, m.bool()


def _unbatch(values: Tensor, batched: bool) -> Any:
    out = values.numpy()
    return out if batched else out.item()


def energy_in_mask(heatmap: ArrayLike, mask: ArrayLike) -> float | np.ndarray:
    """Share of the map's positive energy inside ``mask``: ``sum_{mask} max(M, 0) / sum max(M, 0)``.

    Args:
        heatmap: ``(H, W)`` map, or ``(B, H, W)`` maps, at the mask's resolution.
        mask: boolean (or 0/1) array of the same shape.

    Returns:
        A float in ``[0, 1]`` (array ``(B,)`` for batches); NaN for a map with no positive value.
    """
    h, m = _pair(heatmap, mask)
    positive = h.clamp_min(0)
    total = positive.sum(dim=(-2, -1)).double()
    inside = (positive * m).sum(dim=(-2, -1)).double()
    share = torch.where(total > 0, inside / total.clamp_min(1e-300), torch.full_like(total, math.nan))
    return _unbatch(share, h.dim() == 3)


def pointing_game(heatmap: ArrayLike, mask: ArrayLike) -> bool | np.ndarray:
    """Whether the map's maximum (the first, on ties) lies inside ``mask``; ``(B,)`` bools for batches."""
    h, m = _pair(heatmap, mask)
    flat_h, flat_m = h.reshape(-1, h.shape[-2] * h.shape[-1]), m.reshape(-1, h.shape[-2] * h.shape[-1])
    hit = flat_m.gather(1, flat_h.argmax(dim=1, keepdim=True)).squeeze(1)
    return hit.numpy() if h.dim() == 3 else bool(hit.item())


def top_region(heatmap: ArrayLike, top_k: int | float) -> Tensor:
    """Boolean mask of the ``top_k`` largest cells of a map ``(..., h, w)`` (ties broken by position).

    ``top_k`` is a number of cells (int >= 1) or a fraction of the cells (float in ``(0, 1]``), as seed
    000's Eq. 5 keeps the ``k`` largest elements of a branch's CAM.
    """
    h = _as_float(heatmap)
    cells = h.shape[-2] * h.shape[-1]
    if isinstance(top_k, bool) or not isinstance(top_k, int | float):
        raise TypeError(f"top_k must be an int (cells) or a float (fraction); got {top_k!r}")
    k = top_k if isinstance(top_k, int) else math.ceil(top_k * cells)
    if (isinstance(top_k, float) and not 0 < top_k <= 1) or not 1 <= k <= cells:
        raise ValueError(
            f"top_k={top_k!r} must select between 1 and {cells} cells of a {tuple(h.shape[-2:])} map"
        )
    flat = h.reshape(-1, cells)
    region = torch.zeros_like(flat, dtype=torch.bool)
    region.scatter_(1, flat.topk(k, dim=1).indices, True)
    return region.reshape(h.shape)


def branch_overlap(maps: Sequence[ArrayLike] | ArrayLike, top_k: int | float = 0.1) -> float | np.ndarray:
    """Mean pairwise IoU of the top-``k`` regions of ``N >= 2`` branch maps.

    Args:
        maps: ``(N, h, w)`` (a list of ``N`` maps or an array) or ``(B, N, h, w)`` for a batch.
        top_k: cells per region, an int, or a fraction of the ``h w`` cells (see :func:`top_region`).

    Returns:
        IoU averaged over the ``N (N - 1) / 2`` pairs: 0 when the branches look at disjoint places (what
        the OAP asks for), 1 when they all pick the same cells. ``(B,)`` for a batch.
    """
    if isinstance(maps, list | tuple):
        maps = torch.stack([_as_float(m) for m in maps])
    regions = top_region(maps, top_k)
    batched = regions.dim() == 4
    if not batched:
        regions = regions.unsqueeze(0)
    if regions.dim() != 4 or regions.shape[1] < 2:
        raise ValueError(
            f"branch_overlap needs (N>=2, h, w) or (B, N>=2, h, w) maps; got {tuple(maps.shape)}"
        )
    ious = []
    for i, j in itertools.combinations(range(regions.shape[1]), 2):
        inter = (regions[:, i] & regions[:, j]).sum(dim=(1, 2)).double()
        union = (regions[:, i] | regions[:, j]).sum(dim=(1, 2)).double()
        ious.append(inter / union)
    return _unbatch(torch.stack(ious).mean(dim=0), batched)


def cue_label_names(cue_names: Sequence[str] | None = None) -> dict[int, str]:
    """Map cue label values (``>= 1``; 0 is "no cue") to names.

    ``cue_names`` lists the names of the label values in order; if its first entry is ``"none"`` or
    ``"background"`` it names label 0 and is skipped, else ``cue_names[j - 1]`` names label ``j``. ``None``
    reads ``reidlib.data.synthetic.CUE_NAMES``.
    """
    if cue_names is None:
        try:
            from reidlib.data.synthetic import CUE_NAMES as cue_names
        except ImportError as err:
            raise ValueError("pass cue_names: reidlib.data.synthetic.CUE_NAMES is not available") from err
    names = list(cue_names)
    if names and names[0].lower() in ("none", "background", "no_cue"):
        return {j: n for j, n in enumerate(names) if j > 0}
    return {j + 1: n for j, n in enumerate(names)}


def body_label_values(part_names: Sequence[str] | None = None) -> list[int]:
    """Part label values that belong to the person: every label except ``"background"`` and
    ``"occluder"`` (an occluding object is not the person). ``None`` reads
    ``reidlib.data.synthetic.PART_NAMES``; ``part_names[j]`` names label ``j``."""
    if part_names is None:
        try:
            from reidlib.data.synthetic import PART_NAMES as part_names
        except ImportError as err:
            raise ValueError("pass part_names: reidlib.data.synthetic.PART_NAMES is not available") from err
    not_person = ("background", "occluder")
    return [j for j, name in enumerate(part_names) if j > 0 and name.lower() not in not_person]


def _check_item(item: Any, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    for name in ("image", "parts", "cues", "pid"):
        if not hasattr(item, name):
            raise ValueError(
                f"item {index} has no `{name}`; expected SynthSample-like items (SynthReID.render)"
            )
    image, parts, cues = np.asarray(item.image), np.asarray(item.parts), np.asarray(item.cues)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"item {index}: image must be (H, W, 3); got {image.shape}")
    if parts.shape != image.shape[:2] or cues.shape != image.shape[:2]:
        raise ValueError(
            f"item {index}: parts {parts.shape} and cues {cues.shape} must match the image size "
            f"{image.shape[:2]}"
        )
    return image, parts, cues


def explanation_scores(
    model: nn.Module,
    items: Sequence[Any],
    method: Method,
    *,
    classes: Sequence[int] | str = "predicted",
    gradcam_target: str = "implicit",
    implicit_k: int = 50,
    top_k: int | float = 0.1,
    batch_size: int = 16,
    cue_names: Sequence[str] | None = None,
    part_names: Sequence[str] | None = None,
    image_to_input: Callable[[np.ndarray], Tensor] = image_to_tensor,
    progress: bool = True,
) -> pd.DataFrame:
    """Score a method's maps against SynthReID's ground-truth masks, per image and per map.

    Args:
        model: a reidlib model (its input size must be the items' image size, or ``image_to_input`` must
            resize; maps are upsampled bilinearly to the image size before scoring).
        items: SynthSample-like objects (``SynthReID.render(path)``): ``image`` uint8 ``(H, W, 3)``,
            ``parts`` ``(H, W)`` (0 = background), ``cues`` ``(H, W)`` (0 = no cue), ``pid``; optional
            ``camid``, ``view``.
        method: ``"cam"``, ``"ram"`` or ``"gradcam"`` (see :func:`reidlib.explain.maps.explanation_maps`).
        classes: classes explained by CAM (and Grad-CAM with ``gradcam_target="class"``): ``"predicted"``
            (argmax of the summed logits; the only choice for test identities), ``"label"`` (each item's
            ``pid``, which must then be a training class index) or one class per item.
        gradcam_target: ``"implicit"`` (seed 001's implicit attention) or ``"class"``.
        implicit_k: embedding dimensions of the implicit-attention target.
        top_k: cells of each branch's top region for :func:`branch_overlap`.
        batch_size: images per forward pass.
        cue_names: names of the cue labels (see :func:`cue_label_names`).
        part_names: names of the part labels; the body is every part but background and occluders
            (see :func:`body_label_values`), plus the cue pixels.
        image_to_input: uint8 image -> normalised ``(3, H', W')`` model input.
        progress: show a tqdm bar.

    Returns:
        One row per image and map (``map``: ``"branch i"`` or ``"all"``), with columns ``index``, ``pid``,
        ``camid``, ``view``, ``method``, ``map``; ``energy_cues``, ``energy_body``, ``energy_background``
        (shares of positive energy; body = person parts or cues, background = the rest, occluders
        included), ``area_cues``, ``area_body``, ``area_background`` (area fractions = the chance level
        of the energies),
        ``pointing_cues``, ``pointing_body``, per cue type ``energy_cue_<name>`` and
        ``area_cue_<name>`` (NaN where the image lacks that cue), and on ``"all"`` rows of multi-branch
        models ``branch_overlap``.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    if isinstance(classes, str) and classes not in ("predicted", "label"):
        raise ValueError(f"classes must be 'predicted', 'label' or one class per item; got {classes!r}")
    if not isinstance(classes, str) and len(classes) != len(items):
        raise ValueError(f"got {len(classes)} classes for {len(items)} items")
    labels = cue_label_names(cue_names)
    body_values = body_label_values(part_names)
    rows: list[dict] = []
    starts = range(0, len(items), batch_size)
    for start in tqdm(starts, desc=f"{method} scores", disable=not progress, leave=False):
        chunk = items[start : start + batch_size]
        checked = [_check_item(item, start + i) for i, item in enumerate(chunk)]
        sizes = {c[0].shape[:2] for c in checked}
        if len(sizes) != 1:
            raise ValueError(
                f"items {start}..{start + len(chunk) - 1} have different image sizes {sorted(sizes)}"
            )
        images = torch.stack([image_to_input(c[0]) for c in checked])
        if classes == "predicted":
            batch_classes = None
        elif classes == "label":
            batch_classes = torch.tensor([int(item.pid) for item in chunk])
        else:
            batch_classes = torch.as_tensor(list(classes[start : start + batch_size]))
        maps = explanation_maps(model, images, method, classes=batch_classes,
                                gradcam_target=gradcam_target, implicit_k=implicit_k)
        rows.extend(_score_batch(maps, checked, chunk, start, method, labels, body_values, top_k))
    # One block of rows per image (maps in branch order, then "all"), whatever the batch size.
    return pd.DataFrame(rows).sort_values("index", kind="stable").reset_index(drop=True)


def _score_batch(
    maps: dict[str, Tensor],
    checked: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    chunk: Sequence[Any],
    start: int,
    method: str,
    labels: dict[int, str],
    body_values: list[int],
    top_k: int | float,
) -> list[dict]:
    size = checked[0][0].shape[:2]
    parts = torch.from_numpy(np.stack([c[1] for c in checked]).astype(np.int64))
    cues = torch.from_numpy(np.stack([c[2] for c in checked]).astype(np.int64))
    cue_mask = cues > 0
    body = torch.isin(parts, torch.tensor(body_values, dtype=parts.dtype)) | cue_mask
    branch_names = [k for k in maps if k != "all"]
    overlap = None
    if "all" in maps and len(branch_names) > 1:
        overlap = branch_overlap(torch.stack([maps[k].float().cpu() for k in branch_names], dim=1), top_k)
    rows = []
    for key, value in maps.items():
        up = F.interpolate(value.detach().float().cpu()[:, None], size=size, mode="bilinear",
                           align_corners=False)[:, 0]
        e_cues, e_body = energy_in_mask(up, cue_mask), energy_in_mask(up, body)
        p_cues, p_body = pointing_game(up, cue_mask), pointing_game(up, body)
        per_cue = {}
        for label, name in labels.items():
            m = cues == label
            present = m.any(dim=(1, 2)).numpy()
            per_cue[f"energy_cue_{name}"] = np.where(present, energy_in_mask(up, m), np.nan)
            per_cue[f"area_cue_{name}"] = np.where(present, m.float().mean(dim=(1, 2)).numpy(), np.nan)
        for b, item in enumerate(chunk):
            row = {
                "index": start + b,
                "pid": int(item.pid),
                "camid": int(getattr(item, "camid", -1)),
                "view": getattr(item, "view", None),
                "method": method,
                "map": key,
                "energy_cues": float(e_cues[b]),
                "energy_body": float(e_body[b]),
                "energy_background": float(1 - e_body[b]),
                "area_cues": float(cue_mask[b].float().mean()),
                "area_body": float(body[b].float().mean()),
                "area_background": float(1 - body[b].float().mean()),
                "pointing_cues": bool(p_cues[b]),
                "pointing_body": bool(p_body[b]),
            }
            row.update({k: float(v[b]) for k, v in per_cue.items()})
            row["branch_overlap"] = float(overlap[b]) if overlap is not None and key == "all" else np.nan
            rows.append(row)
    return rows


def summarize_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean of every score per method and map (NaN scores of maps without positive energy are skipped),
    with ``n_images``, ``n_no_positive`` (maps with no positive cell, e.g. a CAM of a class the model
    rejects) and ``cue_lift`` (mean energy on cues / mean cue area: 1 = no better than a uniform map)."""
    if scores.empty:
        raise ValueError("summarize_scores got an empty table")
    value_cols = [c for c in scores.columns if c.startswith(("energy_", "area_", "pointing_"))]
    value_cols += ["branch_overlap"] if "branch_overlap" in scores.columns else []
    frame = scores[["method", "map", *value_cols]].copy()
    for col in value_cols:
        frame[col] = frame[col].astype(float)
    summary = frame.groupby(["method", "map"], sort=False).mean()
    summary.insert(0, "n_images", scores.groupby(["method", "map"], sort=False).size())
    summary.insert(1, "n_no_positive", frame.groupby(["method", "map"], sort=False)["energy_cues"].apply(
        lambda col: int(col.isna().sum())))
    summary.insert(2, "cue_lift", summary["energy_cues"] / summary["area_cues"])
    return summary.reset_index()


def cue_coverage(target_maps: Tensor, cue_masks: Sequence[np.ndarray], k: int) -> float:
    """Mean share of an image's identity-cue pixels inside the union of its branches' top-``k`` CAM cells.

    Args:
        target_maps: ``(B, N, h, w)`` target-class CAMs of each branch.
        cue_masks: ``B`` label images ``(H, W)`` (0 = no cue), ``H`` and ``W`` multiples of ``h`` and ``w``.
        k: cells kept per branch (Eq. 5's ``k``).

    Returns:
        The mean over images that show at least one cue pixel (NaN when none does). With ``N`` branches
        the union can hold up to ``N * k`` cells: more branches may cover more, which is the paper's point
        (Fig. 1(c)), so compare it together with the branch overlap.
    """
    union = top_region(target_maps, k).any(dim=1)  # (B, h, w)
    shares = []
    for region, cues in zip(union, cue_masks, strict=True):
        cue = torch.as_tensor(np.asarray(cues) > 0)
        if not cue.any():
            continue
        up = region.repeat_interleave(cue.shape[0] // region.shape[0], 0)
        up = up.repeat_interleave(cue.shape[1] // region.shape[1], 1)
        shares.append(float((up & cue).sum() / cue.sum()))
    return float(np.mean(shares)) if shares else float("nan")


def chance_scores(items: Sequence[Any]) -> dict[str, float]:
    """What a uniform map scores on SynthReID samples (``.parts``, ``.cues`` label images): its share of
    energy on a region is the region's area. Returns the mean ``area_cues`` / ``energy_cues`` (cue pixels),
    ``area_body`` / ``energy_body`` (person or cue pixels), ``energy_background`` and ``cue_lift`` (1)."""
    if not items:
        raise ValueError("chance_scores: no samples")
    cues = float(np.mean([(np.asarray(it.cues) > 0).mean() for it in items]))
    body = float(np.mean([(np.isin(it.parts, body_label_values()) | (np.asarray(it.cues) > 0)).mean()
                          for it in items]))
    return {"energy_cues": cues, "energy_body": body, "energy_background": 1 - body, "area_cues": cues,
            "area_body": body, "cue_lift": 1.0}
