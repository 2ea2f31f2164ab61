"""Dataset registry: one name per loader, so configs and the CLI can say ``dataset: market1501``."""

from __future__ import annotations

import os
from collections.abc import Callable

from reidlib.data.cuhk03 import load_cuhk03
from reidlib.data.dukemtmc import load_dukemtmc
from reidlib.data.market1501 import load_market1501
from reidlib.data.msmt17 import load_msmt17
from reidlib.data.records import ReIDSplits
from reidlib.data.synthetic import load_synthreid

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
