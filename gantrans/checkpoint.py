"""Model files: safetensors only, so a checkpoint from the internet cannot run code.

A run directory holds
  generators.safetensors      what `translate` needs: the weights of the generators that translate
                              (their moving average with --ema) + metadata (method, config, domains,
                              image size, normalisation, step, format version)
  training_state.safetensors  everything `--resume` needs: all weights (the live generators, and their
                              average as `generators_ema.*`), optimizer moments and step counts, the
                              method's random state and image pools (see `gantrans/training_state.py`)
Both are written to a temporary file and renamed into place, so a crash never leaves a
half-written file as the latest.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import Tensor

from gantrans.config import MAX_IMAGE_SIDE, TrainConfig, dataclass_from_dict
from gantrans.errors import GantransError, UsageError
from gantrans.images import NORMALIZATION
from gantrans.methods import METHODS, PRESETS, Method
from gantrans.names import domain_name_problem
from gantrans.storage import atomic_save

FORMAT = "gantrans-model"
FORMAT_VERSION = 3
# Format 1 (to 2026-12-01) kept each method's discriminator settings flat in its config; format 2
# nests them in the method config's `adversarial` block. `upgraded_config` reads the old shape.
# Format 3 (from 2026-12-01): StarGAN's generator, and shared-latent's --fully-shared encoder and
# decoder, see the domain in conditional norms, a new architecture chosen by the new setting
# `label_conditioning` ("norm"); the networks of formats 1-2 had label maps at their input, and
# `with_format_defaults` reads their configs as "input".
# Methods whose networks took the domain as label maps before format 3.
LABEL_MAP_METHODS = ("stargan", "shared-latent")
ADVERSARIAL_SETTINGS = ("ndf", "n_layers_d", "spectral_norm", "gan_loss", "lambda_gp", "lambda_r1")
MODEL_FILE = "generators.safetensors"
STATE_FILE = "training_state.safetensors"
# Parameters a model file may ask for (2 GB in fp32). The largest published translators have ~60M
# (pix2pix's U-Net: 54M); a crafted config must not make gantrans allocate whatever it names.
MAX_PARAMETERS = 500_000_000


class CheckpointError(GantransError):
    """A model file that is missing, unreadable or not a gantrans model."""


class NonFiniteWeightsError(CheckpointError):
    """Weights with NaN or infinite values: never written, never loaded."""


def upgraded_config(values: dict[str, Any], version: int) -> dict[str, Any]:
    """Config values saved by model format `version` (or a `--config` file, which may be of any) in
    today's shape: format 1's flat discriminator settings move into the method's `adversarial` block."""
    model = values.get("model")
    if version >= 2 or not isinstance(model, dict) or not any(name in model for name in ADVERSARIAL_SETTINGS):
        return values
    block = dict(model.get("adversarial") or {})
    block.update({name: model[name] for name in ADVERSARIAL_SETTINGS if name in model})
    model = {name: value for name, value in model.items() if name not in ADVERSARIAL_SETTINGS}
    return {**values, "model": {**model, "adversarial": block}}


def with_format_defaults(values: dict[str, Any], version: int) -> dict[str, Any]:
    """The config saved in a model file of format `version`, with each setting added since given the
    value that file's networks were built with: StarGAN and shared-latent (--fully-shared) before
    format 3 fed the domain as label maps at the input (`label_conditioning` "input"). Only for model
    files, whose configs are complete: in a `--config` file a missing setting means today's default."""
    model = values.get("model")
    if version >= 3 or values.get("method") not in LABEL_MAP_METHODS or not isinstance(model, dict) or "label_conditioning" in model:
        return values
    return {**values, "model": {**model, "label_conditioning": "input"}}


