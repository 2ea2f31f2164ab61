import dataclasses
import json
from dataclasses import dataclass

import pytest
import torch

from reidlib.data.records import Record, ReIDSplits
from reidlib.engine.callbacks import Callback
from reidlib.engine.config import OptimizerConfig, TrainConfig
from reidlib.engine.trainer import Trainer
from reidlib.recipes import chapter
from reidlib.recipes.chapter import ChapterConfig, ChapterData, RunContext
from tests.engine.conftest import TinyReID, ce_loss, shuffled_loader


@dataclass
class ToyConfig(ChapterConfig):
    epochs: int = 3
    lr: float = 1e-2

    @property
    def render_size(self) -> tuple[int, int]:
        return 8, 4


CONFIGS = {"smoke": ToyConfig(scale="smoke", epochs=2), "cpu": ToyConfig(scale="cpu")}


class Crash(Callback):
    """Interrupts training after ``epoch`` epochs (a Ctrl-C or a killed kernel)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, trainer, epoch, logs):
        if epoch + 1 == self.epoch:
            raise KeyboardInterrupt


def _ctx(tmp_path, reuse=False) -> RunContext:
    splits = ReIDSplits("toy", [Record("a", 0, 0)], [Record("q", 1, 0)], [Record("g", 1, 1)], 1, 2)
    data = ChapterData(splits, image_source=lambda p: None, synth=None, name="toy")
    return RunContext("toy_chapter", data, reuse=reuse, results_root=tmp_path / "results",
                      runs_dir=tmp_path / "runs")


def _run(ctx, cfg, name="run", callbacks=(), evaluate=None, calls=None):
    calls = calls if calls is not None else []

    def train(model, folder):
        calls.append("train")
        train_cfg = TrainConfig(epochs=cfg.epochs, optimizer=OptimizerConfig(name="adam", lr=cfg.lr),
                                seed=cfg.seed, progress="none")
        trainer = Trainer(model, ce_loss, shuffled_loader(seed=cfg.seed), train_cfg, folder,
                          callbacks=list(callbacks), record={"toy": dataclasses.asdict(cfg)})
        return trainer.fit_or_resume().to_list()

    def default_evaluate(model):
        return {"mAP": float(model.classifier.weight.detach().abs().mean()), "rank1": 0.5}, {"note": 1}

    return chapter.train_run(ctx, name, cfg, build=TinyReID, train=train,
                             evaluate=evaluate or default_evaluate)


def test_config_for_names_unknown_fields_and_scales(monkeypatch):
    monkeypatch.delenv("REIDLIB_SCALE", raising=False)
    assert chapter.config_for(CONFIGS, "smoke", lr=0.5) == ToyConfig(scale="smoke", epochs=2, lr=0.5)
    with pytest.raises(ValueError, match=r"unknown ToyConfig field\(s\) \['epoch'\]"):
        chapter.config_for(CONFIGS, "smoke", epoch=3)
    with pytest.raises(ValueError, match="no config for scale 'full'"):
        chapter.config_for(CONFIGS, "full")
    monkeypatch.setenv("REIDLIB_SCALE", "smoke")
    assert chapter.config_for(CONFIGS, "cpu").scale == "smoke"


def test_base_config_checks_scale_dataset_and_seed():
    with pytest.raises(ValueError, match="ToyConfig.dataset 'viper'"):
        ToyConfig(dataset="viper")
    with pytest.raises(ValueError, match="scale"):
        ToyConfig(scale="huge")
    with pytest.raises(ValueError, match="seed"):
        ToyConfig(seed=-1)
    assert ToyConfig(dataset="market1501").dataset == "market1501"  # every registered dataset


def test_run_config_applies_overrides_and_names_unknown_runs():
    runs = {"a": {"lr": 0.1}, "b": {"seed": 3}}
    assert chapter.run_config(runs, "a", CONFIGS["cpu"]).lr == 0.1
    with pytest.raises(ValueError, match=r"unknown run 'c'; runs: \['a', 'b'\]"):
        chapter.run_config(runs, "c", CONFIGS["cpu"])


def test_a_run_writes_results_and_weights_and_is_reused_only_with_the_same_config(tmp_path):
    cfg = CONFIGS["smoke"]
    calls: list[str] = []
    first = _run(_ctx(tmp_path), cfg, calls=calls)
    folder = tmp_path / "runs" / "toy_chapter" / "smoke" / "run"
    assert (folder / chapter.WEIGHTS_FILE).is_file() and not (folder / "latest.pt").exists()
    stored = json.loads((tmp_path / "results" / "toy_chapter" / "smoke" / "run.json").read_text())
    assert stored["config"]["epochs"] == 2 and stored["extra"] == {"note": 1} and len(stored["history"]) == 2
    assert not first.record.reused and calls == ["train"]

    again = _run(_ctx(tmp_path, reuse=True), cfg, calls=calls)
    assert again.record.reused and calls == ["train"]  # loaded, not trained
    for p, q in zip(first.model.state_dict().values(), again.model.state_dict().values(), strict=True):
        assert torch.equal(p, q)

    changed = _run(_ctx(tmp_path, reuse=True), dataclasses.replace(cfg, lr=0.05), calls=calls)
    assert not changed.record.reused and calls == ["train", "train"]

    (folder / chapter.WEIGHTS_FILE).unlink()  # results file without weights: cannot be reused
    _run(_ctx(tmp_path, reuse=True), dataclasses.replace(cfg, lr=0.05), calls=calls)
    assert calls == ["train"] * 3


def test_a_failed_run_leaves_no_results_file(tmp_path):
    cfg = CONFIGS["smoke"]
    results = tmp_path / "results" / "toy_chapter" / "smoke"

    def broken(model):
        raise RuntimeError("evaluation failed")

    with pytest.raises(RuntimeError, match="evaluation failed"):
        _run(_ctx(tmp_path), cfg, evaluate=broken)
    assert not results.exists() or not list(results.iterdir())

    good = _run(_ctx(tmp_path), cfg)
    before = (results / "run.json").read_text()
    with pytest.raises(KeyboardInterrupt):
        _run(_ctx(tmp_path), dataclasses.replace(cfg, lr=0.3), callbacks=[Crash(1)])
    assert (results / "run.json").read_text() == before  # the finished run's file is untouched
    assert [p.name for p in results.iterdir()] == ["run.json"]  # and no temporary file is left
    assert good.metrics["rank1"] == 0.5


def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path):
    cfg = dataclasses.replace(CONFIGS["cpu"], epochs=3)
    whole = _run(_ctx(tmp_path / "a"), cfg)
    with pytest.raises(KeyboardInterrupt):
        _run(_ctx(tmp_path / "b"), cfg, callbacks=[Crash(2)])
    assert (tmp_path / "b" / "runs" / "toy_chapter" / "cpu" / "run" / "latest.pt").is_file()
    resumed = _run(_ctx(tmp_path / "b"), cfg)
    for p, q in zip(whole.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(p, q)
    assert len(resumed.record.history) == 3


def test_a_checkpoint_of_another_config_is_not_resumed(tmp_path):
    cfg = CONFIGS["cpu"]
    with pytest.raises(KeyboardInterrupt):
        _run(_ctx(tmp_path), cfg, callbacks=[Crash(1)])
    run = _run(_ctx(tmp_path), dataclasses.replace(cfg, lr=0.02))
    assert len(run.record.history) == cfg.epochs and run.record.config["lr"] == 0.02


class EpochsRun(Callback):
    def __init__(self) -> None:
        self.epochs: list[int] = []

    def on_epoch_start(self, trainer, epoch):
        self.epochs.append(epoch)


@pytest.mark.parametrize("marker", ["another trunk", "missing"])
def test_a_checkpoint_of_another_trunk_is_not_resumed(tmp_path, capsys, marker):
    # the recipe's config does not name the pre-trained trunk: the run folder's identity file does
    cfg = dataclasses.replace(CONFIGS["cpu"], epochs=3)
    with pytest.raises(KeyboardInterrupt):
        _run(_ctx(tmp_path), cfg, callbacks=[Crash(2)])
    folder = tmp_path / "runs" / "toy_chapter" / "cpu" / "run"
    identity = json.loads((folder / chapter.IDENTITY_FILE).read_text())
    assert identity["data_identity"] == _ctx(tmp_path).data.identity and identity["config"]["epochs"] == 3
    if marker == "missing":
        (folder / chapter.IDENTITY_FILE).unlink()
    else:  # as if it had been interrupted while training from another trunk
        identity["config"]["pretrained_trunk"] = "0123456789ab"
        (folder / chapter.IDENTITY_FILE).write_text(json.dumps(identity))
    capsys.readouterr()
    seen = EpochsRun()
    _run(_ctx(tmp_path), cfg, callbacks=[seen])
    out = capsys.readouterr().out
    assert seen.epochs == [0, 1, 2]  # trained from the start, not resumed after epoch 1
    assert "not resuming" in out
    assert ("config.pretrained_trunk" if marker != "missing" else chapter.IDENTITY_FILE) in out


def test_an_interrupted_run_of_the_same_identity_resumes(tmp_path, capsys):
    cfg = dataclasses.replace(CONFIGS["cpu"], epochs=3)
    with pytest.raises(KeyboardInterrupt):
        _run(_ctx(tmp_path), cfg, callbacks=[Crash(2)])
    seen = EpochsRun()
    _run(_ctx(tmp_path), cfg, callbacks=[seen])
    assert seen.epochs == [1, 2] and "not resuming" not in capsys.readouterr().out  # after its epoch 1


def test_evaluation_run_records_its_source(tmp_path):
    ctx = _ctx(tmp_path)
    rec = chapter.evaluation_run(ctx, "derived", {"scale": "smoke", "seed": 0, "x": 1},
                                 lambda: ({"mAP": 0.25, "rank1": 0.5}, {"k": 2}), evaluated_from="run")
    assert rec.extra == {"evaluated_from": "run", "k": 2} and rec.metrics["mAP"] == 0.25
    assert chapter.log_line("derived", rec, 3.2) == "           derived: mAP  25.0  rank-1  50.0  (3 s)"


def test_family_mask_marks_look_alikes():
    class Synth:
        def family_of(self, pid):
            return pid // 10

    splits = ReIDSplits("s", [], [], [], 0, 1)
    data = ChapterData(splits, image_source=lambda p: None, synth=Synth(), name="s")
    mask = data.family_mask([11, 23], [12, 25, 0])
    assert mask.tolist() == [[True, False, False], [False, True, False]]
    assert data.family_of(0) == -1
    assert ChapterData(splits, lambda p: None, None, "real").family_mask([1], [1]) is None


def test_two_arms_with_one_seed_see_the_same_batches():
    """The pairing of the verdict protocol: a loader's order depends on the seed only."""
    from PIL import Image

    from reidlib.data.transforms import build_test_transform

    splits = ReIDSplits("toy", [Record(f"t{i}", i % 4, i % 2) for i in range(24)], [], [], 4, 2)
    data = ChapterData(splits, image_source=lambda p: Image.new("RGB", (8, 16)),
                       synth=None, name="toy")
    tf = build_test_transform(16, 8)
    order = [b["index"].tolist() for b in chapter.train_loader(data, tf, batch_size=8, seed=3)]
    torch.manual_seed(123)  # whatever another arm did to the global RNG before
    again = [b["index"].tolist() for b in chapter.train_loader(data, tf, batch_size=8, seed=3)]
    other = [b["index"].tolist() for b in chapter.train_loader(data, tf, batch_size=8, seed=4)]
    assert order == again and order != other


