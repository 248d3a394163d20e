"""Level camera only (v3's per-room sensor placements kept, in the level frame) + label noise."""
import sys; sys.path.insert(0, __import__("os").path.dirname(__file__))
from poise.data.synth.scene import Environment, Pose
import variant_label  # noqa: F401  label noise, on the rig (replaced below)
from variant_rig import leveled


def per_room(env, recam, r_old, r_cam):
    def repose(pose):
        return Pose(recam(pose.origin), r_cam @ r_old.T @ pose.axes)
    return repose(env.lidar), repose(env.radar)


Environment.build = leveled(per_room)
