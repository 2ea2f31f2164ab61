"""Figures that show a re-ID dataset: identities across cameras, look-alike families, ground-truth masks.

* :func:`identity_grid` - rows are identities, columns their images from different cameras (works for any
  dataset: SynthReID, ``ReIDSplits`` or a list of records).
* :func:`family_grid` - SynthReID look-alike families side by side in one controlled shot, with the cues
  that tell the members apart outlined (the "small inter-person variation" of seed 000).
* :func:`cue_mask_figure` - one SynthReID image with its body-part map and its cue map.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from PIL import Image

from reidlib.data.records import Record, ReIDSplits, records_by_pid
from reidlib.data.synthetic import CUE_NAMES, PART_NAMES, SynthReID, SynthSample
from reidlib.figures.style import OKABE_ITO, use_book_style

ImageSource = Callable[[str], Image.Image]

#: One fixed colour per cue (Okabe-Ito), shared by every figure that draws cue masks.
CUE_COLORS: dict[str, str] = dict(zip(CUE_NAMES[1:], OKABE_ITO[: len(CUE_NAMES) - 1], strict=True))
#: One colour per body part: Okabe-Ito, then grey for occluders (no seaborn import needed).
PART_COLORS: dict[str, str] = dict(zip(PART_NAMES[1:], (OKABE_ITO + ["#999999"])[: len(PART_NAMES) - 1],
                                       strict=True))
_BACKGROUND = "#ffffff"


def _open_rgb(path: str) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (FileNotFoundError, OSError) as err:
        raise FileNotFoundError(f"cannot read image {path!r} for the identity grid: {err}") from err


def _records_and_source(source, image_source: ImageSource | None
                        ) -> tuple[list[Record], ImageSource, SynthReID | None]:
    """Records to draw from and how to load them, for a SynthReID, ReIDSplits or a record list."""
    if isinstance(source, SynthReID):
        records = [r for r in source.splits.query + source.splits.gallery if r.pid > 0]
        return records, image_source or source.load_image, source
    if isinstance(source, ReIDSplits):
        records = [r for r in source.query + source.gallery if r.pid > 0] or list(source.train)
        return records, image_source or source.extra.get("image_source") or _open_rgb, None
    if isinstance(source, Sequence) and all(isinstance(r, tuple) and len(r) == 3 for r in source):
        return [Record(*r) for r in source], image_source or _open_rgb, None
    raise TypeError(f"identity_grid needs a SynthReID, ReIDSplits or a list of Records, got {type(source)!r}")


def _spread_over_cameras(records: list[Record], k: int) -> list[Record]:
    """Up to ``k`` records, taking cameras in turn so that the row shows as many cameras as possible."""
    by_cam: dict[int, list[Record]] = {}
    for r in records:
        by_cam.setdefault(r.camid, []).append(r)
    queues = [by_cam[c] for c in sorted(by_cam)]
    picked: list[Record] = []
    depth = 0
    while len(picked) < k and any(depth < len(q) for q in queues):
        picked.extend(q[depth] for q in queues if depth < len(q))
        depth += 1
    return sorted(picked[:k], key=lambda r: (r.camid, r.path))


def _image_axis(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)


def identity_grid(source: SynthReID | ReIDSplits | Sequence[Record], pids: Sequence[int] | None = None,
                  n_ids: int = 6, per_id: int = 6, image_source: ImageSource | None = None,
                  title: str | None = None) -> Figure:
    """Grid of identities (rows) across cameras (columns), each image titled with its camera.

    Args:
        source: a :class:`SynthReID` (test identities; by default its first look-alike families, so the
            rows show how little separates them), a :class:`ReIDSplits` (query + gallery) or records.
        pids: identities to show (as in the records); default: ``n_ids`` identities seen by >= 2 cameras.
        n_ids: rows when ``pids`` is not given.
        per_id: columns (images per identity, spread over as many cameras as it has).
        image_source: ``path -> PIL.Image``; default SynthReID's renderer, the splits'
            ``extra["image_source"]`` or the file on disk.
        title: figure title (a default names the dataset).

    Raises:
        ValueError: ``n_ids``/``per_id`` < 1, or a requested pid has no image.
    """
    if n_ids < 1 or per_id < 1:
        raise ValueError(f"n_ids and per_id must be >= 1, got n_ids={n_ids}, per_id={per_id}")
    records, load, synth = _records_and_source(source, image_source)
    by_pid = records_by_pid(records)
    if pids is None:
        if synth is not None and synth.look_alike_pids():
            n_fam = math.ceil(n_ids / max(1, synth.config.family_size - 1))
            pids = synth.look_alike_pids("test", n_families=n_fam)[:n_ids]
        else:
            pids = [p for p in sorted(by_pid) if len({r.camid for r in by_pid[p]}) >= 2][:n_ids]
    missing = [p for p in pids if p not in by_pid]
    if missing:
        raise ValueError(f"no images of pid(s) {missing} in the given records")
    use_book_style()
    fig, axes = plt.subplots(len(pids), per_id, figsize=(1.25 * per_id + 0.6, 2.45 * len(pids)),
                             squeeze=False)
    for row, pid in enumerate(pids):
        chosen = _spread_over_cameras(by_pid[pid], per_id)
        for col in range(per_id):
            ax = axes[row, col]
            _image_axis(ax)
            if col < len(chosen):
                rec = chosen[col]
                ax.imshow(np.asarray(load(rec.path).convert("RGB")))
                ax.set_title(f"cam c{rec.camid + 1}", fontsize=8, pad=2)
            else:
                ax.set_visible(False)
        label = f"pid {pid}"
        if synth is not None:
            label += f"\nfamily {synth.family_of(pid)}"
        axes[row, 0].set_ylabel(label, fontsize=9, rotation=0, ha="right", va="center", labelpad=6)
    name = synth.splits.name if synth is not None else (source.name if isinstance(source, ReIDSplits) else "")
    fig.suptitle(title or f"{name}: identities (rows) across cameras (columns)".strip(": "), fontsize=11)
    fig.tight_layout()
    return fig


def _cue_legend(names: Sequence[str]) -> list[Patch]:
    return [Patch(facecolor=CUE_COLORS[n], edgecolor="none", label=n) for n in names]


def family_grid(synth: SynthReID, n_families: int = 3, split: str = "test", view: str = "front",
                camid: int = 0, seed: int = 0, outline: bool = True) -> Figure:
    """Look-alike families (rows), every member (columns) in the same controlled shot.

    All members are rendered with the same background, pose, camera and view
    (:meth:`SynthReID.render_identity`), so everything that differs between two columns is an identity
    cue; with ``outline`` the member's distinctive cues are outlined in their :data:`CUE_COLORS`.
    """
    pids = synth.look_alike_pids(split, n_families=n_families)
    if not pids:
        raise ValueError(f"{synth!r} has no families of two or more (family_size={synth.config.family_size})")
    families: dict[int, list[int]] = {}
    for p in pids:
        families.setdefault(synth.family_of(p, split), []).append(p)
    width = max(len(m) for m in families.values())
    use_book_style()
    fig, axes = plt.subplots(len(families), width, figsize=(2.1 * width + 0.4, 3.3 * len(families)),
                             squeeze=False)
    used_cues: set[str] = set()
    for row, (family, members) in enumerate(families.items()):
        for col in range(width):
            ax = axes[row, col]
            _image_axis(ax)
            if col >= len(members):
                ax.set_visible(False)
                continue
            pid = members[col]
            sample = synth.render_identity(pid, split, view=view, camid=camid, seed=seed)
            ax.imshow(sample.image)
            cues = synth.distinctive_cues(pid, split)
            if outline:
                for name in cues:
                    mask = sample.cues == CUE_NAMES.index(name)
                    if mask.any():
                        ax.contour(mask.astype(float), levels=[0.5], colors=[CUE_COLORS[name]],
                                   linewidths=1.4)
                        used_cues.add(name)
            ax.set_title(f"pid {pid}\ndiffers in: {', '.join(cues) or '-'}", fontsize=8, pad=3)
        axes[row, 0].set_ylabel(f"family {family}", fontsize=9)
    if used_cues:
        fig.legend(handles=_cue_legend(sorted(used_cues)), loc="lower center", ncol=len(used_cues),
                   title="outlined cue (ground-truth mask)", fontsize=8, title_fontsize=8)
    fig.suptitle(f"{synth.splits.name}: look-alike families ({view} view, camera c{camid + 1})", fontsize=11)
    fig.tight_layout(rect=(0, 0.06 if used_cues else 0, 1, 1))
    return fig


def _label_image(labels: np.ndarray, colors: Sequence[str]) -> np.ndarray:
    from matplotlib.colors import to_rgb

    table = np.array([to_rgb(c) for c in colors])
    return table[labels]


def cue_mask_figure(sample: SynthSample | SynthReID, path: str | None = None, alpha: float = 0.75) -> Figure:
    """The image, its body-part map and its cue map (over a faded copy of the image), with legends.

    Args:
        sample: a rendered :class:`SynthSample`, or a :class:`SynthReID` together with a record ``path``.
        path: record key, needed when ``sample`` is a dataset.
        alpha: opacity of the cue colours over the faded image.

    Raises:
        ValueError: a dataset is given without ``path``, or ``alpha`` is outside [0, 1].
    """
    synth = None
    if isinstance(sample, SynthReID):
        if path is None:
            raise ValueError("cue_mask_figure(synth, path): pass the record key of the image to show")
        synth, sample = sample, sample.render(path)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    use_book_style()
    image = np.asarray(sample.image)
    part_colors = [_BACKGROUND] + [PART_COLORS[n] for n in PART_NAMES[1:]]
    fig, axes = plt.subplots(1, 3, figsize=(7.4, 5.6))
    for ax in axes:
        _image_axis(ax)
    axes[0].imshow(image)
    axes[0].set_title("image")
    axes[1].imshow(_label_image(sample.parts, part_colors))
    axes[1].set_title("body parts")
    present_parts = [i for i in range(1, len(PART_NAMES)) if np.any(sample.parts == i)]
    axes[1].legend(handles=[Patch(facecolor=part_colors[i], edgecolor="#999999", linewidth=0.5,
                                  label=PART_NAMES[i]) for i in present_parts],
                   loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=2, fontsize=8)
    faded = 0.35 * image / 255.0 + 0.65
    cue_rgb = _label_image(sample.cues, ["#000000"] + [CUE_COLORS[n] for n in CUE_NAMES[1:]])
    has_cue = (sample.cues > 0)[..., None]
    axes[2].imshow(np.where(has_cue, alpha * cue_rgb + (1 - alpha) * faded, faded))
    axes[2].set_title("identity cues")
    present_cues = [CUE_NAMES[i] for i in range(1, len(CUE_NAMES)) if np.any(sample.cues == i)]
    if present_cues:
        axes[2].legend(handles=_cue_legend(present_cues), loc="upper center", bbox_to_anchor=(0.5, -0.01),
                       ncol=2, fontsize=8)
    else:
        axes[2].text(0.5, -0.04, "no cue visible", transform=axes[2].transAxes, ha="center", va="top",
                     fontsize=8)
    is_train = sample.path.startswith("synth/train/")  # train records carry labels 0..C-1, not pids
    if is_train:
        pid_text = f"train label {sample.pid}"
    else:
        pid_text = {0: "distractor (pid 0)", -1: "junk (pid -1)"}.get(sample.pid, f"pid {sample.pid}")
    title = f"{pid_text}, camera c{sample.camid + 1}, {sample.view} view"
    if synth is not None and (is_train or sample.pid > 0):
        split = "train" if is_train else "test"
        attrs = synth.attributes_of(sample.pid, split)
        distinct = ", ".join(synth.distinctive_cues(sample.pid, split)) or "none"
        title += (f" (family {attrs.family}; differs from look-alikes in: {distinct})\n"
                  + textwrap.fill(attrs.describe(), 90))
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
