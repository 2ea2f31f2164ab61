"""Drawing one pedestrian of SynthReID in its view (front, back, side) and pose.

Each view has a fixed back-to-front order, so that what the view hides is really hidden: a front logo is
not drawn from behind, a backpack shows only its straps from the front, a handbag on the far side is
drawn before the body in side view. Colours come from the attribute palettes; every element is labelled
with its body part and, for identity cues, its cue name (``synthetic_canvas.CUE_NAMES``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reidlib.data.synthetic_attributes import (
    BUILDS,
    GARMENT_COLOURS,
    HAIR_COLOURS,
    SKIN_TONES,
    PersonAttributes,
)
from reidlib.data.synthetic_canvas import Canvas, Frame, ellipse, limb, poly, rounded, shape


def _lerp(a: tuple[float, float], b: tuple[float, float], t: float) -> tuple[float, float]:
    return (a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]))


@dataclass
class Pose:
    """Per-image articulation: walking phase and amplitudes, arm spread, lean and head offset."""

    stride: float  # side view: ankle offset from the hip (person units); sign = which leg is in front
    arm_swing: float  # side view: arm angle (radians)
    spread: float  # front/back: extra ankle spread
    arm_out: float  # front/back: arms away from the body
    step: float  # front/back: one foot lifted by this much
    lean: float


def sample_pose(rng: np.random.Generator) -> Pose:
    return Pose(
        stride=float(rng.uniform(0.03, 0.13) * rng.choice([-1, 1])),
        arm_swing=float(rng.uniform(0.1, 0.45)),
        spread=float(rng.uniform(0.0, 0.025)),
        arm_out=float(rng.uniform(0.0, 0.022)),
        step=float(rng.uniform(0.0, 0.025)),
        lean=float(rng.normal(0.0, 0.02)),
    )


class PersonPainter:
    """Draws one person in a fixed back-to-front order for its view."""

    def __init__(self, cv: Canvas, fr: Frame, attrs: PersonAttributes, view: str, pose: Pose,
                 occluder: bool = False) -> None:
        self.cv, self.fr, self.a, self.view, self.pose = cv, fr, attrs, view, pose
        self.b = BUILDS[attrs.build]
        self.occluder = occluder
        skin = SKIN_TONES[attrs.skin]
        hair = HAIR_COLOURS[attrs.hair_colour]
        upper = GARMENT_COLOURS[attrs.upper_colour]
        lower = GARMENT_COLOURS[attrs.lower_colour]
        # one element per body region; the same colour may appear under several parts
        self.skin_head = self._el(skin, "head", texture=0.03)
        self.skin_arm = self._el(skin, "arms", texture=0.03)
        self.skin_leg = self._el(skin, "legs", texture=0.03)
        self.skin_neck = self._el(skin, "torso", texture=0.03)
        self.hands = self._el(skin, "hands", texture=0.03)
        self.hair = self._el(hair, "hair", texture=0.14)
        self.eyes = self._el((40, 28, 26), "head", texture=0.0)
        self.torso = self._el(upper, "torso", texture=0.07)
        self.sleeve = self._el(upper, "arms", texture=0.07)
        self.lower = self._el(lower, "legs", texture=0.07)
        self.shoes = self._el(GARMENT_COLOURS[attrs.shoe_colour], "feet", "shoes", texture=0.05)
        if attrs.upper_pattern != "solid":
            pat = GARMENT_COLOURS[attrs.upper_pattern_colour]
            self.torso_pat = self._el(pat, "torso", texture=0.07)
            self.sleeve_pat = self._el(pat, "arms", texture=0.07)
        self.near_side = "right" if fr.mirror == 1 else "left"  # side view faces +u: we see the right side

    def _el(self, rgb, part: str, cue: str = "none", texture: float = 0.06) -> int:
        if self.occluder:
            return self.cv.element(rgb, "occluder", "none", texture, person=True)
        return self.cv.element(rgb, part, cue, texture, person=True)

    def side_sign(self, side: str) -> int:
        """Sign of ``u`` of the person's ``side`` hand in front/back view (front: right is image-left)."""
        right = -1 if self.view == "front" else 1
        return right if side == "right" else -right

    # ---- body ----------------------------------------------------------------------------------
    def draw(self) -> None:
        if self.view == "side":
            self._draw_side()
        else:
            self._draw_frontal()
        self._register_pattern()

    def _register_pattern(self) -> None:
        a, fr = self.a, self.fr
        if a.upper_pattern == "solid":
            return
        y0 = fr.p(0.0, 0.135)[1]
        period = max(2.0, 0.026 * fr.unit)
        params = (y0, period, fr.p(0.0, 0.33)[1], fr.cx)
        self.cv.patterns.append(([self.torso, self.sleeve], a.upper_pattern, params,
                                 (self.torso_pat, self.sleeve_pat)))

    def _legs_frontal(self) -> None:
        cv, fr, b, p, a = self.cv, self.fr, self.b, self.pose, self.a
        hip_u = 0.045 * b
        for k, s in enumerate((-1, 1)):
            ankle_u = s * (0.05 * b + p.spread)
            ankle_v = 0.955 - (p.step if k == 0 else 0.0)
            knee = (s * (0.048 * b + p.spread / 2), 0.73 - (p.step / 2 if k == 0 else 0.0))
            leg_el = self.lower if a.lower_kind == "trousers" else self.skin_leg
            limb(cv, fr, leg_el, [(s * hip_u, 0.52), knee], 0.064 * b)
            limb(cv, fr, leg_el, [knee, (ankle_u, ankle_v)], 0.05 * b)
            if a.lower_kind == "shorts":
                limb(cv, fr, self.lower, [(s * hip_u, 0.52), (s * (hip_u + 0.002), 0.64)], 0.072 * b)
            ellipse(cv, fr, self.shoes, ankle_u, ankle_v + 0.014, 0.03 * b, 0.02)
        if a.lower_kind == "skirt":
            poly(cv, fr, self.lower, [(-0.085 * b, 0.46), (0.085 * b, 0.46), (0.13 * b, 0.68),
                                       (-0.13 * b, 0.68)])
        else:
            poly(cv, fr, self.lower, [(-0.088 * b, 0.46), (0.088 * b, 0.46), (0.092 * b, 0.575),
                                       (-0.092 * b, 0.575)])

    def _torso_frontal(self) -> None:
        cv, fr, b = self.cv, self.fr, self.b
        cv.draw.rectangle(fr.box(-0.021, 0.1, 0.021, 0.15), fill=self.skin_neck)
        sw, hw = 0.105 * b, 0.082 * b
        poly(cv, fr, self.torso, [(-sw * 0.5, 0.132), (sw * 0.5, 0.132), (sw, 0.16), (sw * 0.99, 0.23),
                                   (hw, 0.4), (hw * 1.07, 0.515), (-hw * 1.07, 0.515), (-hw, 0.4),
                                   (-sw * 0.99, 0.23), (-sw, 0.16)])
        if self.view == "front":  # a V of skin at the collar
            poly(cv, fr, self.skin_neck, [(-0.022, 0.131), (0.022, 0.131), (0.0, 0.165)])

    def _arms_frontal(self) -> None:
        cv, fr, b, p, a = self.cv, self.fr, self.b, self.pose, self.a
        sw = 0.105 * b
        for s in (-1, 1):
            shoulder = (s * sw * 0.88, 0.175)
            elbow = (s * (sw + 0.012 + p.arm_out), 0.325)
            wrist = (s * (sw + 0.016 + 1.6 * p.arm_out), 0.455)
            if a.sleeves == "long":
                limb(cv, fr, self.sleeve, [shoulder, elbow], 0.046 * b)
                limb(cv, fr, self.sleeve, [elbow, wrist], 0.038 * b)
            else:
                limb(cv, fr, self.skin_arm, [shoulder, elbow], 0.04 * b)
                limb(cv, fr, self.skin_arm, [elbow, wrist], 0.034 * b)
                mid = _lerp(shoulder, elbow, 0.45)
                limb(cv, fr, self.sleeve, [shoulder, mid], 0.05 * b)
            ellipse(cv, fr, self.hands, wrist[0], wrist[1] + 0.022, 0.019 * b, 0.026)

    def _head_frontal(self) -> None:
        cv, fr, a = self.cv, self.fr, self.a
        if self.view == "front":
            if a.hair_style == "bald":
                ellipse(cv, fr, self.skin_head, 0.0, 0.068, 0.042, 0.058)
            else:
                ellipse(cv, fr, self.hair, 0.0, 0.062, 0.047, 0.058)
                ellipse(cv, fr, self.skin_head, 0.0, 0.076, 0.039, 0.05)
            for s in (-1, 1):
                ellipse(cv, fr, self.eyes, s * 0.015, 0.073, 0.004, 0.003)
        else:
            ellipse(cv, fr, self.skin_head, 0.0, 0.068, 0.043, 0.058)
            if a.hair_style == "long":  # covers the nape too
                ellipse(cv, fr, self.hair, 0.0, 0.068, 0.047, 0.062)
            elif a.hair_style != "bald":
                ellipse(cv, fr, self.hair, 0.0, 0.062, 0.047, 0.058)
                if a.hair_style == "ponytail":
                    ellipse(cv, fr, self.hair, 0.0, 0.125, 0.017, 0.045)
        self._hat(frontal=True)

    def _hat(self, frontal: bool) -> None:
        a = self.a
        if a.hat is None:
            return
        cv, fr = self.cv, self.fr
        hat = self._el(GARMENT_COLOURS[a.hat], "accessory", "hat", texture=0.05)
        if a.hat_style == "cap":
            cv.draw.chord(fr.ell(0.0, 0.048, 0.05, 0.044), 180, 360, fill=hat)
            if frontal:
                ellipse(cv, fr, hat, 0.0, 0.047, 0.052, 0.009 if self.view == "front" else 0.006)
            else:
                poly(cv, fr, hat, [(0.02, 0.038), (0.08, 0.045), (0.08, 0.052), (0.02, 0.05)])
        else:
            cv.draw.chord(fr.ell(0.0, 0.056, 0.05, 0.052), 180, 360, fill=hat)
            cv.draw.rectangle(fr.box(-0.05, 0.04, 0.05, 0.058), fill=hat)

    def _long_hair_back_layer(self) -> None:
        if self.a.hair_style == "long":
            rounded(self.cv, self.fr, self.hair, -0.058, 0.04, 0.058, 0.215, 0.03)

    def _logo(self) -> None:
        logo = self.a.logo
        if logo is None or self.view != "front":
            return
        b = self.b
        u, v = {"chest_left": (0.045 * b, 0.215), "chest_center": (0.0, 0.225),
                "chest_right": (-0.045 * b, 0.215), "belly": (0.0, 0.36)}[logo.position]
        el = self._el(GARMENT_COLOURS[logo.colour], "torso", "logo", texture=0.02)
        shape(self.cv, self.fr, el, logo.shape, u, v, 0.021)

    def _bag_element(self, kind: str, darker: float = 1.0) -> int:
        rgb = tuple(c * darker for c in GARMENT_COLOURS[self.a.bag_colour or "black"])
        return self._el(rgb, "accessory", kind, texture=0.06)

    def _strap_frontal(self) -> None:
        cv, fr, b = self.cv, self.fr, self.b
        s = self.side_sign(self.a.bag_side)
        el = self._bag_element("strap")
        limb(cv, fr, el, [(s * 0.07 * b, 0.145), (-s * 0.085 * b, 0.47)], 0.013)
        rounded(cv, fr, el, -s * 0.125 * b, 0.44, -s * 0.045 * b, 0.53, 0.01)

    def _backpack_frontal(self) -> None:
        cv, fr, b = self.cv, self.fr, self.b
        if self.view == "front":
            el = self._bag_element("backpack")
            for s in (-1, 1):
                limb(cv, fr, el, [(s * 0.06 * b, 0.14), (s * 0.068 * b, 0.335)], 0.017)
        else:
            el = self._bag_element("backpack")
            pocket = self._bag_element("backpack", darker=0.75)
            rounded(cv, fr, el, -0.086 * b, 0.165, 0.086 * b, 0.425, 0.03)
            rounded(cv, fr, pocket, -0.058 * b, 0.3, 0.058 * b, 0.405, 0.015)

    def _handbag_at(self, wrist: tuple[float, float]) -> None:
        cv, fr = self.cv, self.fr
        el = self._bag_element("handbag")
        u, v = wrist
        limb(cv, fr, el, [(u - 0.02, 0.5 if v < 0.5 else v + 0.04), (u, v + 0.012),
                           (u + 0.02, 0.5 if v < 0.5 else v + 0.04)], 0.007)
        rounded(cv, fr, el, u - 0.038, max(v + 0.035, 0.49), u + 0.038, max(v + 0.035, 0.49) + 0.085, 0.012)

    def _draw_frontal(self) -> None:
        a = self.a
        if self.view == "front":
            self._long_hair_back_layer()
        self._legs_frontal()
        self._torso_frontal()
        self._logo()
        if a.bag == "strap":
            self._strap_frontal()
        if self.view == "back":
            self._long_hair_back_layer()
        if a.bag == "backpack":
            self._backpack_frontal()
        self._arms_frontal()
        if a.bag == "handbag":
            s = self.side_sign(a.bag_side)
            sw = 0.105 * self.b
            self._handbag_at((s * (sw + 0.016 + 1.6 * self.pose.arm_out), 0.455))
        self._head_frontal()

    # ---- side view (canonical: facing +u) ----------------------------------------------------------
    def _leg_side(self, ankle_u: float) -> None:
        cv, fr, b, a = self.cv, self.fr, self.b, self.a
        knee = (ankle_u * 0.5 + 0.018, 0.73)
        leg_el = self.lower if a.lower_kind == "trousers" else self.skin_leg
        limb(cv, fr, leg_el, [(0.0, 0.52), knee], 0.07 * b)
        limb(cv, fr, leg_el, [knee, (ankle_u, 0.955)], 0.052 * b)
        if a.lower_kind == "shorts":
            mid = (knee[0] * 0.5, 0.64)
            limb(cv, fr, self.lower, [(0.0, 0.52), mid], 0.078 * b)
        au = ankle_u
        poly(cv, fr, self.shoes, [(au - 0.024, 0.94), (au + 0.018, 0.945), (au + 0.062, 0.972),
                                   (au + 0.064, 0.99), (au - 0.026, 0.99)])

    def _arm_side(self, angle: float) -> tuple[float, float]:
        cv, fr, b, a = self.cv, self.fr, self.b, self.a
        shoulder = (-0.004, 0.178)
        elbow = (shoulder[0] + 0.15 * np.sin(angle), shoulder[1] + 0.15 * np.cos(angle))
        bend = angle + 0.3
        wrist = (elbow[0] + 0.135 * np.sin(bend), elbow[1] + 0.135 * np.cos(bend))
        if a.sleeves == "long":
            limb(cv, fr, self.sleeve, [shoulder, elbow], 0.048 * b)
            limb(cv, fr, self.sleeve, [elbow, wrist], 0.04 * b)
        else:
            limb(cv, fr, self.skin_arm, [shoulder, elbow], 0.042 * b)
            limb(cv, fr, self.skin_arm, [elbow, wrist], 0.036 * b)
            mid = _lerp(shoulder, elbow, 0.45)
            limb(cv, fr, self.sleeve, [shoulder, mid], 0.052 * b)
        ellipse(cv, fr, self.hands, wrist[0] + 0.006, wrist[1] + 0.02, 0.02 * b, 0.025)
        return (float(wrist[0]), float(wrist[1]))

    def _draw_side(self) -> None:
        cv, fr, b, a, p = self.cv, self.fr, self.b, self.a, self.pose
        near_bag = a.bag_side == self.near_side
        far_wrist = self._arm_side(p.arm_swing * np.sign(p.stride))
        if a.bag == "handbag" and not near_bag:
            self._handbag_at(far_wrist)
        self._leg_side(-p.stride)
        self._leg_side(p.stride)
        lower_top = [(-0.062 * b, 0.46), (0.062 * b, 0.46)]
        if a.lower_kind == "skirt":
            poly(cv, fr, self.lower, lower_top + [(0.1 * b, 0.68), (-0.1 * b, 0.68)])
        else:
            poly(cv, fr, self.lower, lower_top + [(0.06 * b, 0.575), (-0.06 * b, 0.575)])
        cv.draw.rectangle(fr.box(-0.018, 0.1, 0.02, 0.15), fill=self.skin_neck)
        poly(cv, fr, self.torso, [(-0.05 * b, 0.135), (0.03 * b, 0.135), (0.062 * b, 0.2), (0.06 * b, 0.3),
                                   (0.052 * b, 0.42), (0.06 * b, 0.515), (-0.06 * b, 0.515),
                                   (-0.052 * b, 0.42), (-0.062 * b, 0.3), (-0.066 * b, 0.19)])
        if a.bag == "strap":
            el = self._bag_element("strap")
            limb(cv, fr, el, [(-0.045 * b, 0.15), (0.05 * b, 0.44)], 0.013)
            if near_bag:
                rounded(cv, fr, el, -0.04 * b, 0.43, 0.045 * b, 0.52, 0.01)
        if a.hair_style == "long":
            rounded(cv, fr, self.hair, -0.056, 0.04, -0.002, 0.215, 0.025)
        if a.bag == "backpack":
            el = self._bag_element("backpack")
            rounded(cv, fr, el, -0.135 * b, 0.165, -0.05 * b, 0.415, 0.025)
            limb(cv, fr, el, [(-0.02, 0.145), (0.035 * b, 0.33)], 0.015)
        near_wrist = self._arm_side(-p.arm_swing * np.sign(p.stride))
        if a.bag == "handbag" and near_bag:
            self._handbag_at(near_wrist)
        # head in profile
        if a.hair_style == "bald":
            ellipse(cv, fr, self.skin_head, 0.004, 0.068, 0.041, 0.058)
        else:
            ellipse(cv, fr, self.hair, -0.006, 0.062, 0.046, 0.058)
            ellipse(cv, fr, self.skin_head, 0.01, 0.075, 0.036, 0.051)
            if a.hair_style == "ponytail":
                ellipse(cv, fr, self.hair, -0.056, 0.085, 0.018, 0.036)
        poly(cv, fr, self.skin_head, [(0.038, 0.062), (0.054, 0.082), (0.038, 0.086)])
        ellipse(cv, fr, self.eyes, 0.028, 0.07, 0.005, 0.004)
        self._hat(frontal=False)

