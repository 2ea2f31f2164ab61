"""SynthReID: a procedural pedestrian re-ID dataset with ground-truth masks of every identity cue.

Real re-ID benchmarks cannot say *why* a model matched two images. SynthReID can: every image is drawn
from an attribute vector (:class:`~reidlib.data.synthetic_attributes.PersonAttributes`) and comes with a
body-part map and a cue map, and identities come in look-alike *families* that differ only in small local
cues (shoes, logo, bag, hat). It is hard in the ways the five papers discuss:

* small inter-person variation (seed 000): family members share garments, build, skin and hair;
* views hide cues (a logo is on the front, a backpack mostly shows from behind), pose varies;
* detector-like misalignment, crops that cut off the head or the feet, occluders (seed 001's cut-out);
* cameras with different light, colour cast, blur, noise, background clutter, and one low-resolution
  camera (seed 003);
* distractors (pid 0) and junk (pid -1) in the gallery, like Market-1501.

Everything is deterministic in ``seed``; each image's randomness comes from ``seed`` and its key, so
rendering order does not matter. Records point at in-memory keys (``"synth/train/000123"``); pass
:meth:`SynthReID.load_image` as the ``image_source`` of a dataset, or write the images to disk in
Market-1501's layout with :meth:`SynthReID.write_market_format` and read them with the real loader.

Example::

    synth = SynthReID("small", seed=0, height=128, width=64)
    print(synth.splits.summary())
    sample = synth.render(synth.splits.query[0].path)   # image, parts, cues, pid, camid, view

Two rendering domains (seed 003's cross-domain Table 8, Duke -> Market and back). ``domain="a"``, the
default, is the original world, pixel for pixel. ``domain="b"`` is another one with a new population:
eight cameras of a winter campus (other scenes and backgrounds, flat overcast light, cool colour casts,
muted colours, haze, softer lenses, a 2x low-resolution fourth camera instead of a 3x sixth one; see
:data:`~reidlib.data.synthetic_scene.CAMERA_STYLES`), people dressed in dark winter garments
(:data:`~reidlib.data.synthetic_attributes.GARMENT_PALETTES`), and identities, layout and per-image draws
from generators keyed by the domain, so no identity of ``"a"`` reappears in ``"b"``. Split sizes, look-alike
families and cue masks are those of the preset, so the same code trains and evaluates on either::

    source = SynthReID("small", seed=0)                 # domain "a"
    target = SynthReID("small", seed=0, domain="b")     # 8 cameras, same split sizes
    config = domain_config(PRESETS["small"], "b")       # the same as a config (e.g. for a recipe)

``domain_config`` applies the domain's camera count (:data:`DOMAIN_DEFAULTS`);
``dataclasses.replace(PRESETS["small"], domain="b")`` keeps the preset's six cameras and otherwise renders
domain "b" just the same. Domain "b" splits are named ``synthreid-<preset>-b``.
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from reidlib.atomic import atomic_write_text
from reidlib.data.records import Record, ReIDSplits
from reidlib.data.synthetic_attributes import (
    PersonAttributes,
    differing_cues,
    sample_base_attributes,
    sample_family,
)
from reidlib.data.synthetic_layout import (
    DISTRACTOR_PID,
    JUNK_PID,
    ImageSpec,
    extra_gallery_layout,
    sort_by_name,
    test_layout,
    train_layout,
)
from reidlib.data.synthetic_render import (
    CUE_NAMES,
    PART_NAMES,
    VIEWS,
    CameraProfile,
    Placement,
    SynthSample,
    TextureBank,
    render_person_image,
)
from reidlib.data.synthetic_scene import make_camera_profiles

__all__ = ["CUE_NAMES", "DOMAINS", "DOMAIN_DEFAULTS", "PART_NAMES", "PRESETS", "VIEWS", "SynthReID",
           "SynthReIDConfig", "SynthSample", "domain_config", "load_synthreid"]

#: The rendering domains: ``"a"`` the original world, ``"b"`` a second one (see the module docstring).
DOMAINS: tuple[str, ...] = ("a", "b")
#: Config fields that :func:`domain_config` sets with the domain: domain "b" has eight cameras (like
#: DukeMTMC-reID against Market-1501's six) and a milder low-resolution camera elsewhere in the network.
DOMAIN_DEFAULTS: dict[str, dict[str, object]] = {
    "a": {"num_cameras": 6, "low_res_camera": 5, "low_res_factor": 3.0},
    "b": {"num_cameras": 8, "low_res_camera": 3, "low_res_factor": 2.0},
}
# Extra entropy words of every generator of a domain; "a" has none, so its draws are the original ones.
_DOMAIN_KEYS: dict[str, tuple[int, ...]] = {"a": (), "b": (0xD0B,)}

MARKET_SPLIT_FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}


@dataclass(frozen=True)
class SynthReIDConfig:
    """Sizes and nuisance levels of a SynthReID dataset.

    Attributes:
        name: preset name (``"custom"`` otherwise); the dataset is called ``synthreid-<name>``.
        num_train_ids, num_test_ids: identities per split (disjoint, like Market's 751/750).
        num_train_images: train images in total (at least 2 per identity, one per camera seen).
        num_query: query images in total (1..num_cameras per test identity, one per camera at most).
        num_gallery_test: gallery images of the test identities (at least 2 per identity).
        num_distractors: gallery images of pid 0 (random people and bad detections); kept by the protocol.
        num_junk: gallery images of pid -1; written by ``write_market_format`` only (loaders drop them).
        num_cameras: cameras (Market: 6).
        family_size: identities per look-alike family; 1 turns look-alikes off.
        height, width: rendered image size in pixels.
        low_res_camera: 0-based index of the low-resolution camera (``None``: none).
        low_res_factor: how much that camera loses (the image is shrunk by this factor and scaled back).
        occlusion_prob: mean chance that an image has an occluder (varies per camera).
        cut_prob: chance that a crop cuts off the head or the feet.
        clutter: background clutter scale (0: plain wall and floor).
        track_view_prob: chance that an image shows the view of its tracklet (identity x camera).
        domain: rendering domain, one of :data:`DOMAINS` (``"a"``: the original world; ``"b"``: other
            cameras, backgrounds, garment palette and identities, see the module docstring).
    """

    name: str = "custom"
    num_train_ids: int = 120
    num_test_ids: int = 100
    num_train_images: int = 1680
    num_query: int = 200
    num_gallery_test: int = 1000
    num_distractors: int = 200
    num_junk: int = 40
    num_cameras: int = 6
    family_size: int = 3
    height: int = 256
    width: int = 128
    low_res_camera: int | None = 5
    low_res_factor: float = 3.0
    occlusion_prob: float = 0.2
    cut_prob: float = 0.1
    clutter: float = 1.0
    track_view_prob: float = 0.75
    domain: str = "a"

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first field that cannot work."""
        def need(ok: bool, field_name: str, expected: str) -> None:
            if not ok:
                value = getattr(self, field_name)
                raise ValueError(f"SynthReIDConfig.{field_name}={value!r}: expected {expected}")

        need(self.num_train_ids >= 1, "num_train_ids", ">= 1")
        need(self.num_test_ids >= 1, "num_test_ids", ">= 1")
        need(self.num_cameras >= 2, "num_cameras", ">= 2")
        need(self.num_train_images >= 2 * self.num_train_ids, "num_train_images",
             f">= 2 per train identity ({2 * self.num_train_ids})")
        need(self.num_test_ids <= self.num_query <= self.num_test_ids * self.num_cameras, "num_query",
             f"between num_test_ids ({self.num_test_ids}) and num_test_ids * num_cameras")
        need(self.num_gallery_test >= 2 * self.num_test_ids, "num_gallery_test",
             f">= 2 per test identity ({2 * self.num_test_ids})")
        need(self.num_distractors >= 0, "num_distractors", ">= 0")
        need(self.num_junk >= 0, "num_junk", ">= 0")
        need(self.family_size >= 1, "family_size", ">= 1")
        need(self.height >= 16 and self.width >= 8, "height", "height >= 16 and width >= 8")
        need(self.low_res_camera is None or 0 <= self.low_res_camera < self.num_cameras, "low_res_camera",
             f"None or 0..{self.num_cameras - 1}")
        need(self.low_res_factor >= 1.0, "low_res_factor", ">= 1")
        need(0.0 <= self.occlusion_prob <= 1.0, "occlusion_prob", "in [0, 1]")
        need(0.0 <= self.cut_prob <= 1.0, "cut_prob", "in [0, 1]")
        need(self.clutter >= 0.0, "clutter", ">= 0")
        need(0.0 <= self.track_view_prob <= 1.0, "track_view_prob", "in [0, 1]")
        need(self.domain in DOMAINS, "domain", f"one of {DOMAINS}")


#: Named sizes. ``market`` copies Market-1501's counts (751/12,936 train; 750 test ids, 3,368 query,
#: 19,732 gallery files = 13,115 of test ids + 2,798 distractors + 3,819 junk).
PRESETS: dict[str, SynthReIDConfig] = {
    "tiny": SynthReIDConfig(name="tiny", num_train_ids=18, num_test_ids=12, num_train_images=108,
                            num_query=24, num_gallery_test=72, num_distractors=12, num_junk=4),
    # 300 test identities and 600 queries: enough that the evaluation itself adds little noise.
    "small": SynthReIDConfig(name="small", num_test_ids=300, num_query=600, num_gallery_test=3000,
                             num_distractors=600, num_junk=120),
    "market": SynthReIDConfig(name="market", num_train_ids=751, num_test_ids=750, num_train_images=12_936,
                              num_query=3_368, num_gallery_test=13_115, num_distractors=2_798,
                              num_junk=3_819),
    # The pre-training population's size (:mod:`reidlib.recipes.pretrain`): twice Market's training
    # identities at Market's images per identity. Doubling the identities lifted the fine-tuned baseline
    # by 8 mAP points; 3,000 identities for fewer epochs in the same time did not lift it further.
    "large": SynthReIDConfig(name="large", num_train_ids=1_500, num_test_ids=750, num_train_images=25_872,
                             num_query=3_368, num_gallery_test=13_115, num_distractors=2_798,
                             num_junk=3_819),
}


def domain_config(preset: str | SynthReIDConfig, domain: str) -> SynthReIDConfig:
    """``preset`` (a name of :data:`PRESETS` or a config) moved to rendering domain ``domain``.

    Sets ``domain`` and the fields of :data:`DOMAIN_DEFAULTS` (camera count and low-resolution camera);
    everything else, split sizes included, stays. A config already in ``domain`` is returned unchanged.
    """
    config = _resolve_config(preset, None, None)
    if domain not in DOMAINS:
        raise ValueError(f"unknown SynthReID domain {domain!r}; expected one of {DOMAINS}")
    if config.domain == domain:
        return config
    config = replace(config, domain=domain, **DOMAIN_DEFAULTS[domain])
    config.validate()
    return config


def _resolve_config(preset: str | SynthReIDConfig, height: int | None, width: int | None) -> SynthReIDConfig:
    if isinstance(preset, SynthReIDConfig):
        config = preset
    elif isinstance(preset, str) and preset in PRESETS:
        config = PRESETS[preset]
    else:
        raise ValueError(f"unknown SynthReID preset {preset!r}; expected one of {sorted(PRESETS)} "
                         "or a SynthReIDConfig")
    if height is not None or width is not None:
        h = height if height is not None else 2 * int(width)
        w = width if width is not None else max(8, int(height) // 2)
        config = replace(config, height=int(h), width=int(w))
    config.validate()
    return config


def _key_seed(seed: int, key: str, domain: str = "a") -> np.random.SeedSequence:
    return np.random.SeedSequence([seed, 0x5EED, zlib.crc32(key.encode("utf-8")), *_DOMAIN_KEYS[domain]])


class SynthReID:
    """A procedurally rendered re-ID dataset (see the module docstring).

    Args:
        preset: ``"tiny"`` (CI, renders in about a second), ``"small"`` (CPU book runs), ``"market"``
            (Market-1501 sizes) or a :class:`SynthReIDConfig`.
        seed: everything (identities, layout, cameras, pixels) follows from it.
        height, width: render size in pixels (default: the config's, 256x128); giving one keeps 2:1.
        cache: pre-render every image of the splits into memory now (see :meth:`precache`).
        domain: rendering domain (:data:`DOMAINS`); ``None`` keeps the config's (``"a"`` for the
            presets). A different one goes through :func:`domain_config` (its camera count).

    Attributes:
        config: the resolved :class:`SynthReIDConfig`.
        splits: :class:`ReIDSplits` with in-memory keys; train pids relabelled ``0..C-1`` (label = original
            pid - 1), query/gallery with original pids (test ids, distractors 0). ``splits.extra`` holds
            ``image_source`` (= :meth:`load_image`), ``train_pid_map``, ``seed``, ``preset`` and
            ``domain``.
        junk: pid -1 records (only written to disk by :meth:`write_market_format`).
        cameras: the :class:`CameraProfile` of each camera.
    """

    def __init__(self, preset: str | SynthReIDConfig = "tiny", seed: int = 0, height: int | None = None,
                 width: int | None = None, cache: bool = False, domain: str | None = None) -> None:
        if domain is not None:
            preset = domain_config(preset, domain)
        self.config = _resolve_config(preset, height, width)
        self.seed = int(seed)
        cfg = self.config
        self.domain = cfg.domain
        self.height, self.width = cfg.height, cfg.width
        self.cameras: list[CameraProfile] = make_camera_profiles(
            cfg.num_cameras, self.seed, low_res_camera=cfg.low_res_camera, low_res_factor=cfg.low_res_factor,
            occlusion_prob=cfg.occlusion_prob, clutter=cfg.clutter, domain=cfg.domain)
        self._bank = TextureBank(cfg.height, cfg.width, self.seed)
        self._identities = self._make_identities()
        self._specs: dict[str, ImageSpec] = {}
        self.splits, self.junk = self._make_splits()
        self._cache: np.ndarray | None = None
        self._cache_index: dict[str, int] = {}
        if cache:
            self.precache()

    def _seed_sequence(self, *words: int) -> np.random.SeedSequence:
        """The generator seed of one draw: the dataset seed, the draw's words, then the domain's key."""
        return np.random.SeedSequence([self.seed, *words, *_DOMAIN_KEYS[self.domain]])

    @property
    def textures(self) -> TextureBank:
        """The dataset's texture bank (garment patterns, backgrounds), for rendering extra images in its
        style, e.g. :mod:`reidlib.data.synthetic_distractors`."""
        return self._bank

    # ---- identities ------------------------------------------------------------------------------
    def _make_identities(self) -> list[PersonAttributes]:
        """Attributes of pids ``1..num_train_ids`` (train) then the test pids; families never span splits.

        Family sizes are ``family_size`` or one less (when the ids do not divide evenly). Each domain has
        its own generator and garment palette, hence its own population.
        """
        cfg = self.config
        rng = np.random.default_rng(self._seed_sequence(0x1D5))
        identities: list[PersonAttributes] = []
        family = 0
        for n_ids in (cfg.num_train_ids, cfg.num_test_ids):
            # as equal as possible, so no identity is left alone when n_ids is not a multiple
            n_families = -(-n_ids // cfg.family_size)
            for i in range(n_families):
                size = n_ids // n_families + (i < n_ids % n_families)
                identities.extend(sample_family(rng, family, size, cfg.domain))
                family += 1
        return identities

    @property
    def num_train_ids(self) -> int:
        return self.config.num_train_ids

    def original_pid(self, pid: int, split: str = "test") -> int:
        """The original pid of ``pid`` as found in records of ``split`` (train records carry labels)."""
        if split == "train":
            if not 0 <= pid < self.config.num_train_ids:
                raise ValueError(f"train label {pid} out of range 0..{self.config.num_train_ids - 1}")
            return pid + 1
        if split not in ("test", "query", "gallery"):
            raise ValueError(f"split must be 'train', 'test', 'query' or 'gallery', got {split!r}")
        first, last = self.config.num_train_ids + 1, self.config.num_train_ids + self.config.num_test_ids
        if not first <= pid <= last:
            raise ValueError(f"test pid {pid} out of range {first}..{last} (pid 0 is a distractor, "
                             "which has no identity)")
        return pid

    def attributes_of(self, pid: int, split: str = "test") -> PersonAttributes:
        """Attribute vector of an identity (``split="train"``: ``pid`` is a train label)."""
        return self._identities[self.original_pid(pid, split) - 1]

    def family_of(self, pid: int, split: str = "test") -> int:
        """Family index of an identity (``split="train"``: ``pid`` is a train label)."""
        return self.attributes_of(pid, split).family

    def family_members(self, pid: int, split: str = "test") -> list[int]:
        """All pids (in the numbering of ``split``) of the family of ``pid``, ``pid`` included."""
        family = self.family_of(pid, split)
        offset = 1 if split == "train" else 0
        ids = self._split_pid_range(split)
        return [p - offset for p in ids if self._identities[p - 1].family == family]

    def _split_pid_range(self, split: str) -> range:
        n_train = self.config.num_train_ids
        if split == "train":
            return range(1, n_train + 1)
        return range(n_train + 1, n_train + self.config.num_test_ids + 1)

    def distinctive_cues(self, pid: int, split: str = "test") -> tuple[str, ...]:
        """Cue names (``CUE_NAMES``) in which ``pid`` differs from at least one family member.

        These are the regions an explanation *should* highlight to tell the look-alikes apart; empty for a
        family of one.
        """
        me = self.attributes_of(pid, split)
        names: set[str] = set()
        for other in self.family_members(pid, split):
            if other != pid:
                names.update(differing_cues(me, self.attributes_of(other, split)))
        return tuple(sorted(names))

    def look_alike_pids(self, split: str = "test", n_families: int = 4, min_size: int = 2) -> list[int]:
        """Pids (numbering of ``split``) of the first ``n_families`` families with ``>= min_size`` members.

        Handy for t-SNE plots and ranked lists of hard identities.
        """
        if n_families < 1:
            raise ValueError(f"n_families must be >= 1, got {n_families}")
        offset = 1 if split == "train" else 0
        by_family: dict[int, list[int]] = {}
        for p in self._split_pid_range("train" if split == "train" else "test"):
            by_family.setdefault(self._identities[p - 1].family, []).append(p - offset)
        chosen = [pids for pids in by_family.values() if len(pids) >= min_size][:n_families]
        return [p for pids in chosen for p in pids]

    @property
    def cue_names(self) -> tuple[str, ...]:
        return CUE_NAMES

    @property
    def part_names(self) -> tuple[str, ...]:
        return PART_NAMES

    # ---- layout ----------------------------------------------------------------------------------
    def _make_splits(self) -> tuple[ReIDSplits, list[Record]]:
        cfg = self.config
        rng = np.random.default_rng(self._seed_sequence(0x5A1))
        train_pids = list(self._split_pid_range("train"))
        test_pids = list(self._split_pid_range("test"))
        train = train_layout(train_pids, cfg.num_train_images, cfg.num_cameras, rng)
        query, gallery = test_layout(test_pids, cfg.num_query, cfg.num_gallery_test, cfg.num_cameras, rng)
        used = {s.filename for s in gallery}
        gallery += extra_gallery_layout("gallery", DISTRACTOR_PID, cfg.num_distractors, cfg.num_cameras, rng,
                                        used)
        junk = extra_gallery_layout("junk", JUNK_PID, cfg.num_junk, cfg.num_cameras, rng, used)

        def records(split: str, specs: list[ImageSpec], relabel_train: bool = False) -> list[Record]:
            out = []
            for i, spec in enumerate(sort_by_name(specs)):
                key = f"synth/{split}/{i:06d}"
                self._specs[key] = spec
                out.append(Record(key, spec.pid - 1 if relabel_train else spec.pid, spec.camid))
            return out

        # another domain is other data: its name keeps their split fingerprints apart
        suffix = "" if cfg.domain == "a" else f"-{cfg.domain}"
        splits = ReIDSplits(
            name=f"synthreid-{cfg.name}{suffix}",
            train=records("train", train, relabel_train=True),
            query=records("query", query),
            gallery=records("gallery", gallery),
            num_train_pids=cfg.num_train_ids,
            num_cameras=cfg.num_cameras,
            root="",
            extra={"image_source": self.load_image, "train_pid_map": train_pids, "seed": self.seed,
                   "preset": cfg.name, "domain": cfg.domain},
        )
        return splits, records("junk", junk)

    def spec(self, path: str) -> ImageSpec:
        """The layout entry of a record key (split, original pid, camera, Market name fields)."""
        try:
            return self._specs[path]
        except KeyError:
            raise KeyError(f"{path!r} is not an image key of this SynthReID "
                           f"(keys look like 'synth/train/000000')") from None

    def filename(self, path: str) -> str:
        """Market-1501 file name of a record key, e.g. ``0002_c1s1_000451_03.jpg``."""
        return self.spec(path).filename

    # ---- rendering -------------------------------------------------------------------------------
    def _track_view(self, pid: int, camid: int) -> str:
        rng = np.random.default_rng(self._seed_sequence(0x71E, pid, camid))
        return VIEWS[int(rng.choice(len(VIEWS), p=self.cameras[camid].view_probs))]

    def render(self, path: str, *, view: str | None = None, occlude: bool | None = None) -> SynthSample:
        """Render the image of record key ``path`` with its masks.

        ``view``/``occlude`` override the image's own draw (figures and tests; the default reproduces
        exactly the dataset's image). The returned ``pid`` is the one of the record (train: label).
        """
        spec = self.spec(path)
        cfg = self.config
        rng = np.random.default_rng(_key_seed(self.seed, path, self.domain))
        camera = self.cameras[spec.camid]
        sloppy = False
        if spec.pid >= 1:
            attrs: PersonAttributes | None = self._identities[spec.pid - 1]
            if view is None and rng.random() < cfg.track_view_prob:
                view = self._track_view(spec.pid, spec.camid)
        elif spec.pid == DISTRACTOR_PID:
            attrs = sample_base_attributes(rng, family=-1, domain=self.domain)
            sloppy = rng.random() < 0.4
        else:  # junk: background only, or a badly cropped fragment
            attrs = sample_base_attributes(rng, family=-1, domain=self.domain) if rng.random() < 0.5 else None
            sloppy = True
        image, parts, cues, drawn_view = render_person_image(
            attrs, camera, rng, self._bank, view=view, occlude=occlude, cut_prob=cfg.cut_prob, sloppy=sloppy)
        pid = spec.pid - 1 if spec.split == "train" else spec.pid
        return SynthSample(image=image, parts=parts, cues=cues, pid=pid, camid=spec.camid, view=drawn_view,
                           path=path)

    def render_identity(self, pid: int, split: str = "test", *, view: str = "front", camid: int = 0,
                        seed: int = 0, occlude: bool = False) -> SynthSample:
        """Render identity ``pid`` in a controlled shot: centred, uncut, given view and camera.

        The background, pose and noise depend only on ``seed``, ``camid`` and the dataset seed, so two
        identities rendered with the same arguments differ only where their attributes differ; for family
        members, only in their cues (figures of look-alikes, explanation sanity checks). ``path`` of the
        sample is ``"identity/<split>/<pid>"`` (not a record key).
        """
        attrs = self.attributes_of(pid, split)
        if not 0 <= camid < len(self.cameras):
            raise ValueError(f"camid {camid} out of range 0..{len(self.cameras) - 1}")
        rng = np.random.default_rng(self._seed_sequence(0xF16, seed, camid))
        placement = Placement(self.width / 2, 0.055 * self.height, 0.88 * self.height)
        image, parts, cues, drawn = render_person_image(
            attrs, self.cameras[camid], rng, self._bank, view=view, occlude=occlude, cut_prob=0.0,
            placement=placement)
        return SynthSample(image=image, parts=parts, cues=cues, pid=pid, camid=camid, view=drawn,
                           path=f"identity/{split}/{pid}")

    def image_array(self, path: str) -> np.ndarray:
        """``(H, W, 3)`` uint8 image of ``path`` (from the cache when :meth:`precache` was called)."""
        if self._cache is not None:
            index = self._cache_index.get(path)
            if index is not None:
                return self._cache[index]
        return self.render(path).image

    def load_image(self, path: str) -> Image.Image:
        """The RGB ``PIL.Image`` of a record key (the ``image_source`` for :class:`ImageDataset`)."""
        return Image.fromarray(self.image_array(path))

    __call__ = load_image

    def precache(self, splits: tuple[str, ...] = ("train", "query", "gallery"),
                 progress: bool = True) -> None:
        """Render every image of ``splits`` once into one uint8 array (``N x H x W x 3`` bytes of memory).

        Training re-reads each image every epoch; with the cache that costs a copy instead of a render.
        """
        keys = [r.path for name in splits for r in getattr(self.splits, name)]
        cache = np.empty((len(keys), self.height, self.width, 3), dtype=np.uint8)
        # A notebook stores every refresh of a text bar: refresh every few seconds, not many times a second.
        bar = tqdm(keys, desc=f"render {self.splits.name}", disable=not progress, mininterval=5.0)
        for i, key in enumerate(bar):
            cache[i] = self.render(key).image
        self._cache, self._cache_index = cache, {k: i for i, k in enumerate(keys)}

    def clear_cache(self) -> None:
        self._cache, self._cache_index = None, {}

    # ---- disk -------------------------------------------------------------------------------------
    def write_market_format(self, root: str | os.PathLike[str], quality: int = 95,
                            progress: bool = True) -> Path:
        """Write the dataset in Market-1501's layout under ``root`` and return ``root``.

        ``root/bounding_box_train``, ``root/query`` and ``root/bounding_box_test`` (which also holds the
        distractors ``0000_*`` and the junk ``-1_*``), JPEG files named like ``0002_c1s1_000451_03.jpg``,
        plus ``root/synthreid.json`` with the config and seed. ``load_market1501(root)`` then returns the
        same records as :attr:`splits` (paths aside).

        Raises:
            FileExistsError: a split folder already holds images (refuses to mix two datasets).
        """
        root_path = Path(root)
        folders = {split: root_path / name for split, name in MARKET_SPLIT_FOLDERS.items()}
        for folder in folders.values():
            if folder.is_dir() and any(folder.iterdir()):
                raise FileExistsError(f"{folder} is not empty; write SynthReID into a new folder")
            folder.mkdir(parents=True, exist_ok=True)
        jobs = [(r.path, folders[split]) for split in ("train", "query", "gallery")
                for r in getattr(self.splits, split)]
        jobs += [(r.path, folders["gallery"]) for r in self.junk]
        for key, folder in tqdm(jobs, desc=f"write {self.splits.name}", disable=not progress):
            self.load_image(key).save(folder / self.filename(key), quality=quality)
        meta = {"dataset": self.splits.name, "seed": self.seed, "config": asdict(self.config)}
        atomic_write_text(root_path / "synthreid.json", json.dumps(meta, indent=2))
        return root_path

    def summary(self) -> str:
        cams = ", ".join(f"c{c.camid + 1} {c.scene}{' (low-res)' if c.low_res_factor > 1 else ''}"
                         for c in self.cameras)
        return (f"{self.splits.summary()}\n  junk     {len(self.junk):>7} images (Market folder only)\n"
                f"  cameras: {cams}\n  families of {self.config.family_size}, {self.height}x{self.width} px, "
                f"seed {self.seed}{'' if self.domain == 'a' else f', domain {self.domain}'}")

    def __repr__(self) -> str:
        domain = "" if self.domain == "a" else f", domain={self.domain!r}"
        return (f"SynthReID(preset={self.config.name!r}, seed={self.seed}, size={self.height}x{self.width}"
                f"{domain})")


def load_synthreid(root: str | os.PathLike[str] | None = None, preset: str | SynthReIDConfig | None = None,
                   seed: int = 0, height: int | None = None, width: int | None = None,
                   domain: str | None = None) -> ReIDSplits:
    """Registry entry: SynthReID splits (``root`` names the preset when it is one, else is ignored).

    The returned splits hold in-memory keys; ``splits.extra["image_source"]`` loads their images.
    ``domain`` as for :class:`SynthReID`.
    """
    if preset is None:
        preset = str(root) if root is not None and str(root) in PRESETS else "small"
    return SynthReID(preset, seed=seed, height=height, width=width, domain=domain).splits
