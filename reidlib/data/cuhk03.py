"""CUHK03-NP loader: CUHK03 (Li et al., CVPR 2014) under the new protocol of Zhong et al. (CVPR 2017).

Layout (``cuhk03-np/``), one copy per box source::

    labeled/   bounding_box_train/  7,368 images, 767 identities     0001_c1_1.png
               query/               1,400 images, 700 identities
               bounding_box_test/   5,328 images, 700 identities
    detected/  (same folders; 7,365 / 1,400 / 5,332 images)

Name fields: pid, camera ``c1``/``c2`` (each identity is seen by one camera pair), image index.
"""

from __future__ import annotations

import os

from reidlib.data.parsing import (
    make_splits,
    read_market_style_splits,
    require_folder,
    resolve_dataset_root,
)
from reidlib.data.records import ReIDSplits

NAME = "cuhk03"
NUM_CAMERAS = 2
VARIANTS = ("labeled", "detected")
SPLIT_FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
FOLDER_NAMES = ("cuhk03-np", "cuhk03_np", "CUHK03-NP", "cuhk03")
EXAMPLE_NAME = "0001_c1_1.png"


def load_cuhk03(root: str | os.PathLike[str], variant: str = "labeled") -> ReIDSplits:
    """Read CUHK03-NP (``variant`` = ``"labeled"`` hand-drawn or ``"detected"`` DPM boxes).

    ``root`` is the ``cuhk03-np`` folder (holding ``labeled/`` and ``detected/``) or its parent.

    Returns:
        ``ReIDSplits`` named ``cuhk03_labeled`` / ``cuhk03_detected``; absolute image paths, train pids
        relabelled to ``0..C-1``, camids ``0..1``; ``extra["variant"]`` holds the variant.

    Raises:
        ValueError: unknown ``variant``.
        DatasetLayoutError: wrong root, missing variant or split folder, empty split, unparsable name.
    """
    if variant not in VARIANTS:
        raise ValueError(f"cuhk03: unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    dataset_root = resolve_dataset_root(
        root, dataset=NAME, expected_entries=VARIANTS, folder_names=FOLDER_NAMES
    )
    variant_root = require_folder(dataset_root / variant, dataset=NAME, what=f"{variant!r} variant")
    name = f"{NAME}_{variant}"
    splits = read_market_style_splits(
        variant_root, dataset=name, split_folders=SPLIT_FOLDERS, num_cameras=NUM_CAMERAS, example=EXAMPLE_NAME
    )
    return make_splits(name, num_cameras=NUM_CAMERAS, root=variant_root, extra={"variant": variant}, **splits)
