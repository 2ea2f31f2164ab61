"""Benchmark: training throughput (images/s) of every chapter's model at its ``cpu`` and ``full`` scale.

For each chapter the recipe's own model, loss and training forward are stepped (forward, backward, Adam
step) in two ways:

* **model only**: one batch of the recipe's loader, already on the device, stepped again and again: the
  model's speed;
* **with the data pipeline**: batches from the recipe's own training loader (decode or render, PIL
  augmentations, collation, transfer) on SynthReID ``tiny`` drawn at the scale's input size: the
  per-image cost of loading does not depend on the dataset's size.

Re-ID done right's stage 2 is stepped as batch-hard ``P x K`` batches of ``3 x batch_triplets`` images at
its ``max_side`` (the triplet miner's pool refresh is not part of a step). Weights are random (speed does
not depend on them; ImageNet weights cannot be downloaded here). The step runs channels-last, under bf16
autocast on CUDA when the GPU supports it and on the CPU when the recipe's config trains so
(``cpu_bf16``, the ``cpu`` configs), and the achieved TFLOP/s (counted by
``torch.utils.flop_counter`` on one step) is set beside the device's dense bf16 peak where it is known.

Run: ``python benchmarks/bench_train.py [--device cuda] [--scales cpu full] [--chapters pmm ...]``; it
prints a table and writes ``results/benchmarks/bench_train_<device>.json`` with provenance. On the CPU
the ``full`` models take seconds per step, so ``--full-steps`` is small there and Re-ID done right's
ResNet-101 at 416 px is left out unless named with ``--chapters``. A model whose config trains in bf16
on the CPU gets a second row in float32.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from results_file import write_results  # noqa: E402

from reidlib.engine.extract import forward_any_size  # noqa: E402
from reidlib.engine.trainer import as_batch_dict, batch_to_device, default_forward  # noqa: E402
from reidlib.recipes import cama, chapter, fmn, pmm  # noqa: E402
from reidlib.recipes import hybrid_attention as ha  # noqa: E402
from reidlib.recipes import reid_done_right as rdr  # noqa: E402

CHAPTERS = ("cama", "reid_done_right", "fmn", "hybrid_attention", "pmm")
#: Dense bf16 tensor-core peaks (TFLOP/s) of the GPUs the book's figures may come from (vendor sheets).
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0,
                    "L40S": 362.0, "RTX 4090": 165.0, "V100": 125.0}


@dataclass
class Parts:
    """What one training step of a chapter needs."""

    model: nn.Module
    loss_fn: Callable[[Any, dict[str, Any]], tuple[torch.Tensor, Any]]
    forward_fn: Callable[[nn.Module, dict[str, Any]], Any]
    loader: Callable[[], Any]  # the recipe's training loader on SynthReID tiny at the scale's size
    batch: int
    size: tuple[int, int]
    backbone: str
    params: list[nn.Parameter]
    cpu_bf16: bool = False


def _backbone_name(cfg: Any) -> str:
    return f"ResNet-{cfg.depth}" + ("" if cfg.base_width == 64 else f" (width {cfg.base_width})")


def _parts(cfg: Any, data: chapter.ChapterData, model: nn.Module, loss: Any, loader: Callable[[], Any],
           forward: Callable[[nn.Module, dict[str, Any]], Any] = default_forward) -> Parts:
    return Parts(model, loss, forward, loader, cfg.batch_size, (cfg.height, cfg.width), _backbone_name(cfg),
                 [p for p in model.parameters() if p.requires_grad], cfg.cpu_bf16)


def chapter_parts(name: str, scale: str, device: torch.device | str = "cpu") -> Parts:
    """The recipe's model, loss, forward and loader of ``name`` at ``scale`` (random weights); a recipe that
    augments batch-wise (``device_augment``) holds its images on ``device``."""
    common = {"pretrained": False, "synth_preset": "tiny", "dataset": chapter.SYNTHREID}
    recipes = {  # chapter -> (recipe, model builder, loss builder)
        "cama": (cama, cama.build_model, cama.cama_loss),
        "fmn": (fmn, lambda cfg, n: fmn.build_fmn(cfg, fmn.build_grn(cfg, n), n), fmn.stage2_loss),
        "hybrid_attention": (ha, ha.build_model, ha.loss_for),
        "pmm": (pmm, pmm.build_model, pmm.loss_for),
    }
    if name in recipes:
        recipe, build, loss = recipes[name]
        cfg = recipe.config_for(scale, **common)
        data = chapter.load_data(cfg)
        forward = pmm.TrainingForward(cfg) if name == "pmm" else default_forward
        return _parts(cfg, data, build(cfg, data.num_classes), loss(cfg),
                      lambda: recipe.train_loader(cfg, data, device), forward)
    if name == "reid_done_right":
        from reidlib.data.transforms import build_train_transform

        cfg = rdr.config_for(scale, **common, mining="batch_hard")
        data = chapter.load_data(cfg)
        model = rdr.build_model(cfg)
        batch, size = 3 * cfg.batch_triplets, (cfg.max_side, cfg.max_side // 2)
        tf = build_train_transform(*size, flip=True)
        return Parts(model, rdr.ranking_loss(cfg), forward_any_size,
                     lambda: chapter.identity_loader(data, tf, batch, cfg.pk_instances, 0), batch, size,
                     _backbone_name(cfg), list(model.parameters()), cfg.cpu_bf16)
    raise ValueError(f"unknown chapter {name!r}; expected one of {CHAPTERS}")


class Stepper:
    """Forward, loss, backward and an Adam step, channels-last, under bf16 autocast on CUDA (where the GPU
    supports it) and on the CPU where the recipe's config asks for it (as its trainer does)."""

    def __init__(self, parts: Parts, device: torch.device, float32: bool = False) -> None:
        self.parts, self.device = parts, device
        self.model = parts.model.to(device).train()
        self.cuda = device.type == "cuda"
        self.model.to(memory_format=torch.channels_last)
        self.amp = not float32 and (torch.cuda.is_bf16_supported() if self.cuda
                                    else device.type == "cpu" and parts.cpu_bf16)
        self.optimizer = torch.optim.Adam(parts.params, lr=1e-4)

    def __call__(self, batch: dict[str, Any]) -> float:
        batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            out = self.parts.forward_fn(self.model, batch)
            loss, _ = self.parts.loss_fn(out, batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)


