"""3D pose metrics, matching the official MM-Fi toolbox (`mmfi_lib/evaluate.py`).

The toolbox's definitions are those of VideoPose3D's `loss.py`:

- MPJPE: mean over frames and joints of the Euclidean distance ||pred - gt||_2, on ABSOLUTE
  coordinates (MM-Fi does not root-align; `root_relative=True` is an explicit, non-default option).
- PA-MPJPE: per frame, a similarity Procrustes alignment of pred onto gt (a port of MATLAB's
  `procrustes`: translation, rotation with the reflection fix so det(R) = +1, and scale), then
  the MPJPE of the aligned prediction.

Poses are (..., J, 3) with J = 17 joints in Human3.6M order (joint 0 = pelvis, the root).
Everything internal is in metres; the reporting functions (`mpjpe_mm`, `pa_mpjpe_mm`,
`pose_metrics`) return millimetres. `joint_errors` stays in metres and is differentiable, for use
as the MPJPE training loss (mean over joints of the per-joint L2 norm).
"""

from __future__ import annotations

import torch

M_TO_MM = 1000.0
_EPS = 1e-12  # clamp for the Frobenius norms in Procrustes (a collapsed pose has norm 0)


def sample_mpjpe(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Per-sample MPJPE (B,) in metres, 001 Eq. 10, smooth at zero error (finite gradient there). Poses only:
    (B, J, 3) each, or it raises (on a (B,) or (B, D) target the same arithmetic would silently mean something
    else: a norm over the batch, or one number). Shapes are host metadata: the check costs no device sync."""
    if pred.ndim != 3 or pred.shape[-1] != 3 or pred.shape != gt.shape:
        raise ValueError(f"sample_mpjpe takes poses, pred and gt both (B, J, 3); got {tuple(pred.shape)} and "
                         f"{tuple(gt.shape)}")
    return ((pred - gt).square().sum(-1) + 1e-12).sqrt().mean(-1)


def mpjpe_loss(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """The training loss: MPJPE in metres (001 Eq. 10), the mean of ``sample_mpjpe``."""
    return sample_mpjpe(pred, gt).mean()


# -----------------------------------------------------------------------------
# input handling


def _to_tensor(x, device=None) -> torch.Tensor:
    t = torch.as_tensor(x, device=device)
    if not t.is_floating_point():
        t = t.to(torch.float64)
    return t


def _check_pair(pred, gt) -> tuple[torch.Tensor, torch.Tensor]:
    """Convert pred/gt to float tensors of one dtype and device; raise ValueError if malformed."""
    device = pred.device if isinstance(pred, torch.Tensor) else gt.device if isinstance(gt, torch.Tensor) else None
    pred, gt = _to_tensor(pred, device), _to_tensor(gt, device)

    if gt.ndim < 2 or gt.shape[-1] != 3:
        raise ValueError(f"gt has shape {tuple(gt.shape)}; expected (..., J, 3)")
    if pred.shape != gt.shape:
        raise ValueError(
            f"pred has shape {tuple(pred.shape)}; expected (..., J, 3) matching gt {tuple(gt.shape)}"
        )
    if gt.numel() == 0:
        raise ValueError(f"pred and gt are empty (shape {tuple(gt.shape)}); expected at least one frame and joint")
    for name, t in (("pred", pred), ("gt", gt)):
        n_bad = int((~torch.isfinite(t)).sum())
        if n_bad:
            raise ValueError(f"{name} contains {n_bad} non-finite values (NaN or inf)")

    dtype = torch.promote_types(pred.dtype, gt.dtype)
    return pred.to(dtype), gt.to(dtype)


def _reduce(per_frame_mm: torch.Tensor, reduction: str, dtype: torch.dtype):
    if reduction == "mean":
        return float(per_frame_mm.mean())
    if reduction == "none":
        return per_frame_mm.to(dtype)
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


# -----------------------------------------------------------------------------
# MPJPE


def joint_errors(pred, gt, *, root_relative: bool = False) -> torch.Tensor:
    """Per-joint Euclidean distance ||pred - gt||_2, shape (..., J), in metres. Differentiable.

    root_relative=True subtracts joint 0 (pelvis) from both poses first; the default (absolute)
    is what MM-Fi reports.
    """
    pred, gt = _check_pair(pred, gt)
    if root_relative:
        pred = pred - pred[..., :1, :]
        gt = gt - gt[..., :1, :]
    return torch.linalg.vector_norm(pred - gt, dim=-1)


def mpjpe_mm(pred, gt, *, root_relative: bool = False, reduction: str = "mean"):
    """MPJPE in millimetres: a float (reduction="mean") or a per-frame tensor of shape (...)."""
    pred, gt = _check_pair(pred, gt)
    errors = joint_errors(pred.detach().double(), gt.detach().double(), root_relative=root_relative)
    return _reduce(errors.mean(dim=-1) * M_TO_MM, reduction, pred.dtype)


# -----------------------------------------------------------------------------
# PA-MPJPE


def _procrustes_align64(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Similarity-align pred onto gt per frame; validated inputs, computed and returned in float64."""
    X, Y = gt.double(), pred.double()  # MATLAB naming: X = target, Y = the pose being moved

    muX = X.mean(dim=-2, keepdim=True)
    muY = Y.mean(dim=-2, keepdim=True)
    X0 = X - muX
    Y0 = Y - muY

    normX = torch.linalg.vector_norm(X0, dim=(-2, -1), keepdim=True).clamp_min(_EPS)
    normY = torch.linalg.vector_norm(Y0, dim=(-2, -1), keepdim=True).clamp_min(_EPS)
    X0n = X0 / normX
    Y0n = Y0 / normY

    H = X0n.transpose(-2, -1) @ Y0n  # (..., 3, 3)
    U, s, Vh = torch.linalg.svd(H)
    V = Vh.transpose(-2, -1)
    T = V @ U.transpose(-2, -1)

    # reflection fix: if T is a reflection, flip the last column of V and the last singular value
    sign = torch.where(torch.linalg.det(T) < 0, -1.0, 1.0).to(s.dtype)  # (...)
    flip = torch.ones_like(s)
    flip[..., -1] = sign
    V = V * flip.unsqueeze(-2)  # scales the columns of V
    s = s * flip
    T = V @ U.transpose(-2, -1)

    traceTA = s.sum(dim=-1)[..., None, None]
    b = traceTA * normX / normY  # optimal scale; 0 when pred is collapsed to a point
    return b * Y0 @ T + muX


def procrustes_align(pred, gt) -> torch.Tensor:
    """pred (..., J, 3) similarity-aligned onto gt per frame (scale, rotation det +1, translation), metres.

    Computed in float64 and returned in the inputs' dtype. Meant for evaluation and plots, not as a loss.
    """
    pred, gt = _check_pair(pred, gt)
    return _procrustes_align64(pred, gt).to(pred.dtype)


def pa_mpjpe_mm(pred, gt, *, reduction: str = "mean"):
    """PA-MPJPE in millimetres: a float (reduction="mean") or a per-frame tensor of shape (...)."""
    pred, gt = _check_pair(pred, gt)
    gt64 = gt.detach().double()
    aligned = _procrustes_align64(pred.detach(), gt64)
    errors = torch.linalg.vector_norm(aligned - gt64, dim=-1)
    return _reduce(errors.mean(dim=-1) * M_TO_MM, reduction, pred.dtype)


# -----------------------------------------------------------------------------


def pose_metrics(pred, gt) -> dict[str, float]:
    """The two numbers MM-Fi reports, in millimetres: {"mpjpe_mm": ..., "pa_mpjpe_mm": ...}."""
    return {"mpjpe_mm": mpjpe_mm(pred, gt), "pa_mpjpe_mm": pa_mpjpe_mm(pred, gt)}
