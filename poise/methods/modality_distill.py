"""``modality_distill``: one-stage modality distillation (paper 002's robustness list; "One-stage Modality
Distillation for Incomplete Multimodal Learning", arXiv 2309.08204), for pose regression with M = 4.

**The design is ours.** Only the abstract is public (no code, equations or hyper-parameters;
``../shared/research/related_methods.md`` sec. 4): a joint adaptation network restores the missing modality's
representation from the available ones, aligning their distributions (modality transfer), and a network with
shared parameters fuses restored and available features (modality fusion), in one optimisation. Here:

    restorer      per modality m, an MLP from the present modalities' tokens (absent ones zeroed) and the
                  0/1 presence mask to a restored token z^_m; it sees nothing of an absent modality
    decode        absent tokens replaced by restored ones, then the model's own fusion and head (the shared
                  parameters: one fusion for real and restored tokens); ``PoseModel.restorer``, so evaluation
                  and ``poise robust`` restore as training did
    L             MPJPE(decode(z)) + MPJPE(decode(z, S)) + lambda_feat * R + lambda_mmd * MMD
    R             mean over the absent (sample, modality) pairs of ||z^_m - sg(z_m)||^2 / var(z_m)
                  (feature regression, scale-free: 1 is what predicting the batch mean scores); R and MMD train
                  the restorer only (sg on its input and target), since letting them reach the encoders
                  (features near-constant across frames, var ~ 1e-3) trained the encoders to be easy to restore
                  and took the fused error from 340 to 1600 mm in 3 epochs on the tiny data
    MMD           per absent modality, the RBF-kernel maximum mean discrepancy between the restored and the
                  true tokens of the batch (marginal alignment; bandwidth: median pairwise distance)

with S a combination per sample, drawn as modality dropout does (``p``; 0.5: uniform over the non-empty
ones). The conditional part of the "joint distribution adaptation" is carried by the pose loss on the
restored input (a restored token that gives the right pose is aligned given the pose). A class-conditional MMD
over MM-Fi's 27 action labels (which the data carry) would be the closer analogue; it is not implemented: with
batch 32 over 27 actions most classes hold one sample or none in a batch, too few for a kernel estimate. The optimiser is poise's default (Adam).
Host reads: which modalities are absent often enough for R and MMD is decided on the device (``torch.where``);
whether anything is absent at all is asked of the masks as drawn on the host (``sample_masks``). That question
and the masks' redraw (``draw_masks``) are the step's only reads, both of CPU tensors no device computed. (The
boolean selection of the absent rows still makes a GPU wait inside torch: ``nonzero``.)
"""

from __future__ import annotations

from typing import ClassVar

import dataclasses

import torch
from torch import nn

from poise.methods import register
from poise.methods.base import Method
from poise.methods.modality_dropout import check_drop, check_non_negative, sample_masks


