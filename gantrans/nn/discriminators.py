"""Discriminators: the PatchGAN of pix2pix/CycleGAN (and DCGAN's, its fully strided cousin), and
StarGAN's two-headed one.

PatchGAN with n_layers=3 gives each output value a 70x70 patch of the input. Parameter names follow
the reference project (`model.0`, `model.2`, ...).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as apply_spectral_norm

from gantrans.nn.norm import norm_layer

DISCRIMINATORS = ("patch", "dcgan")


def with_spectral_norm(network: nn.Module) -> nn.Module:
    """Constrain every convolution's spectral norm to 1 (Miyato et al. 2018). Call after init."""
    for module in list(network.modules()):
        if isinstance(module, nn.Conv2d):
            apply_spectral_norm(module)
    return network


class PatchDiscriminator(nn.Module):
    """C64 - C128 - C256 - C512 - 1-channel score map, 4x4 kernels, LeakyReLU(0.2) (Isola et al. 2017).

    The first convolution has no normalisation, the next `n_layers` do. PatchGAN (the default) keeps
    the resolution in the last of them and pads the final convolution, scoring overlapping patches.
    With `dcgan=True` every layer strides 2 and the final 4x4 convolution is unpadded: the DCGAN
    discriminator (Radford et al. 2016) that DiscoGAN uses, one score per image at 64 px with
    n_layers=3, a map of 94x94-pixel patches on larger images.
    """

    def __init__(self, ndf: int = 64, n_layers: int = 3, in_channels: int = 3, norm: str = "instance", dcgan: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, kernel_size=4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        channels = ndf
        for layer in range(1, n_layers + 1):
            out_channels = ndf * min(2**layer, 8)
            stride = 2 if dcgan or layer < n_layers else 1  # PatchGAN's last hidden layer keeps the resolution
            layers += [
                nn.Conv2d(channels, out_channels, kernel_size=4, stride=stride, padding=1),
                norm_layer(norm, out_channels),
                nn.LeakyReLU(0.2, True),
            ]
            channels = out_channels
        layers.append(nn.Conv2d(channels, 1, kernel_size=4, stride=1, padding=0 if dcgan else 1))
        self.model = nn.Sequential(*layers)
        # Smallest input side that leaves a score map of at least 1x1 (and normalised maps of 2x2).
        self.min_side = 2 ** (n_layers + 3) if dcgan else 3 * 2**n_layers

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    def scores_and_features(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The score map and the activations of each normalised layer (for feature matching)."""
        features = []
        x = images
        for index, module in enumerate(self.model):
            x = module(x)
            if isinstance(module, nn.LeakyReLU) and index > 1:
                features.append(x)
        return x, features

    def use_spectral_norm(self) -> PatchDiscriminator:
        return with_spectral_norm(self)


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
        self.min_side = 2**n_layers  # leaves a 1x1 map

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images -> (real/fake score map [N, 1, h, w], domain logits [N, n_domains])."""
        features = self.trunk(images)
        return self.patch(features), self.classifier(features).mean(dim=(2, 3))

    def use_spectral_norm(self) -> ClassifyingDiscriminator:
        return with_spectral_norm(self)


class LatentDiscriminator(nn.Module):
    """Which domain's encoder made this code? Per-position domain logits [N, n_domains, h, w].

    The domain discriminator on the shared latent space (the lectures' second remedy; Liu et al.
    2017, Royer et al. 2017): `n_layers` 3x3 convolutions with LeakyReLU(0.2), no normalisation
    (a code's statistics are what it judges), then a 1x1 convolution to the logits.
    """

    def __init__(self, code_channels: int, n_domains: int, ndf: int = 64, n_layers: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = code_channels
        for _ in range(n_layers):
            layers += [nn.Conv2d(channels, ndf, kernel_size=3, padding=1), nn.LeakyReLU(0.2, True)]
            channels = ndf
        layers.append(nn.Conv2d(channels, n_domains, kernel_size=1))
        self.model = nn.Sequential(*layers)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.model(codes)

    def use_spectral_norm(self) -> LatentDiscriminator:
        return with_spectral_norm(self)
