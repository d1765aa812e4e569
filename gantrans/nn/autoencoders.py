"""Image encoders and decoders meeting in a latent code: CycleGAN's ResNet generator cut at its
bottleneck (Johnson et al. 2016), as UNIT builds its domain auto-encoders (Liu et al. 2017), and their
conditional variants, one network for every domain told which by its norms (Dumoulin et al. 2017)."""

from __future__ import annotations

import torch
from torch import nn

from gantrans.nn.generators import ConditionalResidualBlock, ConditionalUpsampling, ResidualBlock, upsample_layer
from gantrans.nn.norm import ConditionalInstanceNorm2d, norm_layer


class ImageEncoder(nn.Module):
    """Image -> code: c7s1-ngf, `n_downsampling` stride-2 convolutions doubling the width, `n_blocks`
    residual blocks. The code has `code_channels` channels at 1/2**n_downsampling of the size."""

    def __init__(self, ngf: int = 64, n_downsampling: int = 2, n_blocks: int = 3, in_channels: int = 3, norm: str = "instance") -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, kernel_size=7), norm_layer(norm, ngf), nn.ReLU(True)]
        for level in range(n_downsampling):
            channels = ngf * 2**level
            layers += [nn.Conv2d(channels, channels * 2, kernel_size=3, stride=2, padding=1), norm_layer(norm, channels * 2), nn.ReLU(True)]
        self.code_channels = ngf * 2**n_downsampling
        self.stride = 2**n_downsampling  # image sides must be multiples of this
        self.min_side = 2 * self.stride  # the residual blocks' reflection padding needs a 2x2 code
        layers += [ResidualBlock(self.code_channels, norm) for _ in range(n_blocks)]
        self.model = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)


class ImageDecoder(nn.Module):
    """Code -> image in [-1, 1]: `n_blocks` residual blocks, `n_upsampling` 2x upsamplings halving the
    width, c7s1-3, tanh. With `label_channels`, label maps concatenated to the code are first mixed
    into it by a 3x3 convolution: shared-latent's --fully-shared decoder before model format 3, which
    the instance norm after that convolution leaves blind to the maps (`ConditionalImageDecoder` sees
    the domain)."""

    def __init__(
        self,
        ngf: int = 64,
        n_upsampling: int = 2,
        n_blocks: int = 3,
        out_channels: int = 3,
        norm: str = "instance",
        upsample: str = "resize",
        label_channels: int = 0,
    ) -> None:
        super().__init__()
        channels = ngf * 2**n_upsampling
        layers: list[nn.Module] = []
        if label_channels:
            layers += [
                nn.ReflectionPad2d(1),
                nn.Conv2d(channels + label_channels, channels, kernel_size=3),
                norm_layer(norm, channels),
                nn.ReLU(True),
            ]
        layers += [ResidualBlock(channels, norm) for _ in range(n_blocks)]
        for _ in range(n_upsampling):
            layers += [upsample_layer(channels, channels // 2, upsample), norm_layer(norm, channels // 2), nn.ReLU(True)]
            channels //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(channels, out_channels, kernel_size=7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.model(codes)


class ConditionalConvolution(nn.Module):
    """A convolution, a norm conditioned on the condition, ReLU."""

    def __init__(self, convolution: nn.Module, channels: int, n_conditions: int) -> None:
        super().__init__()
        self.conv = convolution
        self.norm = ConditionalInstanceNorm2d(channels, n_conditions)

    def forward(self, x: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.norm(self.conv(x), conditions))


class ConditionalImageEncoder(nn.Module):
    """`ImageEncoder`'s layers with every norm a conditional instance norm (Dumoulin et al. 2017):
    `forward(images, conditions)`, `conditions` (N, n_conditions) one-hot rows naming the images' domain.

    One encoder for every domain must know which domain it reads, as UNIT's per-domain encoders do, to
    map each into the one code space. Label maps at the input cannot tell it: after the first
    convolution they are a constant per-channel shift, which the instance norm right after removes.
    So every norm gets a per-domain scale and shift, from the first layer, where the domains' looks
    differ most, to the residual blocks.
    """

    def __init__(self, n_conditions: int, ngf: int = 64, n_downsampling: int = 2, n_blocks: int = 3) -> None:
        super().__init__()
        first = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, kernel_size=7))
        layers = [ConditionalConvolution(first, ngf, n_conditions)]
        for level in range(n_downsampling):
            channels = ngf * 2**level
            down = nn.Conv2d(channels, channels * 2, kernel_size=3, stride=2, padding=1)
            layers.append(ConditionalConvolution(down, channels * 2, n_conditions))
        self.code_channels = ngf * 2**n_downsampling
        self.stride = 2**n_downsampling  # image sides must be multiples of this
        self.min_side = 2 * self.stride  # the residual blocks' reflection padding needs a 2x2 code
        layers += [ConditionalResidualBlock(self.code_channels, n_conditions) for _ in range(n_blocks)]
        self.layers = nn.ModuleList(layers)

    def forward(self, images: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
        features = images
        for layer in self.layers:
            features = layer(features, conditions)
        return features


class ConditionalImageDecoder(nn.Module):
    """`ImageDecoder`'s layers with every norm a conditional instance norm (Dumoulin et al. 2017):
    `forward(codes, conditions)`, `conditions` (N, n_conditions) one-hot rows naming the domain to draw.
    The domain's scale and shift in the residual blocks and upsamplings render one code as that domain,
    as StarGAN's conditional generator renders its target."""

    def __init__(self, n_conditions: int, ngf: int = 64, n_upsampling: int = 2, n_blocks: int = 3, upsample: str = "resize") -> None:
        super().__init__()
        channels = ngf * 2**n_upsampling
        layers: list[nn.Module] = [ConditionalResidualBlock(channels, n_conditions) for _ in range(n_blocks)]
        for _ in range(n_upsampling):
            layers.append(ConditionalUpsampling(channels, channels // 2, upsample, n_conditions))
            channels //= 2
        self.layers = nn.ModuleList(layers)
        self.output = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(channels, 3, kernel_size=7), nn.Tanh())

    def forward(self, codes: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
        features = codes
        for layer in self.layers:
            features = layer(features, conditions)
        return self.output(features)
