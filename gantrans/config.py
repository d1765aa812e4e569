"""Frozen configuration dataclasses with a JSON round trip.

A run's `TrainConfig` is saved inside every checkpoint; a model is always rebuilt from that saved
config, never from the current command line. Each method keeps its own hyperparameters in its own
dataclass (`TrainConfig.model`), defined next to the method in `gantrans/methods/`.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from gantrans.errors import UsageError

PREPROCESS_MODES = ("resize-crop", "crop", "scale-width", "scale-width-crop", "none")
OPTIMIZERS = ("adam", "rmsprop")
PRECISIONS = ("auto", "fp32", "bf16")

T = TypeVar("T")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise UsageError(message)


@dataclass(frozen=True)
class DataConfig:
    """Where the images are and how a training sample is made from a file."""

    root: str = ""  # DATA/<domain>/... folders, or the CycleGAN layout DATA/trainA, trainB
    domains: tuple[str, ...] = ()  # domain names; empty: the sub-folder names (A, B for trainA/trainB)
    size: int = 256  # side of the square training crop
    load_size: int = 286  # images are resized to this before the random crop (resize-crop, scale-width-crop)
    preprocess: str = "resize-crop"  # one of PREPROCESS_MODES
    flip: bool = True  # random horizontal flips
    workers: int | None = None  # decoding processes; None: 0 when the data set is cached in memory, else up to 8
    cache_mb: int = 2048  # decode once and keep in memory when the decoded data set fits in this many MiB
    on_device: bool | None = None  # keep the decoded images on the training device, crop there; None: on CUDA when they fit cache_mb

    def __post_init__(self) -> None:
        _check(self.size > 0, f"--size must be positive (got {self.size})")
        _check(self.load_size > 0, f"--load-size must be positive (got {self.load_size})")
        _check(
            self.preprocess in PREPROCESS_MODES,
            f"--preprocess must be one of {', '.join(PREPROCESS_MODES)} (got {self.preprocess!r})",
        )
        if self.preprocess in ("resize-crop", "scale-width-crop"):
            _check(
                self.load_size >= self.size,
                f"--load-size ({self.load_size}) must be at least --size ({self.size}) for --preprocess {self.preprocess}",
            )
        _check(len(set(self.domains)) == len(self.domains), f"--domains has a repeated name: {','.join(self.domains)}")
        for name in self.domains:
            _check(bool(name) and "/" not in name and name != "all", f"--domains: {name!r} is not a usable domain name")
        _check(self.workers is None or self.workers >= 0, f"--workers must be >= 0 (got {self.workers})")
        _check(self.cache_mb >= 0, f"--cache-mb must be >= 0 (got {self.cache_mb})")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; saved with the model."""

    method: str = "cyclegan"  # a key of gantrans.methods.METHODS
    preset: str = ""  # the --method this run started from: `method` itself, or a preset of it (discogan, dualgan)
    model: Any = None  # the method's own config dataclass (e.g. CycleGANConfig)
    data: DataConfig = field(default_factory=DataConfig)
    out: str = ""  # run directory; empty: runs/<data folder>-<preset>
    batch_size: int = 1  # images per domain per step, in all: split among the processes of a multi-GPU run
    epochs: int = 100  # epochs at the initial learning rate
    decay_epochs: int = 100  # further epochs with the learning rate decaying linearly to 0
    steps: int | None = None  # total steps instead of epochs, split as epochs : decay_epochs (CycleGAN: last half decays)
    optimizer: str = "adam"  # adam, or rmsprop (WGAN with clipping, DualGAN: momentum-free updates)
    lr: float = 2e-4  # learning rate of generators and discriminators
    beta1: float = 0.5  # Adam beta1 (0.5 as in DCGAN/CycleGAN: less momentum steadies GAN training)
    beta2: float = 0.999  # Adam's second-moment decay; RMSProp's smoothing constant
    weight_decay: float = 0.0  # L2 penalty added to every gradient (DiscoGAN: 1e-5)
    n_critic: int = 1  # discriminator steps per generator step
    n_generator: int = 1  # generator steps per discriminator step (DiscoGAN: 2); n_critic or this, not both
    clip: float = 0.0  # clamp discriminator weights to [-clip, clip] after each D step (WGAN); 0: off
    seed: int = 0  # seeds initialisation, data order, crops, flips and the image pool
    device: str = "auto"  # auto (CUDA when present), cpu, cuda, cuda:N
    precision: str = "auto"  # bf16 autocast (weights, optimizer and losses stay fp32), fp32, or auto: bf16 on CUDA
    compile: bool = False  # torch.compile the networks (discriminators stay eager under a gradient penalty: double backward)
    channels_last: bool = False  # NHWC memory layout for the networks and batches
    log_every: int = 10  # steps between loss log lines (losses are averaged over them)
    sample_every: int = 500  # steps between sample grids written to <out>/samples
    checkpoint_every: int = 1000  # steps between rewrites of the latest checkpoint
    snapshot_every: int = 10000  # steps between kept copies of the generators in <out>/snapshots (0: none)
    eval_every: int = 0  # steps between FID/KID evaluations, logged, the best model kept in <out>/best (0: none)
    eval_images: int = 50  # evaluation images per domain (the first of the test split, else of the training images)

    def __post_init__(self) -> None:
        _check(self.batch_size > 0, f"--batch-size must be positive (got {self.batch_size})")
        _check(self.epochs >= 0 and self.decay_epochs >= 0, "--epochs and --decay-epochs must be >= 0")
        _check(self.steps is None or self.steps > 0, f"--steps must be positive (got {self.steps})")
        _check(self.steps is not None or self.epochs + self.decay_epochs > 0, "--epochs + --decay-epochs must be > 0")
        _check(self.lr > 0, f"--lr must be positive (got {self.lr})")
        _check(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "--beta1 and --beta2 must be in [0, 1)")
        _check(self.precision in PRECISIONS, f"--precision must be one of {', '.join(PRECISIONS)} (got {self.precision!r})")
        _check(self.optimizer in OPTIMIZERS, f"--optimizer must be one of {', '.join(OPTIMIZERS)} (got {self.optimizer!r})")
        _check(self.weight_decay >= 0, f"--weight-decay must be >= 0 (got {self.weight_decay})")
        _check(self.n_critic >= 1, f"--n-critic must be >= 1 (got {self.n_critic})")
        _check(self.n_generator >= 1, f"--n-generator must be >= 1 (got {self.n_generator})")
        _check(
            self.n_critic == 1 or self.n_generator == 1,
            f"--n-critic {self.n_critic} and --n-generator {self.n_generator}: give more steps to one side only",
        )
        _check(self.clip >= 0, f"--clip must be >= 0 (got {self.clip})")
        _check(
            getattr(self.model, "gan_loss", None) != "wgan" or self.clip > 0,
            "--gan-loss wgan needs --clip (e.g. 0.01): clipping the critic's weights is what makes it a WGAN (Arjovsky et al. 2017)",
        )
        for name in ("log_every", "sample_every", "checkpoint_every"):
            _check(getattr(self, name) > 0, f"--{name.replace('_', '-')} must be positive")
        _check(self.snapshot_every >= 0, "--snapshot-every must be >= 0")
        _check(self.eval_every >= 0, "--eval-every must be >= 0")
        _check(self.eval_images >= 2, f"--eval-images must be at least 2 (got {self.eval_images})")

    def total_steps(self, steps_per_epoch: int) -> int:
        """Length of the run in optimizer steps."""
        return self.steps if self.steps is not None else (self.epochs + self.decay_epochs) * steps_per_epoch

    def decay_start(self, steps_per_epoch: int) -> int:
        """Step from which the learning rate decays linearly to 0 (CycleGAN's schedule). A step
        count keeps the epochs' split: CycleGAN decays over the last half, DiscoGAN not at all."""
        if self.steps is None:
            return self.epochs * steps_per_epoch
        if self.epochs + self.decay_epochs == 0:
            return self.steps
        return self.steps * self.epochs // (self.epochs + self.decay_epochs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Rebuild a config (with its method config) from `to_dict` output; unknown keys are errors."""
        from gantrans.methods import METHODS  # the registry imports method files, which import nothing here

        values = dict(values)
        method = values.get("method", cls.method)
        if method not in METHODS:
            raise UsageError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
        model = values.pop("model", None) or {}
        config = dataclass_from_dict(cls, values)
        return dataclasses.replace(config, model=dataclass_from_dict(METHODS[method].config_class, model))


def dataclass_from_dict(cls: type[T], values: dict[str, Any]) -> T:
    """Build dataclass `cls` from plain JSON values: nested dataclasses, tuples from lists, unknown keys rejected."""
    if not isinstance(values, dict):
        raise UsageError(f"expected a JSON object for {cls.__name__}, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - known)
    if unknown:
        raise UsageError(f"unknown {cls.__name__} setting(s): {', '.join(unknown)}")
    kwargs = {}
    for name, value in values.items():
        kind = hints[name]
        if dataclasses.is_dataclass(kind) and isinstance(value, dict):
            value = dataclass_from_dict(kind, value)
        elif _is_tuple(kind) and isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def _is_tuple(kind: Any) -> bool:
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return any(_is_tuple(arg) for arg in typing.get_args(kind))
    return kind is tuple or typing.get_origin(kind) is tuple


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a `--config` JSON file (a full or partial TrainConfig) as a dict."""
    try:
        values = json.loads(Path(path).read_text())
    except OSError as error:
        raise UsageError(f"--config {path}: {error.strerror or error}") from None
    except json.JSONDecodeError as error:
        raise UsageError(f"--config {path}: not valid JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(values, dict):
        raise UsageError(f"--config {path}: expected a JSON object")
    return values