def config_from_dict(values: Any, version: int = FORMAT_VERSION) -> TrainConfig:
    """A run's config from its saved JSON form (`TrainConfig.to_dict`, of model format `version`), with
    its method's config; unknown keys, methods and presets are errors naming them."""
    if not isinstance(values, dict):
        raise UsageError(f"expected a JSON object of settings, got {type(values).__name__}")
    values = with_format_defaults(upgraded_config(dict(values), version), version)
    method = values.get("method", TrainConfig.method)
    if not isinstance(method, str) or method not in METHODS:
        raise UsageError(f"unknown method {str(method)[:40]!r}; known: {', '.join(METHODS)}")
    # The preset names a run's folder and is shown in listings: one of ours, never free text.
    preset = values.get("preset", TrainConfig.preset)
    if preset and (not isinstance(preset, str) or preset not in PRESETS):
        raise UsageError(f"unknown preset {str(preset)[:40]!r}; known: {', '.join(PRESETS)}")
    model = values.pop("model", None) or {}
    config = dataclass_from_dict(TrainConfig, values)
    return dataclasses.replace(config, model=dataclass_from_dict(METHODS[method].config_class, model))


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


def prefixed(prefix: str, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """`state`'s tensors named "<prefix>.<name>" (one file holds several networks)."""
    return {f"{prefix}.{name}": tensor for name, tensor in state.items()}


def unprefixed(prefix: str, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The tensors named "<prefix>.<name>" in `state`, as <name>."""
    return {name[len(prefix) + 1 :]: tensor for name, tensor in state.items() if name.startswith(prefix + ".")}


def model_metadata(config: TrainConfig, domains: tuple[str, ...], step: int, generators: tuple[str, ...]) -> dict[str, str]:
    """The metadata every gantrans file carries (see `read_model_info`)."""
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
        """The copy of `tensors` to write to `path`; non-finite values refuse it (a diverged run
        must not overwrite the last good checkpoint)."""
        copies = {name: tensor.detach().to("cpu", copy=True) for name, tensor in tensors.items()}
        bad = non_finite(copies)
        if bad:
            raise NonFiniteWeightsError(f"not writing {path}: non-finite values in {', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}")
        return cls(path, copies, metadata)

    def write(self) -> None:
        atomic_save(self.tensors, self.path, self.metadata)


def non_finite(tensors: Mapping[str, Tensor]) -> list[str]:
    """Names of the floating-point tensors that hold a NaN or an infinity."""
    return [name for name, tensor in tensors.items() if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]


def model_contents(path: Path, method: Method, config: TrainConfig, step: int, extra: Mapping[str, str] | None = None) -> PendingFile:
    """The generators and their metadata (the file `translate` and sharing need); `extra` adds
    metadata entries (the evaluation score of a best model)."""
    tensors = {}
    for name, generator in method.generators.items():
        tensors.update(prefixed(name, generator.state_dict()))
    return PendingFile.of(path, tensors, {**model_metadata(config, method.domains, step, tuple(method.generators)), **(extra or {})})


def save_model(path: Path, method: Method, config: TrainConfig, step: int, extra: Mapping[str, str] | None = None) -> None:
    """Write the generators file (see `model_contents`)."""
    model_contents(path, method, config, step, extra).write()


def read_model_info(path: Path | str) -> ModelInfo:
    """Metadata of a model file or run directory, without loading the weights. Every field is
    checked: a model file is data from anywhere, and its domain names become file names."""
    path = model_file(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from None
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a gantrans model (no '{FORMAT}' metadata); import reference weights with `gantrans import`")
    try:
        return _parse_metadata(path, metadata)
    except (KeyError, ValueError, TypeError, UsageError) as error:  # json.JSONDecodeError is a ValueError
        detail = f"missing {error}" if isinstance(error, KeyError) else str(error).splitlines()[0]
        raise CheckpointError(f"{path}: malformed model metadata ({detail})") from None


def _parse_metadata(path: Path, metadata: Mapping[str, str]) -> ModelInfo:
    version = int(metadata["format_version"])
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: model format {version} is newer than this gantrans reads ({FORMAT_VERSION}); upgrade gantrans")
    config = config_from_dict(json.loads(metadata["config"]), version)
    domains, generators = json.loads(metadata["domains"]), json.loads(metadata["generators"])
    if not isinstance(domains, list) or not isinstance(generators, list) or not all(isinstance(g, str) for g in generators):
        raise ValueError("domains and generators must be lists of names")
    for domain in domains:
        if problem := domain_name_problem(domain):
            raise ValueError(f"domain {problem}")
    if len(set(domains)) != len(domains) or (config.data.domains and tuple(domains) != config.data.domains):
        raise ValueError(f"domains {domains} repeat a name or disagree with the config's {list(config.data.domains)}")
    image_size, step = int(metadata["image_size"]), int(metadata["step"])
    if not 0 < image_size <= MAX_IMAGE_SIDE or step < 0:
        raise ValueError(f"image size {image_size} or step {step} out of range")
    return ModelInfo(path=path, config=config, domains=tuple(domains), image_size=image_size, step=step, generators=tuple(generators))


def build_method(config: TrainConfig, domains: tuple[str, ...], training: bool, seed: int = 0) -> Method:
    """Instantiate the method of `config`, initialised reproducibly from `seed` (on the CPU)."""
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's random state
        torch.manual_seed(seed)
        return METHODS[config.method](config.model, domains, training=training)


def expected_tensors(info: ModelInfo) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Name -> (shape, dtype) of every tensor a model file with `info`'s metadata must hold, from
    the networks built on the meta device (no memory, no time), with their size checked."""
    try:
        with torch.device("meta"):
            method = METHODS[info.config.method](info.config.model, info.domains, training=False)
    except UsageError as error:  # e.g. a one-way method with three domains
        raise CheckpointError(f"{info.path}: malformed model metadata ({error})") from None
    unknown = [name for name in info.generators if name not in method.generators]
    if unknown or not info.generators:
        raise CheckpointError(
            f"{info.path}: malformed model metadata (generators {list(info.generators)}; {info.method} has {', '.join(method.generators)})"
        )
    parameters = sum(tensor.numel() for name in info.generators for tensor in method.generators[name].state_dict().values())
    if parameters > MAX_PARAMETERS:
        raise CheckpointError(
            f"{info.path}: its config asks for {parameters:,} generator parameters, more than gantrans loads ({MAX_PARAMETERS:,})"
        )
    return {
        f"{name}.{key}": (tuple(tensor.shape), tensor.dtype)
        for name in info.generators
        for key, tensor in method.generators[name].state_dict().items()
    }


_FLOAT_DTYPES = {"F64", "F32", "F16", "BF16"}


def read_weights(info: ModelInfo) -> dict[str, Tensor]:
    """The tensors of a model file, each checked against the architecture its config describes
    (names, shapes and dtypes from the header, before any is read) and for non-finite values."""
    expected = expected_tensors(info)
    try:
        with safe_open(str(info.path), framework="pt") as handle:
            header = {name: handle.get_slice(name) for name in handle.keys()}
            shapes = {name: (tuple(part.get_shape()), part.get_dtype()) for name, part in header.items()}
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{info.path}: not a readable safetensors file ({error})") from None
    missing = [name for name in expected if name not in shapes]
    unexpected = [name for name in shapes if name not in expected]
    wrong = [
        f"{name} {list(shapes[name][0])} {shapes[name][1]} (expected {list(shape)} {str(dtype).removeprefix('torch.')})"
        for name, (shape, dtype) in expected.items()
        if name in shapes and (shapes[name][0] != shape or (shapes[name][1] in _FLOAT_DTYPES) != dtype.is_floating_point)
    ]
    problems = [
        f"{what} {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}"
        for what, names in (("missing", missing), ("unexpected", unexpected), ("wrong", wrong))
        if names
    ]
    if problems:
        raise CheckpointError(f"{info.path}: weights do not fit the saved config: {'; '.join(problems)}")
    try:
        tensors = load_file(str(info.path))
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{info.path}: cannot read the weights ({error})") from None
    bad = non_finite(tensors)
    if bad:
        raise NonFiniteWeightsError(
            f"{info.path}: non-finite weights (NaN or infinity) in {', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}"
        )
    return {name: tensor.to(expected[name][1]) for name, tensor in tensors.items()}


def load_model(path: Path | str, device: torch.device | str = "cpu") -> tuple[Method, ModelInfo]:
    """Rebuild a model from its saved config and load its generators, ready for inference. The file
    is checked throughout before anything is built from it (see `read_weights`)."""
    info = read_model_info(path)
    tensors = read_weights(info)
    method = build_method(info.config, info.domains, training=False)
    for name in list(method.generators):
        if name not in info.generators:
            del method.generators[name]  # e.g. a one-direction import
            continue
        method.generators[name].load_state_dict(unprefixed(name, tensors))
    return method.to(device).eval(), info
