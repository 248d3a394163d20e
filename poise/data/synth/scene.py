"""The room: four environments (camera height, WiFi placement, subject position, clutter) and a subject in it.

Frames. The ground truth is in the RGB camera frame C (x right, y down, z depth), as MM-Fi's appears to be
(mean pelvis near (0, 0, 3.1) m). Environments are laid out in the level frame W: the camera's position
with x right, y down, z away from the rig, floor at y = camera height; the camera is pitched down a
little, so ``p_C = Rx(pitch) @ p_W``. Every other sensor has its own pose and reports in its own frame,
as MM-Fi's uncalibrated sensors do (LiDAR and mmWave are not co-registered, issue #26 of the toolbox).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from poise.data.layout import ENVIRONMENTS, environment_of
from poise.data.synth.actions import Style, Take, action_motion
from poise.data.synth.skeleton import ANKLE_HEIGHT, Body, forward_kinematics, local_rotations, rot_x, rot_y

# Body capsules over the 17 joints plus hands (17, 18) and toes (19, 20): (end a, end b, radius in metres).
CAPSULES = (
    (0, 7, 0.125), (7, 8, 0.135), (1, 4, 0.09), (11, 14, 0.06), (8, 9, 0.05), (9, 10, 0.085),
    (11, 12, 0.045), (12, 13, 0.037), (13, 17, 0.035), (14, 15, 0.045), (15, 16, 0.037), (16, 18, 0.035),
    (4, 5, 0.072), (5, 6, 0.05), (6, 19, 0.045), (1, 2, 0.072), (2, 3, 0.05), (3, 20, 0.045),
)
# Level-frame axes of a LiDAR (x forward, y left, z up) and of a TI radar (x right, y boresight, z up).
_LIDAR_AXES = np.array([[0.0, 0, 1], [-1, 0, 0], [0, -1, 0]]).T  # columns: sensor axes in W
_RADAR_AXES = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]]).T
# The camera, LiDAR and radar form one platform, moved from room to room: each sensor keeps its place and turn
# (yaw right, pitch down; radians) relative to the camera in every environment. MM-Fi publishes no extrinsics
# and does not co-register its sensors (toolbox issue #26); generator v3 placed each sensor anew in each room,
# which hid the rooms' offsets in the camera frame from the radar (docs/simulator.md, generator v4).
LIDAR_ON_RIG, LIDAR_TURN = (0.22, -0.12, 0.05), (0.0, 0.02)  # level frame: metres right, down, forward
RADAR_ON_RIG, RADAR_TURN = (-0.2, 0.05, 0.0), (0.0, 0.05)


def _turn(axes: np.ndarray, yaw: float, pitch: float) -> np.ndarray:
    """Sensor axes after turning it by yaw (to the right, about W's vertical) and pitch (down)."""
    return rot_y(np.float64(-yaw)) @ rot_x(np.float64(pitch)) @ axes


@dataclass(frozen=True)
class Pose:
    """A sensor's pose in the camera frame C: ``p_sensor = axes.T @ (p_C - origin)``."""

    origin: np.ndarray
    axes: np.ndarray

    def to_sensor(self, p: np.ndarray) -> np.ndarray:
        return (p - self.origin) @ self.axes

    def from_sensor(self, q: np.ndarray) -> np.ndarray:
        return q @ self.axes.T + self.origin


@dataclass(frozen=True)
class Environment:
    """One MM-Fi environment: where the sensors stand and what else is in the room."""

    name: str
    cam_height: float  # camera above the floor, metres
    cam_pitch: float  # camera tilted down, radians
    focal: float  # pixels (640 x 480 image)
    subject_xz: tuple[float, float]  # nominal pelvis position on the floor, level frame
    lidar: Pose
    radar: Pose
    wifi_tx: np.ndarray  # (3,) camera frame
    wifi_rx: np.ndarray  # (3 antennas, 3) camera frame
    reflectors: np.ndarray  # (k, 3) static scatterers (walls, furniture), camera frame
    reflectivity: np.ndarray  # (k,)
    clutter: np.ndarray  # (m, 3) static LiDAR/radar clutter points near the subject, camera frame
    floor_y: float = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "floor_y", self.cam_height)

    @property
    def cam_rot(self) -> np.ndarray:
        return rot_x(np.float64(self.cam_pitch))

    @classmethod
    def build(cls, name: str, seed: int = 0) -> "Environment":
        """The environment's fixed layout (the sensor platform is the same in every room); E04 is the odd one out
        (subject further right), as in MM-Fi."""
        k = ENVIRONMENTS.index(name)
        rng = np.random.default_rng([seed, 7919, k])
        # A nearly level camera at about pelvis height: MM-Fi's mean pelvis sits at y = 0.01-0.02 m in the camera
        # frame in E01-E03 and in E04 alike (research/mmfi.md, section 3). Generator v3's 0.95-1.05 m cameras
        # pitched 0.03-0.07 rad put it at -0.25 to 0.00 m, an offset per room that no sensor but the camera sees.
        cam_h = (1.0, 0.98, 1.02, 0.99)[k]
        pitch = (0.012, 0.008, 0.016, 0.01)[k]
        subject = ((-0.04, 3.1), (0.0, 3.2), (-0.08, 3.05), (0.25, 3.2))[k]
        r_cam = rot_x(np.float64(pitch))

        def to_c(p_w):
            return np.asarray(p_w, float) @ r_cam.T

        lidar = Pose(to_c(LIDAR_ON_RIG), r_cam @ _turn(_LIDAR_AXES, *LIDAR_TURN))
        radar = Pose(to_c(RADAR_ON_RIG), r_cam @ _turn(_RADAR_AXES, *RADAR_TURN))
        tx_w = np.array([(-1.6, 0.1, 3.0), (-1.5, 0.05, 3.4), (-1.7, 0.15, 2.9), (1.7, 0.1, 3.3)][k])
        rx0_w = np.array([(1.5, 0.1, 3.0), (1.6, 0.05, 3.1), (1.4, 0.2, 3.2), (-1.4, 0.0, 2.9)][k])
        spacing = 0.5 * 299_792_458.0 / 5.32e9  # half a wavelength
        rx_w = rx0_w + np.outer(np.arange(3), [0.0, 0.0, spacing])
        refl_w = np.column_stack([rng.uniform(-2.5, 2.5, 6), rng.uniform(-0.8, cam_h, 6), rng.uniform(1.0, 5.0, 6)])
        refl_w[:2, 2] = 5.0 + rng.uniform(0, 0.5, 2)  # back wall
        clutter_w = np.column_stack([rng.uniform(-0.9, 0.9, 4), rng.uniform(0.0, cam_h, 4), rng.uniform(2.6, 3.8, 4)])
        return cls(name=name, cam_height=cam_h, cam_pitch=pitch, focal=(610.0, 600.0, 615.0, 605.0)[k],
                   subject_xz=subject, lidar=lidar, radar=radar, wifi_tx=to_c(tx_w), wifi_rx=to_c(rx_w),
                   reflectors=to_c(refl_w), reflectivity=rng.uniform(0.2, 0.7, 6), clutter=to_c(clutter_w))


