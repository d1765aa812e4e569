"""Recognising a generator in a weights file by its tensors' shapes and order, not by their names."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from gantrans.checkpoint import non_finite
from gantrans.errors import GantransError
from gantrans.interop.layouts import Architecture, Slot, adapt, candidates, slots
from gantrans.interop.matching import Alignment, Stop, align
from gantrans.interop.sources import SourceTensor, TensorGroup, claims_more_than_stored, load_weights_file, shares, tensor_groups

# More than any generator gantrans builds holds (a 64-block ResNet with batch norm: about 940).
MAX_TENSORS = 1024


@dataclass(frozen=True)
class Mapped:
    """One of our generator's tensors and where it came from."""

    source: str  # the key in the file; "" for a bias the file lacks (zero)
    target: str  # our parameter or buffer
    shape: tuple[int, ...]
    note: str = ""  # how the tensor was changed on the way, if it was


@dataclass(frozen=True)
class Recognised:
    """A generator found in a file: its architecture, the mapping, and our state dict."""

    where: str  # the file, and the tensor group in it unless that is the whole file: "ckpt.pth [G_A]"
    architecture: Architecture
    mapping: tuple[Mapped, ...]
    dropped: tuple[str, ...]  # source keys left out: unused norm statistics, biases an instance norm cancels
    state: dict[str, Tensor] = field(compare=False, repr=False)


@dataclass(frozen=True)
class _Attempt:
    """One group matched against every candidate architecture."""

    group: TensorGroup
    items: list[SourceTensor]
    fits: list[tuple[Architecture, list[Slot], list[SourceTensor], Alignment]]
    several: list[Architecture]  # architectures the group fits in more than one way
    closest: tuple[float, Architecture, list[Slot], list[SourceTensor], Stop] | None
    reasons: list[str]


def recognise(path: Path, key: str | None = None, architectures: Sequence[Architecture] | None = None) -> Recognised:
    """The one generator in `path` (or in its tensor group `key`), matched to a gantrans
    architecture: one of `architectures`, by default those its shapes suggest."""
    found = tensor_groups(load_weights_file(path))
    if not found:
        raise GantransError(f"{path}: holds no tensors, so no generator")
    groups = found
    if key is not None:
        groups = [group for group in found + [part for group in found for part in shares(group)] if group.name == key][:1]
        if not groups:
            near = [group.name for group in found if group.name.endswith(f"/{key}")]
            names = ", ".join(group.name for group in found[:12]) + (" ..." if len(found) > 12 else "")
            hint = f" (nested names are joined with '/': --key {near[0]})" if near else ""
            raise GantransError(f"{path}: no tensor group named {key!r} for --key; it holds {names}{hint}")
    attempts = [_attempt(group, architectures) for group in groups]
    # A mapping that is no generator may hold several side by side (netG.*, netD.*): try each share.
    attempts += [_attempt(part, architectures) for attempt in attempts if not _fits(attempt) for part in shares(attempt.group)]
    fitting = [attempt for attempt in attempts if _fits(attempt)]
    if len(fitting) > 1:
        names = ", ".join(attempt.group.name for attempt in fitting)
        both = f", or both directions by giving the file twice with --key {names.replace(', ', ',')}" if len(fitting) == 2 else ""
        raise GantransError(f"{path}: holds {len(fitting)} generators ({names}): choose one with --key {fitting[0].group.name}{both}")
    if not fitting:
        raise GantransError(_no_fit_message(path, attempts))
    (attempt,) = fitting
    where = _label(path, attempt.group)
    if attempt.several:
        raise GantransError(
            f"{where}: ambiguous: its tensors fit {attempt.several[0].describe()} in more than one way; gantrans will not guess"
        )
    if len(attempt.fits) > 1:
        described = " and ".join(architecture.describe() for architecture, *_ in attempt.fits)
        raise GantransError(f"{where}: ambiguous: its tensors fit {described} alike; gantrans will not guess which it is")
    return _recognised(where, attempt.group, *attempt.fits[0])


def _fits(attempt: _Attempt) -> bool:
    return bool(attempt.fits or attempt.several)


