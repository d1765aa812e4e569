"""The ResNet generator of Johnson et al. 2016 as used by CycleGAN (Zhu et al. 2017, appendix 7.2).

Its parameter names follow the reference CycleGAN project (`model.1`, `model.4`, `model.7`,
`model.10..18.conv_block.{1,5}`, `model.19`, `model.22`, `model.26` for 9 blocks), so that
published `latest_net_G_*.pth` files load into it unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

UPSAMPLE_MODES = ("transpose", "resize")


def _norm(channels: int, affine: bool = False) -> nn.Module:
    # Instance norm without running statistics; no affine parameters in the reference CycleGAN,
    # affine ones in StarGAN.
    return nn.InstanceNorm2d(channels, affine=affine, track_running_stats=False)


class ResidualBlock(nn.Module):
    """x + conv(relu(norm(conv(x)))) with reflection padding (no dropout)."""

    def __init__(self, channels: int, affine: bool = False) -> None:
        super().__init__()
        # Indices 1 and 5 hold the convolutions, matching `conv_block.{1,5}` of the reference layout.
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, kernel_size=3),
            _norm(channels, affine),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, kernel_size=3),
            _norm(channels, affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


def _upsample(in_channels: int, out_channels: int, mode: str) -> nn.Module:
    if mode == "transpose":
        return nn.ConvTranspose2d(in_channels, out_channels, kernel_size=3, stride=2, padding=1, output_padding=1)
    # Nearest-neighbour resize then convolution avoids the checkerboard artifacts of strided
    # transposed convolutions (Odena et al. 2016, "Deconvolution and Checkerboard Artifacts").
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.ReflectionPad2d(1),
        nn.Conv2d(in_channels, out_channels, kernel_size=3),
    )


class ResnetGenerator(nn.Module):
    """c7s1-ngf, d(2ngf), d(4ngf), n_blocks x R(4ngf), u(2ngf), u(ngf), c7s1-3, tanh.

    Input and output are images in [-1, 1]; height and width must be multiples of `stride` (4).
    """

    stride = 4  # two stride-2 downsamplings
    min_side = 8  # the residual blocks' reflection padding needs a bottleneck of at least 2x2

    def __init__(
        self, ngf: int = 64, n_blocks: int = 9, upsample: str = "transpose", in_channels: int = 3, out_channels: int = 3,
        affine: bool = False,
    ) -> None:  # fmt: skip
        super().__init__()
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, got {upsample!r}")
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, kernel_size=7), _norm(ngf, affine), nn.ReLU(True)]
        for scale in (1, 2):  # downsampling: ngf -> 2 ngf -> 4 ngf
            channels = ngf * scale
            layers += [nn.Conv2d(channels, channels * 2, kernel_size=3, stride=2, padding=1), _norm(channels * 2, affine), nn.ReLU(True)]
        layers += [ResidualBlock(ngf * 4, affine) for _ in range(n_blocks)]
        for scale in (4, 2):  # upsampling: 4 ngf -> 2 ngf -> ngf
            channels = ngf * scale
            layers += [_upsample(channels, channels // 2, upsample), _norm(channels // 2, affine), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, kernel_size=7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)
