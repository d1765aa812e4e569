"""Normalisation layers by name, shared by the generators and discriminators."""

from __future__ import annotations

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
