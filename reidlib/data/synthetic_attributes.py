"""Identities of SynthReID as attribute vectors, grouped into look-alike families.

Seed 000 (CAMA) names *small inter-person variation* as the core difficulty of re-ID: different people
that share clothing and differ only in a few small cues (white shoes, a bag strap). SynthReID builds
that in. Identities come in *families*: every member shares build, skin, hair, upper and lower garment
(the large, salient regions) and differs from a sibling in one or two *local cues*: shoe colour, the logo
on the shirt, the bag, the hat. A model that looks only at the most salient region cannot tell family
members apart; one that also finds the small cues can (seed 004's "hair, shoes or logos on clothes").

Colours are names from fixed palettes so that family members share exact RGB values and attribute tables
stay readable. A rendering *domain* (:data:`GARMENT_PALETTES`) changes how often each garment colour is
worn, not the colours themselves: domain ``"a"`` draws them uniformly, domain ``"b"`` dresses people for
winter (dark coats and trousers, like DukeMTMC-reID's snowy campus against Market-1501's summer).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

RGB = tuple[int, int, int]

#: Garment colours (sRGB, 0..255). Family members share exact values, so the garment never separates them.
GARMENT_COLOURS: dict[str, RGB] = {
    "black": (30, 30, 34),
    "white": (232, 232, 226),
    "grey": (128, 128, 130),
    "dark_grey": (72, 72, 78),
    "red": (196, 36, 42),
    "dark_red": (118, 28, 38),
    "orange": (232, 118, 32),
    "yellow": (236, 200, 52),
    "green": (48, 146, 62),
    "olive": (108, 116, 52),
    "blue": (40, 82, 186),
    "navy": (30, 40, 88),
    "light_blue": (124, 172, 222),
    "purple": (108, 52, 148),
    "pink": (228, 128, 168),
    "brown": (108, 70, 42),
    "beige": (206, 186, 148),
}
LOWER_COLOURS = ("black", "dark_grey", "grey", "navy", "blue", "light_blue", "beige", "brown", "white",
                 "olive", "dark_red")
SHOE_COLOURS = ("black", "white", "brown", "grey", "red", "blue", "yellow", "green")
BAG_COLOURS = ("black", "dark_grey", "red", "blue", "navy", "brown", "green", "pink", "orange", "beige")
LOGO_COLOURS = ("white", "black", "red", "yellow", "blue", "green", "orange", "pink", "light_blue")
HAT_COLOURS = ("black", "white", "red", "blue", "navy", "beige", "green", "yellow")

SKIN_TONES: dict[str, RGB] = {
    "light": (236, 200, 176),
    "fair": (222, 178, 146),
    "tan": (196, 146, 108),
    "brown": (150, 102, 70),
    "dark": (98, 66, 46),
}
HAIR_COLOURS: dict[str, RGB] = {
    "black": (24, 20, 20),
    "dark_brown": (62, 40, 26),
    "brown": (106, 70, 40),
    "blonde": (210, 176, 104),
    "grey": (160, 156, 150),
    "red": (150, 64, 30),
}

BUILDS: dict[str, float] = {"slim": 0.98, "average": 1.12, "broad": 1.28}  # width factor of torso/limbs
HAIR_STYLES = ("short", "long", "ponytail", "bald")
UPPER_PATTERNS = ("solid", "stripes", "checks", "two_tone")
SLEEVES = ("short", "long")
LOWER_KINDS = ("trousers", "shorts", "skirt")
LOGO_POSITIONS = ("chest_left", "chest_center", "chest_right", "belly")
LOGO_SHAPES = ("square", "circle", "triangle", "diamond")
BAG_KINDS = ("none", "backpack", "handbag", "strap")
HAT_STYLES = ("cap", "beanie")
SIDES = ("left", "right")

#: The local cue dimensions in which family members differ (their masks are SynthReID's cue maps).
CUE_DIMENSIONS = ("shoes", "logo", "bag", "hat")


@dataclass(frozen=True)
class GarmentPalette:
    """How often each garment colour is worn in one rendering domain.

    ``upper``/``lower`` map colour names (of ``GARMENT_COLOURS`` / ``LOWER_COLOURS``) to relative weights;
    ``None`` means uniform. Only the large garments are weighted: the local cues keep their uniform
    colours, so look-alike families are as hard to tell apart in every domain.
    """

    name: str
    upper: dict[str, float] | None = None
    lower: dict[str, float] | None = None

    def probabilities(self, which: str, options: tuple[str, ...] | list[str]) -> np.ndarray | None:
        """Probabilities of ``options`` for ``which`` (``"upper"``/``"lower"``); ``None`` if uniform."""
        weights = self.upper if which == "upper" else self.lower
        if weights is None:
            return None
        p = np.array([weights[name] for name in options], dtype=np.float64)
        return p / p.sum()


def _winter_weights(heavy: dict[str, float], names: tuple[str, ...], rest: float) -> dict[str, float]:
    return {name: heavy.get(name, rest) for name in names}


#: Garment colour distributions of the rendering domains (see :class:`GarmentPalette`).
GARMENT_PALETTES: dict[str, GarmentPalette] = {
    "a": GarmentPalette("a"),
    # winter: about 80 % of the tops and trousers are dark (black, navy, greys, browns, olive, dark red),
    # against 41 % / 64 % when drawn uniformly; bright colours become rare
    "b": GarmentPalette(
        "b",
        upper=_winter_weights({"black": 6.0, "navy": 4.0, "dark_grey": 4.0, "grey": 2.5, "dark_red": 2.0,
                               "brown": 3.0, "olive": 2.0, "beige": 1.5, "white": 1.0, "blue": 1.0},
                              tuple(GARMENT_COLOURS), rest=0.35),
        lower=_winter_weights({"black": 5.0, "dark_grey": 3.0, "navy": 3.0, "blue": 2.5, "grey": 1.5,
                               "brown": 1.0, "olive": 0.8}, LOWER_COLOURS, rest=0.25),
    ),
}


def garment_palette(domain: str) -> GarmentPalette:
    """The :class:`GarmentPalette` of ``domain`` (``ValueError`` naming the known ones otherwise)."""
    try:
        return GARMENT_PALETTES[domain]
    except KeyError:
        raise ValueError(f"unknown SynthReID domain {domain!r}; expected one of "
                         f"{sorted(GARMENT_PALETTES)}") from None


@dataclass(frozen=True)
class Logo:
    """A small print on the front of the upper garment (hidden from behind and from the side)."""

    colour: str
    position: str
    shape: str


@dataclass(frozen=True)
class PersonAttributes:
    """Everything that defines how one identity looks (colours are palette names).

    Shared inside a family: ``build .. lower_colour``. Local cues, which tell family members apart:
    ``shoe_colour``, ``logo``, ``bag``/``bag_colour``/``bag_side``, ``hat``/``hat_style``.
    """

    family: int
    build: str
    skin: str
    hair_style: str
    hair_colour: str
    upper_colour: str
    upper_pattern: str
    upper_pattern_colour: str
    sleeves: str
    lower_kind: str
    lower_colour: str
    shoe_colour: str
    logo: Logo | None
    bag: str
    bag_colour: str | None
    bag_side: str
    hat: str | None
    hat_style: str

    def cue_values(self) -> dict[str, object]:
        """The value of each of ``CUE_DIMENSIONS`` (what family members may differ in)."""
        return {
            "shoes": self.shoe_colour,
            "logo": self.logo,
            "bag": (self.bag, self.bag_colour, self.bag_side) if self.bag != "none" else ("none",),
            "hat": (self.hat, self.hat_style) if self.hat is not None else None,
        }

    def shared_values(self) -> dict[str, object]:
        """The attributes every member of the family has in common (all except the cues and ``family``)."""
        cue_fields = {"shoe_colour", "logo", "bag", "bag_colour", "bag_side", "hat", "hat_style", "family"}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in cue_fields}

    def describe(self) -> str:
        """One readable line, e.g. for figure captions."""
        parts = [f"{self.upper_colour} {self.upper_pattern} top ({self.sleeves} sleeves)",
                 f"{self.lower_colour} {self.lower_kind}", f"{self.shoe_colour} shoes"]
        if self.logo is not None:
            parts.append(f"{self.logo.colour} {self.logo.shape} logo ({self.logo.position})")
        if self.bag != "none":
            parts.append(f"{self.bag_colour} {self.bag}")
        if self.hat is not None:
            parts.append(f"{self.hat} {self.hat_style}")
        return ", ".join(parts)


def cue_masks_for_dimension(dimension: str, a: PersonAttributes, b: PersonAttributes) -> tuple[str, ...]:
    """Cue-map names (``CUE_NAMES``) that show the difference of two identities in ``dimension``."""
    if dimension == "bag":
        return tuple(sorted({k for k in (a.bag, b.bag) if k != "none"}))
    return (dimension,)


def differing_cues(a: PersonAttributes, b: PersonAttributes) -> tuple[str, ...]:
    """Names of the cue maps (``CUE_NAMES``) in which ``a`` and ``b`` differ, e.g. ``("logo", "shoes")``."""
    va, vb = a.cue_values(), b.cue_values()
    names: set[str] = set()
    for dim in CUE_DIMENSIONS:
        if va[dim] != vb[dim]:
            names.update(cue_masks_for_dimension(dim, a, b))
    return tuple(sorted(names))


def _pick(rng: np.random.Generator, options, p=None):
    index = int(rng.choice(len(options), p=p))
    return options[index]


def _random_logo(rng: np.random.Generator, avoid_colour: str) -> Logo:
    colours = [c for c in LOGO_COLOURS if c != avoid_colour]
    return Logo(_pick(rng, colours), _pick(rng, LOGO_POSITIONS), _pick(rng, LOGO_SHAPES))


def sample_base_attributes(rng: np.random.Generator, family: int, domain: str = "a") -> PersonAttributes:
    """Draw a random identity (the founder of ``family``) with the garment palette of ``domain``."""
    palette = garment_palette(domain)
    upper = _pick(rng, tuple(GARMENT_COLOURS), p=palette.probabilities("upper", tuple(GARMENT_COLOURS)))
    pattern = _pick(rng, UPPER_PATTERNS, p=[0.5, 0.2, 0.12, 0.18])
    others = [c for c in GARMENT_COLOURS if c != upper]
    pattern_colour = _pick(rng, others, p=palette.probabilities("upper", others))
    lower_kind = _pick(rng, LOWER_KINDS, p=[0.62, 0.23, 0.15])
    hair_style = _pick(rng, HAIR_STYLES, p=[0.5, 0.25, 0.15, 0.1])
    bag = _pick(rng, BAG_KINDS, p=[0.35, 0.25, 0.2, 0.2])
    has_hat = rng.random() < 0.2
    return PersonAttributes(
        family=family,
        build=_pick(rng, tuple(BUILDS), p=[0.3, 0.5, 0.2]),
        skin=_pick(rng, tuple(SKIN_TONES)),
        hair_style=hair_style,
        hair_colour=_pick(rng, tuple(HAIR_COLOURS), p=[0.4, 0.2, 0.15, 0.12, 0.08, 0.05]),
        upper_colour=upper,
        upper_pattern=pattern,
        upper_pattern_colour=pattern_colour,
        sleeves=_pick(rng, SLEEVES),
        lower_kind=lower_kind,
        lower_colour=_pick(rng, LOWER_COLOURS, p=palette.probabilities("lower", LOWER_COLOURS)),
        shoe_colour=_pick(rng, SHOE_COLOURS),
        logo=_random_logo(rng, upper) if rng.random() < 0.6 else None,
        bag=bag,
        bag_colour=_pick(rng, BAG_COLOURS) if bag != "none" else None,
        bag_side=_pick(rng, SIDES),
        hat=_pick(rng, HAT_COLOURS) if has_hat else None,
        hat_style=_pick(rng, HAT_STYLES),
    )


def _mutate(rng: np.random.Generator, attrs: PersonAttributes, dimension: str) -> PersonAttributes:
    """Change ``attrs`` in one cue dimension (always to a different value)."""
    if dimension == "shoes":
        return replace(attrs, shoe_colour=_pick(rng, [c for c in SHOE_COLOURS if c != attrs.shoe_colour]))
    if dimension == "logo":
        logo = attrs.logo
        if logo is None:
            return replace(attrs, logo=_random_logo(rng, attrs.upper_colour))
        u = rng.random()
        if u < 0.5:
            colours = [c for c in LOGO_COLOURS if c not in (logo.colour, attrs.upper_colour)]
            return replace(attrs, logo=replace(logo, colour=_pick(rng, colours)))
        if u < 0.8:
            return replace(attrs, logo=replace(logo, position=_pick(
                rng, [p for p in LOGO_POSITIONS if p != logo.position])))
        return replace(attrs, logo=None)
    if dimension == "bag":
        if attrs.bag == "none":
            return replace(attrs, bag=_pick(rng, BAG_KINDS[1:]), bag_colour=_pick(rng, BAG_COLOURS))
        u = rng.random()
        if u < 0.5:
            return replace(attrs, bag_colour=_pick(rng, [c for c in BAG_COLOURS if c != attrs.bag_colour]))
        if u < 0.8:
            return replace(attrs, bag=_pick(rng, [k for k in BAG_KINDS[1:] if k != attrs.bag]))
        return replace(attrs, bag="none", bag_colour=None)
    if dimension == "hat":
        if attrs.hat is None:
            return replace(attrs, hat=_pick(rng, HAT_COLOURS))
        if rng.random() < 0.5:
            return replace(attrs, hat=None)
        return replace(attrs, hat=_pick(rng, [c for c in HAT_COLOURS if c != attrs.hat]))
    raise ValueError(f"unknown cue dimension {dimension!r}; expected one of {CUE_DIMENSIONS}")


def sample_family(rng: np.random.Generator, family: int, size: int, domain: str = "a"
                  ) -> list[PersonAttributes]:
    """``size`` distinct identities sharing everything except one or two local cues (founder drawn with
    the garment palette of ``domain``).

    Member 0 is the founder; member ``i > 0`` is a copy of an earlier member with one (60 %) or two
    (40 %) cue dimensions changed, so every member differs from some sibling in exactly one or two cue
    dimensions and shares the garments, build, skin and hair with all of them.
    """
    if size < 1:
        raise ValueError(f"family size must be >= 1, got {size}")
    members = [sample_base_attributes(rng, family, domain)]
    weights = np.array([0.3, 0.3, 0.3, 0.1])
    while len(members) < size:
        for _ in range(100):
            parent = members[int(rng.integers(len(members)))]
            n_dims = 1 if rng.random() < 0.6 else 2
            dims = rng.choice(len(CUE_DIMENSIONS), size=n_dims, replace=False, p=weights)
            child = parent
            for d in dims:
                child = _mutate(rng, child, CUE_DIMENSIONS[int(d)])
            if all(child != m for m in members) and len(differing_cues(child, parent)) >= 1:
                members.append(child)
                break
        else:  # pragma: no cover - 100 failed draws would mean the cue palettes are nearly empty
            raise RuntimeError(f"could not draw a distinct member for family {family}")
    return members
