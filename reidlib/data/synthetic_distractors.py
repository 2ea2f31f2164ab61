"""Extra gallery distractors for a SynthReID dataset, rendered on demand and in any number.

Seed 001 (Sec. 4.5, Fig. 7) adds up to 500,000 distractor detections of Market+500K to Market-1501's
gallery (19,732 images, about 25 times as many) and plots mAP against their number. This module renders
the SynthReID counterpart: random people who are none of the test identities (drawn like SynthReID's own
pid-0 distractors, 40 % of them badly cropped) plus crops of background only, through the dataset's own
cameras, so they share its image statistics. All are labelled pid 0 (a distractor that stays in the
gallery and never matches), whatever they show.

Images come out in chunks (:func:`iter_distractor_chunks`), so a caller can turn them into descriptors
and forget the pixels: a gallery far larger than memory-friendly image arrays still works.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from reidlib.data.synthetic import SynthReID
from reidlib.data.synthetic_attributes import sample_base_attributes
from reidlib.data.synthetic_layout import DISTRACTOR_PID
from reidlib.data.synthetic_render import render_person_image

__all__ = ["iter_distractor_chunks", "render_distractor"]


def render_distractor(synth: SynthReID, index: int, seed: int = 0, background_share: float = 0.3
                      ) -> tuple[np.ndarray, int, bool]:
    """Render extra distractor ``index`` of ``synth`` (deterministic in ``synth.seed``, ``seed``, ``index``).

    Args:
        synth: the dataset whose cameras and image size are used.
        index: which distractor (any non-negative int; the same index gives the same image).
        seed: a second seed, to draw an independent distractor set.
        background_share: chance that the crop shows background only (no person).

    Returns:
        ``(image, camid, is_background)``: uint8 ``(H, W, 3)`` at the dataset's render size.
    """
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    if not 0.0 <= background_share <= 1.0:
        raise ValueError(f"background_share must be in [0, 1], got {background_share}")
    # domain "b" draws its own people (another key); domain "a" keeps the sequence it always had
    key = [synth.seed, 0xD157, seed, index] + ([] if synth.domain == "a" else [ord(c) for c in synth.domain])
    rng = np.random.default_rng(np.random.SeedSequence(key))
    camid = int(rng.integers(len(synth.cameras)))
    background = bool(rng.random() < background_share)
    attrs = None if background else sample_base_attributes(rng, family=-1, domain=synth.domain)
    sloppy = background or bool(rng.random() < 0.4)
    image, _, _, _ = render_person_image(attrs, synth.cameras[camid], rng, synth.textures, sloppy=sloppy,
                                         cut_prob=synth.config.cut_prob)
    return image, camid, background


def iter_distractor_chunks(synth: SynthReID, count: int, chunk: int = 512, seed: int = 0,
                           background_share: float = 0.3
                           ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Distractors ``0..count-1`` in chunks of at most ``chunk``.

    Yields:
        ``(images, pids, camids)``: uint8 ``(n, H, W, 3)``, int64 ``(n,)`` all :data:`DISTRACTOR_PID`
        (0), int64 ``(n,)`` cameras.
    """
    if count < 0 or chunk < 1:
        raise ValueError(f"count must be >= 0 and chunk >= 1, got {count}, {chunk}")
    for start in range(0, count, chunk):
        stop = min(count, start + chunk)
        items = [render_distractor(synth, i, seed, background_share) for i in range(start, stop)]
        images = np.stack([it[0] for it in items])
        camids = np.array([it[1] for it in items], dtype=np.int64)
        yield images, np.full(len(items), DISTRACTOR_PID, dtype=np.int64), camids