class FeatureRestorer(nn.Module):
    """(tokens (B, M, d) with absent ones zeroed, mask (B, M)) -> restored tokens (B, M, d), one MLP per
    modality; the input is masked here too, so a restored token never reads its own modality. Each restored
    token is ``centre`` (a running mean of the true tokens, updated by ``track``) plus the MLP's correction (zero at the start), so
    an untrained restorer predicts the mean (the lite encoders' features are near-constant across frames, and an
    MLP alone took epochs to find their offset)."""

    def __init__(self, n_modalities: int, dim: int, hidden: int | None = None, momentum: float = 0.1):
        super().__init__()
        hidden = hidden or 2 * dim
        self.momentum = momentum
        self.nets = nn.ModuleList(nn.Sequential(nn.Linear(n_modalities * (dim + 1), hidden), nn.GELU(),
                                                nn.Linear(hidden, dim)) for _ in range(n_modalities))
        for net in self.nets:  # the correction starts at 0: an untrained restorer predicts the centre
            nn.init.zeros_(net[-1].weight)
            nn.init.zeros_(net[-1].bias)
        self.register_buffer("centre", torch.zeros(n_modalities, dim))
        self.register_buffer("tracked", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def track(self, tokens: torch.Tensor) -> None:
        """Move ``centre`` towards the batch mean of the true tokens (the first batch sets it; decided on the
        device)."""
        mean = tokens.detach().mean(0)
        self.centre.copy_(torch.where(self.tracked == 0, mean, torch.lerp(self.centre, mean, self.momentum)))
        self.tracked += 1

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask = mask.expand(len(tokens), -1)
        seen = torch.cat([(tokens * mask[..., None]).flatten(1), mask], dim=1)
        return self.centre + torch.stack([net(seen) for net in self.nets], dim=1)


def rbf_mmd(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Biased squared MMD between the rows of x and y with a Gaussian kernel at the median pairwise distance."""
    both = torch.cat([x, y])
    distances = torch.cdist(both, both).square()
    bandwidth = distances.detach().median().clamp_min(1e-12)
    kernel = torch.exp(-distances / bandwidth)
    n = len(x)
    return kernel[:n, :n].mean() + kernel[n:, n:].mean() - 2 * kernel[:n, n:].mean()


def restoration_losses(restorer: FeatureRestorer, tokens: torch.Tensor, mask: torch.Tensor) -> tuple:
    """(R, MMD) for the absent entries of ``mask``, with ``tokens`` the true (B, M, d) tokens; a modality absent
    from fewer than 2 samples of the batch adds no term. Both train the restorer alone (its input is detached
    too): the encoders learn from the pose losses only, not to make their features easy to restore. Which
    modalities count is decided on the device: every modality's terms are computed (NaN for none absent) and
    ``torch.where`` keeps those of the counted ones, so nothing is read back on the host."""
    target = tokens.detach()
    restored = restorer(target * mask[..., None], mask)
    absent = mask < 0.5
    counted = absent.sum(0) >= 2  # (M,)
    regression, mmd = tokens.new_zeros(()), tokens.new_zeros(())
    for m in range(tokens.shape[1]):
        rows = absent[:, m]
        variance = target[:, m].var(0).sum().clamp_min(1e-12)
        term = (restored[rows, m] - target[rows, m]).square().sum(1).mean() / variance
        regression = regression + torch.where(counted[m], term, 0.0)
        mmd = mmd + torch.where(counted[m], rbf_mmd(restored[rows, m], target[rows, m]), 0.0)
    terms = counted.sum().clamp_min(1)
    return regression / terms, mmd / terms


@register("modality_distill")
@dataclasses.dataclass
class ModalityDistill(Method):
    needs: ClassVar[tuple] = ("feature size", "stages", "installable parts")
    lambda_feat: float = 1.0  # weight of the feature regression R
    lambda_mmd: float = 0.1  # weight of the marginal MMD
    lambda_restored: float = 1.0  # weight of the pose loss on the restored input
    p: float = 0.5
    hidden: int = 0  # the restorer's hidden width (0: 2 d)

    def __post_init__(self):
        check_drop(self.name, self.p)
        check_non_negative(self, "lambda_feat", "lambda_mmd", "lambda_restored", "hidden")
        self.last = (float("nan"), float("nan"))  # the last step's (R, MMD)

    def setup(self, run) -> None:
        model = run.model
        model.install("restorer", FeatureRestorer(len(model.modalities), model.dim, self.hidden or None))

    def extra_loss(self, run, step):
        model = run.model
        drawn, mask = sample_masks(model, step.features, self.p, host=True)
        tokens = model.tokens(step.features)  # every modality: the true tokens
        model.restorer.track(tokens)
        if bool(drawn.all()):
            # nothing absent, as the masks drawn on the host say (no device read): the restorer stays out of this
            # step (no gradient, so the optimiser skips it) and the restored input is the full one
            regression = mmd = tokens.new_zeros(())
            mask = None
        else:
            regression, mmd = restoration_losses(model.restorer, tokens, mask)
        self.last = (regression.detach(), mmd.detach())  # read at the end of the epoch: no host sync per step
        restored_pose = run.objective.loss(model.decode(step.features, mask), step.batch["gt"])
        return self.lambda_restored * restored_pose + self.lambda_feat * regression + self.lambda_mmd * mmd

    def epoch_metrics(self, run) -> dict:
        regression, mmd = (float(v) for v in self.last)
        return {"modality_distill_restore": regression, "modality_distill_mmd": mmd}
