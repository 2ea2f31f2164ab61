from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reidlib.explain.scores import (
    body_label_values,
    branch_overlap,
    chance_scores,
    cue_coverage,
    cue_label_names,
    energy_in_mask,
    explanation_scores,
    pointing_game,
    summarize_scores,
    top_region,
)
from reidlib.models.output import ReIDOutput

from .conftest import make_model

CUES = ["none", "logo", "shoes"]
PARTS = ["background", "body", "occluder"]
NAMES = {"cue_names": CUES, "part_names": PARTS}


class Sample(NamedTuple):
    image: np.ndarray
    parts: np.ndarray
    cues: np.ndarray
    pid: int
    camid: int = 0
    view: str = "front"


def test_energy_in_mask_values():
    heat = np.array([[1.0, 3.0], [-2.0, 0.0]])
    mask = np.array([[True, False], [True, True]])
    assert energy_in_mask(heat, mask) == pytest.approx(0.25)  # negatives carry no energy
    uniform = np.ones((8, 4))
    area = np.zeros((8, 4), bool)
    area[:2] = True
    assert energy_in_mask(uniform, area) == pytest.approx(0.25)  # chance level = area fraction
    assert math.isnan(energy_in_mask(-uniform, area))
    batch = energy_in_mask(np.stack([heat, heat[::-1]]), torch.from_numpy(np.stack([mask, mask])))
    assert batch.shape == (2,) and batch[0] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="same shape"):
        energy_in_mask(np.ones((4, 2)), np.ones((8, 4), bool))


def test_pointing_game():
    heat = np.zeros((4, 4))
    heat[2, 1] = 5
    mask = np.zeros((4, 4), bool)
    assert pointing_game(heat, mask) is False
    mask[2, 1] = True
    assert pointing_game(heat, mask) is True
    assert pointing_game(np.stack([heat, -heat]), np.stack([mask, mask])).tolist() == [True, False]


def test_top_region_and_branch_overlap():
    a = torch.arange(16.0).reshape(4, 4)
    assert top_region(a, 4).sum() == 4 and top_region(a, 4)[3].all()
    assert top_region(a, 0.5).sum() == 8
    with pytest.raises(ValueError, match="between 1 and 16"):
        top_region(a, 17)
    assert branch_overlap([a, a], top_k=4) == pytest.approx(1.0)
    assert branch_overlap([a, -a], top_k=4) == pytest.approx(0.0)
    shifted = torch.roll(a, 2)  # top-4 cells of `a` are 12..15; of shifted 14,15,0,1 -> IoU 2/6
    assert branch_overlap([a, shifted], top_k=4) == pytest.approx(2 / 6)
    three = branch_overlap([a, a, -a], top_k=4)
    assert three == pytest.approx((1 + 0 + 0) / 3)
    assert branch_overlap(torch.stack([torch.stack([a, a]), torch.stack([a, -a])]), 4).tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="N>=2"):
        branch_overlap(a[None], 4)


def test_cue_label_names_conventions():
    assert cue_label_names(["none", "logo", "hat"]) == {1: "logo", 2: "hat"}
    assert cue_label_names(["logo", "hat"]) == {1: "logo", 2: "hat"}
    assert body_label_values(["background", "head", "occluder", "legs"]) == [1, 3]


class RedChannelModel(nn.Module):
    """Feature map = 4x4 average of the red channel: its CAM is the red region, by construction."""

    def __init__(self) -> None:
        super().__init__()
        self.classifiers = nn.ModuleList([nn.Linear(1, 1, bias=False)])
        nn.init.ones_(self.classifiers[0].weight)

    def forward(self, x):
        fmap = F.avg_pool2d(x[:, :1] + 2.2, 4)  # normalised red: ~-2.1 (0) .. 2.2 (255)
        feat = fmap.mean(dim=(2, 3))
        return ReIDOutput([self.classifiers[0](feat)], [feat], [fmap], feat,
                          class_weights=[self.classifiers[0].weight])


def _red_sample(pid: int, top: int) -> Sample:
    image = np.zeros((32, 16, 3), np.uint8)
    image[top : top + 8, 4:12, 0] = 255
    parts = np.zeros((32, 16), np.uint8)
    parts[4:30, 2:14] = 1
    parts[0:2, :] = 2  # an occluder strip: not the person
    cues = np.zeros((32, 16), np.uint8)
    cues[top : top + 8, 4:12] = 1
    cues[28:30, 2:6] = 2
    return Sample(image, parts, cues, pid)


