"""Model files: safetensors only, so a checkpoint from the internet cannot run code.

A run directory holds
  generators.safetensors      what `translate` needs: generator weights + metadata (method, config,
                              domains, image size, normalisation, step, format version)
  training_state.safetensors  everything `--resume` needs: all weights, optimizer moments and step
                              counts, the method's random state and image pools
Both are written to a temporary file and renamed into place, so a crash never leaves a
half-written file as the latest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import Tensor

from gantrans.config import TrainConfig
from gantrans.errors import GantransError
from gantrans.images import NORMALIZATION
from gantrans.methods import METHODS, Method
from gantrans.storage import atomic_save

FORMAT = "gantrans-model"
FORMAT_VERSION = 1
MODEL_FILE = "generators.safetensors"
STATE_FILE = "training_state.safetensors"


class CheckpointError(GantransError):
    """A model file that is missing, unreadable or not a gantrans model."""


@dataclass(frozen=True)
class ModelInfo:
    """The metadata of a model file (read without loading weights)."""

    path: Path
    config: TrainConfig
    domains: tuple[str, ...]
    image_size: int
    step: int
    generators: tuple[str, ...]  # generator modules stored in the file

    @property
    def method(self) -> str:
        """The name the model was trained under: a method, or a preset of one (discogan)."""
        return self.config.preset or self.config.method


def model_file(path: Path | str) -> Path:
    """A run directory or a .safetensors file -> the generators file."""
    path = Path(path)
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.is_file():
        raise CheckpointError(f"no model at {path}" + ("" if path.parent.exists() else f" ({path.parent} does not exist)"))
    return path


def _prefixed(prefix: str, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {f"{prefix}.{name}": tensor for name, tensor in state.items()}


def _unprefixed(prefix: str, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {name[len(prefix) + 1 :]: tensor for name, tensor in state.items() if name.startswith(prefix + ".")}


def _metadata(config: TrainConfig, domains: tuple[str, ...], step: int, generators: tuple[str, ...]) -> dict[str, str]:
    return {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "method": config.method,
        "config": config.to_json(),
        "domains": json.dumps(list(domains)),
        "image_size": str(config.data.size),
        "normalization": NORMALIZATION,
        "step": str(step),
        "generators": json.dumps(list(generators)),
    }


@dataclass(frozen=True)
class PendingFile:
    """A file's contents, copied off the networks (training may go on meanwhile), not yet written."""

    path: Path
    tensors: dict[str, Tensor]
    metadata: dict[str, str]

    @classmethod
    def of(cls, path: Path, tensors: Mapping[str, Tensor], metadata: dict[str, str]) -> PendingFile:
        return cls(path, {name: tensor.detach().to("cpu", copy=True) for name, tensor in tensors.items()}, metadata)

    def write(self) -> None:
        atomic_save(self.tensors, self.path, self.metadata)


def model_contents(path: Path, method: Method, config: TrainConfig, step: int, extra: Mapping[str, str] | None = None) -> PendingFile:
    """The generators and their metadata (the file `translate` and sharing need); `extra` adds
    metadata entries (the evaluation score of a best model)."""
    tensors = {}
    for name, generator in method.generators.items():
        tensors.update(_prefixed(name, generator.state_dict()))
    return PendingFile.of(path, tensors, {**_metadata(config, method.domains, step, tuple(method.generators)), **(extra or {})})


def save_model(path: Path, method: Method, config: TrainConfig, step: int, extra: Mapping[str, str] | None = None) -> None:
    """Write the generators file (see `model_contents`)."""
    model_contents(path, method, config, step, extra).write()


