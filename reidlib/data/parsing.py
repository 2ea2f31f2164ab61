"""Shared helpers for reading re-ID datasets from their on-disk layouts.

Every loader follows the same steps: find the dataset folder (the root itself, or a child with one of the
dataset's usual names), check that its split folders exist, list the image files in each split, parse pid
and camera from each file name, and relabel the training pids to ``0..C-1``. Anything that does not fit
raises :class:`DatasetLayoutError` naming the path and what was expected.

File-name conventions handled here:

* Market-style names ``<pid>_c<camera>...``: Market-1501 (``0002_c1s1_000451_03.jpg``), DukeMTMC-reID
  (``0001_c2_f0046182.jpg``) and CUHK03-NP (``0001_c1_1.png``). Cameras are 1-based in the names and
  0-based in the records. pid ``-1`` marks junk images (dropped, as in the usual evaluation protocol);
  pid ``0`` marks Market-1501 distractors (kept, so they sit in the gallery as true negatives).
* MSMT17 names ``<pid>_<index>_<camera>_<date+time>_<frame>_<n>.jpg``; the camera is the third field.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from reidlib.data.records import Record, ReIDSplits, relabel

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png"})
JUNK_PID = -1
DISTRACTOR_PID = 0

# "<pid>_c<camera>" followed by Market's "s<sequence>", an underscore, or the end of the stem.
_MARKET_STYLE_NAME = re.compile(r"^(?P<pid>-?\d+)_c(?P<cam>\d+)(?:[s_]|$)")


class DatasetLayoutError(ValueError):
    """A dataset folder does not have the layout its loader expects (message names the path)."""


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """True for a visible file whose extension is jpg/jpeg/png (any case)."""
    p = Path(path)
    return not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS


def absolute(path: str | os.PathLike[str]) -> Path:
    """Absolute, normalised path; symlinks are kept so record paths look like what the user passed."""
    return Path(os.path.abspath(os.path.expanduser(os.fspath(path))))


def _format_names(names: Iterable[str], suffix: str = "") -> str:
    return ", ".join(f"{n}{suffix}" for n in names)


def resolve_dataset_root(
    root: str | os.PathLike[str],
    *,
    dataset: str,
    expected_entries: Sequence[str],
    folder_names: Sequence[str],
) -> Path:
    """Find the dataset folder: ``root`` itself or a child of it named like the dataset.

    ``root`` is accepted when it directly holds at least one of ``expected_entries`` (split folders or
    list files); otherwise its children whose names match one of ``folder_names`` (case-insensitively,
    in the given order of preference) are tried. Whether *all* entries exist is checked by the caller,
    so a half-copied dataset gets a "missing split folder" error rather than a "wrong root" one.

    Raises:
        DatasetLayoutError: ``root`` is not a folder, or neither it nor a suitably named child holds
            any expected entry. The message names ``root`` and lists what was looked for.
    """
    root_path = absolute(root)
    wanted = f"the {dataset} folder (holding {_format_names(expected_entries)}) or its parent"
    if not root_path.is_dir():
        raise DatasetLayoutError(f"{dataset}: root {root_path} is not an existing folder; expected {wanted}")

    def holds_layout(folder: Path) -> bool:
        return any((folder / entry).exists() for entry in expected_entries)

    if holds_layout(root_path):
        return root_path
    children = {child.name.lower(): child for child in sorted(root_path.iterdir()) if child.is_dir()}
    for name in folder_names:
        child = children.get(name.lower())
        if child is not None and holds_layout(child):
            return child
    raise DatasetLayoutError(
        f"{dataset}: {root_path} is not the {dataset} folder: expected it to contain "
        f"{_format_names(expected_entries)}, or to contain a subfolder named one of "
        f"{_format_names(folder_names)} that does"
    )


def require_folder(path: Path, *, dataset: str, what: str) -> Path:
    """Return ``path`` if it is a folder, else raise naming it as the missing ``what``."""
    if not path.is_dir():
        raise DatasetLayoutError(f"{dataset}: missing {what} folder {path}; expected it to exist")
    return path


def list_images(folder: Path, *, dataset: str, split: str) -> list[Path]:
    """Sorted image files directly inside ``folder`` (non-images, hidden files and subfolders ignored).

    Raises:
        DatasetLayoutError: the folder is missing or holds no image file.
    """
    require_folder(folder, dataset=dataset, what=f"{split} split")
    images = sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))
    if not images:
        raise DatasetLayoutError(
            f"{dataset}: {split} split folder {folder} holds no images; expected "
            f"{_format_names(sorted(IMAGE_EXTENSIONS))} files"
        )
    return images


def parse_market_style_name(
    path: str | os.PathLike[str], *, num_cameras: int, example: str
) -> tuple[int, int]:
    """Parse ``<pid>_c<camera>...`` from a file name; return ``(pid, camid)`` with a 0-based camid.

    Args:
        path: the image file (only its name is parsed).
        num_cameras: cameras are numbered ``1..num_cameras`` in the names.
        example: a valid name of this dataset, quoted in the error message.

    Raises:
        DatasetLayoutError: the name does not match, pid < -1, or the camera is out of range.
    """
    name = Path(path).name
    expected = f"'<pid>_c<camera>...' like {example} (pid >= -1, camera 1..{num_cameras})"
    match = _MARKET_STYLE_NAME.match(name)
    if match is None:
        raise DatasetLayoutError(f"cannot parse image name {path}: expected {expected}")
    pid, cam = int(match["pid"]), int(match["cam"])
    if pid < JUNK_PID:
        raise DatasetLayoutError(f"bad pid {pid} in image name {path}: expected {expected}")
    if not 1 <= cam <= num_cameras:
        raise DatasetLayoutError(f"bad camera c{cam} in image name {path}: expected {expected}")
    return pid, cam - 1


def read_market_style_split(
    folder: Path, *, dataset: str, split: str, num_cameras: int, example: str, drop_junk: bool = True
) -> list[Record]:
    """Records of one split folder with Market-style names; junk (pid -1) dropped unless ``drop_junk=False``.

    Raises:
        DatasetLayoutError: missing/empty folder, an unparsable name, or only junk images.
    """
    records = []
    for path in list_images(folder, dataset=dataset, split=split):
        pid, camid = parse_market_style_name(path, num_cameras=num_cameras, example=example)
        if drop_junk and pid == JUNK_PID:
            continue
        records.append(Record(str(path), pid, camid))
    if not records:
        raise DatasetLayoutError(
            f"{dataset}: {split} split folder {folder} holds only junk images (pid {JUNK_PID}); "
            "expected at least one image of a real identity"
        )
    return records


def read_market_style_splits(
    dataset_root: Path,
    *,
    dataset: str,
    split_folders: dict[str, str],
    num_cameras: int,
    example: str,
) -> dict[str, list[Record]]:
    """Read each ``split -> folder name`` of ``split_folders`` under ``dataset_root`` (see above)."""
    return {
        split: read_market_style_split(
            dataset_root / folder, dataset=dataset, split=split, num_cameras=num_cameras, example=example
        )
        for split, folder in split_folders.items()
    }


def make_splits(
    name: str,
    *,
    train: list[Record],
    query: list[Record],
    gallery: list[Record],
    num_cameras: int,
    root: Path,
    extra: dict | None = None,
) -> ReIDSplits:
    """Bundle the lists into :class:`ReIDSplits`, relabelling train pids to ``0..C-1``.

    ``extra["train_pid_map"]`` keeps the original pid of each new label (index = new label).
    """
    relabelled, num_pids = relabel(train)
    original_pids = sorted({r.pid for r in train})
    return ReIDSplits(
        name=name,
        train=relabelled,
        query=query,
        gallery=gallery,
        num_train_pids=num_pids,
        num_cameras=num_cameras,
        root=str(root),
        extra={"train_pid_map": original_pids, **(extra or {})},
    )
