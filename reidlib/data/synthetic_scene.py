"""Cameras and scenes of SynthReID: illumination, colour cast, blur, noise, resolution, clutter, occluders.

Cameras are where re-ID's domain shift comes from (seed 000: "large variations of illuminations and
camera views"): each has its own light level and colour cast, lens blur and sensor noise, a background
scene with more or less clutter (what seed 002's feature masks must ignore), a preferred walking
direction (hence view), and an occlusion rate (what seed 001's cut-out prepares for). One camera can be
low-resolution, like Market-1501's sixth camera (seed 003 fuses multi-resolution features).

A rendering *domain* is a whole other camera network (:data:`CAMERA_STYLES`): domain ``"a"`` is the
original one (six summer scenes, strong light and colour casts, sensor noise); domain ``"b"`` is a winter
campus in the spirit of DukeMTMC-reID (eight scenes with snow, brick and asphalt, flat overcast light,
cool casts, washed-out colours, haze, softer lenses and little noise). Cross-domain experiments train on
one and test on the other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reidlib.data.synthetic_attributes import GARMENT_COLOURS, sample_base_attributes
from reidlib.data.synthetic_canvas import VIEWS, Canvas, Frame
from reidlib.data.synthetic_person import PersonPainter, sample_pose


@dataclass(frozen=True)
class CameraProfile:
    """What one camera does to every image it takes.

    Attributes:
        camid: 0-based camera index.
        colour_matrix: ``(3, 3)`` linear RGB transform (cast, saturation, gain), applied as ``rgb @ M.T``.
        offset: ``(3,)`` additive RGB offset (0..255 units), e.g. a haze.
        light_top, light_bottom: brightness factor at the top/bottom row (light from above).
        blur_radius: lens blur strength (0 = sharp); the image is shrunk by ``1 + blur_radius / 2``
            and scaled back.
        noise_std: sensor noise std (0..255 units).
        low_res_factor: > 1 for the low-resolution camera: the image is shrunk by this factor and scaled back.
        wall, floor: background colours (RGB).
        horizon: row of the wall/floor boundary as a fraction of the height.
        clutter: expected number of clutter objects behind the person is ``8 * clutter``.
        view_probs: probabilities of front/back/side views (cameras face walking directions differently).
        occlusion_prob: chance that an image of this camera has an occluder.
        scene: scene name, for figure captions.
        domain: the rendering domain of the camera network (its occluding passers-by dress in its
            garment palette).
    """

    camid: int
    colour_matrix: np.ndarray
    offset: np.ndarray
    light_top: float
    light_bottom: float
    blur_radius: float
    noise_std: float
    low_res_factor: float
    wall: tuple[int, int, int]
    floor: tuple[int, int, int]
    horizon: float
    clutter: float
    view_probs: tuple[float, float, float]
    occlusion_prob: float
    scene: str
    domain: str = "a"


_SCENES = (
    # name, wall, floor, horizon, clutter, view probabilities (front, back, side)
    ("plaza", (176, 170, 158), (132, 128, 122), 0.58, 0.6, (0.5, 0.2, 0.3)),
    ("shopfront", (150, 120, 96), (110, 106, 100), 0.62, 1.0, (0.2, 0.5, 0.3)),
    ("corridor", (196, 196, 186), (150, 140, 120), 0.55, 0.4, (0.35, 0.35, 0.3)),
    ("street", (120, 124, 130), (86, 86, 90), 0.6, 0.8, (0.2, 0.2, 0.6)),
    ("park", (92, 128, 84), (150, 136, 104), 0.5, 0.7, (0.4, 0.3, 0.3)),
    ("overpass", (160, 150, 140), (120, 116, 108), 0.66, 0.5, (0.3, 0.4, 0.3)),
)


# Domain b: a winter campus (eight cameras like DukeMTMC-reID): snow, brick, glass and asphalt.
_SCENES_B = (
    ("snowy_path", (150, 160, 172), (214, 218, 224), 0.52, 0.5, (0.45, 0.25, 0.3)),
    ("brick_hall", (148, 76, 60), (108, 104, 102), 0.6, 0.9, (0.25, 0.45, 0.3)),
    ("parking_lot", (118, 122, 128), (62, 64, 68), 0.5, 0.7, (0.2, 0.3, 0.5)),
    ("quad", (186, 192, 200), (226, 228, 230), 0.46, 0.3, (0.3, 0.3, 0.4)),
    ("bus_stop", (78, 96, 82), (130, 126, 122), 0.57, 1.1, (0.4, 0.4, 0.2)),
    ("library_steps", (206, 196, 174), (166, 160, 150), 0.64, 0.6, (0.5, 0.2, 0.3)),
    ("crosswalk", (86, 90, 100), (48, 50, 56), 0.55, 0.8, (0.15, 0.15, 0.7)),
    ("glass_atrium", (120, 150, 160), (190, 186, 178), 0.6, 0.4, (0.35, 0.4, 0.25)),
)


@dataclass(frozen=True)
class CameraStyle:
    """The ranges a camera network's profiles are drawn from (one per rendering domain).

    The first two cameras take the fixed ``anchor_gains``/``anchor_casts`` (so the network always spans
    its light range), later ones draw them; each ``*_range`` is ``(low, high)`` of a uniform draw
    (``cast_range`` per RGB channel). Blur is ``max(0, U(blur_range))``: a negative low end leaves some
    cameras sharp (domain a: about a third).
    """

    scenes: tuple[tuple, ...]  # (name, wall, floor, horizon, clutter, view probabilities), like _SCENES
    key: tuple[int, ...]  # entropy words of the network's generator after the seed
    anchor_gains: tuple[float, float]
    anchor_casts: tuple[tuple[float, float, float], tuple[float, float, float]]
    gain_range: tuple[float, float]
    cast_range: tuple[float | tuple[float, float, float], float | tuple[float, float, float]]
    saturation_range: tuple[float, float]
    offset_range: tuple[float, float]
    light_top_range: tuple[float, float]
    light_bottom_range: tuple[float, float]
    blur_range: tuple[float, float]
    noise_range: tuple[float, float]


#: Camera networks of the rendering domains. ``"a"`` reproduces the original cameras draw for draw.
CAMERA_STYLES: dict[str, CameraStyle] = {
    "a": CameraStyle(
        scenes=_SCENES, key=(0xCA3E,), anchor_gains=(1.18, 0.74),
        anchor_casts=((1.14, 1.0, 0.84), (0.86, 0.98, 1.16)), gain_range=(0.8, 1.2),
        cast_range=(0.85, 1.15), saturation_range=(0.6, 1.1), offset_range=(-6, 14),
        light_top_range=(1.0, 1.15), light_bottom_range=(0.75, 0.95), blur_range=(-0.5, 1.0),
        noise_range=(2.0, 5.0)),
    # overcast winter: flatter and cooler light, muted colours, haze, soft lenses, clean sensors
    "b": CameraStyle(
        scenes=_SCENES_B, key=(0xCA3E, 0xD0B), anchor_gains=(1.06, 0.82),
        anchor_casts=((0.94, 1.0, 1.1), (0.9, 1.04, 1.02)), gain_range=(0.86, 1.08),
        cast_range=((0.82, 0.94, 1.0), (0.98, 1.06, 1.2)), saturation_range=(0.4, 0.75),
        offset_range=(6, 26), light_top_range=(0.96, 1.04), light_bottom_range=(0.9, 1.0),
        blur_range=(0.3, 1.6), noise_range=(0.8, 2.5)),
}


def camera_style(domain: str) -> CameraStyle:
    """The :class:`CameraStyle` of ``domain`` (``ValueError`` naming the known ones otherwise)."""
    try:
        return CAMERA_STYLES[domain]
    except KeyError:
        raise ValueError(f"unknown SynthReID domain {domain!r}; expected one of {sorted(CAMERA_STYLES)}"
                         ) from None


def _colour_matrix(gain: float, cast: np.ndarray, saturation: float) -> np.ndarray:
    grey = np.full((3, 3), 1.0 / 3.0)
    sat = saturation * np.eye(3) + (1.0 - saturation) * grey
    return (gain * np.diag(cast) @ sat).astype(np.float32)


def make_camera_profiles(
    num_cameras: int,
    seed: int,
    *,
    low_res_camera: int | None = None,
    low_res_factor: float = 3.0,
    occlusion_prob: float = 0.2,
    clutter: float = 1.0,
    domain: str = "a",
) -> list[CameraProfile]:
    """Deterministic camera set: scenes cycle through the templates of ``domain``, each jittered by
    ``seed``.

    Domain ``"a"`` cameras differ in illumination (gain 0.7-1.25), colour cast (up to +-18 % per
    channel), saturation, blur, noise and background clutter; ``low_res_camera`` (0-based) also loses
    resolution by ``low_res_factor``, like Market-1501's low-resolution sixth camera. Domain ``"b"``
    draws from the ranges of its :class:`CameraStyle` instead, with its own generator.
    """
    if num_cameras < 2:
        raise ValueError(f"num_cameras must be >= 2 (re-ID matches across cameras), got {num_cameras}")
    if low_res_camera is not None and not 0 <= low_res_camera < num_cameras:
        raise ValueError(f"low_res_camera must be in 0..{num_cameras - 1} or None, got {low_res_camera}")
    style = camera_style(domain)
    # the draw order below is the one of the original cameras: domain "a" must stay bit-identical
    rng = np.random.default_rng(np.random.SeedSequence([seed, *style.key]))
    profiles = []
    for c in range(num_cameras):
        name, wall, floor, horizon, scene_clutter, views = style.scenes[c % len(style.scenes)]
        # first cameras span the range on purpose (a: one bright-warm, one dark-cool), later ones are random
        gain = style.anchor_gains[c] if c < 2 else float(rng.uniform(*style.gain_range))
        cast = np.array(style.anchor_casts[c] if c < 2 else rng.uniform(*style.cast_range, 3))
        jitter = rng.integers(-18, 19, size=6)
        is_low = c == low_res_camera
        profiles.append(CameraProfile(
            camid=c,
            colour_matrix=_colour_matrix(gain, cast, float(rng.uniform(*style.saturation_range))),
            offset=rng.uniform(*style.offset_range, 3).astype(np.float32),
            light_top=float(rng.uniform(*style.light_top_range)),
            light_bottom=float(rng.uniform(*style.light_bottom_range)),
            blur_radius=float(max(0.0, rng.uniform(*style.blur_range))),
            noise_std=float(rng.uniform(*style.noise_range) + (3.0 if is_low else 0.0)),
            low_res_factor=float(low_res_factor) if is_low else 1.0,
            wall=tuple(int(np.clip(w + j, 0, 255)) for w, j in zip(wall, jitter[:3], strict=True)),
            floor=tuple(int(np.clip(f + j, 0, 255)) for f, j in zip(floor, jitter[3:], strict=True)),
            horizon=float(horizon + rng.uniform(-0.05, 0.05)),
            clutter=float(clutter * scene_clutter * rng.uniform(0.8, 1.25)),
            view_probs=views,
            occlusion_prob=float(np.clip(occlusion_prob * rng.uniform(0.6, 1.4), 0.0, 1.0)),
            scene=name,
            domain=domain,
        ))
    return profiles



# ---- background, occluders -----------------------------------------------------------------------------
_CLUTTER_COLOURS = [GARMENT_COLOURS[c] for c in ("red", "blue", "yellow", "green", "white", "black", "orange",
                                                   "purple", "beige", "grey", "light_blue")]


def _jitter(rgb, rng: np.random.Generator, amount: float = 14.0) -> tuple[float, float, float]:
    j = rng.uniform(-amount, amount, 3).tolist()
    return tuple(min(255.0, max(0.0, c + d)) for c, d in zip(rgb, j, strict=True))


def draw_background(cv: Canvas, cam: CameraProfile, rng: np.random.Generator) -> int:
    """Wall, floor and clutter; returns the floor's element id (for the person's ground shadow)."""
    h, w = cv.height, cv.width
    d = cv.draw
    wall = cv.element(_jitter(cam.wall, rng), texture=0.05)
    floor = cv.element(_jitter(cam.floor, rng), texture=0.07)
    d.rectangle([0, 0, w, h], fill=wall)
    horizon = h * (cam.horizon + rng.uniform(-0.06, 0.06))
    tilt = rng.uniform(-0.08, 0.08) * w
    d.polygon([(0, horizon - tilt / 2), (w, horizon + tilt / 2), (w, h), (0, h)], fill=floor)
    n_items = int(rng.poisson(8.0 * cam.clutter))
    for _ in range(n_items):
        kind = rng.choice(["window", "sign", "pole", "bush", "stripe", "box", "figure"],
                          p=[0.2, 0.16, 0.16, 0.12, 0.14, 0.12, 0.1])
        colour = _CLUTTER_COLOURS[int(rng.integers(len(_CLUTTER_COLOURS)))]
        x = rng.uniform(-0.2, 1.0) * w
        if kind == "window":
            el = cv.element(_jitter(tuple(0.6 * c + 40 for c in cam.wall), rng, 25), texture=0.05)
            y = rng.uniform(0.0, 0.45) * h
            d.rectangle([x, y, x + rng.uniform(0.15, 0.5) * w, y + rng.uniform(0.08, 0.3) * h], fill=el)
        elif kind == "sign":
            el = cv.element(_jitter(colour, rng, 20), texture=0.04)
            y = rng.uniform(0.0, 0.5) * h
            d.rectangle([x, y, x + rng.uniform(0.1, 0.4) * w, y + rng.uniform(0.03, 0.1) * h], fill=el)
        elif kind == "pole":
            el = cv.element(_jitter((90, 92, 96), rng, 30), texture=0.04)
            d.rectangle([x, 0, x + rng.uniform(0.02, 0.07) * w, horizon + rng.uniform(0, 0.2) * h], fill=el)
        elif kind == "bush":
            el = cv.element(_jitter((60, 110, 55), rng, 25), texture=0.2)
            y = horizon + rng.uniform(-0.1, 0.02) * h
            top = y - rng.uniform(0.06, 0.16) * h
            d.ellipse([x, top, x + rng.uniform(0.2, 0.6) * w, y + 0.04 * h], fill=el)
        elif kind == "stripe":
            el = cv.element(_jitter(tuple(0.8 * c for c in cam.floor), rng, 10), texture=0.1)
            y = rng.uniform(horizon, h)
            d.polygon([(0, y), (w, y + tilt * 0.3), (w, y + tilt * 0.3 + 0.012 * h), (0, y + 0.012 * h)],
                      fill=el)
        elif kind == "box":
            el = cv.element(_jitter(colour, rng, 25), texture=0.06)
            y = horizon + rng.uniform(-0.15, 0.1) * h
            d.rectangle([x, y, x + rng.uniform(0.1, 0.3) * w, y + rng.uniform(0.05, 0.15) * h], fill=el)
        else:  # a far-away passer-by: a small flat silhouette, still background
            el = cv.element(_jitter(colour, rng, 30), texture=0.05)
            el2 = cv.element(_jitter(_CLUTTER_COLOURS[int(rng.integers(len(_CLUTTER_COLOURS)))], rng, 30))
            s = rng.uniform(0.25, 0.45) * h
            y = horizon - 0.2 * s + rng.uniform(-0.05, 0.05) * h
            d.ellipse([x + 0.08 * s, y, x + 0.18 * s, y + 0.12 * s], fill=el2)
            d.rectangle([x + 0.04 * s, y + 0.12 * s, x + 0.22 * s, y + 0.5 * s], fill=el)
            d.rectangle([x + 0.06 * s, y + 0.5 * s, x + 0.2 * s, y + s], fill=el2)
    return floor


def draw_occluder(cv: Canvas, fr: Frame, rng: np.random.Generator, domain: str = "a") -> None:
    """Something between the camera and the person: a pole, furniture, a passer-by (dressed in the
    garment palette of ``domain``) or foliage."""
    h, w = cv.height, cv.width
    d = cv.draw
    kind = rng.choice(["pole", "object", "person", "foliage"], p=[0.3, 0.35, 0.25, 0.1])
    if kind == "pole":
        el = cv.element(_jitter((110, 112, 118), rng, 40), "occluder", texture=0.05)
        x = fr.cx + rng.uniform(-0.35, 0.35) * w
        d.rectangle([x, -1, x + rng.uniform(0.07, 0.16) * w, h], fill=el)
    elif kind == "object":
        colour = _CLUTTER_COLOURS[int(rng.integers(len(_CLUTTER_COLOURS)))]
        el = cv.element(_jitter(colour, rng, 30), "occluder", texture=0.06)
        y = rng.uniform(0.6, 0.82) * h
        x0 = rng.uniform(-0.5, 0.4) * w
        if rng.random() < 0.5:
            box = [x0, y, x0 + rng.uniform(0.5, 1.2) * w, h + 10]
            d.rounded_rectangle(box, radius=int(0.03 * h), fill=el)
        else:
            d.ellipse([x0, y, x0 + rng.uniform(0.6, 1.3) * w, h + 0.3 * h], fill=el)
    elif kind == "person":
        attrs = sample_base_attributes(rng, family=-1, domain=domain)
        side = 1 if rng.random() < 0.5 else -1
        other = Frame(fr.cx + side * rng.uniform(0.38, 0.6) * w, fr.top + rng.uniform(-0.05, 0.1) * h,
                       fr.unit * rng.uniform(0.95, 1.15), 1)
        view = VIEWS[int(rng.integers(3))]
        PersonPainter(cv, other, attrs, view, sample_pose(rng), occluder=True).draw()
    else:
        el = cv.element(_jitter((50, 100, 45), rng, 20), "occluder", texture=0.25)
        x = rng.uniform(-0.3, 0.5) * w
        y = rng.uniform(-0.2, 0.1) * h
        d.ellipse([x, y, x + rng.uniform(0.5, 0.9) * w, y + rng.uniform(0.2, 0.35) * h], fill=el)

