import re
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from reidlib.data.records import Record
from reidlib.data.synthetic import (
    CUE_NAMES,
    PART_NAMES,
    PRESETS,
    SynthReID,
    SynthReIDConfig,
    load_synthreid,
)
from reidlib.data.synthetic_attributes import (
    CUE_DIMENSIONS,
    Logo,
    PersonAttributes,
    differing_cues,
    sample_base_attributes,
)
from reidlib.data.synthetic_render import Placement, TextureBank, render_person_image
from reidlib.data.synthetic_scene import make_camera_profiles

SMALL = dict(height=64, width=32)
CUE = {name: i for i, name in enumerate(CUE_NAMES)}
PART = {name: i for i, name in enumerate(PART_NAMES)}


@pytest.fixture(scope="module")
def tiny() -> SynthReID:
    return SynthReID("tiny", seed=0, **SMALL)


@pytest.fixture(scope="module")
def market() -> SynthReID:
    return SynthReID("market", seed=0, **SMALL)


def _person(**changes) -> PersonAttributes:
    base = sample_base_attributes(np.random.default_rng(3), family=0)
    defaults = dict(bag="none", bag_colour=None, hat=None, logo=None, hair_style="short",
                    upper_pattern="solid")
    return replace(base, **{**defaults, **changes})


def _render(attrs, view, seed=0, size=(128, 64), camera=0, occlude=False):
    cams = make_camera_profiles(6, 0, low_res_camera=5)
    bank = TextureBank(size[0], size[1], 0)
    placement = Placement(cx=size[1] / 2, top=0.05 * size[0], unit=0.9 * size[0])
    return render_person_image(attrs, cams[camera], np.random.default_rng(seed), bank, view=view,
                               occlude=occlude, cut_prob=0.0, placement=placement)


# ---- determinism ---------------------------------------------------------------------------------------
def test_same_seed_same_pixels_and_masks_in_any_order(tiny: SynthReID) -> None:
    other = SynthReID("tiny", seed=0, **SMALL)
    keys = [tiny.splits.train[3].path, tiny.splits.query[1].path, tiny.splits.gallery[-1].path]
    first = [tiny.render(k) for k in keys]
    second = [other.render(k) for k in reversed(keys)][::-1]  # other order, other instance
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.parts, b.parts)
        np.testing.assert_array_equal(a.cues, b.cues)
        assert (a.pid, a.camid, a.view) == (b.pid, b.camid, b.view)
    assert other.splits.train == tiny.splits.train and other.splits.gallery == tiny.splits.gallery


def test_different_seed_differs(tiny: SynthReID) -> None:
    other = SynthReID("tiny", seed=1, **SMALL)
    key = tiny.splits.train[0].path
    assert not np.array_equal(tiny.render(key).image, other.render(key).image)
    assert other.attributes_of(1, "train") != tiny.attributes_of(1, "train")


def test_different_keys_differ(tiny: SynthReID) -> None:
    a, b = tiny.splits.train[0].path, tiny.splits.train[1].path  # same identity, same tracklet
    assert not np.array_equal(tiny.render(a).image, tiny.render(b).image)


# ---- sizes and protocol ----------------------------------------------------------------------------------
@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_preset_sizes(preset: str) -> None:
    cfg = PRESETS[preset]
    synth = SynthReID(preset, **SMALL)
    s = synth.splits
    assert len(s.train) == cfg.num_train_images
    assert s.num_train_pids == cfg.num_train_ids == len({r.pid for r in s.train})
    assert sorted({r.pid for r in s.train}) == list(range(cfg.num_train_ids))
    assert len(s.query) == cfg.num_query and len({r.pid for r in s.query}) == cfg.num_test_ids
    assert len(s.gallery) == cfg.num_gallery_test + cfg.num_distractors
    assert len(synth.junk) == cfg.num_junk and {r.pid for r in synth.junk} == {-1}


def test_market_preset_has_market1501_counts(market: SynthReID) -> None:
    s = market.splits
    assert len(s.train) == 12_936 and s.num_train_pids == 751
    assert len({r.pid for r in s.query}) == 750 and len(s.query) == 3_368
    gallery_pids = Counter(r.pid for r in s.gallery)
    assert gallery_pids[0] == 2_798  # distractors stay in the gallery, like Market's pid 0
    assert len(set(gallery_pids) - {0}) == 750
    # like load_market1501, the splits drop junk; the Market folder holds all 19,732 gallery files
    assert len(s.gallery) == 15_913 and len(s.gallery) + len(market.junk) == 19_732
    assert s.num_cameras == 6


