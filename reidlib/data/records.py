"""The record types every dataset loader returns.

A re-ID dataset is three lists of ``(path, pid, camid)`` records. Train pids are relabelled to
``0..C-1`` so they index a classifier directly; query and gallery keep the original pids, because the
evaluation only compares them for equality (and pid 0 of Market-1501 must stay a distractor).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple


class Record(NamedTuple):
    """One image: ``path`` on disk (or a key into an in-memory store), person id, camera id (0-based)."""

    path: str
    pid: int
    camid: int


@dataclass
class ReIDSplits:
    """Train/query/gallery records of one dataset.

    Attributes:
        name: dataset name, e.g. ``"market1501"``.
        train: training records, pids relabelled to ``0..num_train_pids-1``.
        query: query records, original pids.
        gallery: gallery records, original pids (distractors included).
        num_train_pids: number of training identities ``C``.
        num_cameras: number of cameras in the dataset.
        root: folder the records were read from (``""`` for in-memory data).
    """

    name: str
    train: list[Record]
    query: list[Record]
    gallery: list[Record]
    num_train_pids: int
    num_cameras: int
    root: str = ""
    extra: dict = field(default_factory=dict)

    def summary(self) -> str:
        """A small table of ids / images per split, like the papers' dataset tables."""

        def row(name: str, recs: list[Record]) -> str:
            return f"  {name:<8} {len({r.pid for r in recs}):>6} ids {len(recs):>7} images"

        return "\n".join(
            [f"{self.name} ({self.num_cameras} cameras)", row("train", self.train),
             row("query", self.query), row("gallery", self.gallery)]
        )

    def fingerprint(self, splits: tuple[str, ...] = ("train", "query", "gallery")) -> str:
        """A 16-hex digest of the records of ``splits`` (paths, pids, cameras) and, for images on disk,
        of each file's size and modification time: it changes when the data would.

        A stored result (e.g. the untrained model's metrics of a run folder) is reused only while its
        fingerprint matches; hashing ``os.stat`` of Market-1501's 36k files takes well under a second.
        """
        import hashlib
        import os

        digest = hashlib.sha1(self.name.encode())
        for split in splits:
            digest.update(f"|{split}|".encode())
            for r in getattr(self, split):
                try:
                    st = os.stat(r.path)
                    stamp = f"{st.st_size}:{st.st_mtime_ns}"
                except OSError:  # an in-memory key (SynthReID) or a file that is not there
                    stamp = "-"
                digest.update(f"{r.path}\0{r.pid}\0{r.camid}\0{stamp}\n".encode())
        return digest.hexdigest()[:16]


def relabel(records: list[Record]) -> tuple[list[Record], int]:
    """Map the pids of ``records`` to ``0..C-1`` in sorted order of the original pid; return them and C."""
    pids = sorted({r.pid for r in records})
    mapping = {p: i for i, p in enumerate(pids)}
    return [Record(r.path, mapping[r.pid], r.camid) for r in records], len(pids)


def records_by_pid(records: Iterable[Record]) -> dict[int, list[Record]]:
    """``{pid: its records in input order}``, pids in first-seen order."""
    out: dict[int, list[Record]] = {}
    for r in records:
        out.setdefault(r.pid, []).append(r)
    return out


def one_per_identity(records: Sequence[Record], count: int) -> list[Record]:
    """A fixed, spread-out selection of ``count`` records: one per identity first (in pid order), then a
    second per identity, and so on, until ``count`` or the records run out."""
    by_pid = records_by_pid(records)
    chosen: list[Record] = []
    round_ = 0
    while len(chosen) < count and any(len(v) > round_ for v in by_pid.values()):
        for pid in sorted(by_pid):
            if len(by_pid[pid]) > round_ and len(chosen) < count:
                chosen.append(by_pid[pid][round_])
        round_ += 1
    return chosen