def test_seed_replicas_give_every_arm_the_same_seeds():
    runs = {"a": {"x": 1}, "b": {}}
    replicas = chapter.seed_replicas(runs, ["a", "b"], (1, 2))
    assert replicas == {"a_seed1": {"x": 1, "seed": 1}, "a_seed2": {"x": 1, "seed": 2},
                        "b_seed1": {"seed": 1}, "b_seed2": {"seed": 2}}
    with pytest.raises(KeyError, match="nope"):
        chapter.seed_replicas(runs, ["nope"], (1,))


def test_the_world_is_drawn_with_data_seed_whatever_the_training_seed():
    assert ToyConfig(seed=2).synth_seed == ToyConfig(seed=0).synth_seed == 0
    assert ToyConfig(seed=2, data_seed=5).synth_seed == 5
    with pytest.raises(ValueError, match="data_seed"):
        ToyConfig(data_seed=-1)


def test_explanation_batch_renders_one_image_per_identity_first():
    from reidlib.recipes import hybrid_attention as ha

    cfg = ha.config_for("smoke")
    data = chapter.load_data(cfg)
    records, items, images = chapter.explanation_batch(data, 5, cfg.height, cfg.width)
    assert len({r.pid for r in records}) == 5 and images.shape == (5, 3, cfg.height, cfg.width)
    assert all(item.cues.shape == (cfg.height, cfg.width) for item in items)
    real = dataclasses.replace(data, synth=None, name="market1501")
    with pytest.raises(ValueError, match="market1501: explanation scores need SynthReID"):
        chapter.explanation_batch(real, 5, cfg.height, cfg.width)


