"""Tiny dataset trees in the real re-ID on-disk layouts, for tests.

Each ``make_*`` function writes a few 4x8 dummy images (JPEG, or PNG for CUHK03-NP) plus some non-image
files the loaders must ignore, and returns the dataset folder. The ``*_LAYOUT`` constants say what is
written: ``split -> [(pid, camera), ...]`` with 1-based cameras as in the file names, so tests can
compute the expected records.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import Image

Layout = dict[str, Sequence[tuple[int, int]]]

MARKET_SPLIT_FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
NOISE_FILES = ("Thumbs.db", "readme.txt")

MARKET_LAYOUT: Layout = {
    "train": [(2, 1), (2, 3), (7, 2), (7, 6), (11, 4), (11, 5), (11, 1)],
    "query": [(3, 1), (5, 2)],
    # pid 0: distractors (kept); pid -1: junk (dropped)
    "gallery": [(3, 2), (3, 4), (5, 1), (5, 6), (0, 3), (0, 5), (-1, 1), (-1, 2)],
}
DUKE_LAYOUT: Layout = {
    "train": [(1, 1), (1, 8), (4, 2), (4, 7), (9, 3)],
    "query": [(5, 1), (6, 8)],
    "gallery": [(5, 2), (6, 3), (6, 5), (12, 4)],
}
CUHK03_LAYOUTS: dict[str, Layout] = {
    "labeled": {
        "train": [(1, 1), (1, 2), (3, 1), (3, 2), (8, 1), (8, 2)],
        "query": [(10, 1), (20, 2)],
        "gallery": [(10, 2), (20, 1), (20, 1)],
    },
    # detected boxes: same identities, a different number of images
    "detected": {
        "train": [(1, 1), (1, 2), (3, 2), (8, 1)],
        "query": [(10, 1), (20, 2)],
        "gallery": [(10, 2), (20, 1)],
    },
}
# MSMT17 lists: train/val (relative to the train folder) and query/gallery (relative to the test folder)
MSMT17_LAYOUT: Layout = {
    "train": [(0, 1), (0, 15), (1, 3), (2, 7), (2, 8)],
    "val": [(0, 2), (3, 4)],
    "query": [(0, 1), (1, 9)],
    "gallery": [(0, 5), (1, 10), (1, 12), (2, 15)],
}
MSMT17_FOLDERS = {"V1": ("train", "test"), "V2": ("mask_train_v2", "mask_test_v2")}


def write_image(path: Path, shade: int = 0) -> Path:
    """Write a 4x8 RGB image (format from the extension), creating parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 8), (shade % 256, 80, 160)).save(path)
    return path


def market_name(pid: int, cam: int, index: int) -> str:
    """Market-1501 name, e.g. ``0002_c1s1_000451_03.jpg`` (junk: ``-1_c1s1_...``)."""
    pid_text = "-1" if pid == -1 else f"{pid:04d}"
    return f"{pid_text}_c{cam}s1_{index * 25:06d}_01.jpg"


def duke_name(pid: int, cam: int, index: int) -> str:
    """DukeMTMC-reID name, e.g. ``0001_c2_f0046182.jpg``."""
    return f"{pid:04d}_c{cam}_f{index * 97:07d}.jpg"


def cuhk03_name(pid: int, cam: int, index: int) -> str:
    """CUHK03-NP name, e.g. ``0001_c1_1.png``."""
    return f"{pid:04d}_c{cam}_{index}.png"


def msmt17_relpath(pid: int, cam: int, index: int) -> str:
    """MSMT17 list path, e.g. ``0000/0000_000_01_0303morning_0015_0.jpg``."""
    return f"{pid:04d}/{pid:04d}_{index:03d}_{cam:02d}_0303morning_{index:04d}_0.jpg"


def write_market_style_tree(
    dataset_root: Path,
    layout: Layout,
    name_fn: Callable[[int, int, int], str],
    split_folders: dict[str, str] = MARKET_SPLIT_FOLDERS,
    noise: bool = True,
) -> Path:
    """Write ``layout`` as ``dataset_root/<split folder>/<name_fn(pid, cam, index)>`` (+ non-image files)."""
    for split, entries in layout.items():
        folder = dataset_root / split_folders[split]
        folder.mkdir(parents=True, exist_ok=True)
        for index, (pid, cam) in enumerate(entries):
            write_image(folder / name_fn(pid, cam, index), shade=index)
        if noise:
            for name in NOISE_FILES:
                (folder / name).write_bytes(b"not an image")
    return dataset_root


