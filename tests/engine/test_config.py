import pytest

from reidlib.engine.config import (
    ConfigError,
    OptimizerConfig,
    TrainConfig,
    from_dict,
    load_yaml_config,
    to_dict,
)


def test_nested_yaml_round_trip(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text(
        "epochs: 3\noptimizer:\n  name: sgd\n  lr: 1e-2\n  betas: [0.8, 0.9]\n"
        "schedule:\n  kind: multistep\n  milestones: [1, 2]\nmax_iters_per_epoch: null\n"
    )
    cfg = load_yaml_config(TrainConfig, path)
    assert cfg.epochs == 3 and cfg.optimizer.name == "sgd"
    assert cfg.optimizer.lr == pytest.approx(1e-2)  # "1e-2" is a string to PyYAML
    assert cfg.optimizer.betas == (0.8, 0.9)
    assert cfg.schedule.milestones == [1, 2]
    assert from_dict(TrainConfig, to_dict(cfg)) == cfg


def test_unknown_field_names_path_and_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("optimizer:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError, match=r"optimizer.*bad\.yaml.*lrr"):
        load_yaml_config(TrainConfig, path)


def test_wrong_type_and_invalid_value():
    with pytest.raises(ConfigError, match="epochs"):
        from_dict(TrainConfig, {"epochs": "ten"})
    with pytest.raises(ConfigError, match="optimizer.name"):
        from_dict(TrainConfig, {"optimizer": {"name": "rmsprop"}})
    with pytest.raises(ConfigError, match="true/false"):
        from_dict(OptimizerConfig, {"nesterov": "yes"})


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_yaml_config(TrainConfig, "nope.yaml")