def test_cached_test_batches_equal_the_loader_and_are_kept_once():
    from reidlib.data.transforms import build_test_transform

    data = chapter.load_data(_ha_smoke())
    cfg = _ha_smoke()
    tf = build_test_transform(cfg.height, cfg.width)
    records = data.splits.gallery
    first = chapter.cached_test_batches(data, records, tf, "gallery", (cfg.height, cfg.width), batch_size=16)
    assert chapter.cached_test_batches(data, records, tf, "gallery", (cfg.height, cfg.width)) is first
    streamed = list(chapter.test_loader(data, records, tf, batch_size=16))
    assert len(first) == len(streamed)
    for a, b in zip(first, streamed, strict=True):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["pid"], b["pid"])
    too_big = chapter.cached_test_batches(data, records, tf, "big", (cfg.height, cfg.width), max_bytes=1)
    assert not isinstance(too_big, list) and ("test batches", "big") not in data.cache


def _ha_smoke():
    from reidlib.recipes import hybrid_attention as ha

    return ha.config_for("smoke")


def test_identity_loader_on_the_device_path_keeps_the_sampler_order():
    from PIL import Image

    from reidlib.data.device_augment import DeviceAugment, DeviceLoader
    from reidlib.data.samplers import RandomIdentitySampler

    train = [Record(f"t{i}.png", i // 4, i % 3) for i in range(24)]
    splits = ReIDSplits("toy", train, [], [], 6, 3)
    data = ChapterData(splits, image_source=lambda p: Image.new("RGB", (8, 16), (int(p[1:-4]), 0, 0)),
                       synth=None, name="toy")
    augment = DeviceAugment(flip=False, pad=0, normalize=False)
    loader = chapter.identity_loader(data, None, 8, 4, seed=5, device_augment=augment, size=(16, 8))
    assert isinstance(loader, DeviceLoader) and len(loader) == 3
    order = list(RandomIdentitySampler(train, 8, 4, seed=5))
    first = next(iter(loader))
    assert first["index"].tolist() == order[:8]
    assert torch.allclose(first["image"][:, 0, 0, 0] * 255, torch.tensor(order[:8], dtype=torch.float32))
    again = chapter.identity_loader(data, None, 8, 4, seed=5, device_augment=augment, size=(16, 8))
    assert again.bank is loader.bank  # resized once per size, kept in data.cache
    with pytest.raises(ValueError, match="needs the training size"):
        chapter.identity_loader(data, None, 8, 4, seed=5, device_augment=augment)
    with pytest.raises(ValueError, match="give a transform or a device_augment"):
        chapter.identity_loader(data, None, 8, 4, seed=5)


def _toy_data():
    from PIL import Image

    train = [Record(f"t{i}.png", i // 4, i % 3) for i in range(24)]
    splits = ReIDSplits("toy", train, [], [], 6, 3)
    return ChapterData(splits, image_source=lambda p: Image.new("RGB", (8, 16), (int(p[1:-4]), 0, 0)),
                       synth=None, name="toy")


def test_shuffled_batches_on_the_device_path_follow_the_seed():
    from reidlib.data.device_augment import DeviceAugment, DeviceLoader

    data = _toy_data()
    augment = DeviceAugment(flip=False, pad=0, normalize=False)

    def epoch(seed):
        loader = chapter.train_loader(data, None, 8, seed, device_augment=augment, size=(16, 8))
        assert isinstance(loader, DeviceLoader) and len(loader) == 3
        batches = list(loader)
        for b in batches:  # each image is the record it says it is
            assert torch.allclose(b["image"][:, 0, 0, 0] * 255, b["index"].float())
        return torch.cat([b["index"] for b in batches]).tolist()

    first = epoch(3)
    assert sorted(first) == list(range(24)) and first != list(range(24))
    assert epoch(3) == first and epoch(4) != first
    with pytest.raises(ValueError, match="train_loader: device_augment needs the training size"):
        chapter.train_loader(data, None, 8, 3, device_augment=augment)


@pytest.mark.parametrize("num_instances", [None, 4])
def test_augmented_loader_picks_the_pipeline_and_the_batches(num_instances):
    from torch.utils.data import DataLoader

    from reidlib.data.device_augment import DeviceLoader
    from reidlib.data.samplers import DistributedIdentitySampler

    data = _toy_data()
    pil = chapter.augmented_loader(data, 16, 8, 8, 1, pad=2, random_erasing=0.5, num_instances=num_instances)
    tensors = chapter.augmented_loader(data, 16, 8, 8, 1, pad=2, random_erasing=0.5,
                                       num_instances=num_instances, batch_wise=True)
    assert isinstance(pil, DataLoader) and isinstance(tensors, DeviceLoader)
    assert isinstance(tensors.sampler, DistributedIdentitySampler) == (num_instances is not None)
    assert tensors.augment.pad == 2 and tensors.augment.random_erasing == 0.5
    a, b = next(iter(pil)), next(iter(tensors))
    assert a["image"].shape == b["image"].shape == (8, 3, 16, 8)
    if num_instances is not None:  # the same identities in the same order on both paths
        assert a["pid"].tolist() == b["pid"].tolist()


def test_a_config_field_of_the_shared_layer_refused_where_the_recipe_cannot_honour_it():
    from reidlib.recipes import reid_done_right as rdr

    with pytest.raises(ValueError, match="RdrConfig.device_augment"):
        rdr.config_for("smoke", device_augment=True)
