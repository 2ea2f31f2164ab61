"""Drawing surface of the SynthReID renderer: an element map plus per-element look-up tables.

Every visible thing (a shoe pair, the torso, a logo, a background pole) is an *element* with a colour, a
body-part label (``PART_NAMES``), a cue label (``CUE_NAMES``) and a texture strength. Elements are drawn
back to front with PIL into one 8-bit map, so every pixel belongs to the front-most element: occluders
hide what is behind them in the masks as well as in the image.

Geometry of a person is written in *person units*: ``v`` runs from the top of the head (0) to the soles
(1), ``u`` is the horizontal offset from the body axis in the same unit. :class:`Frame` maps it to pixels.
"""

from __future__ import annotations

from PIL import Image, ImageDraw

#: Body-part labels of the ``parts`` map (0 = background).
PART_NAMES: tuple[str, ...] = ("background", "head", "hair", "torso", "arms", "hands", "legs", "feet",
                               "accessory", "occluder")
#: Identity-specific cue labels of the ``cues`` map (0 = none).
CUE_NAMES: tuple[str, ...] = ("none", "logo", "shoes", "backpack", "handbag", "strap", "hat")
VIEWS: tuple[str, ...] = ("front", "back", "side")

_PART = {name: i for i, name in enumerate(PART_NAMES)}
_CUE = {name: i for i, name in enumerate(CUE_NAMES)}
_MAX_ELEMENTS = 256


class Canvas:
    """The element map being drawn plus the per-element look-up tables."""

    def __init__(self, height: int, width: int) -> None:
        self.height, self.width = height, width
        self.image = Image.new("L", (width, height), 0)
        self.draw = ImageDraw.Draw(self.image)
        self.colours: list[tuple[float, float, float]] = [(0.0, 0.0, 0.0)]
        self.parts = [0]
        self.cues = [0]
        self.texture = [0.0]
        self.person = [False]
        # garment patterns, applied to the finished map: (element ids, kind, geometry, pattern element ids)
        self.patterns: list[tuple[list[int], str, tuple[float, ...], tuple[int, ...]]] = []

    def element(self, rgb, part: str = "background", cue: str = "none", texture: float = 0.06,
                person: bool = False) -> int:
        """Register an element; returns its id (the fill value to draw it with).

        ``texture`` is the strength of the multiplicative fabric/ground texture, ``person`` marks pixels
        that get the silhouette shading.
        """
        if len(self.colours) >= _MAX_ELEMENTS:
            raise RuntimeError(f"more than {_MAX_ELEMENTS - 1} elements in one image")
        self.colours.append(rgb)
        self.parts.append(_PART[part])
        self.cues.append(_CUE[cue])
        self.texture.append(texture)
        self.person.append(person)
        return len(self.colours) - 1


class Frame:
    """Person units ``(u, v)`` -> pixels, with scale, shift, mirror (facing) and a lean (shear)."""

    def __init__(self, cx: float, top: float, unit: float, mirror: int, lean: float = 0.0) -> None:
        self.cx, self.top, self.unit, self.mirror, self.lean = cx, top, unit, mirror, lean

    def p(self, u: float, v: float) -> tuple[float, float]:
        return (self.cx + self.mirror * (u + self.lean * (0.55 - v)) * self.unit, self.top + v * self.unit)

    def pts(self, uv) -> list[tuple[float, float]]:
        return [self.p(u, v) for u, v in uv]

    def box(self, u0: float, v0: float, u1: float, v1: float) -> list[float]:
        x0, y0 = self.p(u0, v0)
        x1, y1 = self.p(u1, v1)
        return [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]

    def ell(self, u: float, v: float, ru: float, rv: float) -> list[float]:
        return self.box(u - ru, v - rv, u + ru, v + rv)

    def w(self, du: float) -> int:
        return max(1, int(round(du * self.unit)))


def ellipse(cv: Canvas, fr: Frame, eid: int, u: float, v: float, ru: float, rv: float) -> None:
    cv.draw.ellipse(fr.ell(u, v, ru, rv), fill=eid)


def poly(cv: Canvas, fr: Frame, eid: int, uv) -> None:
    cv.draw.polygon(fr.pts(uv), fill=eid)


def limb(cv: Canvas, fr: Frame, eid: int, uv, width: float) -> None:
    """A thick polyline with round caps (PIL rounds only inner joints)."""
    pts = fr.pts(uv)
    w = fr.w(width)
    cv.draw.line(pts, fill=eid, width=w, joint="curve")
    r = w / 2.0
    for x, y in (pts[0], pts[-1]):
        cv.draw.ellipse([x - r, y - r, x + r, y + r], fill=eid)


def rounded(cv: Canvas, fr: Frame, eid: int, u0: float, v0: float, u1: float, v1: float, r: float) -> None:
    box = fr.box(u0, v0, u1, v1)
    radius = min(fr.w(r), int((box[2] - box[0]) / 2), int((box[3] - box[1]) / 2))
    if box[2] - box[0] < 1 or box[3] - box[1] < 1:
        return
    cv.draw.rounded_rectangle(box, radius=max(0, radius), fill=eid)


def shape(cv: Canvas, fr: Frame, eid: int, shape: str, u: float, v: float, r: float) -> None:
    if shape == "circle":
        ellipse(cv, fr, eid, u, v, r, r)
    elif shape == "square":
        cv.draw.rectangle(fr.box(u - r, v - r, u + r, v + r), fill=eid)
    elif shape == "triangle":
        poly(cv, fr, eid, [(u, v - r * 1.1), (u + r * 1.1, v + r), (u - r * 1.1, v + r)])
    else:  # diamond
        poly(cv, fr, eid, [(u, v - r * 1.25), (u + r, v), (u, v + r * 1.25), (u - r, v)])