@pytest.mark.parametrize("method", ["cam", "ram", "gradcam"])
def test_scores_find_the_red_cue(method):
    items = [_red_sample(0, 4), _red_sample(0, 16)]
    # (a normalised 1-D embedding is constant, so this model's implicit-attention target has no gradient)
    table = explanation_scores(RedChannelModel(), items, method, **NAMES, progress=False,
                               gradcam_target="class")
    assert list(table["map"]) == ["branch 1", "all", "branch 1", "all"]  # "all" exists for every model
    assert (table["energy_cue_logo"] > 0.6).all()  # bilinear upsampling leaks some energy over the edge
    assert table["pointing_cues"].all()
    assert (table["energy_cue_logo"] > 5 * table["area_cue_logo"]).all()


def test_scores_table_on_three_branch_model():
    model = make_model(branches=3)
    rng = np.random.default_rng(0)
    items = []
    for i in range(5):
        sample = _red_sample(i % 5, 4 + 2 * i)
        noisy = rng.integers(0, 256, size=sample.image.shape, dtype=np.uint8)
        cues = sample.cues if i != 2 else np.where(sample.cues == 2, 0, sample.cues).astype(np.uint8)
        items.append(sample._replace(image=noisy, cues=cues))
    cam = explanation_scores(model, items, "cam", classes="label", **NAMES, batch_size=2,
                             progress=False)
    # A CAM with no positive cell has no energy to share: NaN, and counted by the summary.
    assert (cam["energy_cues"].between(0, 1) | cam["energy_cues"].isna()).all()
    no_positive = summarize_scores(cam).set_index("map")["n_no_positive"]
    assert no_positive.sum() == cam["energy_cues"].isna().sum()
    table = explanation_scores(model, items, "ram", **NAMES, batch_size=2, progress=False)
    whole = explanation_scores(model, items, "ram", **NAMES, batch_size=5, progress=False)
    pd.testing.assert_frame_equal(table, whole, check_exact=False, rtol=1e-4)  # batch size does not matter
    assert len(table) == 5 * 4 and set(table["map"]) == {"branch 1", "branch 2", "branch 3", "all"}
    for col in ("energy_cues", "energy_body", "energy_background", "energy_cue_logo"):
        assert table[col].between(0, 1).all()
    np.testing.assert_allclose(table["energy_body"] + table["energy_background"], 1)
    np.testing.assert_allclose(table["area_body"], (26 * 12) / (32 * 16))  # occluder rows excluded
    assert np.isnan(table.loc[table["index"] == 2, "energy_cue_shoes"]).all()  # cue absent in item 2
    assert table.loc[table["map"] == "all", "branch_overlap"].between(0, 1).all()
    assert table.loc[table["map"] != "all", "branch_overlap"].isna().all()
    summary = summarize_scores(table)
    assert list(summary["n_images"]) == [5, 5, 5, 5]
    row = summary[summary["map"] == "all"].iloc[0]
    assert row["cue_lift"] == pytest.approx(row["energy_cues"] / row["area_cues"])


def test_scores_errors():
    model = make_model()
    good = _red_sample(0, 4)
    with pytest.raises(ValueError, match="method"):
        explanation_scores(model, [good], "lime", **NAMES)
    bad = good._replace(cues=good.cues[:16])
    with pytest.raises(ValueError, match="item 1: parts"):
        explanation_scores(model, [good, bad], "cam", **NAMES, progress=False)
    with pytest.raises(ValueError, match="out of range"):
        explanation_scores(model, [good._replace(pid=40)], "cam", classes="label", **NAMES,
                           progress=False)
    with pytest.raises(ValueError, match="no `image`"):
        explanation_scores(model, [object()], "cam", **NAMES, progress=False)


def test_cue_coverage_by_hand():
    maps = torch.zeros(1, 2, 2, 2)
    maps[0, 0, 0, 0] = 1.0  # branch 1's top cell: top-left
    maps[0, 1, 1, 1] = 1.0  # branch 2's top cell: bottom-right
    cues = np.zeros((4, 4), np.uint8)
    cues[0:2, 0:2] = 1  # a cue filling the top-left cell
    cues[2, 0] = 2  # and one pixel of the bottom-left cell (covered by no branch)
    assert cue_coverage(maps, [cues], k=1) == pytest.approx(4 / 5)
    assert cue_coverage(maps[:, :1], [cues], k=1) == pytest.approx(4 / 5)
    assert np.isnan(cue_coverage(maps, [np.zeros((4, 4), np.uint8)], k=1))


def test_chance_scores_are_the_areas():
    from types import SimpleNamespace

    parts = np.zeros((4, 4), np.uint8)
    parts[:, :2] = body_label_values()[0]  # half the image is body
    cues = np.zeros((4, 4), np.uint8)
    cues[0, 3] = 1  # one cue pixel outside the body counts as body too
    s = chance_scores([SimpleNamespace(parts=parts, cues=cues)])
    assert s["area_cues"] == s["energy_cues"] == pytest.approx(1 / 16)
    assert s["area_body"] == pytest.approx(9 / 16) and s["energy_background"] == pytest.approx(7 / 16)
    with pytest.raises(ValueError, match="no samples"):
        chance_scores([])

