"""Import generators published by the reference CycleGAN project (pytorch-CycleGAN-and-pix2pix).

Its `latest_net_G_A.pth` (A -> B) and `latest_net_G_B.pth` (B -> A) are plain state dicts of a
ResnetGenerator whose parameter names our `ResnetGenerator` shares. They are read with
`torch.load(weights_only=True)`, which refuses anything but tensors and plain containers, and
written back out as a gantrans model in safetensors.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from gantrans import checkpoint
from gantrans.checkpoint import non_finite
from gantrans.config import DataConfig, TrainConfig
from gantrans.errors import GantransError, UsageError
from gantrans.methods import CycleGANConfig
from gantrans.names import check_domain_name
from gantrans.nn import ResnetGenerator
from gantrans.storage import exclusive_folder

# Old checkpoints (PyTorch < 0.4) carry instance-norm running statistics that the network
# does not use (the reference project deletes them the same way when loading).
_STRAY_KEY = re.compile(r"\.(running_mean|running_var|num_batches_tracked)$")
_BLOCK_KEY = re.compile(r"^model\.(\d+)\.conv_block\.")


def read_reference_generator(path: Path) -> tuple[dict[str, Tensor], int, int]:
    """Load, clean and check one reference generator; returns (state dict, ngf, n_blocks)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise GantransError(f"{path}: no such file") from None
    except Exception as error:  # an arbitrary file: whatever the loader trips on, it is not a loadable generator
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise GantransError(f"{path}: not a loadable weights-only PyTorch file ({reason})") from None
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise GantransError(f"{path}: expected a state dict of tensors (a saved generator), got {type(state).__name__}")
    state = {key.removeprefix("module."): value for key, value in state.items() if not _STRAY_KEY.search(key)}
    if any(key.startswith("model.model.") for key in state):
        raise GantransError(f"{path}: a U-Net generator (unet_128/unet_256); only resnet_6blocks/resnet_9blocks generators import")
    if "model.1.weight" not in state:
        raise GantransError(f"{path}: not a reference ResnetGenerator (no model.1.weight; keys start {', '.join(list(state)[:3])})")
    ngf = state["model.1.weight"].shape[0]
    n_blocks = len({int(m.group(1)) for key in state if (m := _BLOCK_KEY.match(key))})
    # Sizes come from the file: bound them before building anything of that size.
    bounds = {settings_field.name: settings_field.metadata for settings_field in dataclasses.fields(CycleGANConfig)}
    for name, value in (("ngf", ngf), ("n_blocks", n_blocks)):
        low, high = bounds[name]["low"], bounds[name]["high"]
        if not low <= value <= high:
            raise GantransError(
                f"{path}: a generator with {name} {value} (gantrans takes {low} to {high}); not a reference ResnetGenerator"
            )
    # Generators trained with dropout have it between the block's two convs (conv_block.6 instead
    # of .5); dropout is the identity at inference, so the weights map over unchanged.
    state = {re.sub(r"(conv_block)\.6\.", r"\1.5.", key): value for key, value in state.items()}
    with torch.device("meta"):  # the expected shapes, without allocating the network
        expected = ResnetGenerator(ngf, n_blocks).state_dict()
    _check_matches(path, state, expected, n_blocks)
    bad = non_finite(state)
    if bad:
        raise GantransError(f"{path}: non-finite weights (NaN or infinity) in {', '.join(bad[:3])}")
    return {key: value.float().contiguous() for key, value in state.items()}, ngf, n_blocks


def _check_matches(path: Path, state: Mapping[str, Tensor], expected: Mapping[str, Tensor], n_blocks: int) -> None:
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    wrong = [
        f"{key} {tuple(state[key].shape)} {state[key].dtype} (expected {tuple(value.shape)})"
        for key, value in expected.items()
        if key in state and (state[key].shape != value.shape or not state[key].is_floating_point())
    ]
    problems = []
    if missing:
        problems.append(f"missing {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}")
    if unexpected:
        problems.append(f"unexpected {', '.join(unexpected[:4])}{' ...' if len(unexpected) > 4 else ''}")
    if wrong:
        problems.append(f"shape of {', '.join(wrong[:3])}")
    if problems:
        raise GantransError(
            f"{path}: does not match a resnet_{n_blocks}blocks generator (instance norm, 3 channels): {'; '.join(problems)}"
        )


def import_reference_cyclegan(paths: Sequence[Path], domains: Sequence[str], out: Path, overwrite: bool = False) -> Path:
    """Write a gantrans model from G_A (domains[0] -> domains[1]) and optionally G_B (the reverse).
    A folder that holds a model already is replaced only with `overwrite` (its training state,
    which belongs to the replaced model, is removed)."""
    if not 1 <= len(paths) <= 2:
        raise UsageError("give one or two generator files: latest_net_G_A.pth [latest_net_G_B.pth]")
    if len(domains) != 2:
        raise UsageError(f"--domains needs two names, A then B (e.g. horse,zebra), got {','.join(domains) or 'none'}")
    for domain in domains:
        check_domain_name(domain, "--domains")
    out = Path(out)
    existing = [out / name for name in (checkpoint.MODEL_FILE, checkpoint.STATE_FILE) if (out / name).exists()]
    if existing and not overwrite:
        raise GantransError(f"{out} already holds a model ({existing[0].name}): pass --overwrite to replace it, or another --out")
    generators = {}
    shapes = set()
    for name, path in zip(("generator_xy", "generator_yx"), paths):
        state, ngf, n_blocks = read_reference_generator(Path(path))
        generators[name] = state
        shapes.add((ngf, n_blocks))
    if len(shapes) > 1:
        raise GantransError(f"the two generators differ in architecture ({sorted(shapes)}); import them as separate models")
    ngf, n_blocks = shapes.pop()
    config = TrainConfig(
        method="cyclegan", model=CycleGANConfig(ngf=ngf, n_blocks=n_blocks), data=DataConfig(domains=tuple(domains)), out=str(out)
    )
    method = checkpoint.build_method(config, tuple(domains), training=False)
    for name in list(method.generators):
        if name in generators:
            method.generators[name].load_state_dict(generators[name])
        else:
            del method.generators[name]
    path = out / checkpoint.MODEL_FILE
    with exclusive_folder(out):  # not while a training run writes there
        checkpoint.save_model(path, method, config, step=0)
        (out / checkpoint.STATE_FILE).unlink(missing_ok=True)  # it resumed the replaced model, not this one
    return path
