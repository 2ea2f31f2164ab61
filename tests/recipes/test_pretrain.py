"""The pre-trained SynthReID trunk: cache reuse and rebuilds, a population disjoint from the chapters',
and loading it into a backbone. Smoke pretraining (18 identities, one epoch) takes about a second."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from reidlib.data.synthetic import SynthReID
from reidlib.data.synthetic_attributes import PersonAttributes
from reidlib.models.backbone import build_backbone
from reidlib.recipes import pretrain
from reidlib.results.overview import pretrain_table
from reidlib.results.store import load_run

SMOKE = pretrain.SCALE_CONFIGS["smoke"]
#: The SynthReID presets and world seeds the chapters draw (seeds 0-9 cover every chapter's data seed).
CHAPTER_PRESETS = ("tiny", "small")
CHAPTER_SEEDS = range(10)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A cache and results root holding the smoke trunk, trained once for the module."""
    root = tmp_path_factory.mktemp("pretrained")
    pretrain.trunk_file(SMOKE, root=root / "cache", results_root=root / "results")
    return root


@pytest.fixture()
def cache(built, tmp_path) -> Path:
    """A private copy of the built cache root (tests may corrupt it)."""
    shutil.copytree(built / "cache", tmp_path / "cache")
    return tmp_path / "cache"


@pytest.fixture()
def calls(monkeypatch) -> list[str]:
    """Names of the configs :func:`pretrain.pretrain` trains from now on (it still trains)."""
    seen: list[str] = []
    real = pretrain.pretrain

    def counting(cfg, *args, **kwargs):
        seen.append(cfg.key)
        return real(cfg, *args, **kwargs)

    monkeypatch.setattr(pretrain, "pretrain", counting)
    return seen


def _trunk(cache: Path, cfg: pretrain.PretrainConfig = SMOKE) -> Path:
    return pretrain.cache_folder(cfg, cache) / pretrain.TRUNK_FILE


# ------------------------------------------------------------------------------------------ config


def test_names_keys_and_scales():
    assert SMOKE.name == "resnet18w8" and pretrain.SCALE_CONFIGS["cpu"].name == "resnet18w16"
    assert re.fullmatch(r"[0-9a-f]{12}", SMOKE.key)
    assert SMOKE.key == dataclasses.replace(SMOKE).key  # a pure function of the config
    assert len({dataclasses.replace(SMOKE, **change).key for change in
                ({}, {"seed": 1}, {"epochs": 2}, {"lr": 1e-3}, {"population_seed": 1},
                 {"cpu_bf16": True})}) == 6
    assert json.loads(json.dumps(SMOKE.as_dict()))["lr_milestones"] == []
    assert pretrain.trunk_config("cpu", 34, 8).name == "resnet34w8"
    with pytest.raises(ValueError, match="'full'"):
        pretrain.trunk_config("full", 18, 16)
    with pytest.raises(ValueError, match="'full'"):
        pretrain.chapter_trunks("full")
    with pytest.raises(ValueError, match="ImageNet"):
        pretrain.PretrainConfig(base_width=64)


@pytest.mark.parametrize("scale", ["smoke", "cpu"])
def test_chapter_trunks_are_the_trunks_the_chapters_load(scale):
    # what `python -m reidlib pretrain` and `make book` build first: every (depth, width) a chapter run of
    # that scale starts from, and nothing else
    from reidlib.recipes import cama, fmn
    from reidlib.recipes import reid_done_right as rdr

    loaded = set()
    for name in cama.RUNS:
        cfg = cama.run_config(name, cama.SCALE_CONFIGS[scale])
        if cfg.pretrained and cfg.base_width != 64:
            loaded.add((cfg.depth, cfg.base_width))
    for name in rdr.RUNS:
        cfg = rdr.run_config(name, rdr.SCALE_CONFIGS[scale])
        if rdr.uses_trunk(cfg):
            loaded.add((cfg.depth, cfg.base_width))
    for name in fmn.RUNS:
        cfg = fmn.run_config(name, fmn.SCALE_CONFIGS[scale])
        if cfg.pretrained and cfg.base_width != 64:
            loaded.add((cfg.depth, cfg.base_width))
    assert sorted(pretrain.CHAPTER_TRUNKS[scale]) == sorted(loaded)
    trunks = pretrain.chapter_trunks(scale)
    assert [(c.depth, c.base_width) for c in trunks] == list(pretrain.CHAPTER_TRUNKS[scale])
    assert {c.scale for c in trunks} == {scale}
    assert len(set(pretrain.CHAPTER_TRUNKS[scale])) == len(pretrain.CHAPTER_TRUNKS[scale])


