"""Dataset registry: one name per loader, so configs and the CLI can say ``dataset: market1501``."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from reidlib.data.cuhk03 import load_cuhk03
from reidlib.data.dukemtmc import load_dukemtmc
from reidlib.data.image_check import check_split_images
from reidlib.data.market1501 import load_market1501
from reidlib.data.msmt17 import load_msmt17
from reidlib.data.records import ReIDSplits
from reidlib.data.synthetic import load_synthreid

if TYPE_CHECKING:
    from reidlib.data.synthetic import SynthReID, SynthReIDConfig

# name -> loader(root, **kwargs) -> ReIDSplits
DATASETS: dict[str, Callable[..., ReIDSplits]] = {
    "market1501": load_market1501,
    "dukemtmc": load_dukemtmc,
    "cuhk03": load_cuhk03,
    "msmt17": load_msmt17,
    "synthreid": load_synthreid,  # root: a preset name ("tiny"/"small"/"market") or ignored
}


def load_dataset(name: str, root: str | os.PathLike[str], **kwargs) -> ReIDSplits:
    """Load dataset ``name`` (a key of ``DATASETS``, case-insensitive) from ``root``.

    Extra keyword arguments go to the loader, e.g. ``load_dataset("cuhk03", root, variant="detected")``.

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    loader = DATASETS.get(name.lower())
    if loader is None:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}")
    return loader(root, **kwargs)


def open_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    preset: str | SynthReIDConfig = "small",
    seed: int = 0,
    height: int | None = None,
    width: int | None = None,
    precache: bool = True,
    progress: bool = False,
    check_images: bool = True,
    **loader_kwargs: Any,
) -> tuple[ReIDSplits, Callable[[str], Any], SynthReID | None]:
    """A dataset ready to train on: ``(splits, image_source, synth)``.

    ``"synthreid"`` draws SynthReID (``preset``: a preset name or a config; ``seed``; images rendered at
    ``height`` x ``width``, all of them once into memory with ``precache``) and returns its in-memory
    image source and the generator itself; any other name loads the real dataset under ``root``
    (:func:`load_dataset` with ``loader_kwargs``), reads images from disk and returns ``synth=None``.

    With ``check_images`` (the default), every train/query/gallery image of a real dataset is decoded
    once before returning (:func:`reidlib.data.image_check.check_split_images`, a few seconds for
    Market-1501; a tqdm bar with ``progress``), so a truncated or non-image file stops the run here, with
    the list of bad files, instead of a traceback hours into training. Pass ``check_images=False`` for a
    dataset already checked (e.g. opened again in the same session or on a read-only copy known to be
    good) where even those seconds matter. SynthReID is rendered in memory and is never checked.

    Raises:
        ValueError: unknown name, or a real dataset without ``root``.
        DatasetLayoutError: the folder does not have the dataset's layout.
        CorruptImagesError: (with ``check_images``) some images do not decode; the message lists them.
    """
    if name.lower() == "synthreid":
        from reidlib.data.synthetic import SynthReID

        synth = SynthReID(preset, seed=seed, height=height, width=width)
        if precache:
            synth.precache(progress=progress)
        return synth.splits, synth.load_image, synth
    if root is None:
        raise ValueError(f"dataset {name!r} needs a root folder (the folder holding it)")
    from reidlib.data.dataset import open_rgb

    splits = load_dataset(name, root, **loader_kwargs)
    if check_images:
        check_split_images(splits, progress=progress)
    return splits, open_rgb, None