def _timed(stepper: Stepper, batches: Iterator[dict[str, Any]], warmup: int, steps: int
           ) -> tuple[float, int]:
    for _ in range(warmup):
        stepper(next(batches))
    stepper.sync()
    t0, images = time.perf_counter(), 0
    for _ in range(steps):
        batch = next(batches)
        images += len(batch["image"])
        stepper(batch)
    stepper.sync()
    return time.perf_counter() - t0, images


def _loader_batches(parts: Parts, device: torch.device) -> Iterator[dict[str, Any]]:
    epoch = 0
    while True:
        loader = parts.loader()
        for s in (getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)):
            if callable(getattr(s, "set_epoch", None)):
                s.set_epoch(epoch)
        for raw in loader:
            yield batch_to_device(as_batch_dict(raw), device)
        epoch += 1


def _step_flops(stepper: Stepper, batch: dict[str, Any]) -> float | None:
    try:
        from torch.utils.flop_counter import FlopCounterMode
    except ImportError:  # pragma: no cover - old torch
        return None
    counter = FlopCounterMode(display=False)
    with counter:
        stepper(dict(batch))
    return float(counter.get_total_flops())


def _peak(name: str) -> float | None:
    for key, value in PEAK_BF16_TFLOPS.items():
        if key in name:
            return value
    return None


