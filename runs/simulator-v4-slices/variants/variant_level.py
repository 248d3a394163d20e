"""Level camera only (v3's per-room sensor placements kept, in the level frame) + label noise."""
import sys; sys.path.insert(0, __import__("os").path.dirname(__file__))
import numpy as np
from poise.data.synth.scene import Environment, Pose, _turn, _LIDAR_AXES, _RADAR_AXES, rot_x
from poise.data.layout import ENVIRONMENTS
_orig = Environment.build.__func__
def build(cls, name, seed=0):
    env = _orig(cls, name, seed)
    k = ENVIRONMENTS.index(name)
    cam_h = (1.0, 0.98, 1.02, 0.99)[k]
    pitch = (0.012, 0.008, 0.016, 0.01)[k]
    r_old = rot_x(np.float64(env.cam_pitch)); r_cam = rot_x(np.float64(pitch))
    def recam(p_c):
        return (np.asarray(p_c) @ r_old) @ r_cam.T
    def repose(pose):
        return Pose(recam(pose.origin), r_cam @ r_old.T @ pose.axes)
    return Environment(name=name, cam_height=cam_h, cam_pitch=pitch, focal=env.focal, subject_xz=env.subject_xz,
                       lidar=repose(env.lidar), radar=repose(env.radar), wifi_tx=recam(env.wifi_tx), wifi_rx=recam(env.wifi_rx),
                       reflectors=recam(env.reflectors), reflectivity=env.reflectivity, clutter=recam(env.clutter))
Environment.build = classmethod(build)
import variant_label  # noqa  label noise (its rig import is overridden below)
Environment.build = classmethod(build)
