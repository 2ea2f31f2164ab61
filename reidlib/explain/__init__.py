"""Explanations of re-ID models, and scores that test them against SynthReID's ground-truth masks.

Every function works with any model that returns :class:`reidlib.models.output.ReIDOutput` (CAM also
needs ``output.class_weights``, the weights of one bias-free classifier per branch over
``GAP(feature_maps[i])``), runs batched on the model's device, and leaves the model's train/eval flags,
hooks and gradients as it found them.

- :mod:`~reidlib.explain.cam`: class activation maps (seed 000, Eq. 4).
- :mod:`~reidlib.explain.ram`: ranking activation maps (seed 000, Eq. 9-10), per branch and concatenated.
- :mod:`~reidlib.explain.gradcam`: Grad-CAM for any layer and scalar target
  (:mod:`~reidlib.explain.targets`); seed 001's matching regions and implicit attention. The in-training
  variant of seed 004 is :func:`reidlib.layers.gradcam.batch_gradcam`.
- :mod:`~reidlib.explain.maps`: the three methods behind one call, per branch and for the whole model.
- :mod:`~reidlib.explain.scores`: energy in a mask, pointing game, branch overlap, and per-image tables
  over a test set (:func:`~reidlib.explain.scores.explanation_scores`).
- Figures: :mod:`~reidlib.explain.overlay` (the book's overlay style), :mod:`~reidlib.explain.map_grid`,
  :mod:`~reidlib.explain.ranked_list`, :mod:`~reidlib.explain.tsne`, :mod:`~reidlib.explain.score_plots`,
  and :func:`reidlib.explain.demo.demo_figures` (one figure of each kind on SynthReID).
"""

from reidlib.explain.cam import class_activation_maps, model_cam
from reidlib.explain.gradcam import grad_cam, grad_cam_layers, implicit_attention, matching_regions
from reidlib.explain.maps import explanation_maps
from reidlib.explain.ram import model_ram, ranking_activation_map, self_ranking_maps
from reidlib.explain.scores import (
    branch_overlap,
    energy_in_mask,
    explanation_scores,
    pointing_game,
    summarize_scores,
)
from reidlib.explain.targets import class_target, embedding_dim_target, similarity_target

__all__ = [
    "branch_overlap",
    "class_activation_maps",
    "class_target",
    "embedding_dim_target",
    "energy_in_mask",
    "explanation_maps",
    "explanation_scores",
    "grad_cam",
    "grad_cam_layers",
    "implicit_attention",
    "matching_regions",
    "model_cam",
    "model_ram",
    "pointing_game",
    "ranking_activation_map",
    "self_ranking_maps",
    "similarity_target",
    "summarize_scores",
]
