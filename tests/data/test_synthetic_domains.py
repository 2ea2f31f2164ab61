"""SynthReID's second rendering domain, and the guarantee that the default domain did not change.

The book's committed results depend on the exact pixels of the default rendering, so the first test pins
hashes of a handful of images (and of the layout, identities and cameras) computed before domain ``"b"``
existed; any change to the default draw order or arithmetic fails it.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import replace

import numpy as np
import PIL
import pytest
from scipy import ndimage

from reidlib.data.synthetic import (
    CUE_NAMES,
    DOMAINS,
    PART_NAMES,
    PRESETS,
    SynthReID,
    SynthSample,
    domain_config,
    load_synthreid,
)
from reidlib.data.synthetic_attributes import CUE_DIMENSIONS, GARMENT_COLOURS, GARMENT_PALETTES
from reidlib.data.synthetic_scene import CAMERA_STYLES, make_camera_profiles

SMALL = dict(height=64, width=32)
BACKGROUND, TORSO = PART_NAMES.index("background"), PART_NAMES.index("torso")

# Computed on the code before the domain setting was added (commit b13d1d0), with these libraries: other
# numpy or Pillow releases may round differently, so the hashes are only compared under the same ones.
HASHED_WITH = {"numpy": "2.4.6", "pillow": "13.0.0"}
same_libraries = pytest.mark.skipif(
    {"numpy": np.__version__, "pillow": PIL.__version__} != HASHED_WITH,
    reason=f"reference hashes were taken with {HASHED_WITH}")
REFERENCE_IMAGE_HASHES: dict[tuple[str, int, int], dict[str, str]] = {
    ("tiny", 256, 128): {
        "synth/train/000000": "74f79b99d067bbf4", "synth/train/000057": "dd816092b1f7bc0a",
        "synth/query/000003": "11772bf435a797e3", "synth/gallery/000000": "07138550ac89b096",
        "synth/gallery/000083": "e8524f455e3aa3aa", "synth/junk/000000": "fe7ac002958be3cf",
        "identity": "14ed5009720a7f81",
    },
    ("small", 256, 128): {
        "synth/train/000000": "74f79b99d067bbf4", "synth/train/000057": "49d49cc835df73a4",
        "synth/query/000003": "5469cf6c534ec67b", "synth/gallery/000000": "2be53be9ed9d35c3",
        "synth/gallery/003599": "1783acd0de37df06", "synth/junk/000000": "46386604653a79d8",
        "identity": "14ed5009720a7f81",
    },
    ("small", 128, 64): {
        "synth/train/000000": "a63f4201b56c02b3", "synth/train/000057": "ca503d021955f07b",
        "synth/query/000003": "031e642d7ba5d3e7", "synth/gallery/000000": "938f1d7fb4451b8a",
        "synth/gallery/003599": "df430b99177935ab", "synth/junk/000000": "88aa978a8ff7a04a",
        "identity": "611e655d7655a524",
    },
}
# (records, train identities, cameras) of seed 0 at the default size
REFERENCE_WORLD_HASHES = {
    "tiny": ("1c790b3ea85880bd", "e310ca7d3a08744e", "303f08d1301b7127"),
    "small": ("b364f134e2398698", "c4da21115ef7661c", "303f08d1301b7127"),
}


def _digest(sample: SynthSample) -> str:
    h = hashlib.sha256()
    for array in (sample.image, sample.parts, sample.cues):
        h.update(array.tobytes())
    h.update(f"{sample.pid},{sample.camid},{sample.view}".encode())
    return h.hexdigest()[:16]


def _short_sha(data: str | bytes) -> str:
    return hashlib.sha256(data if isinstance(data, bytes) else data.encode()).hexdigest()[:16]


@same_libraries
@pytest.mark.parametrize(("preset", "height", "width"), sorted(REFERENCE_IMAGE_HASHES))
def test_default_domain_renders_bit_identical_images(preset: str, height: int, width: int) -> None:
    synth = SynthReID(preset, seed=0, height=height, width=width)
    expected = REFERENCE_IMAGE_HASHES[(preset, height, width)]
    got = {key: _digest(synth.render(key)) for key in expected if key != "identity"}
    got["identity"] = _digest(synth.render_identity(1, "train", view="back", camid=5))
    assert got == expected


@same_libraries
@pytest.mark.parametrize("preset", sorted(REFERENCE_WORLD_HASHES))
def test_default_domain_keeps_layout_identities_and_cameras(preset: str) -> None:
    synth = SynthReID(preset, seed=0)
    records = repr([[(r.path, r.pid, r.camid) for r in split]
                    for split in (synth.splits.train, synth.splits.query, synth.splits.gallery, synth.junk)])
    identities = repr([synth.attributes_of(p, "train") for p in range(synth.config.num_train_ids)])
    cameras = repr([(c.colour_matrix.tobytes(), c.offset.tobytes(), c.light_top, c.blur_radius, c.wall,
                     c.floor, c.noise_std) for c in synth.cameras])
    assert (_short_sha(records), _short_sha(identities), _short_sha(cameras)) == \
        REFERENCE_WORLD_HASHES[preset]
    assert synth.splits.name == f"synthreid-{preset}"
    # what the CLI and figures print of the default world reads as before, too
    assert synth.summary().endswith("256x128 px, seed 0") and "domain" not in repr(synth)


# ---- domain "b" -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_a() -> SynthReID:
    return SynthReID("tiny", seed=0, **SMALL)


@pytest.fixture(scope="module")
def tiny_b() -> SynthReID:
    return SynthReID("tiny", seed=0, domain="b", **SMALL)


def _identity(attrs) -> object:
    """An attribute vector without its family index (families are numbered alike in both domains)."""
    return replace(attrs, family=0)


def test_domains_agree_across_modules() -> None:
    assert DOMAINS == tuple(CAMERA_STYLES) == tuple(GARMENT_PALETTES) == ("a", "b")


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_domain_b_has_the_split_sizes_of_its_preset_and_eight_cameras(preset: str) -> None:
    cfg = PRESETS[preset]
    synth = SynthReID(preset, seed=0, domain="b", **SMALL)
    s = synth.splits
    assert synth.config.domain == "b" and s.extra["domain"] == "b"
    assert s.name == f"synthreid-{preset}-b" and s.num_cameras == len(synth.cameras) == 8
    assert len(s.train) == cfg.num_train_images and s.num_train_pids == cfg.num_train_ids
    assert sorted({r.pid for r in s.train}) == list(range(cfg.num_train_ids))
    assert len(s.query) == cfg.num_query and len({r.pid for r in s.query}) == cfg.num_test_ids
    assert len(s.gallery) == cfg.num_gallery_test + cfg.num_distractors
    assert len(synth.junk) == cfg.num_junk
    assert {r.camid for r in s.train + s.query + s.gallery} == set(range(8))
    # every query still has a match in another camera (the protocol keeps it)
    gallery_cams: dict[int, set[int]] = {}
    for r in s.gallery:
        gallery_cams.setdefault(r.pid, set()).add(r.camid)
    assert all(gallery_cams[q.pid] - {q.camid} for q in s.query)
    assert [c.low_res_factor > 1 for c in synth.cameras] == [c == 3 for c in range(8)]


def test_domain_b_renders_people_with_masks(tiny_b: SynthReID) -> None:
    for record in tiny_b.splits.train[:6] + tiny_b.splits.query[:3]:
        sample = tiny_b.render(record.path, occlude=False)
        assert sample.image.shape == (64, 32, 3) and sample.image.dtype == np.uint8
        assert sample.parts.shape == sample.cues.shape == (64, 32)
        assert (sample.parts == TORSO).sum() > 20 and (sample.cues == CUE_NAMES.index("shoes")).any()
    assert tiny_b.render(tiny_b.junk[0].path).pid == -1
    again = SynthReID("tiny", seed=0, domain="b", **SMALL)
    key = tiny_b.splits.gallery[-1].path
    np.testing.assert_array_equal(again.render(key).image, tiny_b.render(key).image)


def test_ways_to_ask_for_domain_b_agree() -> None:
    config = domain_config("tiny", "b")
    assert config == domain_config(PRESETS["tiny"], "b") == domain_config(config, "b")
    assert (config.num_cameras, config.low_res_camera, config.low_res_factor) == (8, 3, 2.0)
    assert replace(config, domain="a", num_cameras=6, low_res_camera=5, low_res_factor=3.0) == PRESETS["tiny"]
    by_keyword = SynthReID("tiny", seed=0, domain="b", **SMALL)
    by_config = SynthReID(config, seed=0, **SMALL)
    key = by_keyword.splits.query[0].path
    np.testing.assert_array_equal(by_keyword.render(key).image, by_config.render(key).image)
    assert load_synthreid("tiny", domain="b").name == "synthreid-tiny-b"
    assert "domain='b'" in repr(by_keyword) and "domain b" in by_keyword.summary()
    # a plain replace keeps the preset's six cameras but renders them in domain b
    six = SynthReID(replace(PRESETS["tiny"], domain="b"), seed=0, **SMALL)
    assert len(six.cameras) == 6 and six.cameras[0].scene == by_keyword.cameras[0].scene == "snowy_path"
    assert SynthReID("tiny", seed=0, domain="a", **SMALL).splits.name == "synthreid-tiny"
    with pytest.raises(ValueError, match="domain"):
        SynthReID("tiny", domain="c")
    with pytest.raises(ValueError, match="domain"):
        SynthReID(replace(PRESETS["tiny"], domain="c"))
    with pytest.raises(ValueError, match="domain"):
        make_camera_profiles(6, 0, domain="c")


@pytest.mark.parametrize(("preset", "seed"), [("tiny", 0), ("small", 0), ("small", 1)])
def test_domain_b_is_another_population(preset: str, seed: int) -> None:
    a = SynthReID(preset, seed=seed, **SMALL)
    b = SynthReID(preset, seed=seed, domain="b", **SMALL)
    n_train, n_test = a.config.num_train_ids, a.config.num_test_ids
    ids_a = [a.attributes_of(p, "train") for p in range(n_train)]
    ids_a += [a.attributes_of(p) for p in range(n_train + 1, n_train + n_test + 1)]
    ids_b = [b.attributes_of(p, "train") for p in range(n_train)]
    ids_b += [b.attributes_of(p) for p in range(n_train + 1, n_train + n_test + 1)]
    assert not {_identity(x) for x in ids_a} & {_identity(x) for x in ids_b}
    # not even a family's shared look (garments, build, skin, hair) comes back in the other domain
    assert not {tuple(x.shared_values().items()) for x in ids_a} & \
        {tuple(x.shared_values().items()) for x in ids_b}
    # the layout is drawn anew too
    assert [(r.pid, r.camid) for r in a.splits.train] != [(r.pid, r.camid) for r in b.splits.train]


def test_domain_b_keeps_look_alike_families() -> None:
    synth = SynthReID("small", seed=0, domain="b", **SMALL)
    for pid in range(synth.num_train_ids):
        me = synth.attributes_of(pid, "train")
        members = synth.family_members(pid, "train")
        assert len(members) in (synth.config.family_size - 1, synth.config.family_size)
        others = [synth.attributes_of(p, "train") for p in members if p != pid]
        assert all(o.shared_values() == me.shared_values() and o != me for o in others)
        n_dims = [sum(me.cue_values()[d] != o.cue_values()[d] for d in CUE_DIMENSIONS) for o in others]
        assert min(n_dims) in (1, 2) and synth.distinctive_cues(pid, "train")


def test_domain_b_siblings_differ_only_inside_their_cue_masks() -> None:
    synth = SynthReID("small", seed=0, domain="b", height=256, width=128)
    pid = synth.look_alike_pids(n_families=1)[0]
    checked = 0
    for other in synth.family_members(pid):
        if other == pid:
            continue
        for view in ("front", "back", "side"):
            a = synth.render_identity(pid, view=view, camid=1, seed=3)
            b = synth.render_identity(other, view=view, camid=1, seed=3)
            differs = np.abs(a.image.astype(int) - b.image.astype(int)).max(-1) > 0
            # rim shading and domain b's softer lenses spread a changed silhouette by a few pixels
            allowed = ndimage.binary_dilation((a.cues > 0) | (b.cues > 0), iterations=10)
            assert not np.any(differs & ~allowed), f"pids {pid}/{other} differ outside their cues ({view})"
            checked += int(differs.any())
    assert checked >= 2


def _colour_statistics(synth: SynthReID) -> tuple[np.ndarray, float, float]:
    """Over one query image per test identity: mean RGB of the background pixels, mean brightness and
    mean colourfulness (max - min channel) of the torso pixels."""
    background, torso, seen = [], [], set()
    for record in synth.splits.query:
        if record.pid in seen:
            continue
        seen.add(record.pid)
        sample = synth.render(record.path, occlude=False)
        pixels = sample.image.reshape(-1, 3).astype(float)
        parts = sample.parts.reshape(-1)
        background.append(pixels[parts == BACKGROUND])
        torso.append(pixels[parts == TORSO])
    top = np.concatenate(torso)
    return np.concatenate(background).mean(0), float(top.mean()), float((top.max(1) - top.min(1)).mean())


def test_domain_b_looks_different() -> None:
    background_a, bright_a, colourful_a = _colour_statistics(SynthReID("small", seed=0, **SMALL))
    background_b, bright_b, colourful_b = _colour_statistics(SynthReID("small", seed=0, domain="b", **SMALL))
    # a's backgrounds are warm (red above blue), b's are cool: the sign of red - blue flips
    assert background_a[0] - background_a[2] > 8 and background_b[2] - background_b[0] > 8
    # winter clothes under muted, hazy cameras: tops darker and far less colourful
    assert bright_a > bright_b + 8
    assert colourful_a > 2 * colourful_b


def test_domain_b_cameras_are_another_network(tiny_a: SynthReID, tiny_b: SynthReID) -> None:
    def profile(cams) -> dict[str, float]:
        return {
            "light gradient": float(np.mean([c.light_top - c.light_bottom for c in cams])),
            "haze": float(np.mean([c.offset.mean() for c in cams])),
            "blur": float(np.mean([c.blur_radius for c in cams])),
            "noise": float(np.mean([c.noise_std for c in cams if c.low_res_factor == 1])),
            # saturation: how far the colour matrix is from mapping to grey (its 2nd singular value / 1st)
            "saturation": float(np.mean([np.linalg.svd(c.colour_matrix)[1][1:].mean()
                                         / np.linalg.svd(c.colour_matrix)[1][0] for c in cams])),
        }

    a, b = profile(tiny_a.cameras), profile(tiny_b.cameras)
    assert a["light gradient"] > b["light gradient"] + 0.1  # overcast: flat light
    assert b["haze"] > a["haze"] + 8
    assert b["blur"] > a["blur"] + 0.3
    assert a["noise"] > b["noise"] + 1.0
    assert a["saturation"] > b["saturation"] + 0.1
    assert not {c.scene for c in tiny_a.cameras} & {c.scene for c in tiny_b.cameras}
    assert all(c.domain == "b" for c in tiny_b.cameras) and all(c.domain == "a" for c in tiny_a.cameras)


def test_domain_b_dresses_people_for_winter() -> None:
    dark = {"black", "navy", "dark_grey", "dark_red", "brown", "olive", "grey"}

    def dark_share(synth: SynthReID) -> tuple[float, float]:
        people = [synth.attributes_of(p, "train") for p in range(synth.num_train_ids)]
        founders = list({x.family: x for x in people}.values())  # one per family: independent draws
        upper = Counter(x.upper_colour in dark for x in founders)
        lower = Counter(x.lower_colour in dark for x in founders)
        return upper[True] / len(founders), lower[True] / len(founders)

    upper_a, lower_a = dark_share(SynthReID("market", seed=0, **SMALL))
    upper_b, lower_b = dark_share(SynthReID("market", seed=0, domain="b", **SMALL))
    assert upper_a == pytest.approx(len(dark) / len(GARMENT_COLOURS), abs=0.08)  # uniform in domain a
    assert upper_b > upper_a + 0.25 and lower_b > lower_a + 0.15
