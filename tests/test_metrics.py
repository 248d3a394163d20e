"""Tests for poise.metrics: MPJPE / PA-MPJPE as defined by the MM-Fi toolbox (evaluate.py)."""

import numpy as np
import pytest
import torch

from poise.metrics import joint_errors, mpjpe_mm, pa_mpjpe_mm, pose_metrics, procrustes_align

J = 17


def random_poses(*shape, seed=0):
    """Random (…, 17, 3) poses in metres, roughly body-sized, away from the origin."""
    g = torch.Generator().manual_seed(seed)
    offset = torch.tensor([0.1, -0.2, 3.0], dtype=torch.float64)
    return 0.3 * torch.randn(*shape, J, 3, generator=g, dtype=torch.float64) + offset


def random_rotation(seed, det=1.0):
    """Random 3x3 orthogonal matrix with the given determinant (+1 rotation, -1 improper)."""
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))  # make the QR unique / Haar-distributed
    if torch.linalg.det(q) * det < 0:
        q[:, 0] = -q[:, 0]
    return q


def reference_pa_mpjpe_mm(pred, gt):
    """Independent per-frame numpy port of the toolbox's p_mpjpe (MATLAB procrustes); per-frame mm."""
    pred = np.asarray(pred, dtype=np.float64).reshape(-1, J, 3)
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, J, 3)
    out = []
    for Y, X in zip(pred, gt):
        muX, muY = X.mean(0), Y.mean(0)
        X0, Y0 = X - muX, Y - muY
        normX, normY = np.sqrt((X0**2).sum()), np.sqrt((Y0**2).sum())
        U, s, Vt = np.linalg.svd((X0 / normX).T @ (Y0 / normY))
        V = Vt.T
        T = V @ U.T
        if np.linalg.det(T) < 0:
            V[:, -1] *= -1
            s[-1] *= -1
            T = V @ U.T
        b = s.sum() * normX / normY
        c = muX - b * muY @ T  # the toolbox's form: aligned = b * pred @ T + c
        aligned = b * Y @ T + c
        out.append(np.linalg.norm(aligned - X, axis=-1).mean() * 1000.0)
    return np.array(out)


# ----------------------------------------------------------------------------- MPJPE


def test_mpjpe_hand_computed_single_joint_offset():
    gt = torch.zeros(1, J, 3)
    pred = gt.clone()
    pred[0, 5] = torch.tensor([0.03, 0.04, 0.0])  # 3-4-5 triangle: 5 cm at one joint

    errs = joint_errors(pred, gt)
    assert errs.shape == (1, J)
    assert errs[0, 5].item() == pytest.approx(0.05)
    assert errs.sum().item() == pytest.approx(0.05)
    assert mpjpe_mm(pred, gt) == pytest.approx(50.0 / J)


def test_mpjpe_mean_over_frames_and_joints():
    gt = torch.zeros(2, J, 3, dtype=torch.float64)
    pred = gt.clone()
    pred[0] += torch.tensor([0.0, 0.0, 0.01])  # frame 0: every joint 10 mm off
    pred[1, 0] = torch.tensor([0.0, 0.12, 0.0])  # frame 1: one joint 120 mm off
    per_frame = mpjpe_mm(pred, gt, reduction="none")
    assert per_frame.shape == (2,)
    torch.testing.assert_close(per_frame, torch.tensor([10.0, 120.0 / J], dtype=torch.float64))
    assert mpjpe_mm(pred, gt) == pytest.approx((10.0 + 120.0 / J) / 2)


def test_mpjpe_is_absolute_unless_root_relative():
    gt = random_poses(3)
    t = torch.tensor([0.2, 0.0, -0.1], dtype=torch.float64)
    pred = gt + t  # pure global translation
    assert mpjpe_mm(pred, gt) == pytest.approx(1000.0 * float(torch.linalg.norm(t)))
    assert mpjpe_mm(pred, gt, root_relative=True) == pytest.approx(0.0, abs=1e-9)
    torch.testing.assert_close(joint_errors(pred, gt), torch.linalg.norm(t).expand(3, J))  # default is absolute
    assert joint_errors(pred, gt, root_relative=True).abs().max() < 1e-12


def test_root_relative_subtracts_pelvis():
    gt = random_poses(1, seed=1)
    pred = random_poses(1, seed=2)
    expected = torch.linalg.norm((pred - pred[..., :1, :]) - (gt - gt[..., :1, :]), dim=-1).mean() * 1000
    assert mpjpe_mm(pred, gt, root_relative=True) == pytest.approx(float(expected))
    assert joint_errors(pred, gt, root_relative=True)[0, 0].item() == 0.0  # pelvis error is 0 by construction


