"""Market-1501 loader (Zheng et al., ICCV 2015).

Layout (the folder as unpacked, usually ``Market-1501-v15.09.15/``)::

    bounding_box_train/  12,936 images, 751 identities     0002_c1s1_000451_03.jpg
    query/                3,368 images, 750 identities
    bounding_box_test/   19,732 images, 750 identities + distractors (pid 0) + junk (pid -1)

Name fields: pid, camera ``c1..c6``, sequence ``s1..``, frame, box index. Junk images (pid -1) are
dropped; distractors (pid 0) stay in the gallery.
"""

from __future__ import annotations

import os

from reidlib.data.parsing import make_splits, read_market_style_splits, resolve_dataset_root
from reidlib.data.records import ReIDSplits

NAME = "market1501"
NUM_CAMERAS = 6
SPLIT_FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
FOLDER_NAMES = ("Market-1501-v15.09.15", "Market-1501", "market1501", "Market1501")
EXAMPLE_NAME = "0002_c1s1_000451_03.jpg"


def load_market1501(root: str | os.PathLike[str]) -> ReIDSplits:
    """Read Market-1501 from ``root`` (the dataset folder, or its parent holding one of ``FOLDER_NAMES``).

    Returns:
        ``ReIDSplits`` with absolute image paths, train pids relabelled to ``0..750`` on the full dataset,
        query/gallery pids as in the file names, camids ``0..5``.

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