def _check_protocol(synth: SynthReID) -> None:
    s = synth.splits
    test_pids = {r.pid for r in s.query}
    train_original = {synth.original_pid(p, "train") for p in {r.pid for r in s.train}}
    assert min(test_pids) >= 1 and not test_pids & train_original
    by_pid: dict[int, set[int]] = {}
    for r in s.gallery:
        by_pid.setdefault(r.pid, set()).add(r.camid)
    seen = set()
    for q in s.query:
        assert (q.pid, q.camid) not in seen, "at most one query per identity and camera"
        seen.add((q.pid, q.camid))
        assert by_pid[q.pid] - {q.camid}, f"query {q} has no gallery match in another camera"
    for pid in {r.pid for r in s.train}:
        assert len({r.camid for r in s.train if r.pid == pid}) >= 2


def test_every_query_has_a_cross_camera_match(tiny: SynthReID, market: SynthReID) -> None:
    _check_protocol(tiny)
    _check_protocol(market)


def test_record_keys_and_names(tiny: SynthReID) -> None:
    assert tiny.splits.train[0] == Record("synth/train/000000", tiny.splits.train[0].pid,
                                          tiny.splits.train[0].camid)
    pattern = re.compile(r"^(-1|\d{4})_c(\d)s(\d)_(\d{6})_(\d{2})\.jpg$")
    for split in ("train", "query", "gallery"):
        names = [tiny.filename(r.path) for r in getattr(tiny.splits, split)]
        assert names == sorted(names), "records follow the order of a sorted folder listing"
        for r, name in zip(getattr(tiny.splits, split), names, strict=True):
            m = pattern.match(name)
            assert m, name
            assert int(m[2]) - 1 == r.camid
    assert tiny.filename(tiny.junk[0].path).startswith("-1_c")
    assert tiny.filename(next(r.path for r in tiny.splits.gallery if r.pid == 0)).startswith("0000_c")


# ---- identities and families ----------------------------------------------------------------------------
def test_families_share_garments_and_differ_in_one_or_two_cues() -> None:
    synth = SynthReID("small", **SMALL)
    test_pids = sorted({r.pid for r in synth.splits.query})
    for split, pids in (("train", range(synth.num_train_ids)), ("test", test_pids)):
        for pid in pids:
            me = synth.attributes_of(pid, split)
            members = synth.family_members(pid, split)
            assert pid in members and len(members) in (synth.config.family_size - 1, synth.config.family_size)
            others = [synth.attributes_of(p, split) for p in members if p != pid]
            assert all(o.shared_values() == me.shared_values() for o in others)
            assert all(o != me for o in others)
            n_dims = [sum(me.cue_values()[d] != o.cue_values()[d] for d in CUE_DIMENSIONS) for o in others]
            assert min(n_dims) in (1, 2), f"{split} pid {pid}: closest sibling differs in {n_dims} cues"
            assert synth.distinctive_cues(pid, split)
            assert set(synth.distinctive_cues(pid, split)) <= set(CUE_NAMES[1:])


def test_families_do_not_span_splits_and_family_size_one_has_no_look_alikes() -> None:
    synth = SynthReID("tiny", **SMALL)
    train_families = {synth.family_of(p, "train") for p in range(synth.num_train_ids)}
    test_families = {synth.family_of(r.pid) for r in synth.splits.query}
    assert not train_families & test_families
    solo = SynthReID(replace(PRESETS["tiny"], family_size=1), **SMALL)
    assert solo.distinctive_cues(solo.splits.query[0].pid) == ()
    assert solo.look_alike_pids() == []


def test_look_alike_pids_are_whole_families(tiny: SynthReID) -> None:
    pids = tiny.look_alike_pids(n_families=2)
    families = Counter(tiny.family_of(p) for p in pids)
    assert len(families) == 2 and all(n == tiny.config.family_size for n in families.values())
    train = tiny.look_alike_pids("train", n_families=1)
    assert all(0 <= p < tiny.num_train_ids for p in train)
    assert len({tiny.family_of(p, "train") for p in train}) == 1


