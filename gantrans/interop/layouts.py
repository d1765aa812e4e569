"""The generator architectures an imported file may hold, and the tensors each expects, in order.

Two families, each in the layout of the reference project (pytorch-CycleGAN-and-pix2pix):

- ResNet generators (`resnet_6blocks`, `resnet_9blocks`, any width and depth): 7x7 conv, two
  stride-2 convs, residual blocks, two transposed convs, 7x7 conv. Our `ResnetGenerator` with its
  defaults (transposed convs, no colour skip) is that network.
- U-Nets (`unet_128`, `unet_256`, any width and depth): our `EncoderDecoderGenerator` with skip
  connections. The reference concatenates [skip, upsampled] where we concatenate [upsampled, skip],
  so the input channels of every decoder conv but the innermost are swapped in halves on import.

A normalisation without parameters is taken to be instance norm (the reference's choice for these
generators): shapes cannot tell it from no normalisation at all.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from gantrans.checkpoint import MAX_PARAMETERS
from gantrans.interop.sources import SourceTensor, statistic_of
from gantrans.methods import CycleGANConfig, Pix2PixConfig
from gantrans.nn import EncoderDecoderGenerator, ResnetGenerator

FAMILIES = ("resnet", "unet")
NORMS_TRIED = ("instance", "instance-affine", "batch")
_NORM_NAMES = {"instance": "instance norm", "instance-affine": "affine instance norm", "batch": "batch norm", "none": "no norm"}


@dataclass(frozen=True)
class Architecture:
    """One generator gantrans can build: a family, its width, its depth and its normalisation."""

    family: str  # one of FAMILIES
    ngf: int
    depth: int  # residual blocks (resnet) or stride-2 levels (unet)
    norm: str

    def describe(self) -> str:
        """E.g. 'a ResNet generator (ngf 64, 9 residual blocks, instance norm)'."""
        if self.family == "resnet":
            blocks = f"{self.depth} residual block{'' if self.depth == 1 else 's'}"
            return f"a ResNet generator (ngf {self.ngf}, {blocks}, {_NORM_NAMES[self.norm]})"
        return f"a U-Net generator (ngf {self.ngf}, depth {self.depth}, {_NORM_NAMES[self.norm]})"

    def build(self) -> nn.Module:
        """The network, on the current default device (meta, to read its shapes for free)."""
        if self.family == "resnet":
            return ResnetGenerator(self.ngf, self.depth, norm=self.norm)
        return EncoderDecoderGenerator(self.ngf, self.depth, skip_connections=True, norm=self.norm)


@dataclass(frozen=True)
class Slot:
    """One tensor of our network's state dict, and what the source may do differently there."""

    key: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    statistic: str  # one of STATISTICS for a normalisation buffer, "" for a parameter
    optional: bool  # the source may lack it: a conv bias (then zero), or a batch count (old files)
    absorbs_bias: int  # a conv weight whose instance norm cancels any bias: the source may add one of this many channels


def _bounds(config: type, name: str) -> tuple[int, int]:
    metadata = {entry.name: entry.metadata for entry in dataclasses.fields(config)}[name]
    return metadata["low"], metadata["high"]


def candidates(source: list[SourceTensor]) -> tuple[list[Architecture], list[str]]:
    """The architectures worth matching against `source`, from its convolution count and first
    width (bounded before anything is built), and why the others were not tried."""
    convolutions = [item for item in source if len(item.shape) == 4]
    if not convolutions:
        return [], ["it holds no convolution weights"]
    ngf = convolutions[0].shape[0]
    low, high = _bounds(CycleGANConfig, "ngf")
    if not low <= ngf <= high:
        return [], [f"its first convolution has {ngf} output channels (ngf {ngf}; gantrans takes {low} to {high})"]
    count = len(convolutions)
    # An odd count fits neither family exactly; both neighbours are tried, so that the error can
    # say where the file departs from the nearest network (a conv left over, or one missing).
    found, reasons = [], []
    low, high = _bounds(CycleGANConfig, "n_blocks")
    blocks = sorted({n for n in ((count - 6) // 2, (count - 5) // 2) if low <= n <= high})
    found += [Architecture("resnet", ngf, n, norm) for n in blocks for norm in NORMS_TRIED]
    if not blocks:
        reasons.append(f"a ResNet generator has 6 + 2 per block convolutions ({low} to {high} blocks), this has {count}")
    low, high = _bounds(Pix2PixConfig, "depth")
    depths = sorted({n for n in (count // 2, (count + 1) // 2) if low <= n <= high})
    found += [Architecture("unet", ngf, n, norm) for n in depths for norm in NORMS_TRIED]
    if not depths:
        reasons.append(f"a U-Net has 2 convolutions per level ({low} to {high} levels), this has {count}")
    return found, reasons


def slots(architecture: Architecture) -> list[Slot] | None:
    """Our network's tensors in state-dict order, with what the source may omit or add; None when
    the network would exceed the parameters gantrans loads."""
    with torch.device("meta"):  # shapes only: nothing is allocated
        network = architecture.build()
    state = network.state_dict()
    if sum(tensor.numel() for tensor in state.values()) > MAX_PARAMETERS:
        return None
    biases, absorbing = set(), {}
    for name, module in network.named_modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)) and module.bias is not None:
            biases.add(f"{name}.bias")
        if isinstance(module, nn.Sequential):
            layers = list(module.named_children())
            for (conv_name, conv), (_, follower) in zip(layers, layers[1:]):
                if isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)) and conv.bias is None and isinstance(follower, nn.InstanceNorm2d):
                    absorbing[f"{name}.{conv_name}.weight"] = conv.out_channels
    result = []
    for key, tensor in state.items():
        statistic = statistic_of(key)
        optional = key in biases or statistic == "num_batches_tracked"
        result.append(Slot(key, tuple(tensor.shape), tensor.dtype, statistic, optional, absorbing.get(key, 0)))
    return result


def adapt(architecture: Architecture, key: str, tensor: Tensor) -> Tensor:
    """A source tensor in our layout: the reference U-Net's decoder convs see [skip, upsampled] where
    ours see [upsampled, skip], so their input channels (dim 0 of a transposed conv) swap halves."""
    if architecture.family != "unet" or not key.startswith("decoders.") or key.startswith("decoders.0.") or tensor.dim() != 4:
        return tensor
    half = tensor.shape[0] // 2
    return torch.cat([tensor[half:], tensor[:half]])
