"""Normalisation layers by name, shared by the generators and discriminators."""

from __future__ import annotations

import torch
from torch import Tensor, nn

# instance: no affine parameters and no running statistics (the reference CycleGAN);
# instance-affine: with learned scale and shift (StarGAN; DualGAN's per-image "batch_norm");
# batch: batch statistics in training, running averages at translation time (DiscoGAN).
NORMS = ("instance", "instance-affine", "batch", "none")


class InstanceNorm2d(nn.InstanceNorm2d):
    """Instance norm computed in fp32 when its input is bf16 (under autocast).

    bf16 keeps 8 significant bits: features whose mean is large against their spread lose the
    mean when the statistics or the centring run in bf16, and the normalised map is shifted.
    The casts cost an extra pass in eager mode; torch.compile fuses them into the norm kernel.
    """

    def forward(self, features: Tensor) -> Tensor:
        return super().forward(features.float()).to(features.dtype)


class ConditionalInstanceNorm2d(nn.Module):
    """Instance norm, then a scale and shift chosen by a condition: conditional instance normalisation
    (Dumoulin et al. 2017, "A Learned Representation for Artistic Style"), one (scale, shift) row per
    condition. StarGAN's generator uses it to see its target domain: a condition given as constant
    input channels is a constant per-channel shift after a convolution, which the next instance norm
    removes, so it must enter after the norm.

    `norm` is a plain `InstanceNorm2d` (no affine, fp32 under autocast), called as a module on the
    features alone: a hook on InstanceNorm2d modules sees the pre-normalisation features and may replace
    the normalised output (statistics shared across tiles); `scale` and `shift` apply to what it returns.
    """

    def __init__(self, channels: int, n_conditions: int) -> None:
        super().__init__()
        self.norm = InstanceNorm2d(channels, affine=False, track_running_stats=False)
        # Scale 1 and shift 0 for every condition: training starts from an unconditioned norm.
        self.scale = nn.Parameter(torch.ones(n_conditions, channels))
        self.shift = nn.Parameter(torch.zeros(n_conditions, channels))

    def forward(self, features: Tensor, conditions: Tensor) -> Tensor:
        """`features` (N, C, H, W); `conditions` (N, n_conditions): one-hot rows (or weights that mix rows)."""
        # A weighted sum, not a matmul: autocast leaves elementwise ops in fp32, as the norm runs.
        weights = conditions.float()[:, :, None]  # (N, K, 1)
        scale = (weights * self.scale).sum(dim=1)[:, :, None, None]  # (N, C, 1, 1)
        shift = (weights * self.shift).sum(dim=1)[:, :, None, None]
        return (self.norm(features).float() * scale + shift).to(features.dtype)


class BatchNorm2d(nn.BatchNorm2d):
    """Batch norm computed in fp32 when its input is bf16 (see InstanceNorm2d)."""

    def forward(self, features: Tensor) -> Tensor:
        return super().forward(features.float()).to(features.dtype)


def norm_layer(kind: str, channels: int) -> nn.Module:
    """The normalisation `kind` (one of NORMS) for `channels` feature maps."""
    if kind == "instance":
        return InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if kind == "instance-affine":
        return InstanceNorm2d(channels, affine=True, track_running_stats=False)
    if kind == "batch":
        return BatchNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")
