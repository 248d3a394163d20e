"""A 17-joint Human3.6M kinematic skeleton driven by joint angles.

Body frame: X = the subject's left, Y = up, Z = forward (a right-handed frame). Every bone has a local
rotation keyed by its child joint: ``G[c] = G[parent] @ L[c]`` and ``pos[c] = pos[parent] + G[c] @ offset[c]``,
so ``L[c]`` turns the bone parent->c and everything below it (e.g. ``L[12]`` is the left shoulder joint,
turning the upper arm). Each local rotation is ``Ry(yaw) @ Rx(pitch) @ Rz(roll) @ Ry(axial)``.

Actions name anatomical degrees of freedom (``DOFS``) instead of raw axes, with signs chosen so that a
positive angle means the same movement on both sides (flexion forward, abduction outward, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from poise.data.layout import H36M_PARENTS

# Rest pose bone vectors (metres) for a 1.75 m subject, arms hanging, in the parent's rest frame.
REST_OFFSETS = np.array([
    [0.0, 0.0, 0.0],      # 0 pelvis (root)
    [-0.12, 0.0, 0.0],    # 1 r_hip
    [0.0, -0.44, 0.0],    # 2 r_knee
    [0.0, -0.43, 0.0],    # 3 r_ankle
    [0.12, 0.0, 0.0],     # 4 l_hip
    [0.0, -0.44, 0.0],    # 5 l_knee
    [0.0, -0.43, 0.0],    # 6 l_ankle
    [0.0, 0.23, 0.0],     # 7 spine
    [0.0, 0.25, 0.0],     # 8 thorax
    [0.0, 0.11, 0.04],    # 9 neck_nose
    [0.0, 0.12, -0.02],   # 10 head
    [0.15, -0.03, 0.0],   # 11 l_shoulder
    [0.0, -0.28, 0.0],    # 12 l_elbow
    [0.0, -0.25, 0.0],    # 13 l_wrist
    [-0.15, -0.03, 0.0],  # 14 r_shoulder
    [0.0, -0.28, 0.0],    # 15 r_elbow
    [0.0, -0.25, 0.0],    # 16 r_wrist
])
ANKLE_HEIGHT = 0.08  # ankle joint above the floor when standing

SLOTS = ("yaw", "pitch", "roll", "axial")
# name -> (bone, slot, sign). A positive angle is: flexion forward, abduction / horizontal abduction
# outward, external rotation, knee and elbow flexion, trunk bending forward / to the named side, twisting
# to the named side.
DOFS = {
    "trunk_flex": (7, "pitch", +1), "trunk_side_left": (7, "roll", -1), "trunk_twist_left": (8, "yaw", +1),
    "chest_flex": (8, "pitch", +1), "neck_flex": (9, "pitch", +1), "head_turn_left": (10, "yaw", +1),
}
for _side, _s, (_up, _lo, _th, _sh) in (("l", +1, (12, 13, 5, 6)), ("r", -1, (15, 16, 2, 3))):
    DOFS.update({
        f"{_side}_shoulder_flex": (_up, "pitch", -1),
        f"{_side}_shoulder_abd": (_up, "roll", _s),
        f"{_side}_shoulder_hor": (_up, "yaw", _s),
        f"{_side}_shoulder_ext_rot": (_up, "axial", _s),
        f"{_side}_elbow_flex": (_lo, "pitch", -1),
        f"{_side}_hip_flex": (_th, "pitch", -1),
        f"{_side}_hip_abd": (_th, "roll", _s),
        f"{_side}_knee_flex": (_sh, "pitch", +1),
    })


def rot_x(a: np.ndarray) -> np.ndarray:
    c, s, z, o = np.cos(a), np.sin(a), np.zeros_like(a), np.ones_like(a)
    return np.stack([o, z, z, z, c, -s, z, s, c], -1).reshape(*np.shape(a), 3, 3)


def rot_y(a: np.ndarray) -> np.ndarray:
    c, s, z, o = np.cos(a), np.sin(a), np.zeros_like(a), np.ones_like(a)
    return np.stack([c, z, s, z, o, z, -s, z, c], -1).reshape(*np.shape(a), 3, 3)


def rot_z(a: np.ndarray) -> np.ndarray:
    c, s, z, o = np.cos(a), np.sin(a), np.zeros_like(a), np.ones_like(a)
    return np.stack([c, -s, z, s, c, z, z, z, o], -1).reshape(*np.shape(a), 3, 3)


@dataclass(frozen=True)
class Body:
    """One subject's body: bone vectors and capsule radii (girth)."""

    offsets: np.ndarray  # (17, 3) rest bone vectors, metres
    girth: float  # multiplies every capsule radius

    @classmethod
    def sample(cls, rng: np.random.Generator) -> "Body":
        """Bone lengths of a random adult: overall height 0.9-1.08 x, limbs and widths +-5 % each."""
        scale = rng.uniform(0.9, 1.08)
        per_bone = rng.normal(1.0, 0.025, size=17)
        for left, right in ((4, 1), (5, 2), (6, 3), (11, 14), (12, 15), (13, 16)):
            per_bone[right] = per_bone[left]  # symmetric limbs
        offsets = REST_OFFSETS * scale * per_bone[:, None]
        return cls(offsets=offsets, girth=float(rng.uniform(0.85, 1.2)))


def local_rotations(angles: dict[str, np.ndarray], n: int) -> np.ndarray:
    """(n, 17, 3, 3) local bone rotations from named DOF angles (radians, arrays of length n)."""
    slots = np.zeros((17, 4, n))
    for name, value in angles.items():
        if name not in DOFS:
            raise KeyError(f"unknown degree of freedom {name!r}")
        bone, slot, sign = DOFS[name]
        slots[bone, SLOTS.index(slot)] += sign * np.broadcast_to(value, (n,))
    yaw, pitch, roll, axial = (slots[:, i].T for i in range(4))  # each (n, 17)
    return rot_y(yaw) @ rot_x(pitch) @ rot_z(roll) @ rot_y(axial)


def forward_kinematics(offsets: np.ndarray, local: np.ndarray, root_rot: np.ndarray,
                       root_pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Joint positions (n, 17, 3) and global bone rotations (n, 17, 3, 3).

    ``root_rot`` (n, 3, 3) maps the body frame to the output frame; ``root_pos`` (n, 3) is the pelvis.
    """
    n = local.shape[0]
    pos = np.zeros((n, 17, 3))
    glob = np.zeros((n, 17, 3, 3))
    pos[:, 0] = root_pos
    glob[:, 0] = root_rot @ local[:, 0]
    for c in range(1, 17):
        p = H36M_PARENTS[c]
        glob[:, c] = glob[:, p] @ local[:, c]
        pos[:, c] = pos[:, p] + glob[:, c] @ offsets[c]
    return pos, glob
