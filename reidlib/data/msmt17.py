"""MSMT17 loader (Wei et al., CVPR 2018), versions V1 and V2.

Layout (``MSMT17_V1/``; V2 names the image folders ``mask_train_v2/`` and ``mask_test_v2/``)::

    train/0000/0000_000_01_0303morning_0015_0.jpg ...   images of the 1,041 training identities
    test/0000/0000_000_01_0303morning_0008_0.jpg ...    images of the 3,060 test identities
    list_train.txt   30,248 lines "<path relative to train/> <pid>"
    list_val.txt      2,373 lines (same identities as list_train; usually merged into training)
    list_query.txt   11,659 lines "<path relative to test/> <pid>"
    list_gallery.txt 82,161 lines

The camera is the third underscore field of the file name (``01``..``15``).
"""

from __future__ import annotations

import os
from pathlib import Path

from reidlib.data.parsing import (
    DatasetLayoutError,
    is_image_file,
    make_splits,
    require_folder,
    resolve_dataset_root,
)
from reidlib.data.records import Record, ReIDSplits

NAME = "msmt17"
NUM_CAMERAS = 15
# version -> (train image folder, test image folder)
LAYOUTS: dict[str, tuple[str, str]] = {"V1": ("train", "test"), "V2": ("mask_train_v2", "mask_test_v2")}
LIST_FILES = {"train": "list_train.txt", "val": "list_val.txt", "query": "list_query.txt",
              "gallery": "list_gallery.txt"}
FOLDER_NAMES = {"V1": ("MSMT17_V1", "MSMT17", "msmt17"), "V2": ("MSMT17_V2", "MSMT17", "msmt17")}
EXAMPLE_LINE = "0000/0000_000_01_0303morning_0015_0.jpg 0"


def parse_msmt17_camera(path: str | os.PathLike[str]) -> int:
    """0-based camid from an MSMT17 image name (third underscore field, ``01``..``15``)."""
    fields = Path(path).name.split("_")
    expected = (f"'<pid>_<index>_<camera>_...' like 0000_000_01_0303morning_0015_0.jpg "
                f"(camera 01..{NUM_CAMERAS:02d})")
    if len(fields) < 4 or not fields[2].isdigit():
        raise DatasetLayoutError(f"msmt17: cannot parse camera from image name {path}: expected {expected}")
    cam = int(fields[2])
    if not 1 <= cam <= NUM_CAMERAS:
        raise DatasetLayoutError(f"msmt17: bad camera {fields[2]} in image name {path}: expected {expected}")
    return cam - 1


def read_msmt17_list(
    list_file: Path, image_dir: Path, *, split: str, check_files: bool = True
) -> list[Record]:
    """Records of one MSMT17 list file; paths in it are relative to ``image_dir``.

    Raises:
        DatasetLayoutError: the list is missing or empty, a line is not ``<relative image path> <pid>``
            (pid >= 0), a camera does not parse, or (with ``check_files``) a listed image does not exist.
    """
    if not list_file.is_file():
        raise DatasetLayoutError(
            f"msmt17: missing {split} list file {list_file}; expected lines like '{EXAMPLE_LINE}'"
        )
    records = []
    for lineno, raw in enumerate(list_file.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit() or not is_image_file(parts[0]):
            raise DatasetLayoutError(
                f"msmt17: cannot parse line {lineno} of {list_file}: {line!r}; expected "
                f"'<relative image path> <pid>' like '{EXAMPLE_LINE}'"
            )
        path = image_dir / parts[0]
        camid = parse_msmt17_camera(path)
        if check_files and not path.is_file():
            raise DatasetLayoutError(
                f"msmt17: image {path} listed on line {lineno} of {list_file} does not exist"
            )
        records.append(Record(str(path), int(parts[1]), camid))
    if not records:
        raise DatasetLayoutError(f"msmt17: {split} list file {list_file} is empty; expected lines like "
                                 f"'{EXAMPLE_LINE}'")
    return records


def _normalise_version(version: str | int | None) -> str | None:
    if version is None:
        return None
    key = str(version).upper()
    key = key if key.startswith("V") else f"V{key}"
    if key not in LAYOUTS:
        raise ValueError(f"msmt17: unknown version {version!r}; expected one of {', '.join(LAYOUTS)} or None")
    return key


def _detect_version(dataset_root: Path) -> str:
    """The layout whose image folders exist; a partial layout gets a 'missing folder' error."""
    def describe(v: str) -> str:
        return f"{' and '.join(f + '/' for f in LAYOUTS[v])} (MSMT17_{v})"

    present = [v for v, folders in LAYOUTS.items() if any((dataset_root / f).is_dir() for f in folders)]
    if not present:
        raise DatasetLayoutError(
            f"msmt17: no image folders in {dataset_root}: expected {' or '.join(map(describe, LAYOUTS))}"
        )
    if len(present) > 1:
        raise DatasetLayoutError(
            f"msmt17: {dataset_root} holds both {' and '.join(map(describe, present))}; "
            "pass version='V1' or version='V2'"
        )
    return present[0]


def load_msmt17(
    root: str | os.PathLike[str],
    *,
    combine_train_val: bool = True,
    version: str | int | None = None,
    check_files: bool = True,
) -> ReIDSplits:
    """Read MSMT17 V1 or V2 from ``root`` (the dataset folder, or its parent holding ``MSMT17_V1``/``_V2``).

    Args:
        root: dataset folder or its parent.
        combine_train_val: train on ``list_train + list_val`` (the common practice, 32,621 images); if
            False, train is ``list_train`` only and the validation records go to ``extra["val"]``
            (original pids).
        version: ``"V1"``, ``"V2"`` or None to detect it from the image folders present.
        check_files: check that every listed image exists (one ``stat`` per image).

    Returns:
        ``ReIDSplits`` with absolute image paths, train pids relabelled to ``0..C-1``, camids ``0..14``;
        ``extra["version"]`` is ``"V1"`` or ``"V2"``.

    Raises:
        ValueError: unknown ``version``.
        DatasetLayoutError: wrong root, missing image folder or list file, empty list, unparsable line or
            image name, missing image.
    """
    wanted = _normalise_version(version)
    versions = [wanted] if wanted else list(LAYOUTS)
    entries = [f for v in versions for f in LAYOUTS[v]] + list(LIST_FILES.values())
    names = tuple(dict.fromkeys(n for v in versions for n in FOLDER_NAMES[v]))
    dataset_root = resolve_dataset_root(root, dataset=NAME, expected_entries=entries, folder_names=names)
    found = wanted or _detect_version(dataset_root)
    train_dir, test_dir = (require_folder(dataset_root / f, dataset=NAME, what=f"MSMT17_{found} image")
                           for f in LAYOUTS[found])

    def read(split: str, image_dir: Path) -> list[Record]:
        list_file = dataset_root / LIST_FILES[split]
        return read_msmt17_list(list_file, image_dir, split=split, check_files=check_files)

    train, val = read("train", train_dir), read("val", train_dir)
    extra: dict = {"version": found}
    if combine_train_val:
        train = train + val
    else:
        extra["val"] = val
    return make_splits(NAME, train=train, query=read("query", test_dir), gallery=read("gallery", test_dir),
                       num_cameras=NUM_CAMERAS, root=dataset_root, extra=extra)
