"""One figure of each kind on SynthReID, for the book's protocol page.

:func:`demo_figures` takes any reidlib model (trained on SynthReID images of the dataset's size) and
writes (pictures as ``.jpg``, plots as ``.png``: :func:`reidlib.figures.formats.save_figure`):

- ``cam``: CAMs of each branch for images of one training identity, with the ground-truth cue
  outlines (seed 000, Fig. 1c);
- ``ram_ranked_list``: a query, its top gallery images, their RAMs and the AP (seed 000, Fig. 4/8);
- ``ranked_lists``: plain ranked lists with AP and number of relevant images (seed 001, Fig. 4);
- ``gradcam_matching``: matching regions of a query and its best true match (seed 001, Fig. 5);
- ``gradcam_implicit``: implicit attention over images of two identities (seed 001, Fig. 6);
- ``tsne``: t-SNE of look-alike identities with thumbnails (seed 000, Fig. 7);
- ``scores`` and ``scores.csv``: energy of CAM, RAM and Grad-CAM on identity cues vs chance.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reidlib.data.records import records_by_pid
from reidlib.explain.gradcam import matching_regions
from reidlib.explain.map_grid import plot_map_grid, plot_matching_regions
from reidlib.explain.maps import METHODS, explanation_maps
from reidlib.explain.model_state import run
from reidlib.explain.overlay import image_to_tensor
from reidlib.explain.ram import model_ram
from reidlib.explain.ranked_list import RankedRow, plot_ranked_lists, rank_query
from reidlib.explain.score_plots import plot_explanation_scores
from reidlib.explain.scores import cue_label_names, explanation_scores, summarize_scores
from reidlib.explain.tsne import plot_tsne, tsne_embedding
from reidlib.figures.formats import save_figure

__all__ = ["demo_figures"]


def _tensors(samples: list[Any]) -> Tensor:
    return torch.stack([image_to_tensor(s.image) for s in samples])


@torch.no_grad()
def _descriptors(
    model: nn.Module, images: Tensor, batch_size: int = 64
) -> tuple[Tensor, list[Tensor], Tensor]:
    """L2-normalised embeddings, per-branch GAP(F^i) and their concatenation (the descriptor RAM explains)."""
    embs, branches = [], []
    for start in range(0, len(images), batch_size):
        out = run(model, images[start : start + batch_size])
        embs.append(F.normalize(out.embedding, dim=1).cpu())
        branches.append([F.normalize(m.mean(dim=(2, 3)), dim=1).cpu() for m in out.feature_maps])
    per_branch = [torch.cat([b[i] for b in branches]) for i in range(len(branches[0]))]
    return torch.cat(embs), per_branch, torch.cat(per_branch, dim=1)


def _cue_mask(cues: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """Pixels of the named cue types (all cues when ``names`` is empty)."""
    labels = [label for label, name in cue_label_names().items() if name in names]
    return np.isin(cues, labels) if labels else cues > 0


def _save(fig: plt.Figure, stem: Path) -> Path:
    path = save_figure(fig, stem)
    plt.close(fig)
    return path


def demo_figures(
    model: nn.Module,
    synth: Any,
    out_dir: str | os.PathLike[str],
    *,
    top_k: int = 8,
    max_score_images: int = 48,
    progress: bool = False,
    query_index: int | None = None,
) -> dict[str, Path]:
    """Write one figure of each kind (see the module docstring) to ``out_dir``; return name -> path.

    A model that does not follow the CAM contract (e.g. BNNeck) gets every figure but the CAM one, with a
    warning.

    Args:
        model: a reidlib model whose input size is the dataset's image size (images are only normalised).
        synth: a :class:`reidlib.data.synthetic.SynthReID`.
        out_dir: folder for the PNGs and ``scores.csv`` (created).
        top_k: gallery images per ranked list.
        max_score_images: query images used for the explanation scores.
        progress: show tqdm bars for the scores.
        query_index: the query (index into ``synth.splits.query``) of the RAM and matching-region figures
            and the first ranked list; default: the first query whose top-k mixes true and false matches.
            The choice is written to ``choices.json`` (key ``"choices"`` of the result), so a second model
            can be shown on the same query.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    splits = synth.splits
    paths: dict[str, Path] = {}

    # ---- CAM over images of one training identity (seed 000, Fig. 1c) ---------------------------------
    by_pid = {pid: [r.path for r in recs] for pid, recs in records_by_pid(splits.train).items()}
    # The training identity whose distinctive cues are visible in the most of its (first six) images.
    candidates = [p for p, recs in sorted(by_pid.items()) if len(recs) >= 4][:10] or [min(by_pid)]
    rendered = {p: [synth.render(path) for path in by_pid[p][:6]] for p in candidates}

    def visible(p: int) -> int:
        names = synth.distinctive_cues(p, split="train")
        return sum(bool(_cue_mask(s.cues, names).any()) for s in rendered[p]) if names else -1

    pid = max(candidates, key=visible)
    train_samples = rendered[pid]
    labels = torch.full((len(train_samples),), pid)
    try:
        cams = explanation_maps(model, _tensors(train_samples), "cam", classes=labels)
    except ValueError as err:  # e.g. a BN neck between the pooled maps and the classifier
        warnings.warn(f"demo_figures: no CAM figure or CAM scores for this model: {err}", stacklevel=2)
        cams = None
    if cams is not None:
        rows = {key: list(v.cpu()) for key, v in cams.items() if not (key == "all" and len(cams) == 2)}
        distinctive = synth.distinctive_cues(pid, split="train")
        cue_text = ", ".join(distinctive) or "none"
        paths["cam"] = _save(plot_map_grid(
            [s.image for s in train_samples], rows, map_label="CAM",
            title=f"CAM of training identity {pid} (its own class) on its images\n"
                  f"white outlines: the cues that tell it from its look-alikes ({cue_text})",
            column_titles=[f"cam {s.camid + 1}, {s.view}" for s in train_samples],
            contours=[_cue_mask(s.cues, distinctive) for s in train_samples]), out / "cam")

    # ---- retrieval over the test split ----------------------------------------------------------------
    query = [synth.render(r.path) for r in splits.query]
    gallery = [synth.render(r.path) for r in splits.gallery]
    q_img, g_img = _tensors(query), _tensors(gallery)
    q_emb, q_br, q_cat = _descriptors(model, q_img)
    g_emb, g_br, g_cat = _descriptors(model, g_img)
    g_pids = np.array([s.pid for s in gallery])
    g_cams = np.array([s.camid for s in gallery])

    def ranking(q: int, qd: Tensor, gd: Tensor):
        dist = torch.cdist(qd[q : q + 1], gd)[0].numpy()
        return rank_query(dist, query[q].pid, query[q].camid, g_pids, g_cams, k=top_k)

    ranked = [ranking(q, q_emb, g_emb) for q in range(len(query))]
    # Queries whose top-k mixes right and wrong images say the most; fall back to the first queries.
    mixed = [q for q, r in enumerate(ranked) if r.matches.any() and not r.matches.all()]
    chosen = (mixed + [q for q in range(len(query)) if q not in mixed])[:3]
    if query_index is not None:
        if not 0 <= query_index < len(query):
            raise ValueError(f"query_index {query_index} out of range: {len(query)} queries")
        chosen = [query_index] + [q for q in chosen if q != query_index][:2]
    paths["ranked_lists"] = _save(plot_ranked_lists(
        [RankedRow(query[q].image, [gallery[i].image for i in ranked[q].gallery_indices], ranked[q].matches,
                   ap=ranked[q].ap, num_relevant=ranked[q].num_relevant,
                   label=f"query pid {query[q].pid}, cam {query[q].camid + 1}")
         for q in chosen],
        title="Ranked lists on SynthReID (L2-normalised embedding, Euclidean distance)"),
        out / "ranked_lists")

    # ---- RAM: one query; per branch ranked by that branch's feature (seed 000, Fig. 4 and 8) -----------
    q = chosen[0]
    gallery_of = lambda order: [gallery[j].image for j in order]  # noqa: E731
    ram_rows = []
    if len(q_br) > 1:
        for i in range(len(q_br)):
            branch_rank = ranking(q, q_br[i], g_br[i])
            maps = model_ram(model, q_img[q], g_img[branch_rank.gallery_indices]).branches[i]
            ram_rows.append(RankedRow(query[q].image, gallery_of(branch_rank.gallery_indices),
                                      branch_rank.matches, ap=branch_rank.ap,
                                      num_relevant=branch_rank.num_relevant, label=f"branch {i + 1}",
                                      query_map=maps.query, gallery_maps=list(maps.gallery)))
    cat_rank = ranking(q, q_cat, g_cat)
    combined = model_ram(model, q_img[q], g_img[cat_rank.gallery_indices]).combined
    if combined is not None:
        ram_rows.append(RankedRow(query[q].image, gallery_of(cat_rank.gallery_indices), cat_rank.matches,
                                  ap=cat_rank.ap, num_relevant=cat_rank.num_relevant, label="whole model",
                                  query_map=combined.query, gallery_maps=list(combined.gallery)))
    paths["ram_ranked_list"] = _save(plot_ranked_lists(
        ram_rows, map_label="RAM",
        title=f"Ranking activation maps, query pid {query[q].pid} (ranked by the GAP features RAM explains)"),
        out / "ram_ranked_list")

    # ---- Grad-CAM: matching regions and implicit attention (seed 001, Fig. 5 and 6) --------------------
    # The closest true match of the query (same identity, other camera), whether or not it made the top-k.
    valid = np.flatnonzero((g_pids == query[q].pid) & (g_cams != query[q].camid))
    match = int(valid[torch.cdist(q_emb[q : q + 1], g_emb[valid])[0].argmin()])
    regions = matching_regions(model, q_img[q], g_img[match], k=5)
    paths["gradcam_matching"] = _save(plot_matching_regions(
        query[q].image, gallery[match].image,
        regions, title=f"Matching regions: query pid {query[q].pid} and a true match"),
        out / "gradcam_matching")

    test_pids = [p for p in dict.fromkeys(s.pid for s in gallery) if p > 0][:2]
    implicit_samples = [s for p in test_pids for s in [g for g in gallery if g.pid == p][:4]]
    implicit = explanation_maps(model, _tensors(implicit_samples), "gradcam", gradcam_target="implicit")
    paths["gradcam_implicit"] = _save(plot_map_grid(
        [s.image for s in implicit_samples], {"implicit attention": list(implicit["all"].cpu())},
        map_label="Grad-CAM", title="Implicit attention: Grad-CAM of each image's 50 strongest embedding "
                                    "dimensions\n(white outlines: the identity's distinctive cues)",
        column_titles=[f"pid {s.pid}, cam {s.camid + 1}" for s in implicit_samples],
        contours=[_cue_mask(s.cues, synth.distinctive_cues(s.pid)) for s in implicit_samples]),
        out / "gradcam_implicit")

    # ---- t-SNE of look-alike identities (seed 000, Fig. 7) ---------------------------------------------
    alike = set(synth.look_alike_pids("test", n_families=3))
    pool = [i for i, s in enumerate(gallery) if s.pid in alike]
    points = tsne_embedding(g_emb[pool], seed=0)
    paths["tsne"] = _save(plot_tsne(points, [gallery[i].pid for i in pool],
                                    images=[gallery[i].image for i in pool],
                                    title="t-SNE of three families of look-alike identities (gallery)"),
                          out / "tsne")

    # ---- explanation scores ------------------------------------------------------------------------------
    items = query[:max_score_images]
    methods = [m for m in METHODS if m != "cam" or cams is not None]
    tables = [explanation_scores(model, items, method, progress=progress) for method in methods]
    scores = pd.concat(tables, ignore_index=True)
    summary = summarize_scores(scores)
    summary.to_csv(out / "scores.csv", index=False)
    paths["scores_csv"] = out / "scores.csv"
    title = f"Where do the explanations point? ({len(items)} query images"
    title += "; CAM of the predicted class)" if cams is not None else ")"
    paths["scores"] = _save(plot_explanation_scores(summary, title=title), out / "scores")
    paths["choices"] = out / "choices.json"
    choices = {"query_index": int(chosen[0]), "cam_pid": int(pid) if cams is not None else None}
    paths["choices"].write_text(json.dumps(choices))
    return paths

