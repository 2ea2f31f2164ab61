"""DukeMTMC-reID loader (Zheng et al., ICCV 2017, from Ristani et al.'s DukeMTMC videos).

Layout (``DukeMTMC-reID/``)::

    bounding_box_train/  16,522 images, 702 identities     0001_c2_f0046182.jpg
    query/                2,228 images, 702 identities
    bounding_box_test/   17,661 images, 1,110 identities (702 + 408 distractor identities)

Name fields: pid, camera ``c1..c8``, frame. The format has no junk class, but pid -1 is still dropped
so Market-style conversions of other data behave the same.
"""

from __future__ import annotations

import os

from reidlib.data.parsing import make_splits, read_market_style_splits, resolve_dataset_root
from reidlib.data.records import ReIDSplits

NAME = "dukemtmc"
NUM_CAMERAS = 8
SPLIT_FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
FOLDER_NAMES = ("DukeMTMC-reID", "dukemtmc-reid", "DukeMTMC_reID", "dukemtmcreid", "dukemtmc")
EXAMPLE_NAME = "0001_c2_f0046182.jpg"


def load_dukemtmc(root: str | os.PathLike[str]) -> ReIDSplits:
    """Read DukeMTMC-reID from ``root`` (the dataset folder, or its parent holding one of ``FOLDER_NAMES``).

    Returns:
        ``ReIDSplits`` with absolute image paths, train pids relabelled to ``0..C-1``, camids ``0..7``.

    Raises:
        DatasetLayoutError: wrong root, missing or empty split folder, or an unparsable image name.
    """
    dataset_root = resolve_dataset_root(
        root, dataset=NAME, expected_entries=list(SPLIT_FOLDERS.values()), folder_names=FOLDER_NAMES
    )
    splits = read_market_style_splits(
        dataset_root, dataset=NAME, split_folders=SPLIT_FOLDERS, num_cameras=NUM_CAMERAS, example=EXAMPLE_NAME
    )
    return make_splits(NAME, num_cameras=NUM_CAMERAS, root=dataset_root, **splits)
