"""Instance normalisation over a whole image that is translated in tiles.

An instance-norm layer normalises each channel with the mean and variance of the whole feature map it
sees. Run on a tile, it sees only the tile, and each tile comes out in its own tone. Here the layers
normalise every tile with statistics of the whole image instead, computed one of two ways:

- thumbnail: run a downscaled copy of the image through the network and keep each layer's statistics
  (thumbnail instance normalisation, Chen et al. CVPR 2022, "Towards Ultra-Resolution Neural Style
  Transfer via Thumbnail Instance Normalization"). One small extra forward pass; approximate, since a
  thumbnail's features are not the full image's.
- exact: for each layer in execution order, with the layers before it already fixed, run every tile up
  to that layer and add up the sums and sums of squares of its input over the tiles' cores (which
  partition the image). The result is the whole image's statistics; the cost is about one partial
  forward pass over the image per layer.

Layers are found on the modules (forward hooks on every instance-norm layer that normalises with its
input's statistics), and their calls are counted in execution order, so this works for any network.
Batch norm at translation time uses running averages and needs nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

TILE_NORMS = ("thumbnail", "exact")

Statistics = tuple[Tensor, Tensor]  # per-channel mean and (biased) variance of a layer's input, fp32
Forward = Callable[[Tensor], Tensor]  # images in [-1, 1], NCHW -> translated images


@dataclass(frozen=True)
class Region:
    """Rows top..bottom-1 and columns left..right-1 of an image, in input pixels."""

    top: int
    bottom: int
    left: int
    right: int


def instance_norm_layers(networks: Iterable[nn.Module]) -> list[nn.Module]:
    """The layers whose output depends on the whole image: instance norms that use their input's
    statistics (not running averages)."""
    return [
        module
        for network in networks
        for module in network.modules()
        if isinstance(module, nn.modules.instancenorm._InstanceNorm) and (module.training or not module.track_running_stats)
    ]


class _Stop(Exception):
    """Raised by a hook to end a forward pass once the layer it measures has been reached."""


@contextlib.contextmanager
def hooked(layers: Sequence[nn.Module], fixed: Sequence[Statistics], after: Callable[[int, Tensor], None] | None = None) -> Iterator[None]:
    """Within the block, the first len(fixed) instance-norm calls of each forward pass normalise with
    `fixed` statistics; `after(index, input)` sees each later call. Enter once per forward pass: calls
    are counted from the block's start."""
    calls = 0

    def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        nonlocal calls
        index, calls = calls, calls + 1
        if index < len(fixed):
            _normalise(module, inputs[0], output, *fixed[index])
        elif after is not None:
            after(index, inputs[0])

    handles = [layer.register_forward_hook(hook) for layer in layers]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _normalise(module: nn.Module, features: Tensor, output: Tensor, mean: Tensor, variance: Tensor) -> None:
    """Overwrite `output` with `features` normalised by the given statistics (in fp32, as the layer does)."""
    scale = torch.rsqrt(variance + module.eps)
    if module.affine:
        scale = scale * module.weight.float()
    shift = -mean * scale + (module.bias.float() if module.affine else 0.0)
    shape = (1, -1, 1, 1)
    if features.dtype == output.dtype == torch.float32:
        torch.addcmul(shift.view(shape), features, scale.view(shape), out=output)  # in place: no full-size temporary
    else:
        output.copy_(torch.addcmul(shift.view(shape), features.float(), scale.view(shape)))


def statistics_of(features: Tensor) -> Statistics:
    """Per-channel mean and biased variance of one image's features [1, C, H, W] (as instance norm computes them)."""
    values = features.float()
    return values.mean(dim=(0, 2, 3)), values.var(dim=(0, 2, 3), unbiased=False)


def thumbnail_statistics(forward: Forward, layers: Sequence[nn.Module], thumbnail: Tensor) -> list[Statistics]:
    """Each instance-norm call's statistics while translating `thumbnail` [1, 3, h, w] (Chen et al. 2022)."""
    recorded: list[Statistics] = []
    with hooked(layers, (), lambda index, features: recorded.append(statistics_of(features))):
        forward(thumbnail)
    return recorded


class _CoreSums:
    """Sums and sums of squares of a layer's input over the tiles' cores, in fp64 (a 48 MP image's
    sums of squares lose digits in fp32)."""

    def __init__(self) -> None:
        self.total: Tensor | None = None
        self.squares: Tensor | None = None
        self.count = 0

    def add(self, features: Tensor, window: Region, core: Region) -> None:
        """Add the part of `features` (of the tile `window`, at the layer's resolution) over `core`."""
        rows, columns = features.shape[-2:]
        scale_y, scale_x = rows / (window.bottom - window.top), columns / (window.right - window.left)
        # Global positions are scaled, then made relative: neighbouring tiles split the rows at the same place.
        top, bottom = round(core.top * scale_y) - round(window.top * scale_y), round(core.bottom * scale_y) - round(window.top * scale_y)
        left, right = round(core.left * scale_x) - round(window.left * scale_x), round(core.right * scale_x) - round(window.left * scale_x)
        part = features[0, :, top:bottom, left:right].double()
        total, squares = part.sum(dim=(1, 2)), part.square().sum(dim=(1, 2))
        self.total = total if self.total is None else self.total + total
        self.squares = squares if self.squares is None else self.squares + squares
        self.count += part.shape[1] * part.shape[2]

    def statistics(self) -> Statistics:
        assert self.total is not None and self.squares is not None and self.count > 0
        mean = self.total / self.count
        variance = (self.squares / self.count - mean.square()).clamp_min(0.0)
        return mean.float(), variance.float()


def exact_statistics(
    forward: Forward, layers: Sequence[nn.Module], tiles: Sequence[tuple[Region, Region]], load: Callable[[Region], Tensor]
) -> list[Statistics]:
    """The whole image's statistics at each instance-norm call, from `tiles` (window, core) whose cores
    partition the image; `load(window)` gives a tile's input. Layer k is measured with layers
    0..k-1 fixed to their whole-image statistics, stopping each pass at layer k."""
    fixed: list[Statistics] = []
    while True:
        sums = _CoreSums()
        for window, core in tiles:
            if not _measure(forward, layers, fixed, sums, (window, core), load(window)):
                return fixed  # the pass ran to its end: every layer is measured
        fixed.append(sums.statistics())


def _measure(
    forward: Forward, layers: Sequence[nn.Module], fixed: Sequence[Statistics], sums: _CoreSums, tile: tuple[Region, Region], images: Tensor
) -> bool:
    """Run the tile (window, core) up to instance-norm call len(fixed), adding that layer's input over
    the core to `sums`; False when the pass ends before it."""
    reached = False

    def measure(index: int, features: Tensor) -> None:
        nonlocal reached
        reached = True
        sums.add(features, *tile)
        raise _Stop

    with contextlib.suppress(_Stop), hooked(layers, fixed, measure):
        forward(images)
    return reached