@dataclass(frozen=True)
class Subject:
    """An MM-Fi volunteer: body and movement style, drawn from the subject id and the dataset seed."""

    name: str
    body: Body
    style: Style

    @classmethod
    def build(cls, name: str, seed: int = 0) -> "Subject":
        rng = np.random.default_rng([seed, 104729, int(name[1:])])
        return cls(name=name, body=Body.sample(rng), style=Style.sample(rng))


@dataclass(frozen=True)
class Performance:
    """One sequence: a subject performing an action in an environment. Poses at any time, camera frame."""

    subject: Subject
    action: str
    env: Environment
    take: Take
    position: tuple[float, float]  # pelvis floor position in the level frame
    facing: float  # yaw away from facing the rig, radians

    @classmethod
    def build(cls, subject: str, action: str, seed: int = 0) -> "Performance":
        subj = Subject.build(subject, seed)
        env = Environment.build(environment_of(subject), seed)
        rng = np.random.default_rng([seed, 1299709, int(subject[1:]), int(action[1:])])
        x, z = env.subject_xz
        return cls(subject=subj, action=action, env=env, take=Take.sample(rng, subj.style),
                   position=(x + rng.normal(0, 0.06), z + rng.normal(0, 0.08)), facing=rng.normal(0, 0.06))

    def pose(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Joints (n, 17, 3) and global bone rotations (n, 17, 3, 3) at times ``t`` (s), camera frame."""
        t = np.atleast_1d(np.asarray(t, dtype=float))
        motion = action_motion(self.action, t, self.take, self.subject.style)
        local = local_rotations(motion.angles, t.size)
        # Body frame (left, up, forward) -> level frame (right, down, depth) when facing the rig.
        root = np.diag([1.0, -1.0, -1.0]) @ rot_y(self.facing + motion.yaw)
        rel, _ = forward_kinematics(self.subject.body.offsets, local, root, np.zeros((t.size, 3)))
        shift = root @ np.array([1.0, 0, 0]) * motion.shift[:, :1] + root @ np.array([0, 0, 1.0]) * motion.shift[:, 1:]
        lowest_ankle = rel[:, [3, 6], 1].max(1)  # y is down
        pelvis = np.column_stack([
            self.position[0] + shift[:, 0],
            self.env.cam_height - ANKLE_HEIGHT - lowest_ankle - motion.lift,
            self.position[1] + shift[:, 2],
        ])
        joints_w, rot_w = forward_kinematics(self.subject.body.offsets, local, root, pelvis)
        r_cam = self.env.cam_rot
        return joints_w @ r_cam.T, r_cam @ rot_w

    def capsules(self, joints: np.ndarray, rotations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Body capsules: end points (n, 18, 2, 3) and radii (18,) from a pose."""
        forearm_l = joints[:, 13] - joints[:, 12]
        forearm_r = joints[:, 16] - joints[:, 15]
        hands = [joints[:, 13] + 0.08 * forearm_l / np.linalg.norm(forearm_l, axis=-1, keepdims=True),
                 joints[:, 16] + 0.08 * forearm_r / np.linalg.norm(forearm_r, axis=-1, keepdims=True)]
        foot = rotations[:, 0] @ np.array([0.0, -0.06, 0.15])  # feet stay flat, pointing where the pelvis does
        pts = np.concatenate([joints, np.stack(hands + [joints[:, 6] + foot, joints[:, 3] + foot], 1)], 1)
        ends = np.array([(a, b) for a, b, _ in CAPSULES])
        radii = np.array([r for _, _, r in CAPSULES]) * self.subject.body.girth
        return pts[:, ends], radii