def make_market1501(
    parent: Path, folder_name: str = "Market-1501-v15.09.15", layout: Layout = MARKET_LAYOUT
) -> Path:
    """Market-1501 tree under ``parent/folder_name``; returns the dataset folder."""
    return write_market_style_tree(parent / folder_name, layout, market_name)


def make_dukemtmc(parent: Path, folder_name: str = "DukeMTMC-reID", layout: Layout = DUKE_LAYOUT) -> Path:
    """DukeMTMC-reID tree under ``parent/folder_name``; returns the dataset folder."""
    return write_market_style_tree(parent / folder_name, layout, duke_name)


def make_cuhk03_np(
    parent: Path, folder_name: str = "cuhk03-np", layouts: dict[str, Layout] = CUHK03_LAYOUTS
) -> Path:
    """CUHK03-NP tree ``parent/folder_name/{labeled,detected}/...``; returns the ``cuhk03-np`` folder."""
    root = parent / folder_name
    for variant, layout in layouts.items():
        write_market_style_tree(root / variant, layout, cuhk03_name)
    return root


def make_msmt17(
    parent: Path, version: str = "V1", folder_name: str | None = None, layout: Layout = MSMT17_LAYOUT
) -> Path:
    """MSMT17 tree (V1: ``train/``, ``test/``; V2: ``mask_train_v2/``, ``mask_test_v2/``) plus the four
    list files, under ``parent/folder_name`` (default ``MSMT17_<version>``); returns the dataset folder."""
    root = parent / (folder_name or f"MSMT17_{version}")
    train_dir, test_dir = (root / f for f in MSMT17_FOLDERS[version])
    index = 0  # unique across splits, so train and val names never collide in the shared folder
    for split, entries in layout.items():
        image_dir = train_dir if split in ("train", "val") else test_dir
        lines = []
        for pid, cam in entries:
            rel = msmt17_relpath(pid, cam, index)
            write_image(image_dir / rel, shade=index)
            lines.append(f"{rel} {pid}\n")
            index += 1
        (root / f"list_{split}.txt").write_text("".join(lines))
    (train_dir / "0000" / "Thumbs.db").write_bytes(b"not an image")
    (root / "readme.txt").write_text("MSMT17 fixture\n")
    return root


# --- broken images, for the dataset image check -------------------------------------------------------

# What each broken file of ``break_images`` is, and the start of the reason the check gives for it.
BROKEN_KINDS: dict[str, str] = {"truncated": "truncated", "empty": "empty file (0 bytes)",
                                "text": "not an image"}


def write_noise_image(path: Path, size: tuple[int, int] = (64, 128), seed: int = 0) -> Path:
    """Write a ``size`` (width, height) RGB noise image, format from the extension. Unlike the 4x8 images
    of the trees above, most of its bytes are compressed pixel data, so cutting it leaves the headers
    whole and truncates the pixels, like an interrupted download."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = random.Random(seed).randbytes(size[0] * size[1] * 3)
    Image.frombytes("RGB", size, data).save(path)
    return path


def truncate_file(path: Path, fraction: float = 0.5) -> Path:
    """Keep the first ``fraction`` of the bytes of ``path``."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def break_images(truncated: Path, empty: Path, text: Path) -> dict[str, str]:
    """Overwrite three image files: a noise image cut to half its bytes, a 0-byte file, a text file.

    Returns ``{path: the start of the reason the image check gives}`` (the truncated one's reason goes on
    with the format, e.g. "truncated JPEG").
    """
    truncate_file(write_noise_image(truncated))
    empty.write_bytes(b"")
    text.write_text("404 Not Found\n")
    fmt = "PNG" if truncated.suffix.lower() == ".png" else "JPEG"
    return {str(truncated): f"truncated {fmt}", str(empty): BROKEN_KINDS["empty"],
            str(text): BROKEN_KINDS["text"]}


def make_market1501_with_broken_images(parent: Path) -> tuple[Path, dict[str, str]]:
    """Market-1501 tree (:func:`make_market1501`) whose first train image is truncated, first query image
    empty and first gallery image a text file; returns the dataset folder and :func:`break_images`'s map."""
    root = make_market1501(parent)
    first = {split: root / MARKET_SPLIT_FOLDERS[split] / market_name(*MARKET_LAYOUT[split][0], 0)
             for split in ("train", "query", "gallery")}
    return root, break_images(first["train"], first["query"], first["gallery"])


def tree_checksums(root: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``root`` (``"folder"`` for a folder), to show that
    nothing under it was changed, added or removed."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder"
            for p in sorted(root.rglob("*"))}
