"""The 27 MM-Fi actions as parametric motions: joint angles and root motion as functions of time.

Each action is repeated through the 30 s sequence in cycles of move-hold-return-rest. A sequence draws its
tempo, amplitude and phase; a subject adds a personal style (slower or faster, larger or smaller, a lean).
Everything is a smooth function of continuous time, so sensors can sample the motion between frames
(WiFi packets, Doppler velocity) and get consistent values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from poise.data.layout import ACTIONS


@dataclass(frozen=True)
class Style:
    """How one subject moves: multiplies tempo and amplitude, adds a forward lean."""

    tempo: float
    amplitude: float
    lean: float

    @classmethod
    def sample(cls, rng: np.random.Generator) -> "Style":
        return cls(tempo=rng.uniform(0.85, 1.15), amplitude=rng.uniform(0.85, 1.1), lean=rng.normal(0.03, 0.03))


@dataclass(frozen=True)
class Take:
    """One performance of an action: its tempo, amplitude and phase, and small idle sway."""

    tempo: float
    amplitude: float
    phase: float
    sway_freq: np.ndarray  # (k,) Hz
    sway_phase: np.ndarray  # (k, 4)

    @classmethod
    def sample(cls, rng: np.random.Generator, style: Style) -> "Take":
        return cls(
            tempo=style.tempo * rng.uniform(0.85, 1.15),
            amplitude=style.amplitude * rng.uniform(0.9, 1.1),
            phase=rng.uniform(0.0, 1.0),
            sway_freq=rng.uniform(0.08, 0.4, size=3),
            sway_phase=rng.uniform(0, 2 * np.pi, size=(3, 4)),
        )


def smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def pulse(t: np.ndarray, period: float, phase: float, rise=0.3, hold=0.2, fall=0.3) -> np.ndarray:
    """A repeating 0 -> 1 -> 0 profile: rise, hold at 1, fall, rest at 0 (fractions of the period)."""
    u = np.mod(t / period + phase, 1.0)
    return smoothstep(u / rise) - smoothstep((u - rise - hold) / fall)


@dataclass
class Motion:
    """What an action outputs: DOF angles, root yaw (radians), root shift (metres) and lift (metres)."""

    angles: dict
    yaw: np.ndarray
    shift: np.ndarray  # (n, 2): body-frame left (x) and forward (z) displacement of the pelvis
    lift: np.ndarray  # (n,): added height (jumps), on top of keeping the feet on the floor


def _mirror(angles: dict) -> dict:
    """Swap the left and right sides of an angle dict (sided names flip, 'left' movements negate)."""
    out = {}
    for name, v in angles.items():
        if name[:2] in ("l_", "r_"):
            out[("r_" if name[0] == "l" else "l_") + name[2:]] = v
        elif name.endswith("_left"):
            out[name] = -v
        else:
            out[name] = v
    return out


def _arms_rest(n, s=0.12):
    return {"l_shoulder_abd": np.full(n, s), "r_shoulder_abd": np.full(n, s),
            "l_elbow_flex": np.full(n, 0.15), "r_elbow_flex": np.full(n, 0.15)}


def _hands_on_hips(n):
    return {"l_shoulder_abd": np.full(n, 0.45), "r_shoulder_abd": np.full(n, 0.45),
            "l_shoulder_flex": np.full(n, -0.25), "r_shoulder_flex": np.full(n, -0.25),
            "l_elbow_flex": np.full(n, 1.7), "r_elbow_flex": np.full(n, 1.7),
            "l_shoulder_ext_rot": np.full(n, -0.9), "r_shoulder_ext_rot": np.full(n, -0.9)}


def _left_action(action: str, t: np.ndarray, take: Take):
    """Angles (for the left-sided version of sided actions), yaw, shift, lift of one action."""
    n, a, ph, T = t.size, take.amplitude, take.phase, 1.0 / take.tempo
    z = np.zeros(n)
    ang = _arms_rest(n)
    yaw, shift, lift = z.copy(), np.zeros((n, 2)), z.copy()
    if action == "A01":  # stretching and relaxing: arms up overhead, reach and lean back, relax
        p = pulse(t, 5.5 * T, ph, 0.3, 0.25, 0.3)
        for s in "lr":
            ang[f"{s}_shoulder_abd"] = 0.12 + 2.6 * a * p
            ang[f"{s}_elbow_flex"] = 0.15 + 0.2 * p
        ang["trunk_flex"] = -0.18 * a * p
        ang["neck_flex"] = -0.25 * p
    elif action == "A02":  # chest expansion (horizontal): arms forward, open wide, close
        up = pulse(t, 24 * T, ph, 0.04, 0.88, 0.04)
        p = pulse(t, 3.0 * T, ph, 0.35, 0.1, 0.35)
        for s in "lr":
            ang[f"{s}_shoulder_flex"] = 1.5 * up
            ang[f"{s}_shoulder_hor"] = 1.3 * a * p * up
            ang[f"{s}_elbow_flex"] = 0.15 + 0.25 * up * (1 - p)
        ang["chest_flex"] = -0.1 * p * up
    elif action == "A03":  # chest expansion (vertical): arms raised forward to overhead and down
        p = pulse(t, 3.5 * T, ph, 0.35, 0.1, 0.35)
        for s in "lr":
            ang[f"{s}_shoulder_flex"] = 2.8 * a * p
            ang[f"{s}_shoulder_abd"] = 0.12 + 0.2 * p
        ang["trunk_flex"] = -0.08 * p
    elif action == "A04":  # twist (left): hands at chest, upper body turns left and back
        p = pulse(t, 3.2 * T, ph, 0.3, 0.15, 0.3)
        for s in "lr":
            ang[f"{s}_shoulder_flex"] = np.full(n, 0.5)
            ang[f"{s}_shoulder_abd"] = np.full(n, 0.5)
            ang[f"{s}_elbow_flex"] = np.full(n, 2.0)
        ang["trunk_twist_left"] = 0.85 * a * p
        ang["head_turn_left"] = 0.3 * p
        yaw = 0.15 * p
    elif action == "A06":  # mark time: march in place, arms swing opposite
        w = 2 * np.pi * t / (1.15 * T) + 2 * np.pi * ph
        for s, sgn in (("l", 1.0), ("r", -1.0)):
            step = np.clip(sgn * np.sin(w), 0, None)
            ang[f"{s}_hip_flex"] = 1.0 * a * step
            ang[f"{s}_knee_flex"] = 1.4 * a * step
            ang[f"{s}_shoulder_flex"] = -0.45 * a * sgn * np.sin(w)
            ang[f"{s}_elbow_flex"] = 0.5 + 0.2 * step
    elif action == "A07":  # limb extension (left): left arm and leg raised sideways together
        p = pulse(t, 3.2 * T, ph, 0.3, 0.2, 0.3)
        ang["l_shoulder_abd"] = 0.12 + 1.5 * a * p
        ang["l_hip_abd"] = 0.55 * a * p
        ang["trunk_side_left"] = -0.12 * p
    elif action == "A09":  # lunge (toward left-front): step, sink, return
        p = pulse(t, 4.2 * T, ph, 0.3, 0.2, 0.3)
        ang.update(_hands_on_hips(n))
        ang["l_hip_flex"] = 1.0 * a * p
        ang["l_hip_abd"] = 0.3 * p
        ang["l_knee_flex"] = 1.3 * a * p
        ang["r_hip_flex"] = -0.45 * a * p
        ang["r_knee_flex"] = 0.9 * a * p
        shift[:, 0], shift[:, 1] = 0.14 * a * p, 0.3 * a * p
        yaw = 0.35 * p
    elif action == "A11":  # limb extension (both): both arms out, legs take turns
        p = pulse(t, 3.4 * T, ph, 0.3, 0.2, 0.3)
        left_turn = np.mod(np.floor(t / (3.4 * T) + ph), 2) == 0
        for s in "lr":
            ang[f"{s}_shoulder_abd"] = 0.12 + 1.5 * a * p
        ang["l_hip_abd"] = 0.45 * a * p * left_turn
        ang["r_hip_abd"] = 0.45 * a * p * ~left_turn
    elif action == "A12":  # squat
        p = pulse(t, 3.6 * T, ph, 0.35, 0.15, 0.35)
        for s in "lr":
            ang[f"{s}_hip_flex"] = 1.5 * a * p
            ang[f"{s}_knee_flex"] = 1.9 * a * p
            ang[f"{s}_shoulder_flex"] = 1.45 * p
        ang["trunk_flex"] = 0.35 * a * p
        shift[:, 1] = -0.12 * p
    elif action == "A13":  # raising hand (left)
        p = pulse(t, 3.0 * T, ph, 0.3, 0.25, 0.3)
        ang["l_shoulder_flex"] = 2.9 * a * p
        ang["l_elbow_flex"] = 0.15 * (1 - p)
    elif action == "A15":  # lunge (toward left side): side lunge
        p = pulse(t, 4.0 * T, ph, 0.3, 0.2, 0.3)
        ang.update(_hands_on_hips(n))
        ang["l_hip_abd"] = 0.55 * a * p
        ang["l_hip_flex"] = 0.7 * a * p
        ang["l_knee_flex"] = 1.2 * a * p
        ang["r_hip_abd"] = 0.25 * p
        ang["trunk_flex"] = 0.25 * p
        shift[:, 0] = 0.3 * a * p
    elif action == "A17":  # waving hand (left): raise the arm, wave the forearm, lower
        up = pulse(t, 7.0 * T, ph, 0.12, 0.6, 0.12)
        wave = np.sin(2 * np.pi * t * 1.6 * take.tempo + 2 * np.pi * ph)
        ang["l_shoulder_abd"] = 0.12 + 1.35 * up + 0.3 * a * up * wave
        ang["l_shoulder_ext_rot"] = 1.5 * up
        ang["l_elbow_flex"] = 0.15 + 1.2 * up + 0.25 * up * wave
    elif action == "A19":  # picking up things: bend hips and knees, reach down, stand up
        p = pulse(t, 4.4 * T, ph, 0.35, 0.15, 0.35)
        for s in "lr":
            ang[f"{s}_hip_flex"] = 0.8 * a * p
            ang[f"{s}_knee_flex"] = 1.1 * a * p
        ang["trunk_flex"] = 0.9 * a * p
        ang["r_shoulder_flex"] = 0.7 * p
        ang["l_shoulder_flex"] = 0.4 * p
        ang["neck_flex"] = 0.3 * p
    elif action == "A20":  # throwing (toward left side): right-arm overhand throw, body turned left
        u = np.mod(t / (3.0 * T) + ph, 1.0)
        wind = smoothstep(u / 0.35) - smoothstep((u - 0.35) / 0.12)
        throw = smoothstep((u - 0.35) / 0.12) - smoothstep((u - 0.6) / 0.3)
        ang["r_shoulder_abd"] = 0.12 + 1.5 * wind + 1.0 * throw
        ang["r_shoulder_ext_rot"] = 1.4 * wind
        ang["r_elbow_flex"] = 0.15 + 1.5 * wind + 0.2 * throw
        ang["r_shoulder_flex"] = 1.4 * a * throw
        ang["trunk_twist_left"] = -0.45 * a * wind + 0.5 * a * throw
        ang["l_shoulder_flex"] = 0.6 * wind
        yaw = np.full(n, 0.45)
    elif action == "A22":  # kicking (toward left side): left leg kicks out to the side and front
        p = pulse(t, 2.8 * T, ph, 0.15, 0.05, 0.3)
        chamber = pulse(t, 2.8 * T, ph, 0.08, 0.02, 0.1)
        ang["l_hip_flex"] = 1.1 * a * p
        ang["l_hip_abd"] = 0.45 * a * p
        ang["l_knee_flex"] = 1.2 * chamber
        ang["trunk_side_left"] = -0.2 * p
        ang["r_shoulder_abd"] = 0.12 + 0.5 * p
        ang["l_shoulder_abd"] = 0.12 + 0.4 * p
    elif action == "A24":  # body extension (left): bend to the left with the right arm over the head
        p = pulse(t, 4.0 * T, ph, 0.3, 0.25, 0.3)
        ang["trunk_side_left"] = 0.5 * a * p
        ang["r_shoulder_abd"] = 0.12 + 2.6 * a * p
        ang["r_elbow_flex"] = 0.15 + 0.35 * p
        ang["l_elbow_flex"] = 0.15 + 0.2 * p
    elif action == "A26":  # jumping up: crouch, jump with arms up, land
        u = np.mod(t / (2.6 * T) + ph, 1.0)
        crouch = smoothstep(u / 0.25) - smoothstep((u - 0.3) / 0.08) + smoothstep((u - 0.55) / 0.06) \
            - smoothstep((u - 0.62) / 0.2)
        flight = np.clip((u - 0.38) / 0.2, 0, 1)
        lift = 0.22 * a * 4 * flight * (1 - flight)
        for s in "lr":
            ang[f"{s}_hip_flex"] = 0.8 * crouch
            ang[f"{s}_knee_flex"] = 1.2 * crouch
            ang[f"{s}_shoulder_flex"] = -0.6 * crouch + 2.4 * np.sin(np.pi * flight)
        ang["trunk_flex"] = 0.3 * crouch
    elif action == "A27":  # bowing
        p = pulse(t, 4.0 * T, ph, 0.3, 0.2, 0.3)
        ang["trunk_flex"] = 0.95 * a * p
        ang["neck_flex"] = 0.3 * p
    else:
        raise KeyError(action)
    return ang, yaw, shift, lift


# Right-sided actions are mirrors of their left twins.
_MIRRORED = {"A05": "A04", "A08": "A07", "A10": "A09", "A14": "A13", "A16": "A15", "A18": "A17",
             "A21": "A20", "A23": "A22", "A25": "A24"}


def action_motion(action: str, t: np.ndarray, take: Take, style: Style) -> Motion:
    """The motion of ``action`` at times ``t`` (seconds) for one take of one subject."""
    if action not in ACTIONS:
        raise KeyError(f"unknown action {action!r}: MM-Fi actions are A01..A27")
    t = np.asarray(t, dtype=float)
    if action in _MIRRORED:
        ang, yaw, shift, lift = _left_action(_MIRRORED[action], t, take)
        ang, yaw = _mirror(ang), -yaw
        shift = shift * np.array([-1.0, 1.0])
    else:
        ang, yaw, shift, lift = _left_action(action, t, take)
    # Idle sway: slow, small, smooth; makes no two frames of a held pose identical.
    w = 2 * np.pi * take.sway_freq[:, None] * t[None]
    sway = np.sin(w[:, None, :] + take.sway_phase[:, :, None]).sum(0) / 3  # (4, n)
    ang["trunk_flex"] = ang.get("trunk_flex", 0) + style.lean + 0.025 * sway[0]
    ang["trunk_side_left"] = ang.get("trunk_side_left", 0) + 0.02 * sway[1]
    ang["neck_flex"] = ang.get("neck_flex", 0) + 0.05 * sway[2]
    shift = shift + 0.015 * np.stack([sway[3], sway[0]], -1)
    return Motion(angles=ang, yaw=yaw + 0.03 * sway[1], shift=shift, lift=lift)