def test_reduction_none_shapes_and_bad_reduction():
    pred, gt = random_poses(2, 5, seed=1), random_poses(2, 5, seed=2)
    assert mpjpe_mm(pred, gt, reduction="none").shape == (2, 5)
    assert pa_mpjpe_mm(pred, gt, reduction="none").shape == (2, 5)
    assert mpjpe_mm(pred[0, 0], gt[0, 0], reduction="none").shape == ()  # a single (J, 3) frame
    with pytest.raises(ValueError, match="reduction"):
        mpjpe_mm(pred, gt, reduction="sum")


# ----------------------------------------------------------------------------- PA-MPJPE


def test_pa_mpjpe_invariant_to_similarity_transform():
    gt = random_poses(8, seed=3)
    for i in range(4):
        R = random_rotation(10 + i)
        s = [0.5, 1.0, 1.7, 3.0][i]
        t = torch.tensor([0.3 * i, -1.0, 2.0], dtype=torch.float64)
        pred = s * gt @ R + t
        assert mpjpe_mm(pred, gt) > 10.0  # the transform is not trivial
        assert pa_mpjpe_mm(pred, gt, reduction="none").abs().max() < 1e-6  # mm
        torch.testing.assert_close(procrustes_align(pred, gt), gt, atol=1e-9, rtol=0)


def test_identical_poses_give_zero():
    gt = random_poses(4, seed=4)
    assert pa_mpjpe_mm(gt, gt) == pytest.approx(0.0, abs=1e-6)
    assert mpjpe_mm(gt, gt) == 0.0


def test_pa_mpjpe_at_most_mpjpe():
    # Not a theorem per frame (Procrustes minimises squared error, MPJPE averages norms), but it holds
    # by a wide margin for these seeded random poses, both independent and perturbed-transformed.
    gt = random_poses(64, seed=5)
    independent = random_poses(64, seed=6)
    perturbed = 1.2 * gt @ random_rotation(7) + 0.5 + 0.02 * random_poses(64, seed=8)
    for pred in (independent, perturbed):
        pa = pa_mpjpe_mm(pred, gt, reduction="none")
        mp = mpjpe_mm(pred, gt, reduction="none")
        assert (pa <= mp).all()
        assert pa_mpjpe_mm(pred, gt) < mpjpe_mm(pred, gt)


def test_matches_independent_numpy_reference():
    gt = random_poses(2, 6, seed=9)
    pred = random_poses(2, 6, seed=10)
    pred[0] = 0.9 * gt[0] @ random_rotation(11, det=-1.0) + 0.03 * random_poses(6, seed=12)  # mirrored frames
    ours = pa_mpjpe_mm(pred, gt, reduction="none").numpy().reshape(-1)
    ref = reference_pa_mpjpe_mm(pred.numpy(), gt.numpy())
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)
    assert pa_mpjpe_mm(pred, gt) == pytest.approx(ref.mean(), abs=1e-6)


def test_reflection_fix_gives_proper_rotation():
    gt = random_poses(5, seed=13)  # random 17-joint poses are non-planar
    pred = gt @ random_rotation(14, det=-1.0) + 0.4  # mirrored: only an improper transform maps it back
    aligned = procrustes_align(pred, gt)

    # recover the linear part M = b * T of the fitted map (pred - muY) @ M = aligned - muX
    Y0 = pred - pred.mean(dim=-2, keepdim=True)
    A0 = aligned - aligned.mean(dim=-2, keepdim=True)
    M = torch.linalg.lstsq(Y0, A0).solution
    assert (torch.linalg.det(M) > 0).all()  # a rotation (times scale > 0), not a reflection
    assert (pa_mpjpe_mm(pred, gt, reduction="none") > 1.0).all()  # so the mirror cannot be undone


def test_collapsed_prediction_is_finite():
    gt = random_poses(3, seed=15)
    pred = torch.zeros_like(gt) + torch.tensor([0.5, 0.5, 0.5], dtype=torch.float64)  # all joints at one point
    per_frame = pa_mpjpe_mm(pred, gt, reduction="none")
    assert torch.isfinite(per_frame).all()
    expected = torch.linalg.norm(gt - gt.mean(dim=-2, keepdim=True), dim=-1).mean(dim=-1) * 1000
    torch.testing.assert_close(per_frame, expected, atol=1e-9, rtol=0)
    assert torch.isfinite(procrustes_align(pred, gt)).all()


# ----------------------------------------------------------------------------- inputs


