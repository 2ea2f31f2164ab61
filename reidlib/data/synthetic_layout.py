"""Which images SynthReID contains: identities per split, images per identity and camera, file names.

The layout copies the structure of Market-1501 (Zheng et al., ICCV 2015): disjoint train and test
identities, every identity seen by at least two cameras, at most one query per identity and camera, each
query with gallery images of the same identity in *other* cameras (the protocol drops same-camera
matches), distractors (pid 0) and junk (pid -1) in the gallery, and Market's file names
``<pid>_c<camera>s<sequence>_<frame>_<box>.jpg``. Images of one identity in one camera form a tracklet
(one sequence, increasing frame numbers), which is why they share a view in the renderer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

JUNK_PID = -1
DISTRACTOR_PID = 0


@dataclass(frozen=True)
class ImageSpec:
    """One image of the dataset before rendering.

    Attributes:
        split: ``"train"``, ``"query"``, ``"gallery"`` or ``"junk"`` (junk only goes into the Market folder).
        pid: original person id (``>= 1``), 0 for a distractor, -1 for junk.
        camid: 0-based camera.
        sequence, frame, box: Market name fields (``s<sequence>``, 6-digit frame, 2-digit box index).
    """

    split: str
    pid: int
    camid: int
    sequence: int
    frame: int
    box: int

    @property
    def filename(self) -> str:
        """Market-1501 style name, e.g. ``0002_c1s1_000451_03.jpg`` (junk: ``-1_c1s1_...``)."""
        pid = "-1" if self.pid == JUNK_PID else f"{self.pid:04d}"
        return f"{pid}_c{self.camid + 1}s{self.sequence}_{self.frame:06d}_{self.box:02d}.jpg"


def allocate(total: int, low: np.ndarray, high: np.ndarray, rng: np.random.Generator,
             spread: float = 0.5, what: str = "images") -> np.ndarray:
    """Split ``total`` into integer counts with ``low <= counts <= high`` and random (log-normal) sizes.

    Raises:
        ValueError: ``total`` is outside ``[sum(low), sum(high)]`` (the message names ``what``).
    """
    low = np.asarray(low, dtype=np.int64)
    high = np.asarray(high, dtype=np.int64)
    if total < low.sum() or total > high.sum():
        raise ValueError(f"cannot split {total} {what} over {len(low)} identities: need between "
                         f"{int(low.sum())} and {int(high.sum())}")
    counts = low.copy()
    weights = rng.lognormal(0.0, spread, len(low))
    remaining = int(total - low.sum())
    while remaining > 0:
        room = high - counts
        w = weights * (room > 0)
        add = np.minimum(rng.multinomial(remaining, w / w.sum()), room)
        counts += add
        remaining -= int(add.sum())
    return counts


def _tracklet_names(rng: np.random.Generator, split: str, pid: int, camid: int, n: int,
                    used: set[str]) -> list[ImageSpec]:
    """``n`` images of one tracklet: one sequence, increasing frames (names unique within ``used``)."""
    specs: list[ImageSpec] = []
    sequence = int(rng.integers(1, 7))
    frame = int(rng.integers(0, 150_000))
    while len(specs) < n:
        frame += int(rng.integers(5, 60))
        spec = ImageSpec(split, pid, camid, sequence, frame % 1_000_000, int(rng.integers(1, 4)))
        if spec.filename not in used:
            used.add(spec.filename)
            specs.append(spec)
    return specs


def train_layout(pids: list[int], total: int, num_cameras: int, rng: np.random.Generator) -> list[ImageSpec]:
    """Train images: ``total`` over ``pids``; each identity in 2..num_cameras cameras, >= 1 image each."""
    n = len(pids)
    counts = allocate(total, np.full(n, 2), np.full(n, 10**6), rng, what="train images")
    used: set[str] = set()
    specs: list[ImageSpec] = []
    for pid, count in zip(pids, counts, strict=True):
        n_cams = int(min(count, num_cameras, rng.integers(2, num_cameras + 1)))
        cams = np.sort(rng.choice(num_cameras, size=n_cams, replace=False))
        per_cam = allocate(int(count), np.ones(n_cams), np.full(n_cams, 10**6), rng, what="images")
        for cam, k in zip(cams, per_cam, strict=True):
            specs.extend(_tracklet_names(rng, "train", pid, int(cam), int(k), used))
    return specs


def test_layout(pids: list[int], num_query: int, num_gallery: int, num_cameras: int,
                rng: np.random.Generator) -> tuple[list[ImageSpec], list[ImageSpec]]:
    """Query and gallery images of the test identities.

    Every identity gets ``q >= 1`` queries in distinct cameras (as in Market, one per camera at most) and
    gallery images in a camera set ``S`` of size ``>= max(2, q)`` holding every query camera, with at
    least one gallery image per camera of ``S``, so every query has a true match in another camera.
    """
    n = len(pids)
    queries = allocate(num_query, np.ones(n), np.full(n, num_cameras), rng, what="query images")
    n_cams = np.clip(queries + rng.integers(0, 3, n), 2, num_cameras)
    if n_cams.sum() > num_gallery:  # fall back to the smallest camera sets
        n_cams = np.maximum(queries, 2)
    gallery = allocate(num_gallery, n_cams, np.full(n, 10**6), rng, what="gallery images of test ids")
    used: set[str] = set()
    query_specs: list[ImageSpec] = []
    gallery_specs: list[ImageSpec] = []
    for pid, q, s, g in zip(pids, queries, n_cams, gallery, strict=True):
        cams = rng.choice(num_cameras, size=int(s), replace=False)
        query_cams = set(cams[: int(q)].tolist())
        per_cam = allocate(int(g), np.ones(int(s)), np.full(int(s), 10**6), rng, what="images")
        for cam, k in zip(cams, per_cam, strict=True):
            tracklet = _tracklet_names(rng, "gallery", pid, int(cam), int(k) + (cam in query_cams), used)
            if cam in query_cams:  # the query is one frame of the camera's tracklet
                pick = int(rng.integers(len(tracklet)))
                q_spec = tracklet.pop(pick)
                query_specs.append(ImageSpec("query", pid, q_spec.camid, q_spec.sequence, q_spec.frame,
                                             q_spec.box))
            gallery_specs.extend(tracklet)
    return query_specs, gallery_specs


def extra_gallery_layout(split: str, pid: int, count: int, num_cameras: int, rng: np.random.Generator,
                         used: set[str]) -> list[ImageSpec]:
    """Distractor (pid 0) or junk (pid -1) images, spread over cameras in short tracklets."""
    specs: list[ImageSpec] = []
    while len(specs) < count:
        k = int(min(count - len(specs), rng.integers(1, 5)))
        specs.extend(_tracklet_names(rng, split, pid, int(rng.integers(num_cameras)), k, used))
    return specs


def sort_by_name(specs: list[ImageSpec]) -> list[ImageSpec]:
    """Order of a sorted folder listing, so in-memory records match what a loader reads from disk."""
    return sorted(specs, key=lambda s: s.filename)
