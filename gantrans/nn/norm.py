"""Normalisation layers by name, shared by the generators and discriminators."""

from __future__ import annotations

from torch import nn

# instance: no affine parameters and no running statistics (the reference CycleGAN);
# instance-affine: with learned scale and shift (StarGAN; DualGAN's per-image "batch_norm");
# batch: batch statistics in training, running averages at translation time (DiscoGAN).
NORMS = ("instance", "instance-affine", "batch", "none")


def norm_layer(kind: str, channels: int) -> nn.Module:
    """The normalisation `kind` (one of NORMS) for `channels` feature maps."""
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if kind == "instance-affine":
        return nn.InstanceNorm2d(channels, affine=True, track_running_stats=False)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")
