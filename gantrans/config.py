"""Frozen configuration dataclasses with a JSON round trip.

A run's `TrainConfig` is saved inside every checkpoint; a model is always rebuilt from that saved
config, never from the current command line. Each method keeps its own hyperparameters in its own
dataclass (`TrainConfig.model`), defined next to the method in `gantrans/methods/`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from gantrans.errors import UsageError
from gantrans.names import check_domain_name

PREPROCESS_MODES = ("resize-crop", "crop", "scale-width", "scale-width-crop", "none")
# How paired data (pix2pix) is laid out: none (unpaired domain folders), folders (DATA/A/x.png <-> DATA/B/x.png),
# aligned (the reference's side-by-side A|B images; the left half is the input), aligned-btoa (the right half is).
PAIRED_LAYOUTS = ("none", "folders", "aligned", "aligned-btoa")
OPTIMIZERS = ("adam", "rmsprop")
PRECISIONS = ("auto", "fp32", "bf16")
MAX_IMAGE_SIDE = 8192  # the largest training crop or load size: beyond it one image alone fills a GPU

T = TypeVar("T")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise UsageError(message)


def check_finite_numbers(settings: Any) -> None:
    """Every float field of the dataclass `settings` is a finite number: `--lambda-cycle nan` or
    `--lr inf` would otherwise train to NaN without a word."""
    for field_ in dataclasses.fields(settings):
        value = getattr(settings, field_.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise UsageError(f"--{field_.name.replace('_', '-')} must be a finite number (got {value})")


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
    paired: str = "none"  # one of PAIRED_LAYOUTS: none for the unpaired methods; pix2pix's preset: folders

    def __post_init__(self) -> None:
        for name in ("size", "load_size"):
            value = getattr(self, name)
            _check(0 < value <= MAX_IMAGE_SIDE, f"--{name.replace('_', '-')} must be between 1 and {MAX_IMAGE_SIDE} (got {value})")
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
            check_domain_name(name, "--domains")
        _check(self.workers is None or self.workers >= 0, f"--workers must be >= 0 (got {self.workers})")
        _check(self.cache_mb >= 0, f"--cache-mb must be >= 0 (got {self.cache_mb})")
        _check(self.paired in PAIRED_LAYOUTS, f"--paired must be one of {', '.join(PAIRED_LAYOUTS)} (got {self.paired!r})")


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
    ema: float = 0.0  # decay of the generators' exponential moving average, used to translate (StarGAN v2: 0.999); 0: off
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
    max_bad_steps: int = 10  # consecutive steps with non-finite gradients (each skipped) before the run stops as diverged

    def __post_init__(self) -> None:
        check_finite_numbers(self)
        _check(self.batch_size > 0, f"--batch-size must be positive (got {self.batch_size})")
        _check(self.epochs >= 0 and self.decay_epochs >= 0, "--epochs and --decay-epochs must be >= 0")
        _check(self.steps is None or self.steps > 0, f"--steps must be positive (got {self.steps})")
        _check(self.steps is not None or self.epochs + self.decay_epochs > 0, "--epochs + --decay-epochs must be > 0")
        # Adam's step is about lr per weight: above 1 every weight jumps by more than its whole scale.
        _check(0 < self.lr <= 1, f"--lr must be in (0, 1] (got {self.lr})")
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
        _check(0 <= self.ema < 1, f"--ema must be in [0, 1): the decay of the average, e.g. 0.999 (got {self.ema})")
        _check(
            getattr(self.model, "gan_loss", None) != "wgan" or self.clip > 0,
            "--gan-loss wgan needs --clip (e.g. 0.01): clipping the critic's weights is what makes it a WGAN (Arjovsky et al. 2017)",
        )
        for name in ("log_every", "sample_every", "checkpoint_every"):
            _check(getattr(self, name) > 0, f"--{name.replace('_', '-')} must be positive")
        _check(self.snapshot_every >= 0, "--snapshot-every must be >= 0")
        _check(self.eval_every >= 0, "--eval-every must be >= 0")
        _check(self.eval_images >= 2, f"--eval-images must be at least 2 (got {self.eval_images})")
        _check(self.max_bad_steps >= 1, f"--max-bad-steps must be >= 1 (got {self.max_bad_steps})")

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
        from gantrans.methods import METHODS, PRESETS  # the registry imports method files, which import nothing here

        if not isinstance(values, dict):
            raise UsageError(f"expected a JSON object of settings, got {type(values).__name__}")
        values = dict(values)
        method = values.get("method", cls.method)
        if not isinstance(method, str) or method not in METHODS:
            raise UsageError(f"unknown method {str(method)[:40]!r}; known: {', '.join(METHODS)}")
        # The preset names a run's folder and is shown in listings: one of ours, never free text.
        preset = values.get("preset", cls.preset)
        if preset and (not isinstance(preset, str) or preset not in PRESETS):
            raise UsageError(f"unknown preset {str(preset)[:40]!r}; known: {', '.join(PRESETS)}")
        model = values.pop("model", None) or {}
        config = dataclass_from_dict(cls, values)
        return dataclasses.replace(config, model=dataclass_from_dict(METHODS[method].config_class, model))


def dataclass_from_dict(cls: type[T], values: dict[str, Any]) -> T:
    """Build dataclass `cls` from plain JSON values: nested dataclasses, tuples from lists, unknown
    keys and values of the wrong type rejected with a UsageError naming the setting."""
    if not isinstance(values, dict):
        raise UsageError(f"expected a JSON object for {cls.__name__}, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - known)
    if unknown:
        raise UsageError(f"unknown {cls.__name__} setting(s): {', '.join(unknown)}")
    return cls(**{name: _typed_value(name, hints[name], value) for name, value in values.items()})


def _typed_value(name: str, kind: Any, value: Any) -> Any:
    """`value` as the field type `kind` wants it (JSON lists -> tuples, ints -> floats), or a UsageError."""
    if kind is Any:
        return value
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        (kind,) = [option for option in options if option is not type(None)]
    if dataclasses.is_dataclass(kind):
        return dataclass_from_dict(kind, value)  # type: ignore[arg-type]
    if kind is tuple or typing.get_origin(kind) is tuple:
        item_kind = (typing.get_args(kind) or (str,))[0]  # tuple[str, ...] or tuple[int, ...]
        if isinstance(value, (list, tuple)):
            return tuple(_typed_value(name, item_kind, item) for item in value)
        return _wrong_type(name, "a list of names" if item_kind is str else "a list of whole numbers", value)
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind in (bool, str) and isinstance(value, kind):
        return value
    return _wrong_type(name, {float: "a number", int: "a whole number", bool: "true or false", str: "text"}.get(kind, str(kind)), value)


def _wrong_type(name: str, expected: str, value: Any) -> Any:
    shown = json.dumps(value) if isinstance(value, (str, int, float, bool, type(None))) else type(value).__name__
    raise UsageError(f"setting {name!r} must be {expected} (got {shown[:60]})")


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