def bench(name: str, scale: str, device: torch.device, warmup: int, steps: int, float32: bool = False
          ) -> dict[str, Any]:
    """One row: images/s with the model only and with the data pipeline, and (CUDA) TFLOP/s;
    ``float32``: without autocast, whatever the recipe's config says."""
    parts = chapter_parts(name, scale, device)
    stepper = Stepper(parts, device, float32)
    fixed = next(_loader_batches(parts, device))  # the loader's own batch structure (P x K or shuffled)
    model_s, model_images = _timed(stepper, iter(lambda: dict(fixed), None), warmup, steps)
    pipe_s, pipe_images = _timed(stepper, _loader_batches(parts, device), warmup, steps)
    row: dict[str, Any] = {
        "chapter": name, "scale": scale, "backbone": parts.backbone,
        "input": f"{parts.size[0]}x{parts.size[1]}",
        "batch": parts.batch, "steps": steps, "model_images_per_s": model_images / model_s,
        "pipeline_images_per_s": pipe_images / pipe_s, "step_s_model": model_s / steps,
        "step_s_pipeline": pipe_s / steps, "precision": "bf16" if stepper.amp else "float32",
    }
    row["pipeline_slowdown"] = row["model_images_per_s"] / row["pipeline_images_per_s"]
    if device.type == "cuda":
        flops = _step_flops(stepper, fixed)
        if flops:
            row["tflops"] = flops / row["step_s_model"] / 1e12
            peak = _peak(torch.cuda.get_device_name(device))
            row["peak_share"] = row["tflops"] / peak if peak else None
    return row


def format_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a fixed-width text table."""
    head = (f"{'chapter':<17} {'scale':<5} {'backbone':<21} {'input':<8} {'batch':>5} {'precision':<9} "
            f"{'model img/s':>12} {'+pipeline':>10} {'slowdown':>8} {'TFLOP/s':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        tf = f"{r['tflops']:.1f}" if r.get("tflops") else "-"
        lines.append(f"{r['chapter']:<17} {r['scale']:<5} {r['backbone']:<21} {r['input']:<8} "
                     f"{r['batch']:>5} {r.get('precision', '-'):<9} {r['model_images_per_s']:>12.1f} "
                     f"{r['pipeline_images_per_s']:>10.1f} {r['pipeline_slowdown']:>7.2f}x {tf:>8}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--scales", nargs="+", default=["cpu", "full"], choices=["cpu", "full"])
    p.add_argument("--chapters", nargs="+", default=None, choices=CHAPTERS)
    p.add_argument("--steps", type=int, default=10, help="timed steps of the cpu models")
    p.add_argument("--full-steps", type=int, default=None,
                   help="timed steps of the full models (default: --steps on CUDA, 1 on the CPU)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--out", default=None,
                   help="results file (default results/benchmarks/bench_train_<device>.json)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    full_steps = args.full_steps or (args.steps if cuda else 1)
    rows, skipped = [], []
    for scale in args.scales:
        for name in args.chapters or CHAPTERS:
            if not cuda and scale == "full" and name == "reid_done_right" and args.chapters is None:
                skipped.append(f"{name}/{scale}: ResNet-101 on 192 images of 416x208 per step takes minutes "
                               "on a CPU")
                continue
            steps = args.steps if scale == "cpu" else full_steps
            warmup = args.warmup if scale == "cpu" or cuda else 1
            for float32 in (False, True):
                row = bench(name, scale, device, warmup, steps, float32)
                print(f"{name}/{scale} ({row['precision']}): {row['model_images_per_s']:.1f} img/s model, "
                      f"{row['pipeline_images_per_s']:.1f} with the pipeline", flush=True)
                rows.append(row)
                # A config that trains in bf16 on the CPU is timed in float32 too: what bf16 buys there.
                if cuda or row["precision"] == "float32":
                    break
    print(format_table(rows))
    for s in skipped:
        print(f"not measured: {s}")
    out = Path(args.out or Path(__file__).resolve().parents[1] / "results" / "benchmarks"
               / f"bench_train_{device.type}.json")
    write_results(out, "bench_train", str(device), rows=rows, not_measured=skipped,
                  settings={"steps": args.steps, "full_steps": full_steps, "warmup": args.warmup})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
