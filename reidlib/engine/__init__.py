"""Training engine shared by every recipe: config dataclasses, optimizers and LR schedules, seeding,
checkpoints, the :class:`Trainer` loop with callbacks, and test-time feature extraction/evaluation."""

from reidlib.engine.callbacks import Callback, FreezeParameters, PeriodicEvaluation, SetProgress
from reidlib.engine.checkpoint import load_checkpoint, load_model_weights, save_checkpoint
from reidlib.engine.config import (
    ConfigError,
    OptimizerConfig,
    ScheduleConfig,
    TrainConfig,
    from_dict,
    load_yaml_config,
    to_dict,
)
from reidlib.engine.device import resolve_device
from reidlib.engine.extract import Features, evaluate_model, extract_features, rank_features
from reidlib.engine.history import History
from reidlib.engine.schedules import build_optimizer, build_scheduler, lr_curve
from reidlib.engine.seeding import make_generator, seed_everything, worker_init_fn
from reidlib.engine.trainer import NonFiniteLossError, Trainer

__all__ = [
    "Callback", "ConfigError", "Features", "FreezeParameters", "History", "NonFiniteLossError",
    "OptimizerConfig", "PeriodicEvaluation", "ScheduleConfig", "SetProgress", "TrainConfig", "Trainer",
    "build_optimizer", "build_scheduler", "resolve_device", "evaluate_model", "extract_features", "from_dict",
    "load_checkpoint", "load_model_weights", "load_yaml_config", "lr_curve", "make_generator",
    "rank_features", "save_checkpoint", "seed_everything", "to_dict", "worker_init_fn",
]
