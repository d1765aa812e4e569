"""PatchGAN discriminator (Isola et al. 2017): classifies overlapping patches as real or fake.

With n_layers=3 each output value sees a 70x70 patch of the input. Parameter names follow the
reference project (`model.0`, `model.2`, ...).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as apply_spectral_norm


class PatchDiscriminator(nn.Module):
    """C64 - C128 - C256 - C512 (stride 1) - 1-channel logit map, LeakyReLU(0.2), instance norm."""

    def __init__(self, ndf: int = 64, n_layers: int = 3, in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, kernel_size=4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        channels = ndf
        for layer in range(1, n_layers + 1):
            out_channels = ndf * min(2**layer, 8)
            stride = 2 if layer < n_layers else 1  # the last hidden layer keeps the resolution
            layers += [
                nn.Conv2d(channels, out_channels, kernel_size=4, stride=stride, padding=1),
                nn.InstanceNorm2d(out_channels, affine=False, track_running_stats=False),
                nn.LeakyReLU(0.2, True),
            ]
            channels = out_channels
        layers.append(nn.Conv2d(channels, 1, kernel_size=4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    def use_spectral_norm(self) -> PatchDiscriminator:
        """Constrain every convolution's spectral norm to 1 (Miyato et al. 2018). Call after init."""
        for module in self.model:
            if isinstance(module, nn.Conv2d):
                apply_spectral_norm(module)
        return self


class ClassifyingDiscriminator(nn.Module):
    """StarGAN's discriminator (Choi et al. 2018): one convolutional trunk, two heads.

    Trunk: n_layers of 4x4 stride-2 convolutions with LeakyReLU(0.01) and no normalisation, the
    width doubling from ndf (capped at 32 ndf). Heads: a 3x3 convolution giving a PatchGAN map of
    real/fake scores, and a 1x1 convolution giving per-domain logits, averaged over positions so any
    image size works (the paper sizes that kernel to the image instead).
    """

    def __init__(self, n_domains: int, ndf: int = 64, n_layers: int = 6, in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for layer in range(n_layers):
            out_channels = ndf * min(2**layer, 32)
            layers += [nn.Conv2d(channels, out_channels, kernel_size=4, stride=2, padding=1), nn.LeakyReLU(0.01, True)]
            channels = out_channels
        self.trunk = nn.Sequential(*layers)
        self.patch = nn.Conv2d(channels, 1, kernel_size=3, padding=1)
        self.classifier = nn.Conv2d(channels, n_domains, kernel_size=1)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images -> (real/fake score map [N, 1, h, w], domain logits [N, n_domains])."""
        features = self.trunk(images)
        return self.patch(features), self.classifier(features).mean(dim=(2, 3))

    def use_spectral_norm(self) -> ClassifyingDiscriminator:
        """Constrain every convolution's spectral norm to 1 (Miyato et al. 2018). Call after init."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                apply_spectral_norm(module)
        return self