def test_bad_inputs_raise_clear_errors():
    gt = torch.zeros(4, J, 3)
    msg = r"pred has shape \(4, 17, 2\); expected \(\.\.\., J, 3\) matching gt \(4, 17, 3\)"
    with pytest.raises(ValueError, match=msg):
        mpjpe_mm(torch.zeros(4, J, 2), gt)
    with pytest.raises(ValueError, match=r"pred has shape \(4, 16, 3\).*matching gt \(4, 17, 3\)"):
        pa_mpjpe_mm(torch.zeros(4, 16, 3), gt)
    with pytest.raises(ValueError, match=r"gt has shape \(4, 17, 2\); expected \(\.\.\., J, 3\)"):
        joint_errors(torch.zeros(4, J, 2), torch.zeros(4, J, 2))
    with pytest.raises(ValueError, match=r"gt has shape \(3,\)"):
        mpjpe_mm(torch.zeros(3), torch.zeros(3))
    with pytest.raises(ValueError, match="empty"):
        mpjpe_mm(torch.zeros(0, J, 3), torch.zeros(0, J, 3))

    pred = torch.zeros(4, J, 3)
    pred[0, 0, 0] = float("nan")
    pred[1, 2, 1] = float("inf")
    pred[3, 3, 2] = float("-inf")
    with pytest.raises(ValueError, match="pred contains 3 non-finite values"):
        pa_mpjpe_mm(pred, gt)
    with pytest.raises(ValueError, match="gt contains 3 non-finite values"):
        pose_metrics(gt, pred)


def test_numpy_matches_torch_and_batched_dims():
    gt = random_poses(2, 5, seed=16)
    pred = gt + 0.05 * random_poses(2, 5, seed=17)
    m_t, m_n = pose_metrics(pred, gt), pose_metrics(pred.numpy(), gt.numpy())
    assert set(m_t) == {"mpjpe_mm", "pa_mpjpe_mm"}
    assert all(isinstance(v, float) for v in m_t.values())
    assert m_t == pytest.approx(m_n, abs=1e-12)

    errs = joint_errors(pred.numpy(), gt.numpy())
    assert isinstance(errs, torch.Tensor) and errs.shape == (2, 5, J)
    # batched result equals the flat one, frame for frame
    flat = pa_mpjpe_mm(pred.reshape(10, J, 3), gt.reshape(10, J, 3), reduction="none")
    torch.testing.assert_close(pa_mpjpe_mm(pred, gt, reduction="none").reshape(10), flat)
    assert procrustes_align(pred.numpy(), gt.numpy()).shape == (2, 5, J, 3)


def test_float32_input_keeps_dtype():
    gt = random_poses(4, seed=18).float()
    pred = gt + 0.01
    assert mpjpe_mm(pred, gt, reduction="none").dtype == torch.float32
    assert pa_mpjpe_mm(pred, gt, reduction="none").dtype == torch.float32
    assert procrustes_align(pred, gt).dtype == torch.float32
    assert mpjpe_mm(pred, gt) == pytest.approx(1000 * 0.01 * 3**0.5, rel=1e-4)


# ----------------------------------------------------------------------------- gradients


def test_gradient_flows_through_joint_errors():
    gt = random_poses(3, seed=19)
    pred = (gt + 0.05 * random_poses(3, seed=20)).requires_grad_(True)
    loss = joint_errors(pred, gt).mean()  # MPJPE loss, paper Eq. 10
    loss.backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0

    exact = gt.clone().requires_grad_(True)  # zero distance: gradient must still be finite
    joint_errors(exact, gt).mean().backward()
    assert torch.isfinite(exact.grad).all()

    small = (0.1 * torch.randn(2, 4, 3, dtype=torch.float64) + 1.0).requires_grad_(True)
    target = torch.randn(2, 4, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda p: joint_errors(p, target, root_relative=True), (small,))


def test_the_per_sample_loss_takes_poses_only():
    """Issue 31: on a (B,) or (B, D) target the per-sample MPJPE's arithmetic means something else (a norm over the
    whole batch, one number for all samples); NIS, Co-teaching, DivideMix, DMRNet and MMANet read it per sample."""
    from poise.metrics import sample_mpjpe

    pred, gt = torch.zeros(4, 17, 3), torch.ones(4, 17, 3)
    assert torch.allclose(sample_mpjpe(pred, gt), torch.full((4,), 3 ** 0.5))
    for a, b in ((torch.zeros(4), torch.ones(4)), (torch.zeros(4, 5), torch.ones(4, 5)),
                 (torch.zeros(4, 17, 3), torch.ones(3, 17, 3)), (torch.zeros(4, 17, 2), torch.ones(4, 17, 2))):
        with pytest.raises(ValueError, match=r"sample_mpjpe takes poses, pred and gt both \(B, J, 3\)"):
            sample_mpjpe(a, b)