def _attempt(group: TensorGroup, architectures: Sequence[Architecture] | None) -> _Attempt:
    """Match `group` against `architectures`, or every architecture its shapes suggest."""
    items = group.items()
    if len(items) > MAX_TENSORS:  # bounds the matching work a file can ask for
        return _Attempt(group, items, [], [], None, [f"{len(items)} tensors, more than a generator gantrans imports has ({MAX_TENSORS})"])
    suggested, reasons = candidates([item for item in items if not item.statistic])
    architectures = suggested if architectures is None else architectures
    fits, several, closest = [], [], None
    for architecture in architectures:
        expected = slots(architecture)
        if expected is None:
            reasons.append(f"{architecture.describe()} would be larger than gantrans loads")
            continue
        # Old files (PyTorch < 0.4) carry statistics of parameter-free instance norms, which never
        # use them (the reference project deletes them on loading too); other norms must match theirs.
        source = [item for item in items if not item.statistic] if architecture.norm == "instance" else items
        result = align(source, expected)
        if isinstance(result, Alignment):
            fits.append((architecture, expected, source, result))
            continue
        if result.several:
            several.append(architecture)
            continue
        progress = (result.source + result.slot) / (len(source) + len(expected))
        if closest is None or progress > closest[0]:
            closest = (progress, architecture, expected, source, result)
    return _Attempt(group, items, fits, several, closest, reasons)


def _no_fit_message(path: Path, attempts: list[_Attempt]) -> str:
    """One line about the group that came closest: where matching stopped against the nearest
    network, never claiming the file is that network."""
    tried = [attempt for attempt in attempts if attempt.closest is not None]
    if not tried:  # no family's convolution count or width fits: say why, for the largest group
        attempt = max(attempts, key=lambda attempt: len(attempt.items))
        return f"{_label(path, attempt.group)}: not a generator gantrans can import ({'; '.join(attempt.reasons)})"
    attempt = max(tried, key=lambda attempt: attempt.closest[0])
    _, architecture, expected, source, stop = attempt.closest
    where = f"{_label(path, attempt.group)}: no generator layout fits its {len(attempt.items)} tensors"
    if stop.source == 0:
        first = source[0]
        return (
            f"{where}: it starts with {first.key} {_shape(first)}{'' if first.floating else ' of integers'}, where a ResNet "
            "generator starts with floating-point weights (ngf, 3, 7, 7) and a U-Net with (ngf, 3, 4, 4)"
        )
    return f"{where}; the closest, {architecture.describe()}, {_stop_detail(expected, source, stop)}"


def _label(path: Path, group: TensorGroup) -> str:
    """The file, and the tensor group in it unless that is the whole file."""
    return str(path) if group.name == "." else f"{path} [{group.name}]"


def _shape(item: SourceTensor | Slot) -> str:
    return f"({', '.join(str(size) for size in item.shape)})"


def _stop_detail(expected: list[Slot], source: list[SourceTensor], stop: Stop) -> str:
    if stop.slot == len(expected):
        left = source[stop.source :]
        return f"accounts for the first {stop.source} and leaves {len(left)} over: {left[0].key} {_shape(left[0])}{' ...' if len(left) > 1 else ''}"
    if stop.source == len(source):
        missing = [slot for slot in expected[stop.slot :] if not slot.optional]
        listed = ", ".join(f"{slot.key} {_shape(slot)}" for slot in missing[:2])
        return f"needs {len(missing)} more after the file's last: {listed}{' ...' if len(missing) > 2 else ''}"
    item, slot = source[stop.source], expected[stop.slot]
    kind = "" if item.floating else " of integers"
    return f"matches the first {stop.source}, then expects {slot.key} {_shape(slot)} where the file has {item.key} {_shape(item)}{kind}"


def _recognised(
    where: str, group: TensorGroup, architecture: Architecture, expected: list[Slot], source: list[SourceTensor], alignment: Alignment
) -> Recognised:
    """Our state dict from a complete alignment, each tensor checked before it is copied."""
    state: dict[str, Tensor] = {}
    mapping: dict[int, Mapped] = {}
    for i, j in alignment.pairs:
        item, slot = source[i], expected[j]
        tensor = group.tensors[item.key]
        if claims_more_than_stored(tensor):
            raise GantransError(
                f"{where}: {item.key} claims shape {_shape(item)} but the file stores only {tensor.untyped_storage().nbytes()} bytes for it"
            )
        converted = tensor.to(slot.dtype)
        adapted = adapt(architecture, slot.key, converted)
        state[slot.key] = adapted.contiguous()
        mapping[j] = Mapped(item.key, slot.key, slot.shape, "input halves swapped" if adapted is not converted else "")
    for j in alignment.filled:
        slot = expected[j]
        state[slot.key] = torch.zeros(slot.shape, dtype=slot.dtype)
        mapping[j] = Mapped("", slot.key, slot.shape, "zero: the file's layer has none")
    bad = non_finite(state)
    if bad:
        raise GantransError(f"{where}: non-finite weights (NaN or infinity) in {', '.join(bad[:3])}")
    used = {source[i].key for i, _ in alignment.pairs}
    dropped = tuple(key for key in group.tensors if key not in used)
    return Recognised(
        where, architecture, tuple(mapping[j] for j in sorted(mapping)), dropped, {slot.key: state[slot.key] for slot in expected}
    )
