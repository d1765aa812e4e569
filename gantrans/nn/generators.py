"""Generators: the ResNet generator of CycleGAN (and of StarGAN's model files before format 3), its
variant conditioned on a target domain (StarGAN), and the encoder-decoder of DiscoGAN and DualGAN
(with skip connections: the U-Net of pix2pix).

The ResNet generator's parameter names follow the reference CycleGAN project (`model.1`, `model.4`,
`model.7`, `model.10..18.conv_block.{1,5}`, `model.19`, `model.22`, `model.26` for 9 blocks), so that
published `latest_net_G_*.pth` files load into it unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from gantrans.nn.norm import ConditionalInstanceNorm2d, norm_layer

UPSAMPLE_MODES = ("transpose", "resize")


class ResidualBlock(nn.Module):
    """x + conv(relu(norm(conv(x)))) with reflection padding (no dropout)."""

    def __init__(self, channels: int, norm: str = "instance") -> None:
        super().__init__()
        # Indices 1 and 5 hold the convolutions, matching `conv_block.{1,5}` of the reference layout.
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, kernel_size=3),
            norm_layer(norm, channels),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, kernel_size=3),
            norm_layer(norm, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


def upsample_layer(in_channels: int, out_channels: int, mode: str) -> nn.Module:
    """A 2x upsampling to `out_channels`: a transposed convolution, or a nearest resize and a convolution."""
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
    """c7s1-ngf, d(2ngf), d(4ngf), n_blocks x R(4ngf), u(2ngf), u(ngf), c7s1-3, tanh (Johnson et al.
    2016, as used by CycleGAN, appendix 7.2).

    Input and output are images in [-1, 1]; height and width must be multiples of `stride` (4).
    """

    stride = 4  # two stride-2 downsamplings
    min_side = 8  # the residual blocks' reflection padding needs a bottleneck of at least 2x2

    def __init__(
        self,
        ngf: int = 64,
        n_blocks: int = 9,
        upsample: str = "transpose",
        in_channels: int = 3,
        out_channels: int = 3,
        norm: str = "instance",
        colour_skip: bool = False,
    ) -> None:
        super().__init__()
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, got {upsample!r}")
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, kernel_size=7), norm_layer(norm, ngf), nn.ReLU(True)]
        for scale in (1, 2):  # downsampling: ngf -> 2 ngf -> 4 ngf
            channels = ngf * scale
            layers += [nn.Conv2d(channels, channels * 2, kernel_size=3, stride=2, padding=1), norm_layer(norm, channels * 2), nn.ReLU(True)]
        layers += [ResidualBlock(ngf * 4, norm) for _ in range(n_blocks)]
        for scale in (4, 2):  # upsampling: 4 ngf -> 2 ngf -> ngf
            channels = ngf * scale
            layers += [upsample_layer(channels, channels // 2, upsample), norm_layer(norm, channels // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, kernel_size=7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        # A 1x1 convolution from the input straight to the output, added before the tanh: every output
        # pixel sees its input pixel's colour without passing through a normalisation, which removes
        # an image's overall tone. A per-pixel colour transform (toning, inversion) is then one linear
        # map, and the residual network only has to learn what depends on the neighbourhood.
        self.colour_skip = nn.Conv2d(in_channels, out_channels, kernel_size=1) if colour_skip else None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.colour_skip is None:
            return self.model(images)
        *body, tanh = self.model
        features = images
        for layer in body:
            features = layer(features)
        return tanh(features + self.colour_skip(images))

    def encode(self, images: torch.Tensor, layers: Sequence[int]) -> list[torch.Tensor]:
        """The outputs of `self.model`'s layers `layers` (ascending indices), run only as far as the
        last of them: the generator's own encoder features, which CUT's PatchNCE compares."""
        features, last = [], max(layers)
        for index, layer in enumerate(self.model[: last + 1]):
            images = layer(images)
            if index in layers:
                features.append(images)
        return features

    def layer_channels(self, layer: int) -> int:
        """Channels of the output of `self.model[layer]` (the input's 3 before the first convolution)."""
        channels = 3
        for module in self.model[: layer + 1]:
            convolutions = [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
            channels = convolutions[-1].out_channels if convolutions else channels
        return channels


class ConditionalResidualBlock(nn.Module):
    """A `ResidualBlock` whose two norms take their scale and shift from the condition."""

    def __init__(self, channels: int, n_conditions: int) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, kernel_size=3))
        self.norm1 = ConditionalInstanceNorm2d(channels, n_conditions)
        self.conv2 = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, kernel_size=3))
        self.norm2 = ConditionalInstanceNorm2d(channels, n_conditions)

    def forward(self, x: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
        hidden = F.relu(self.norm1(self.conv1(x), conditions))
        return x + self.norm2(self.conv2(hidden), conditions)


class ConditionalUpsampling(nn.Module):
    """A 2x upsampling (`upsample_layer`), a norm conditioned on the condition, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, mode: str, n_conditions: int) -> None:
        super().__init__()
        self.upsample = upsample_layer(in_channels, out_channels, mode)
        self.norm = ConditionalInstanceNorm2d(out_channels, n_conditions)

    def forward(self, x: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.upsample(x), conditions))


class ConditionalResnetGenerator(nn.Module):
    """`ResnetGenerator`'s layers, with the norms of the residual blocks and the decoder conditional
    instance norms (Dumoulin et al. 2017): `forward(images, conditions)`, `conditions` (N, n_conditions)
    one-hot rows (StarGAN's target domain).

    A condition cannot enter as input channels: constant maps become constant per-channel shifts,
    which the first instance norm removes. The encoder (c7s1, two downsamplings) keeps plain affine
    norms: it computes content features shared by every target, and the target decides how the
    residual blocks and the decoder render them (as StarGAN v2, Choi et al. 2020, injects its style
    code in the decoder only).
    """

    stride = 4  # two stride-2 downsamplings
    min_side = 8  # the residual blocks' reflection padding needs a bottleneck of at least 2x2

    def __init__(self, n_conditions: int, ngf: int = 64, n_blocks: int = 9, upsample: str = "transpose") -> None:
        super().__init__()
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, got {upsample!r}")
        norm = "instance-affine"
        encoder: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, kernel_size=7), norm_layer(norm, ngf), nn.ReLU(True)]
        for scale in (1, 2):  # downsampling: ngf -> 2 ngf -> 4 ngf
            channels = ngf * scale
            encoder += [
                nn.Conv2d(channels, channels * 2, kernel_size=3, stride=2, padding=1),
                norm_layer(norm, channels * 2),
                nn.ReLU(True),
            ]
        self.encoder = nn.Sequential(*encoder)
        self.blocks = nn.ModuleList([ConditionalResidualBlock(ngf * 4, n_conditions) for _ in range(n_blocks)])
        self.decoder = nn.ModuleList([ConditionalUpsampling(ngf * scale, ngf * scale // 2, upsample, n_conditions) for scale in (4, 2)])
        self.output = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, kernel_size=7), nn.Tanh())

    def forward(self, images: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
        features = self.encoder(images)
        for layer in (*self.blocks, *self.decoder):
            features = layer(features, conditions)
        return self.output(features)


class EncoderDecoderGenerator(nn.Module):
    """`depth` 4x4 stride-2 convolutions down, as many transposed ones up, tanh.

    With `skip_connections`, each decoder level also sees the encoder features of its resolution:
    the U-Net of pix2pix (Isola et al. 2017) that DualGAN uses (depth 8 takes 256 px down to 1x1).
    Without them it is DiscoGAN's encoder-decoder (Kim et al. 2017; depth 4 for 64 px), whose whole
    image must pass through the bottleneck. Widths double from `ngf` up to 8 ngf. As in pix2pix, the
    outermost and innermost encoder layers have no normalisation (a norm would zero a 1x1 code), and
    `dropout` applies to the three decoder levels nearest the bottleneck (DualGAN: 0.5).
    Input sides must be multiples of 2**depth.
    """

    def __init__(
        self,
        ngf: int = 64,
        depth: int = 8,
        skip_connections: bool = True,
        norm: str = "batch",
        dropout: float = 0.0,
        in_channels: int = 3,
        out_channels: int = 3,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.skip_connections = skip_connections
        self.stride = self.min_side = 2**depth
        widths = [ngf * min(2**level, 8) for level in range(depth)]
        bias = norm == "none"  # a bias before a normalisation is cancelled by it
        self.encoders = nn.ModuleList()
        for level, width in enumerate(widths):
            normalised = 0 < level < depth - 1
            conv = nn.Conv2d(in_channels if level == 0 else widths[level - 1], width, 4, stride=2, padding=1, bias=bias or not normalised)
            self.encoders.append(nn.Sequential(conv, norm_layer(norm, width)) if normalised else conv)
        self.decoders = nn.ModuleList()
        for level in reversed(range(depth)):  # from the bottleneck outwards
            width_in = widths[level] * (2 if skip_connections and level < depth - 1 else 1)
            if level == 0:
                self.decoders.append(nn.ConvTranspose2d(width_in, out_channels, 4, stride=2, padding=1))
                continue
            layers = [
                nn.ConvTranspose2d(width_in, widths[level - 1], 4, stride=2, padding=1, bias=bias),
                norm_layer(norm, widths[level - 1]),
            ]
            if dropout > 0 and level >= depth - 3:
                layers.append(nn.Dropout(dropout))
            self.decoders.append(nn.Sequential(*layers))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # Pre-activation order as in pix2pix: each layer activates its input, so a skip carries the
        # encoder's features before their LeakyReLU and the decoder applies ReLU to the concatenation.
        features = []
        x = images
        for level, encoder in enumerate(self.encoders):
            x = encoder(x if level == 0 else F.leaky_relu(x, 0.2))
            features.append(x)
        for index, decoder in enumerate(self.decoders):
            if self.skip_connections and index > 0:
                x = torch.cat([x, features[-1 - index]], dim=1)
            x = decoder(F.relu(x))
        return torch.tanh(x)
