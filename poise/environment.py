"""What a run was made with, for its ``env.json``: poise's version and git commit (when run from a checkout), the
libraries' versions, the device and threads, and the data (root, generator, and a fingerprint of its files).
A number read months later can then be traced to the code and data that produced it (issue 31, item 6)."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import numpy as np
import scipy
import torch

import poise

PACKAGE = Path(poise.__file__).resolve().parent


def git_commit() -> dict | None:
    """``{"commit", "dirty"}`` of the poise checkout it runs from, or None when it is not one (an installed
    wheel, even inside someone else's repository) or git is missing."""
    try:
        def git(*args):
            return subprocess.run(["git", "-C", str(PACKAGE), *args], capture_output=True, text=True, timeout=10,
                                  check=True).stdout.strip()
        if Path(git("rev-parse", "--show-toplevel")).resolve() != PACKAGE.parent:  # poise/ is not this repo's
            return None
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--", "."))}
    except (OSError, subprocess.SubprocessError):
        return None


def record(root, dataset, device: torch.device, data: dict | None = None) -> dict:
    """The ``env.json`` of a run training on ``dataset`` (an MMFiDataset of ``root``) on ``device``; never raises
    on a missing git or manifest (the record says what it could not tell). The data's fingerprint is the reader's
    cache key: every selected file's path, size and modification time. ``data``: what to record of a dataset
    that is not MM-Fi's (``poise.api.fit`` describes a user's arrays)."""
    if data is None:
        from poise.data.cache import fingerprint
        from poise.data.synth.writer import provenance

        data = provenance(root)
        data["fingerprint"] = fingerprint(dataset.sequences, dataset.modalities, dataset.csi_phase, "raise")
    return {"poise": poise.__version__, "git": git_commit(), "python": platform.python_version(),
            "torch": torch.__version__, "numpy": np.__version__, "scipy": scipy.__version__,
            "device": str(device), "cuda": torch.version.cuda if device.type == "cuda" else None,
            "threads": torch.get_num_threads(), "platform": platform.platform(), "data": data}
