"""The MM-Fi on-disk layout: names, protocols, joint orders and file conventions.

One place for the facts of the format (see DESIGN.md and research/mmfi.md), so the synthetic writer and
the reader cannot drift apart. Nothing here touches the disk.
"""

from __future__ import annotations

from poise.errors import PoiseError

FRAMES_PER_SEQUENCE = 297
FRAME_RATE_HZ = 10.0  # inferred: 10 CSI packets per 100 ms frame, 297 frames ~ 30 s

ENVIRONMENTS = ("E01", "E02", "E03", "E04")
SUBJECTS = tuple(f"S{i:02d}" for i in range(1, 41))
ACTIONS = tuple(f"A{i:02d}" for i in range(1, 28))


def environment_of(subject: str) -> str:
    """E01 = S01-S10, E02 = S11-S20, E03 = S21-S30, E04 = S31-S40 (hard-coded in the toolbox)."""
    if subject not in SUBJECTS:
        raise PoiseError(f"unknown subject {subject!r}: MM-Fi subjects are S01..S40")
    return ENVIRONMENTS[(int(subject[1:]) - 1) // 10]


ACTION_NAMES = {
    "A01": "Stretching and relaxing",
    "A02": "Chest expansion (horizontal)",
    "A03": "Chest expansion (vertical)",
    "A04": "Twist (left)",
    "A05": "Twist (right)",
    "A06": "Mark time",
    "A07": "Limb extension (left)",
    "A08": "Limb extension (right)",
    "A09": "Lunge (toward left-front)",
    "A10": "Lunge (toward right-front)",
    "A11": "Limb extension (both)",
    "A12": "Squat",
    "A13": "Raising hand (left)",
    "A14": "Raising hand (right)",
    "A15": "Lunge (toward left side)",
    "A16": "Lunge (toward right side)",
    "A17": "Waving hand (left)",
    "A18": "Waving hand (right)",
    "A19": "Picking up things",
    "A20": "Throwing (toward left side)",
    "A21": "Throwing (toward right side)",
    "A22": "Kicking (toward left side)",
    "A23": "Kicking (toward right side)",
    "A24": "Body extension (left)",
    "A25": "Body extension (right)",
    "A26": "Jumping up",
    "A27": "Bowing",
}

PROTOCOLS = {
    "P1": ("A02", "A03", "A04", "A05", "A13", "A14", "A17", "A18", "A19", "A20", "A21", "A22", "A23", "A27"),
    "P2": ("A01", "A06", "A07", "A08", "A09", "A10", "A11", "A12", "A15", "A16", "A24", "A25", "A26"),
    "P3": ACTIONS,
}

# The four modalities poise uses, named as their MM-Fi folders, with file extension and row width.
MODALITIES = ("rgb", "lidar", "mmwave", "wifi-csi")
EXTENSIONS = {"rgb": ".npy", "lidar": ".bin", "mmwave": ".bin", "wifi-csi": ".mat"}
POINT_COLUMNS = {"lidar": 3, "mmwave": 5}  # float64 rows: lidar x y z; mmwave x y z doppler intensity
RGB_SHAPE = (17, 2)  # COCO keypoints, pixels of a 640 x 480 image
IMAGE_SIZE = (640, 480)  # width, height
CSI_SHAPE = (3, 114, 10)  # antennas x subcarriers x packets
CSI_KEYS = ("CSIamp", "CSIphase")
GROUND_TRUTH = "ground_truth.npy"  # (297, 17, 3) metres, Human3.6M order, absolute coordinates


def frame_name(index: int, modality: str) -> str:
    """File name of 0-based frame ``index`` in a modality folder: frame001.npy .. frame297.npy."""
    return f"frame{index + 1:03d}{EXTENSIONS[modality]}"


# Human3.6M 17-joint order (the ground truth) and its kinematic tree.
H36M_JOINTS = (
    "pelvis", "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "spine", "thorax",
    "neck_nose", "head", "l_shoulder", "l_elbow", "l_wrist", "r_shoulder", "r_elbow", "r_wrist",
)
H36M_PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)
H36M_LEFT = (4, 5, 6, 11, 12, 13)
H36M_RIGHT = (1, 2, 3, 14, 15, 16)

# COCO 17-keypoint order (the rgb files).
COCO_JOINTS = (
    "nose", "l_eye", "r_eye", "l_ear", "r_ear", "l_shoulder", "r_shoulder", "l_elbow", "r_elbow",
    "l_wrist", "r_wrist", "l_hip", "r_hip", "l_knee", "r_knee", "l_ankle", "r_ankle",
)
COCO_FLIP = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)  # left <-> right


def resolve_actions(protocol: str) -> tuple[str, ...]:
    """Action ids of a protocol name: P1, P2 or P3 (also accepts the toolbox's 'protocol1'...)."""
    key = protocol.upper().replace("PROTOCOL", "P")
    if key not in PROTOCOLS:
        raise PoiseError(f"unknown protocol {protocol!r}: choose one of P1 (daily), P2 (rehabilitation), P3 (all)")
    return PROTOCOLS[key]