def test_differing_cues_names_bag_kinds() -> None:
    a = _person(bag="backpack", bag_colour="red")
    assert differing_cues(a, replace(a, bag="strap")) == ("backpack", "strap")
    shoes = "white" if a.shoe_colour != "white" else "red"
    assert differing_cues(a, replace(a, shoe_colour=shoes)) == ("shoes",)


# ---- masks ----------------------------------------------------------------------------------------------
def test_logo_visible_only_from_the_front() -> None:
    attrs = _person(logo=Logo("yellow", "chest_center", "square"))
    counts = {v: int((_render(attrs, v)[2] == CUE["logo"]).sum()) for v in ("front", "back", "side")}
    assert counts["front"] > 10 and counts["back"] == 0 and counts["side"] == 0


def test_backpack_mostly_seen_from_behind_and_shoes_always() -> None:
    attrs = _person(bag="backpack", bag_colour="red")
    cues = {v: _render(attrs, v)[2] for v in ("front", "back", "side")}
    backpack = {v: int((c == CUE["backpack"]).sum()) for v, c in cues.items()}
    assert backpack["back"] > 3 * backpack["front"] > 0 and backpack["side"] > 0
    assert all((c == CUE["shoes"]).sum() > 5 for c in cues.values())


def test_cue_pixels_lie_on_the_person_and_carry_the_cue_colour() -> None:
    attrs = _person(logo=Logo("yellow", "chest_center", "square"), upper_colour="navy", hat="red")
    image, parts, cues, view = _render(attrs, "front", size=(256, 128))
    assert view == "front"
    assert not np.any((cues > 0) & (parts == PART["background"]))
    assert set(np.unique(parts[cues == CUE["hat"]])) == {PART["accessory"]}
    logo = ndimage.binary_erosion(cues == CUE["logo"], iterations=2)  # away from blurred borders
    torso = ndimage.binary_erosion((parts == PART["torso"]) & (cues == 0), iterations=2)
    assert logo.sum() > 10
    # yellow logo on a navy shirt: clearly brighter and redder, whatever the camera does
    assert image[logo].mean(0)[0] > image[torso].mean(0)[0] + 60


def test_siblings_differ_only_inside_their_cue_masks() -> None:
    synth = SynthReID("small", seed=2, height=256, width=128)
    pid = synth.look_alike_pids(n_families=1)[0]
    checked = 0
    for other in synth.family_members(pid):
        if other == pid:
            continue
        a, b = synth.attributes_of(pid), synth.attributes_of(other)
        for view in ("front", "back", "side"):
            img_a, _, cues_a, _ = _render(a, view, seed=5, size=(256, 128))
            img_b, _, cues_b, _ = _render(b, view, seed=5, size=(256, 128))
            differs = np.abs(img_a.astype(int) - img_b.astype(int)).max(-1) > 0
            # the rim shading and lens blur spread a changed silhouette by a few pixels
            allowed = ndimage.binary_dilation((cues_a > 0) | (cues_b > 0), iterations=10)
            assert not np.any(differs & ~allowed), f"pids {pid}/{other} differ outside their cues ({view})"
            checked += int(differs.any())
    assert checked >= 2, "siblings should look different in at least some views"


def test_occluder_hides_masks() -> None:
    attrs = _person(bag="handbag", bag_colour="red")
    seen = 0
    for seed in range(12):
        _, parts, cues, _ = _render(attrs, "front", seed=seed, occlude=True)
        occluded = parts == PART["occluder"]
        assert not np.any(cues[occluded]), "an occluded pixel cannot show a cue"
        seen += int(occluded.any())
    assert seen >= 10


def test_crops_sometimes_cut_off_head_or_feet() -> None:
    def n_cut(cut_prob: float) -> int:
        synth = SynthReID(replace(PRESETS["tiny"], cut_prob=cut_prob, occlusion_prob=0.0), **SMALL)
        cut = 0
        for r in synth.splits.train[:40]:
            parts = synth.render(r.path).parts
            head_cut = np.isin(parts[0], [PART["head"], PART["hair"], PART["accessory"]]).any()
            feet_cut = np.isin(parts[-1], [PART["legs"], PART["feet"]]).any()
            cut += int(head_cut or feet_cut)
        return cut

    assert n_cut(1.0) >= 25 and n_cut(0.0) <= 8


