import sys; sys.path.insert(0, __import__("os").path.dirname(__file__))
import variant_rig  # noqa: F401  (rig + level camera)
import numpy as np
from scipy.ndimage import gaussian_filter1d
from poise.data.synth import writer
SIGMA_M = 0.019  # per axis
CORR_FRAMES = 2.0
EXTREMITY = [3, 6, 13, 16]
_render = writer.render
def render(subject, action, seed):
    data = _render(subject, action, seed)
    rng = writer._seq_rng(seed, subject, action, 5)
    gt = data["gt"]
    e = gaussian_filter1d(rng.normal(size=gt.shape), CORR_FRAMES, axis=0, mode="reflect")
    e /= e.std()
    scale = np.ones(17); scale[EXTREMITY] = 1.5; scale /= np.sqrt((scale ** 2).mean())
    data["gt"] = gt + SIGMA_M * e * scale[None, :, None]
    return data
writer.render = render