def read_model_info(path: Path | str) -> ModelInfo:
    """Metadata of a model file or run directory, without loading the weights."""
    path = model_file(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from None
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a gantrans model (no '{FORMAT}' metadata); import reference weights with `gantrans import`")
    if int(metadata.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: model format {metadata['format_version']} is newer than this gantrans reads ({FORMAT_VERSION}); upgrade gantrans")
    config = TrainConfig.from_dict(json.loads(metadata["config"]))
    return ModelInfo(
        path=path, config=config, domains=tuple(json.loads(metadata["domains"])), image_size=int(metadata["image_size"]),
        step=int(metadata["step"]), generators=tuple(json.loads(metadata["generators"])),
    )  # fmt: skip


def build_method(config: TrainConfig, domains: tuple[str, ...], training: bool, seed: int = 0) -> Method:
    """Instantiate the method of `config`, initialised reproducibly from `seed` (on the CPU)."""
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's random state
        torch.manual_seed(seed)
        return METHODS[config.method](config.model, domains, training=training)


def load_model(path: Path | str, device: torch.device | str = "cpu") -> tuple[Method, ModelInfo]:
    """Rebuild a model from its saved config and load its generators, ready for inference."""
    info = read_model_info(path)
    method = build_method(info.config, info.domains, training=False)
    tensors = load_file(str(info.path))
    for name in list(method.generators):
        if name not in info.generators:
            del method.generators[name]  # e.g. a one-direction import
            continue
        try:
            method.generators[name].load_state_dict(_unprefixed(name, tensors))
        except RuntimeError as error:
            raise CheckpointError(f"{info.path}: weights of {name} do not fit its saved config ({str(error).splitlines()[0]})") from None
    return method.to(device).eval(), info


def save_training_state(
    path: Path, method: Method, optimizers: Mapping[str, torch.optim.Optimizer], config: TrainConfig, step: int,
    other_ranks: Sequence[Mapping[str, Tensor]] = (),
) -> None:  # fmt: skip
    """Write the training-state file (see `training_state_contents`)."""
    training_state_contents(path, method, optimizers, config, step, other_ranks).write()


def training_state_contents(
    path: Path, method: Method, optimizers: Mapping[str, torch.optim.Optimizer], config: TrainConfig, step: int,
    other_ranks: Sequence[Mapping[str, Tensor]] = (),
) -> PendingFile:  # fmt: skip
    """Everything a resume needs, in one file (so it can never disagree with itself). `other_ranks`
    are the `training_state()`s of ranks 1, 2, ... of a multi-process run (their pools and generators)."""
    # The trained networks only: frozen helpers (a pretrained feature network) are rebuilt, not saved.
    tensors = {**_prefixed("generators", method.generators.state_dict()), **_prefixed("discriminators", method.discriminators.state_dict())}
    tensors.update(_prefixed("extra", method.training_state()))
    for rank, state in enumerate(other_ranks, start=1):
        tensors.update(_prefixed(f"rank{rank}.extra", state))
    metadata = {**_metadata(config, method.domains, step, tuple(method.generators)), "processes": str(1 + len(other_ranks))}
    for name, optimizer in optimizers.items():
        state = optimizer.state_dict()
        for index, values in state["state"].items():
            tensors.update({f"{name}.{index}.{key}": value for key, value in values.items()})
        metadata[f"{name}.param_groups"] = json.dumps(state["param_groups"])
    return PendingFile.of(path, tensors, metadata)


def load_training_state(path: Path, method: Method, optimizers: Mapping[str, torch.optim.Optimizer], rank: int = 0) -> int:
    """Restore weights, optimizer and method state written by `save_training_state`; returns the step.

    Process `rank` of a multi-process run takes its own random state and pools; a rank the saved
    run did not have (resuming on more GPUs) keeps the fresh ones it was built with.
    """
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{path}: cannot read the training state ({error})") from None
    device = next(method.parameters()).device
    method.generators.load_state_dict(_unprefixed("generators", tensors))
    method.discriminators.load_state_dict(_unprefixed("discriminators", tensors))
    rank_state = _unprefixed("extra" if rank == 0 else f"rank{rank}.extra", tensors)
    if rank_state:
        method.load_training_state(rank_state)
    for name, optimizer in optimizers.items():
        groups = json.loads(metadata[f"{name}.param_groups"])
        for group in groups:
            if "betas" in group:  # Adam's; JSON turned the tuple into a list
                group["betas"] = tuple(group["betas"])
        state: dict[int, dict[str, Tensor]] = {}
        for key, tensor in _unprefixed(name, tensors).items():
            index, field = key.split(".", 1)
            # Adam keeps its step counter on the CPU; the moments live with the parameters.
            state.setdefault(int(index), {})[field] = tensor if field == "step" else tensor.to(device)
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    return int(metadata["step"])


def load_discriminators(path: Path, method: Method) -> None:
    """Load the discriminators of a training-state file into `method` (built with training=True)."""
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{path}: cannot read the training state ({error})") from None
    method.discriminators.load_state_dict(_unprefixed("discriminators", tensors))
