from dataclasses import replace
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from reidlib.data.synthetic import PART_NAMES, PRESETS, SynthReID, load_synthreid
from reidlib.figures.dataset import CUE_COLORS, cue_mask_figure, family_grid, identity_grid


@pytest.fixture(scope="module")
def synth() -> SynthReID:
    return SynthReID("tiny", seed=0, height=64, width=32)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _visible_axes(fig):
    return [ax for ax in fig.axes if ax.get_visible()]


def test_identity_grid_rows_are_identities_columns_cameras(synth: SynthReID, tmp_path: Path) -> None:
    fig = identity_grid(synth, n_ids=3, per_id=4)
    axes = np.array(fig.axes).reshape(3, 4)
    labels = [axes[r, 0].get_ylabel() for r in range(3)]
    pids = [int(label.split()[1]) for label in labels]
    assert pids == synth.look_alike_pids(n_families=2)[:3]  # default: look-alike families first
    assert all("family" in label for label in labels)
    titles = [ax.get_title() for ax in _visible_axes(fig)]
    assert titles and all(t.startswith("cam c") for t in titles)
    # each row spreads over cameras before repeating one
    for r, pid in enumerate(pids):
        cams = [ax.get_title() for ax in axes[r] if ax.get_visible()]
        n_cams = len({rec.camid for rec in synth.splits.query + synth.splits.gallery if rec.pid == pid})
        assert len(set(cams)) == min(n_cams, len(cams))
    fig.savefig(tmp_path / "grid.png")
    assert (tmp_path / "grid.png").stat().st_size > 1000


def test_identity_grid_from_splits_and_records(synth: SynthReID, tmp_path: Path) -> None:
    splits = load_synthreid("tiny", height=32, width=16)
    fig = identity_grid(splits, n_ids=2, per_id=3)
    assert len(fig.axes) == 6 and "synthreid-tiny" in fig._suptitle.get_text()
    # records from disk: default loader opens the files
    pid = synth.splits.query[0].pid
    records = [r for r in synth.splits.query + synth.splits.gallery if r.pid == pid][:2]
    on_disk = []
    for i, r in enumerate(records):
        path = tmp_path / f"{i}.png"
        synth.load_image(r.path).save(path)
        on_disk.append(r._replace(path=str(path)))
    fig = identity_grid(on_disk, pids=[pid], per_id=2)
    shown = fig.axes[0].images[0].get_array()
    np.testing.assert_array_equal(np.asarray(shown), np.asarray(Image.open(on_disk[0].path)))


def test_identity_grid_bad_inputs(synth: SynthReID) -> None:
    with pytest.raises(ValueError, match="no images of pid"):
        identity_grid(synth, pids=[99999])
    with pytest.raises(ValueError, match="n_ids and per_id"):
        identity_grid(synth, n_ids=0)
    with pytest.raises(TypeError, match="SynthReID, ReIDSplits or a list"):
        identity_grid(42)
    with pytest.raises(FileNotFoundError, match="cannot read image"):
        identity_grid([("/nonexistent/x.jpg", 1, 0)], pids=[1], per_id=1)


def test_family_grid_outlines_distinctive_cues(synth: SynthReID) -> None:
    fig = family_grid(synth, n_families=2)
    rows = [ax for ax in fig.axes if ax.get_ylabel().startswith("family")]
    assert len(rows) == 2
    titled = [ax for ax in _visible_axes(fig) if ax.get_title().startswith("pid")]
    assert len(titled) == len(synth.look_alike_pids(n_families=2))
    outlined = sum(len(ax.collections) for ax in titled)
    assert outlined > 0
    legend_names = {t.get_text() for t in fig.legends[0].get_texts()}
    assert legend_names and legend_names <= set(CUE_COLORS)
    solo = SynthReID(replace(PRESETS["tiny"], family_size=1), height=64, width=32)
    with pytest.raises(ValueError, match="no families"):
        family_grid(solo)


def test_cue_mask_figure_panels_and_legends(synth: SynthReID) -> None:
    key = synth.splits.train[0].path
    sample = synth.render(key)
    fig = cue_mask_figure(sample)
    image_ax, parts_ax, cues_ax = fig.axes
    np.testing.assert_array_equal(image_ax.images[0].get_array(), sample.image)
    part_legend = [t.get_text() for t in parts_ax.get_legend().get_texts()]
    assert part_legend == [PART_NAMES[i] for i in range(1, len(PART_NAMES)) if np.any(sample.parts == i)]
    assert cues_ax.get_title() == "identity cues"
    fig = cue_mask_figure(synth, key)
    assert "family" in fig._suptitle.get_text()
    with pytest.raises(ValueError, match="record key"):
        cue_mask_figure(synth)
    with pytest.raises(ValueError, match="alpha"):
        cue_mask_figure(sample, alpha=2.0)
