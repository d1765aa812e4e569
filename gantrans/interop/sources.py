"""Reading a weights file and finding the tensor groups in it that may be one network's state dict.

A file may be a plain state dict, a state dict nested in a training checkpoint (`{"G_A": ...,
"D_A": ..., "epoch": 7}`, `{"state_dict": ...}`), or several networks' tensors side by side in one
flat dict under their own prefixes (`netG.model.1.weight`, `netD.model.0.weight`). Each mapping's
tensors are a `TensorGroup`, and each prefix's share of one is another (looked at only when the
whole is no generator); which is a generator is decided by matching (`matching.py`), not by names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from gantrans.errors import GantransError

# Wrappers add these as the first component of every key: DataParallel and
# DistributedDataParallel `module.`, torch.compile `_orig_mod.`. They name no layer.
WRAPPERS = ("module", "_orig_mod")
# PyTorch's own names for normalisation buffers, whatever a project calls its layers.
STATISTICS = ("running_mean", "running_var", "num_batches_tracked")
MAX_DEPTH = 4  # nesting followed into a checkpoint ({"state_dict": {"netG": {...}}} is depth 2)
MAX_GROUPS = 64  # tensor groups looked at in one file; a checkpoint holds a handful


@dataclass(frozen=True)
class SourceTensor:
    """What matching needs to know of one stored tensor, without its data."""

    key: str  # as stored in the file
    shape: tuple[int, ...]
    statistic: str  # one of STATISTICS for a normalisation buffer, "" for a parameter
    floating: bool


@dataclass(frozen=True)
class TensorGroup:
    """Tensors that may be one network's state dict, in stored order (module order)."""

    name: str  # where in the file: "." for the top level, "G_A", "state_dict/netG"
    tensors: dict[str, Tensor] = field(compare=False, repr=False)

    def items(self) -> list[SourceTensor]:
        """The group's tensors as matching sees them, in stored order."""
        return [
            SourceTensor(key, tuple(tensor.shape), statistic_of(key), tensor.is_floating_point()) for key, tensor in self.tensors.items()
        ]


def statistic_of(key: str) -> str:
    """Which normalisation statistic (one of STATISTICS) the tensor `key` is, or "" for a parameter."""
    leaf = key.rsplit(".", 1)[-1]
    return leaf if leaf in STATISTICS else ""


def load_weights_file(path: Path) -> Any:
    """The object pickled in `path`, read with `torch.load(weights_only=True)`: tensors and plain
    containers only, so nothing in the file can run code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise GantransError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise GantransError(f"{path}: a folder, not a weights file") from None
    except Exception as error:  # an arbitrary file: whatever the loader trips on, it is not loadable weights
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise GantransError(f"{path}: not a loadable weights-only PyTorch file ({reason})") from None


def tensor_groups(value: Any, name: str = "", depth: int = 0) -> list[TensorGroup]:
    """The tensors of each mapping in `value`, outermost first, as groups named by their path
    (nested containers are followed MAX_DEPTH deep; see `shares` for prefixes within one)."""
    groups: list[TensorGroup] = []
    children: list[tuple[str, Any]] = []
    if isinstance(value, Mapping):
        tensors = {str(key): item for key, item in value.items() if isinstance(item, Tensor)}
        if tensors:
            groups.append(TensorGroup(name or ".", tensors))
        children = [(str(key), item) for key, item in value.items() if isinstance(item, (Mapping, list, tuple))]
    elif isinstance(value, (list, tuple)):
        children = [(str(index), item) for index, item in enumerate(value)]
    if depth < MAX_DEPTH:
        for key, child in children:
            if len(groups) >= MAX_GROUPS:
                break
            groups += tensor_groups(child, f"{name}/{key}" if name else key, depth + 1)
    return groups[:MAX_GROUPS]


def shares(group: TensorGroup) -> list[TensorGroup]:
    """Each first key component's share of a group, when there are several: a flat checkpoint of
    `netG.*` and `netD.*` holds two networks (wrapper components are skipped first). Named
    `<group>/<prefix>`, or `<prefix>` at the top level."""
    found: dict[str, dict[str, Tensor]] = {}
    for key, tensor in group.tensors.items():
        parts = key.split(".")
        while len(parts) > 1 and parts[0] in WRAPPERS:
            parts = parts[1:]
        if len(parts) > 1:
            found.setdefault(parts[0], {})[key] = tensor
    if len(found) < 2:
        return []
    prefix = "" if group.name == "." else f"{group.name}/"
    return [TensorGroup(f"{prefix}{share}", tensors) for share, tensors in found.items()][:MAX_GROUPS]


def claims_more_than_stored(tensor: Tensor) -> bool:
    """Whether a tensor's shape claims more elements than its storage holds (a stride-0 view saved
    in a small file): copying it out would allocate what the file never contained."""
    return tensor.numel() * tensor.element_size() > tensor.untyped_storage().nbytes()
