"""Command line: ``python -m reidlib {synth,train,evaluate,pretrain} ...`` (also installed as ``reidlib``).

Only ``argparse`` is imported at module level so that ``--help`` answers at once; each command imports
torch and the library when it runs.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reidlib.recipes.pretrain import PretrainConfig

_DESCRIPTION = """\
reidlib: person re-identification experiments of the reid-book.

Commands:
  synth     render the procedural SynthReID dataset to disk in Market-1501's folder layout
  train     train (and then evaluate) a model from a YAML config, e.g. configs/baseline_synth_small.yaml
  evaluate  evaluate saved weights (a training checkpoint or a state dict) on a dataset's query/gallery
  pretrain  build (or reuse from the cache) the pre-trained SynthReID trunks the chapters start from at
            the smoke and cpu scales

Run `python -m reidlib COMMAND --help` for the options of each command."""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keep the line breaks of descriptions; add ``(default: X)`` where a help text does not say it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        has_default = action.default not in (None, argparse.SUPPRESS)
        if "default" not in text and has_default and action.option_strings:
            text += " (default: %(default)s)"
        return text


def _describe(text: str, *examples: str) -> str:
    """A description paragraph wrapped to 88 columns, then example command lines as they are."""
    body = textwrap.fill(" ".join(text.split()), width=88)
    return body + ("\n\nexamples:\n" + "\n".join(f"  {e}" for e in examples) if examples else "")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of all commands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback of an error instead of its one-line message")
    parser = argparse.ArgumentParser(prog="python -m reidlib", description=_DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter, parents=[common])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser(
        "synth", parents=[common], formatter_class=_Formatter,
        help="write SynthReID to disk in Market-1501 format",
        description=_describe(
            "Render SynthReID and write it in Market-1501's layout (bounding_box_train/, query/, "
            "bounding_box_test/ with 0000_* distractors and -1_* junk, plus synthreid.json), so any "
            "Market-1501 loader or tool can read it. With --config, the dataset of a training config is "
            "written (preset, overrides, seed and image size), so that evaluating the folder scores "
            "the same test split the config trains and evaluates on.",
            "python -m reidlib synth --preset small --out data/synthreid_small",
            "python -m reidlib synth --config configs/baseline_synth_tiny.yaml --out data/synth_tiny",
            "python -m reidlib evaluate --config configs/baseline_synth_tiny.yaml --checkpoint "
            "runs/baseline_synth_tiny/latest.pt --dataset market1501 --root data/synth_tiny"))
    p.add_argument("--config", default=None, metavar="FILE",
                   help="write the SynthReID dataset of this training config's data section instead of "
                        "--preset/--seed/--height/--width")
    p.add_argument("--preset", default=None, choices=("tiny", "small", "market"),
                   help="dataset size: tiny (18 train ids, ~200 images, seconds), small (120 train / 300 "
                        "test ids, ~6k images), market (Market-1501's counts, ~36k images) (default: small)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output folder (its split folders must be empty)")
    p.add_argument("--seed", type=int, default=None,
                   help="world seed: identities, cameras and pixels follow from it (default: 0)")
    p.add_argument("--height", type=int, default=None,
                   help="image height in pixels (default: the preset's, 256)")
    p.add_argument("--width", type=int, default=None, help="image width in pixels (default: height / 2)")
    p.add_argument("--quality", type=int, default=95, help="JPEG quality (1-95)")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser(
        "train", parents=[common], formatter_class=_Formatter, help="train and evaluate from a YAML config",
        description=_describe(
            "Train a model as a YAML config says, then evaluate it on the query/gallery split and print "
            "mAP and CMC. Writes OUT/latest.pt after every epoch (model, optimizer, scheduler, RNG "
            "states), OUT/history.json (per-epoch losses, LR, speed) and OUT/metrics.json. A killed "
            "run started again with the same command continues where it stopped.",
            "python -m reidlib train --config configs/baseline_synth_small.yaml",
            "python -m reidlib train --config configs/baseline_synth_tiny.yaml --out /tmp/run --no-resume",
            "torchrun --standalone --nproc_per_node 2 -m reidlib train --config "
            "configs/baseline_synth_tiny.yaml   # data-parallel; data.batch_size is the global batch"))
    p.add_argument("--config", required=True, metavar="FILE",
                   help="YAML experiment config (see configs/; keys map onto reidlib.recipes.baseline."
                        "BaselineConfig: name, out_dir, device, data, model, loss, train, eval)")
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default: the config's out_dir)")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="continue from OUT/latest.pt when it exists (--no-resume starts over and "
                        "overwrites it)")
    p.add_argument("--device", default=None,
                   help="'cpu', 'cuda', 'cuda:1' or 'auto' (default: the config's device)")
    p.add_argument("--epochs", type=int, default=None, help="override train.epochs of the config")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "evaluate", parents=[common], formatter_class=_Formatter, help="evaluate saved weights (mAP, CMC)",
        description=_describe(
            "Load weights and evaluate them on a dataset's query/gallery split (Market-1501 protocol: "
            "same-identity same-camera gallery images are ignored; non-interpolated AP). The model is "
            "built as the config's 'model' section says; the classifier size is read from the "
            "checkpoint, so weights trained on one dataset can be evaluated on another.",
            "python -m reidlib evaluate --config configs/baseline_synth_small.yaml "
            "--checkpoint runs/baseline_synth_small/latest.pt --flip",
            "python -m reidlib evaluate --config configs/baseline_synth_small.yaml "
            "--checkpoint runs/baseline_synth_small/latest.pt --dataset market1501 --root data/market"))
    p.add_argument("--config", required=True, metavar="FILE",
                   help="YAML config giving the model architecture and input size (and the dataset unless "
                        "--dataset is given)")
    p.add_argument("--checkpoint", required=True, metavar="FILE",
                   help="a training checkpoint (latest.pt, epoch_XXX.pt) or a saved model state_dict")
    p.add_argument("--dataset", default=None,
                   help="evaluate on this dataset instead of the config's: synthreid, market1501, dukemtmc, "
                        "cuhk03, msmt17")
    p.add_argument("--root", default=None, metavar="DIR", help="folder of --dataset (real datasets)")
    p.add_argument("--preset", default=None, help="SynthReID preset when --dataset synthreid")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                   help="average each embedding with that of the mirrored image "
                        "(default: the config's eval.flip)")
    p.add_argument("--rerank", action=argparse.BooleanOptionalAction, default=None,
                   help="k-reciprocal re-ranking of the distances (default: the config's eval.rerank)")
    p.add_argument("--metric", default=None, choices=("euclidean", "cosine"),
                   help="distance between L2-normalised embeddings (default: the config's eval.metric)")
    p.add_argument("--device", default=None, help="'cpu', 'cuda' or 'auto' (default: the config's device)")
    p.add_argument("--max-memory", default=None, metavar="SIZE",
                   help="bound on what the ranking holds beyond the features, e.g. 6GB or 512MiB: queries "
                        "are ranked a chunk at a time, re-ranking included (default: the config's "
                        "eval.max_memory)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="also write the metrics to DIR/evaluation_<checkpoint>_<dataset>.json (a folder, as "
                        "for every command; a file there is replaced only if evaluate wrote it)")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser(
        "pretrain", parents=[common], formatter_class=_Formatter,
        help="build the pre-trained SynthReID trunks (smoke, cpu)",
        description=_describe(
            "Build the narrow ResNet trunks that stand in for ImageNet at the smoke and cpu scales, each "
            "pre-trained by identity classification on a SynthReID population that no chapter sees. A "
            "trunk is cached in .cache/pretrain/<scale>-<name>-<key>/ ($REIDLIB_CACHE moves the root) and "
            "reused while the key of its config and the SHA-256 of its file match; a corrupt cache is "
            "rebuilt. A trunk trained now also writes results/pretrain/<scale>/<name>.json "
            "($REIDLIB_RESULTS moves the root). `make book` runs this first; the chapters would otherwise "
            "train a missing trunk on first use.",
            "python -m reidlib pretrain --scale cpu",
            "python -m reidlib pretrain --scale smoke --depth 10 --width 8 --rebuild"))
    p.add_argument("--scale", default=None, metavar="{smoke,cpu}",
                   help="the scale whose trunks to build; $REIDLIB_SCALE wins when set, as for the notebooks "
                        "(default: cpu). full has none: its width-64 ResNets load ImageNet weights")
    p.add_argument("--depth", type=int, default=None,
                   help="build only the trunk of this ResNet depth (10, 18 or 34; default: every trunk the "
                        "chapters use at the scale, or the scale's default trunk with --width)")
    p.add_argument("--width", type=int, default=None,
                   help="base width (channels of the stem) of that trunk, not 64 (default: the scale's, "
                        "8 at smoke, 16 at cpu)")
    p.add_argument("--rebuild", action="store_true",
                   help="train again even when a valid trunk is cached (replaces it and its results file)")
    p.add_argument("--device", default="cpu", help="'cpu', 'cuda' or 'auto' for the training")
    p.set_defaults(func=_cmd_pretrain)
    return parser


def _cmd_synth(args: argparse.Namespace) -> int:
    from reidlib.data.synthetic import SynthReID

    if not 1 <= args.quality <= 95:
        raise ValueError(f"--quality must be in 1..95, got {args.quality}")
    if args.config is not None:
        from reidlib.recipes.baseline import SYNTHREID, load_baseline_config, synth_config

        given = [f"--{n}" for n in ("preset", "seed", "height", "width") if getattr(args, n) is not None]
        if given:
            raise ValueError(f"--config sets the dataset; drop {', '.join(given)}")
        data = load_baseline_config(args.config, notice=None).data
        if data.name != SYNTHREID:
            raise ValueError(f"{args.config}: data.name is {data.name!r}; only a synthreid dataset can be "
                             "written")
        synth = SynthReID(synth_config(data), seed=data.synth_seed, height=data.height, width=data.width)
    else:
        for name in ("height", "width"):
            if getattr(args, name) is not None and getattr(args, name) < 8:
                raise ValueError(f"--{name} must be >= 8 pixels, got {getattr(args, name)}")
        synth = SynthReID(args.preset or "small", seed=args.seed or 0, height=args.height, width=args.width)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; --out names a folder, which synth writes the dataset into")
    print(synth.summary(), flush=True)
    root = synth.write_market_format(out, quality=args.quality)
    print(f"wrote {synth.splits.name} to {root}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from reidlib.engine.device import resolve_device
    from reidlib.recipes.baseline import load_baseline_config, run_baseline

    cfg = load_baseline_config(args.config)
    if args.epochs is not None:
        if args.epochs < 1:
            raise ValueError(f"--epochs must be >= 1, got {args.epochs}")
        cfg.train.epochs = args.epochs
    if args.device is not None:
        resolve_device(args.device, "--device")
    out = args.out or cfg.out_dir
    try:
        summary = run_baseline(cfg, out_dir=args.out, resume=args.resume, device=args.device,
                               inputs=(args.config,))
    except KeyboardInterrupt:
        print(f"\ninterrupted; run the same command again to resume from {out}/latest.pt", file=sys.stderr)
        return 130
    if "metrics" in summary:  # rank 0 of a torchrun group, or the only process
        print(f"metrics, history and checkpoints in {out}/ ({summary['wall_time_s']:.0f} s)")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from reidlib.engine.device import resolve_device
    from reidlib.recipes.baseline import evaluate_checkpoint, load_baseline_config

    cfg = load_baseline_config(args.config, notice=None)  # only model, data and eval are used
    if args.dataset is not None:
        # another dataset: its loader options do not carry over; SynthReID overrides only with the same preset
        data = replace(cfg.data, name=args.dataset, root=args.root, preset=args.preset or cfg.data.preset,
                       loader_kwargs={}, synth_overrides={} if args.preset else cfg.data.synth_overrides)
        cfg = replace(cfg, data=data)
    elif args.root is not None or args.preset is not None:
        raise ValueError("--root/--preset need --dataset")
    if args.device is not None:
        resolve_device(args.device, "--device")
    if args.max_memory is not None:
        from reidlib.evaluation.memory import parse_memory

        parse_memory(args.max_memory, "--max-memory")
    evaluate_checkpoint(cfg, args.checkpoint, device=args.device, flip=args.flip, rerank=args.rerank,
                        metric=args.metric, out_dir=args.out, inputs=(args.config,),
                        max_memory=args.max_memory)
    return 0


def _scale_trunk(scale: str, depth: int | None = None, width: int | None = None) -> PretrainConfig:
    """The trunk of ``scale`` with ``depth`` and ``width`` (each defaulting to the scale's own).

    Raises:
        ValueError: a scale without pre-training (``full``), or a depth / width pre-training cannot take.
    """
    from reidlib.recipes import pretrain

    base = pretrain.SCALE_CONFIGS.get(scale, pretrain.SCALE_CONFIGS["cpu"])  # trunk_config refuses 'full'
    return pretrain.trunk_config(scale, base.depth if depth is None else depth,
                                 base.base_width if width is None else width)


def _cmd_pretrain(args: argparse.Namespace) -> int:
    import os

    from reidlib.engine.device import resolve_device
    from reidlib.recipes import pretrain
    from reidlib.scale import SCALE_ENV, resolve_scale

    scale = resolve_scale(args.scale)
    if args.scale is not None and scale != args.scale:
        print(f"scale {scale}: ${SCALE_ENV}={os.environ[SCALE_ENV]} overrides --scale {args.scale}")
    if args.depth is None and args.width is None:
        configs = pretrain.chapter_trunks(scale)
    else:
        configs = [_scale_trunk(scale, args.depth, args.width)]
    device = str(resolve_device(args.device))
    for cfg in configs:
        trunk = pretrain.cache_folder(cfg) / pretrain.TRUNK_FILE
        problem = pretrain.cache_problem(cfg)
        if problem is None and not args.rebuild:
            wall = float(pretrain.read_record(cfg).get("wall_time_s") or 0.0)
            print(f"{cfg.name} ({scale}, key {cfg.key}): reused from the cache (trained in {wall:.0f} s): "
                  f"{trunk}")
            continue
        why = {None: "--rebuild", "missing": "not cached yet"}.get(problem, f"cache unusable: {problem}")
        print(f"{cfg.name} ({scale}, key {cfg.key}): building ({why})", flush=True)
        pretrain.pretrain(cfg, device=device)
    return 0


def _error_line(err: BaseException) -> str:
    """The one line the CLI prints for an expected error: its message, without a trailing period."""
    text = " ".join(str(err).split()) or type(err).__name__
    return f"error: {text}"


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command.

    An expected error (bad input: a config, path, device, dataset or checkpoint; a non-finite loss; an
    output that would lose data) prints one line naming the culprit and returns a non-zero status: 2
    for bad input, 1 for a training that failed, 130 for Ctrl-C. ``--debug`` (or ``REIDLIB_DEBUG=1``)
    shows the traceback instead.
    """
    import os

    parser = build_parser()
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False) or os.environ.get("REIDLIB_DEBUG", "") not in ("", "0")
    if debug:
        return args.func(args)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError) as err:  # OSError: missing, unreadable or existing files, bad images
        print(_error_line(err), file=sys.stderr)
        return 2
    except RuntimeError as err:
        from reidlib.engine.trainer import NonFiniteLossError

        if isinstance(err, NonFiniteLossError):
            print(_error_line(err), file=sys.stderr)
            return 1
        if "out of memory" in str(err).lower():
            hint = " (try a smaller data.batch_size or data.test_batch_size)"
            print(_error_line(err) + hint, file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
