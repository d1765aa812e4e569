"""The training-state file of a run (`checkpoint.STATE_FILE`): everything `--resume` needs, in one
file so it can never disagree with itself. All weights (the live generators, their average as
`generators_ema.*`, discriminators, auxiliary networks), optimizer moments and step counts, the
method's random state and image pools (those of every process), the image count per domain, and
the model metadata of `gantrans/checkpoint.py`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import Tensor, nn

from gantrans.checkpoint import CheckpointError, NonFiniteWeightsError, PendingFile, model_metadata, non_finite, prefixed, unprefixed
from gantrans.config import TrainConfig
from gantrans.methods import Method


def training_state_contents(
    path: Path,
    method: Method,
    optimizers: Mapping[str, torch.optim.Optimizer],
    config: TrainConfig,
    step: int,
    other_ranks: Sequence[Mapping[str, Tensor]] = (),
    domain_sizes: Mapping[str, int] | None = None,
    ema_generators: nn.Module | None = None,
) -> PendingFile:
    """Everything a resume needs, in one file (so it can never disagree with itself). `other_ranks`
    are the `training_state()`s of ranks 1, 2, ... of a multi-process run (their pools and generators);
    `domain_sizes` the image count of each domain, which a resume compares with the data it finds;
    `ema_generators` the generators' moving average (--ema), kept beside the live ones."""
    # The trained networks only: frozen helpers (a pretrained feature network) are rebuilt, not saved.
    tensors = {
        **prefixed("generators", method.generators.state_dict()),
        **prefixed("discriminators", method.discriminators.state_dict()),
        **prefixed("auxiliary", method.auxiliary.state_dict()),
    }
    if ema_generators is not None:
        tensors.update(prefixed("generators_ema", ema_generators.state_dict()))
    tensors.update(prefixed("extra", method.training_state()))
    for rank, state in enumerate(other_ranks, start=1):
        tensors.update(prefixed(f"rank{rank}.extra", state))
    metadata = {**model_metadata(config, method.domains, step, tuple(method.generators)), "processes": str(1 + len(other_ranks))}
    if domain_sizes is not None:
        metadata["domain_sizes"] = json.dumps(dict(domain_sizes))
    for name, optimizer in optimizers.items():
        state = optimizer.state_dict()
        for index, values in state["state"].items():
            tensors.update({f"{name}.{index}.{key}": value for key, value in values.items()})
        metadata[f"{name}.param_groups"] = json.dumps(state["param_groups"])
    return PendingFile.of(path, tensors, metadata)


def load_training_state(
    path: Path, method: Method, optimizers: Mapping[str, torch.optim.Optimizer], rank: int = 0, ema_generators: nn.Module | None = None
) -> int:
    """Restore weights, optimizer and method state written by `training_state_contents(...).write()`; returns the step.

    Process `rank` of a multi-process run takes its own random state and pools; a rank the saved
    run did not have (resuming on more GPUs) keeps the fresh ones it was built with.
    `ema_generators` (a run with --ema) take the saved average, or start from the live weights
    when the run was saved without one.
    """
    metadata, tensors = _read_state_file(path)
    try:
        device = next(method.parameters()).device
        method.generators.load_state_dict(unprefixed("generators", tensors))
        method.auxiliary.load_state_dict(unprefixed("auxiliary", tensors))
        if ema_generators is not None:
            ema_generators.load_state_dict(unprefixed("generators_ema", tensors) or method.generators.state_dict())
        method.discriminators.load_state_dict(unprefixed("discriminators", tensors))
        rank_state = unprefixed("extra" if rank == 0 else f"rank{rank}.extra", tensors)
        if rank_state:
            method.load_training_state(rank_state)
        for name, optimizer in optimizers.items():
            optimizer.load_state_dict(_optimizer_state(name, metadata, tensors, device))
        return int(metadata["step"])
    except (RuntimeError, KeyError, ValueError, TypeError) as error:  # a state that does not fit its own config
        detail = f"missing {error}" if isinstance(error, KeyError) else str(error).strip().splitlines()[0]
        raise CheckpointError(f"{path}: the training state does not fit its saved config ({detail})") from None


def _optimizer_state(name: str, metadata: Mapping[str, str], tensors: Mapping[str, Tensor], device: torch.device) -> dict:
    """Optimizer `name`'s state dict as saved by `training_state_contents`."""
    groups = json.loads(metadata[f"{name}.param_groups"])
    for group in groups:
        if "betas" in group:  # Adam's; JSON turned the tuple into a list
            group["betas"] = tuple(group["betas"])
    state: dict[int, dict[str, Tensor]] = {}
    for key, tensor in unprefixed(name, tensors).items():
        index, field = key.split(".", 1)
        # Adam keeps its step counter on the CPU; the moments live with the parameters.
        state.setdefault(int(index), {})[field] = tensor if field == "step" else tensor.to(device)
    return {"state": state, "param_groups": groups}


def saved_domain_sizes(path: Path) -> dict[str, int] | None:
    """The image count per domain saved with a training state (None: not saved, an older run)."""
    metadata, _ = _read_state_file(path, tensors=False)
    try:
        sizes = json.loads(metadata["domain_sizes"])
        return {str(domain): int(count) for domain, count in sizes.items()}
    except (KeyError, ValueError, TypeError, AttributeError):
        return None


def _read_state_file(path: Path, tensors: bool = True) -> tuple[dict[str, str], dict[str, Tensor]]:
    """The metadata of a training-state file, and its tensors unless `tensors` is False."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        return metadata, load_file(str(path)) if tensors else {}
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{path}: cannot read the training state ({error})") from None


def load_discriminators(path: Path, method: Method) -> None:
    """Load the discriminators of a training-state file into `method` (built with training=True)."""
    _load_networks(path, {"discriminators": method.discriminators})


def load_training_networks(path: Path, method: Method) -> None:
    """Load what trains beside the generators (the discriminators, CUT's projection heads) from a
    training-state file into `method`, built with training=True from a config with the same networks."""
    _load_networks(path, {"discriminators": method.discriminators, "auxiliary": method.auxiliary})


def _load_networks(path: Path, networks: Mapping[str, nn.Module]) -> None:
    """The saved weights of each of `networks` (by its prefix in the file): names, shapes and finite values checked."""
    _, tensors = _read_state_file(path)
    for prefix, network in networks.items():
        state = unprefixed(prefix, tensors)
        bad = non_finite(state)
        if bad:
            raise NonFiniteWeightsError(f"{path}: non-finite weights (NaN or infinity) in {prefix}.{bad[0]}")
        try:
            network.load_state_dict(state)
        except RuntimeError as error:
            raise CheckpointError(f"{path}: its {prefix} do not fit its saved config ({str(error).strip().splitlines()[0]})") from None
