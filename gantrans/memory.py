"""How much a generator needs, and how much the device has: whether an image translates whole, in
batches, or in tiles, and how large the tiles are.

A network's needs come from one small probe pass with forward hooks on its layers: the largest
activation per input pixel (an input and an output of one layer live together), and the receptive
field (how far an output pixel sees: the context a tile needs around it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from gantrans.tile_norm import Forward
from gantrans.tiling import round_up

# The share of free memory that one forward pass may plan to use: the rest is for the images
# themselves, the allocator's slack and whatever else runs.
MEMORY_SHARE = 0.5
# What a probe misses (skip connections kept alive, allocator rounding, convolution workspaces):
# the largest layer's input and output, times this.
SAFETY = 2.0
FALLBACK_HOST_MEMORY = 4 * 2**30  # when the free host memory cannot be read (not Linux)


@dataclass(frozen=True)
class NetworkProfile:
    """What a generator needs per input pixel, measured once per model and target."""

    bytes_per_pixel: float  # activation memory of one forward pass, per input pixel
    receptive_radius: int  # input pixels an output pixel can see on each side (an upper bound)

    def pixels_that_fit(self, free: int) -> int:
        """Input pixels (over a whole batch) that one forward pass can take in `free` bytes."""
        return int(free * MEMORY_SHARE / self.bytes_per_pixel)


def free_memory(device: torch.device) -> int:
    """Bytes that can still be allocated on `device`: torch.cuda.mem_get_info (plus what PyTorch's
    cache holds unused) on CUDA; otherwise the host's MemAvailable, or its container's limit if lower."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return _host_available()


def _host_available() -> int:
    available = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:  # cgroup v2: a container sees the host's memory in /proc/meminfo, but may use only its limit
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            available.append(int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return max(0, min(available)) if available else FALLBACK_HOST_MEMORY


def profile(forward: Forward, networks: Iterable[nn.Module], geometry: tuple[int, int], device: torch.device) -> NetworkProfile:
    """Measure `forward` on one probe image with hooks on the leaf modules of `networks`. `geometry`
    is the generator's (stride, min_side). Call under torch.inference_mode."""
    stride, min_side = geometry
    side = round_up(max(64, min_side, 2 * stride), stride)
    largest, radius = 0, 0.0

    def hook(module: nn.Module, inputs: tuple[object, ...], output: object) -> None:
        nonlocal largest, radius
        tensors = [value for value in (*inputs, output) if isinstance(value, torch.Tensor)]
        largest = max(largest, sum(tensor.numel() * tensor.element_size() for tensor in tensors))
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.MaxPool2d, nn.AvgPool2d)) and tensors:
            radius += _reach(module) * side / tensors[0].shape[-2]  # in input pixels: times the input's scale

    leaves = [module for network in networks for module in network.modules() if not any(module.children())]
    handles = [module.register_forward_hook(hook) for module in leaves]
    try:
        forward(torch.zeros(1, 3, side, side, device=device))
    finally:
        for handle in handles:
            handle.remove()
    return NetworkProfile(SAFETY * largest / side**2, math.ceil(radius))


def _reach(module: nn.Module) -> float:
    """How many of its input's pixels an output pixel of `module` sees on each side."""
    kernel, dilation = _first(module.kernel_size), _first(getattr(module, "dilation", 1))
    if isinstance(module, nn.ConvTranspose2d):
        return math.ceil((kernel // 2) * dilation / _first(module.stride))
    return (kernel // 2) * dilation


def _first(value: int | tuple[int, ...]) -> int:
    return max(value) if isinstance(value, tuple) else value


def auto_tile(needs: NetworkProfile, free: int, margin: int, stride: int, largest: int = 1024, smallest: int = 64) -> int:
    """The largest tile side (a multiple of `stride`, from `smallest` to `largest`) whose network
    input, the tile plus `margin` pixels (overlap and halo), fits in `free` bytes. Beyond 1024 px a
    tile saves little: the halo's share of the work is already small."""
    side = math.isqrt(needs.pixels_that_fit(free)) - margin
    return max(smallest, min(largest, side // stride * stride))