def test_chapter_weights_and_keys(monkeypatch, tmp_path, calls):
    assert pretrain.backbone_weights("cpu", 50, 64, True) is True  # ImageNet at width 64
    assert pretrain.backbone_weights("cpu", 18, 16, False) is False
    assert pretrain.trunk_key("full", 50, 64, True) is None
    assert pretrain.trunk_key("cpu", 18, 16, False) is None
    assert pretrain.trunk_key("smoke", 18, 8, True) == SMOKE.key
    assert calls == []
    monkeypatch.setenv(pretrain.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv("REIDLIB_RESULTS", str(tmp_path / "results"))
    path = pretrain.backbone_weights("smoke", 18, 8, True)
    assert path == tmp_path / "cache" / "pretrain" / f"smoke-resnet18w8-{SMOKE.key}" / "trunk.pt"
    assert calls == [SMOKE.key]


# ------------------------------------------------------------------------------------------- cache


def test_training_writes_trunk_record_and_results_file(built):
    trunk = _trunk(built / "cache")
    record = pretrain.read_record(SMOKE, built / "cache")
    assert record["key"] == SMOKE.key and record["config"] == SMOKE.as_dict()
    assert record["identities"] == 18 and record["images"] == 108
    assert pretrain.cache_problem(SMOKE, built / "cache") is None
    run = load_run("pretrain", SMOKE.name, "smoke", built / "results")
    assert run.extra["key"] == SMOKE.key and run.extra["sha256"] == record["sha256"]
    assert run.extra["population_seed"] == pretrain.POPULATION_SEED
    assert set(run.metrics) == {"train_acc", "train_loss"}
    assert [h["epoch"] for h in run.history] == [1] and {"loss", "acc", "lr"} <= set(run.history[0])
    assert trunk.is_file() and not (trunk.parent / "run").exists()  # the trainer's run folder is removed
    row = pretrain_table("smoke", built / "results").iloc[0]  # what the book shows of it
    assert (row["trunk"], row["key"], row["identities"], row["epochs"]) == (SMOKE.name, SMOKE.key, 18, 1)


def test_matching_key_reuses_the_cache(cache, monkeypatch, capsys):
    trunk = _trunk(cache)
    stamp = trunk.stat().st_mtime_ns

    def refuse(*args, **kwargs):
        raise AssertionError("trained although a valid trunk was cached")

    monkeypatch.setattr(pretrain, "pretrain", refuse)
    assert pretrain.trunk_file(SMOKE, root=cache) == trunk
    assert trunk.stat().st_mtime_ns == stamp
    assert capsys.readouterr().out == ""


def test_another_config_gets_its_own_folder_and_trains(cache, tmp_path, calls):
    other = dataclasses.replace(SMOKE, seed=1)
    path = pretrain.trunk_file(other, root=cache, results_root=tmp_path / "results")
    assert calls == [other.key]
    assert path.parent != _trunk(cache).parent and other.key in path.parent.name
    assert pretrain.cache_problem(SMOKE, cache) is None  # the first trunk is untouched


@pytest.mark.parametrize("damage", ["appended", "truncated"])
def test_corrupt_trunk_is_rebuilt_with_a_message(cache, tmp_path, calls, capsys, damage):
    trunk = _trunk(cache)
    data = trunk.read_bytes()
    trunk.write_bytes(data + b"\0junk" if damage == "appended" else data[: len(data) // 2])
    assert pretrain.trunk_file(SMOKE, root=cache, results_root=tmp_path / "results") == trunk
    out = capsys.readouterr().out
    assert "unusable" in out and str(trunk) in out and "SHA-256" in out
    assert calls == [SMOKE.key]
    assert pretrain.cache_problem(SMOKE, cache) is None
    build_backbone(SMOKE.depth, SMOKE.base_width, pretrained=trunk)  # a loadable trunk again


def test_record_with_another_key_is_rebuilt_with_a_message(cache, tmp_path, calls, capsys):
    record_path = pretrain.cache_folder(SMOKE, cache) / pretrain.RECORD_FILE
    record = json.loads(record_path.read_text())
    record_path.write_text(json.dumps({**record, "key": "0123456789ab"}))
    pretrain.trunk_file(SMOKE, root=cache, results_root=tmp_path / "results")
    out = capsys.readouterr().out
    assert str(record_path) in out and "0123456789ab" in out
    assert calls == [SMOKE.key]
    assert pretrain.read_record(SMOKE, cache)["key"] == SMOKE.key


def test_missing_record_is_rebuilt_with_a_message(cache, tmp_path, calls, capsys):
    record_path = pretrain.cache_folder(SMOKE, cache) / pretrain.RECORD_FILE
    record_path.unlink()
    pretrain.trunk_file(SMOKE, root=cache, results_root=tmp_path / "results")
    assert str(record_path) in capsys.readouterr().out
    assert calls == [SMOKE.key] and pretrain.cache_problem(SMOKE, cache) is None


def test_trunks_of_one_population_and_size_share_one_rendering(monkeypatch):
    rendered: list[tuple[int, int]] = []

    class World:
        def __init__(self, cfg):
            self.size = (cfg.height, cfg.width)

        def precache(self, splits, progress=True):
            rendered.append(self.size)

    monkeypatch.setattr(pretrain, "population", World)
    monkeypatch.setattr(pretrain, "_RENDERED", {})
    r18 = pretrain.rendered_population(SMOKE)
    assert pretrain.rendered_population(dataclasses.replace(SMOKE, depth=10)) is r18  # another depth
    assert pretrain.rendered_population(dataclasses.replace(SMOKE, cpu_bf16=True)) is r18
    other = pretrain.rendered_population(dataclasses.replace(SMOKE, height=32, width=16))
    assert other is not r18 and rendered == [(64, 32), (32, 16)]
    assert len(pretrain._RENDERED) == 1  # one world held at a time


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(pretrain.CACHE_ENV, str(tmp_path))
    assert pretrain.cache_folder(SMOKE).parent == tmp_path / "pretrain"
    assert pretrain.cache_folder(SMOKE, tmp_path / "x").parent == tmp_path / "x" / "pretrain"
    monkeypatch.delenv(pretrain.CACHE_ENV)
    assert pretrain.cache_root().name == ".cache"


# -------------------------------------------------------------------------------------- population


def _looks(world: SynthReID) -> set[PersonAttributes]:
    """How every identity of ``world`` (train and test) looks: its attributes without the family index,
    which only numbers families inside one world."""
    n_train, n_test = world.config.num_train_ids, world.config.num_test_ids
    people = [world.attributes_of(label, "train") for label in range(n_train)]
    people += [world.attributes_of(pid, "test") for pid in range(n_train + 1, n_train + n_test + 1)]
    return {dataclasses.replace(p, family=0) for p in people}


@pytest.mark.parametrize("scale", ["smoke", "cpu"])
def test_population_is_disjoint_from_every_chapter_world(scale):
    cfg = pretrain.SCALE_CONFIGS[scale]
    world = pretrain.population(cfg)
    expected_ids = {"smoke": 18, "cpu": 1_500}[scale]
    assert world.num_train_ids == expected_ids and world.seed == pretrain.POPULATION_SEED
    population = _looks(world)
    assert len(population) == expected_ids + world.config.num_test_ids  # no two identities look alike
    for preset in CHAPTER_PRESETS:
        for seed in CHAPTER_SEEDS:
            shared = population & _looks(SynthReID(preset, seed=seed))
            assert not shared, f"{len(shared)} people of SynthReID {preset!r} seed {seed} are pre-trained on"


def test_the_disjointness_check_sees_a_shared_world():
    # the same seed draws the same people: a chapter drawn with the population's seed would share them all
    world = pretrain.population(SMOKE)
    same = SynthReID("tiny", seed=pretrain.POPULATION_SEED)
    assert {world.attributes_of(i, "train") for i in range(18)} == {same.attributes_of(i, "train")
                                                                    for i in range(18)}


# ------------------------------------------------------------------------------------------ loading


def test_build_backbone_loads_the_trunk(built):
    trunk = _trunk(built / "cache")
    state = torch.load(trunk, map_location="cpu", weights_only=True)
    for last_stride in (2, 1):  # the stride of stage 4 does not change the weights
        backbone = build_backbone(SMOKE.depth, SMOKE.base_width, pretrained=trunk, last_stride=last_stride)
        loaded = backbone.state_dict()
        assert loaded.keys() == state.keys()
        assert all(torch.equal(loaded[k], state[k]) for k in state)
    fresh = build_backbone(SMOKE.depth, SMOKE.base_width).state_dict()
    assert not all(torch.equal(fresh[k], state[k]) for k in state if k.endswith("weight"))


def test_build_backbone_refuses_a_trunk_of_another_shape(built):
    trunk = _trunk(built / "cache")
    with pytest.raises(ValueError, match=re.escape(str(trunk))):
        build_backbone(SMOKE.depth, 16, pretrained=trunk)
    with pytest.raises(ValueError, match=re.escape(str(trunk))):
        build_backbone(10, SMOKE.base_width, pretrained=trunk)


def test_imagenet_weights_at_a_narrow_width_are_refused():
    with pytest.raises(ValueError, match="ImageNet"):
        build_backbone(18, 8, pretrained=True)