def test_views_and_cameras_vary(tiny: SynthReID) -> None:
    samples = [tiny.render(r.path) for r in tiny.splits.train[:60]]
    assert {s.view for s in samples} == {"front", "back", "side"}
    assert {s.camid for s in samples} >= {0, 1, 2}
    assert tiny.cameras[5].low_res_factor > 1 and all(c.low_res_factor == 1 for c in tiny.cameras[:5])


def test_low_resolution_camera_loses_detail() -> None:
    attrs = _person(upper_pattern="stripes", upper_pattern_colour="white", upper_colour="black")

    def sharpness(camera: int) -> float:  # high-frequency energy relative to contrast
        img = _render(attrs, "front", size=(256, 128), camera=camera)[0].astype(float).mean(-1)
        return float(np.abs(img - ndimage.uniform_filter(img, 3)).mean() / img.std())

    assert sharpness(5) < 0.75 * min(sharpness(c) for c in range(5))


def test_distractors_and_junk_render(tiny: SynthReID) -> None:
    distractor = next(r for r in tiny.splits.gallery if r.pid == 0)
    sample = tiny.render(distractor.path)
    assert sample.pid == 0 and sample.image.shape == (64, 32, 3)
    junk = tiny.render(tiny.junk[0].path)
    assert junk.pid == -1


# ---- caching, loading, disk -------------------------------------------------------------------------
def test_load_image_and_cache_agree(tiny: SynthReID) -> None:
    key = tiny.splits.query[0].path
    image = tiny.load_image(key)
    assert image.mode == "RGB" and image.size == (32, 64)
    cached = SynthReID("tiny", seed=0, **SMALL)
    cached.precache(progress=False)
    np.testing.assert_array_equal(np.asarray(cached.load_image(key)), np.asarray(image))
    assert cached.splits.extra["image_source"](key).size == (32, 64)


def test_write_market_format_round_trips_through_the_loader(tmp_path: Path) -> None:
    from reidlib.data import market1501
    synth = SynthReID("tiny", seed=0, height=32, width=16)
    root = synth.write_market_format(tmp_path / "synth_market", progress=False)
    n_files = len(list((root / "bounding_box_test").glob("*.jpg")))
    assert n_files == len(synth.splits.gallery) + len(synth.junk)
    loaded = market1501.load_market1501(root)
    for split in ("train", "query", "gallery"):
        ours = [(r.pid, r.camid) for r in getattr(synth.splits, split)]
        theirs = [(r.pid, r.camid) for r in getattr(loaded, split)]
        assert ours == theirs, split
        names = [Path(r.path).name for r in getattr(loaded, split)]
        assert names == [synth.filename(r.path) for r in getattr(synth.splits, split)]
    assert loaded.num_train_pids == synth.splits.num_train_pids
    with pytest.raises(FileExistsError, match="not empty"):
        synth.write_market_format(root, progress=False)


def test_rendering_speed() -> None:
    synth = SynthReID("tiny", seed=0)  # 256x128, the size the speed target is for
    keys = [r.path for r in synth.splits.train[:40]]
    synth.render(keys[0])
    start = time.process_time()
    for key in keys:
        synth.render(key)
    rate = len(keys) / (time.process_time() - start)
    assert rate > 50, f"{rate:.0f} images/s; benchmarks/bench_synthetic.py measures the real number"


# ---- errors -----------------------------------------------------------------------------------------------
def test_bad_inputs_raise_clear_errors(tiny: SynthReID) -> None:
    with pytest.raises(ValueError, match="unknown SynthReID preset 'huge'"):
        SynthReID("huge")
    with pytest.raises(ValueError, match="num_query"):
        SynthReID(SynthReIDConfig(num_test_ids=10, num_query=5))
    with pytest.raises(ValueError, match="low_res_camera"):
        SynthReID(SynthReIDConfig(low_res_camera=9))
    with pytest.raises(KeyError, match="not an image key"):
        tiny.render("synth/train/999999")
    with pytest.raises(ValueError, match="distractor"):
        tiny.attributes_of(0)
    with pytest.raises(ValueError, match="train label"):
        tiny.attributes_of(tiny.num_train_ids, "train")
    with pytest.raises(ValueError, match="view must be one of"):
        _render(_person(), "top")


def test_load_synthreid_registry_entry() -> None:
    splits = load_synthreid("tiny", height=32, width=16)
    assert splits.name == "synthreid-tiny" and len(splits.train) == PRESETS["tiny"].num_train_images
    assert splits.extra["image_source"](splits.train[0].path).size == (16, 32)
