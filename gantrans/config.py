"""Frozen configuration dataclasses with a JSON round trip.

A run's `TrainConfig` is saved inside every checkpoint; a model is always rebuilt from that saved
config, never from the current command line. Each method keeps its own hyperparameters in its own
dataclass (`TrainConfig.model`), defined next to the method in `gantrans/methods/`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
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


def setting(
    default: Any,
    *,
    help: str,
    choices: tuple[str, ...] = (),
    low: float | None = None,
    high: float | None = None,
    resumable: bool = False,
    network: bool = False,
    flag: str = "",
    default_text: str = "",
) -> Any:
    """A config field that declares itself: its help, its choices or range, whether a resumed run may
    change it, whether it shapes a network (so a fine-tune takes it from the model it starts from), and
    the flag that sets it (`--<name>` unless `flag` says otherwise). The CLI, `--help`, `gantrans
    settings`, validation, resume and fine-tuning all read this, so a setting is declared once."""
    metadata = {
        "help": help,
        "choices": choices,
        "low": low,
        "high": high,
        "resumable": resumable,
        "network": network,
        "flag": flag,
        "default_text": default_text,
    }
    return field(default=default, metadata=metadata)


def flag_name(settings_field: dataclasses.Field) -> str:
    """The command-line flag of a config field, as the user types it: `--load-size`, `--data`."""
    return "--" + (settings_field.metadata.get("flag") or settings_field.name).replace("_", "-")


def check_settings(settings: Any) -> None:
    """The declared choices and ranges of every field of the dataclass `settings`, and finite numbers;
    each error names the flag."""
    check_finite_numbers(settings)
    for settings_field in dataclasses.fields(settings):
        value, meta = getattr(settings, settings_field.name), settings_field.metadata
        if value is None or not meta:
            continue
        flag = flag_name(settings_field)
        if meta["choices"] and value not in meta["choices"]:
            raise UsageError(f"{flag} must be one of {', '.join(meta['choices'])} (got {value!r})")
        low, high = meta["low"], meta["high"]
        if low is not None and high is not None and not low <= value <= high:
            raise UsageError(f"{flag} must be between {low} and {high} (got {value})")
        if low is not None and high is None and value < low:
            raise UsageError(f"{flag} must be >= {low} (got {value})")


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

    root: str = setting(
        "", flag="data", help="Folder with one sub-folder of images per domain (DATA/photo, DATA/vangogh), or trainA/trainB."
    )
    domains: tuple[str, ...] = setting(
        (),
        help="Domain names, comma-separated: picks sub-folders of DATA, or names A,B of the trainA/trainB layout (or the input and target halves of --paired aligned).",
    )
    size: int = setting(256, low=1, high=MAX_IMAGE_SIDE, help="Training crop size.")
    load_size: int = setting(286, low=1, high=MAX_IMAGE_SIDE, help="Resize to this before cropping.")
    preprocess: str = setting("resize-crop", choices=PREPROCESS_MODES, help="How a training sample is cut from an image.")
    flip: bool = setting(True, help="Random horizontal flips.")
    workers: int | None = setting(
        None, low=0, resumable=True, default_text="0 for data that fits in memory, else up to 8", help="Image decoding processes."
    )
    cache_mb: int = setting(2048, low=0, help="Decode once and keep in memory when the decoded data set fits in this many MiB.")
    on_device: bool | None = setting(
        None,
        resumable=True,
        default_text="on CUDA, when the data fit --cache-mb",
        help="Keep the decoded images on the training device and crop there.",
    )
    paired: str = setting(
        "none",
        choices=PAIRED_LAYOUTS,
        help="pix2pix's data: folders (DATA/A/x.png <-> DATA/B/x.png, matched by file name), aligned (the reference's side-by-side A|B images in DATA/train/ or DATA/; left half -> right half) or aligned-btoa (right -> left); none for the unpaired methods.",
    )

    def __post_init__(self) -> None:
        check_settings(self)
        if self.preprocess in ("resize-crop", "scale-width-crop"):
            _check(
                self.load_size >= self.size,
                f"--load-size ({self.load_size}) must be at least --size ({self.size}) for --preprocess {self.preprocess}",
            )
        _check(len(set(self.domains)) == len(self.domains), f"--domains has a repeated name: {','.join(self.domains)}")
        for name in self.domains:
            check_domain_name(name, "--domains")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; saved with the model."""

    method: str = "cyclegan"  # a key of gantrans.methods.METHODS (the CLI's --method is a preset name)
    preset: str = ""  # the --method this run started from: `method` itself, or a preset of it (discogan, dualgan)
    model: Any = None  # the method's own config dataclass (e.g. CycleGANConfig)
    data: DataConfig = field(default_factory=DataConfig)
    out: str = setting("", default_text="runs/<data>-<method>", help="Run folder for the model, samples and log.")
    init_from: str = setting(
        "",
        help="Fine-tune: a new run that starts from this model's weights (a run folder, whose discriminators come too, or a .safetensors model file); its networks' settings come from the model.",
    )
    batch_size: int = setting(1, low=1, help="Images per domain per step.")
    epochs: int = setting(100, low=0, resumable=True, help="Epochs at the initial learning rate.")
    decay_epochs: int = setting(100, low=0, resumable=True, help="Further epochs decaying the learning rate to 0.")
    steps: int | None = setting(
        None,
        low=1,
        resumable=True,
        help="Train this many steps instead, decaying the learning rate over the same share as the epochs (cyclegan: the last half).",
    )
    optimizer: str = setting("adam", choices=OPTIMIZERS, help="rmsprop for --gan-loss wgan (momentum-free updates).")
    lr: float = setting(2e-4, resumable=True, help="Learning rate of both optimizers.")
    beta1: float = setting(0.5, low=0.0, help="Adam beta1 (0.5 as in DCGAN/CycleGAN: less momentum steadies GAN training).")
    beta2: float = setting(0.999, low=0.0, help="Adam's second-moment decay; RMSProp's smoothing constant.")
    weight_decay: float = setting(0.0, low=0.0, help="L2 weight decay of both optimizers.")
    n_critic: int = setting(1, low=1, help="Discriminator steps per generator step.")
    n_generator: int = setting(1, low=1, help="Generator steps per discriminator step.")
    clip: float = setting(0.0, low=0.0, help="Clip discriminator weights to [-clip, clip] after each step (needed by --gan-loss wgan).")
    ema: float = setting(
        0.0,
        resumable=True,
        help="Translate with an exponential moving average of the generators' weights with this decay (StarGAN v2: 0.999), used by samples, evaluation and the saved model; 0: the live weights.",
    )
    seed: int = setting(0, help="Random seed: same seed, same run (on CPU).")
    device: str = setting("auto", resumable=True, help="auto (CUDA when present), cpu, cuda or cuda:N.")
    precision: str = setting(
        "auto",
        choices=PRECISIONS,
        resumable=True,
        help="bf16 (autocast: bf16 convolutions; weights, optimizer and losses in fp32), fp32, or auto: bf16 on CUDA.",
    )
    compile: bool = setting(
        False,
        resumable=True,
        help="torch.compile the networks (first steps are slow while it compiles; discriminators stay eager under a gradient penalty).",
    )
    channels_last: bool = setting(False, resumable=True, help="NHWC memory layout for networks and batches.")
    log_every: int = setting(10, low=1, resumable=True, help="Steps between loss lines in <out>/log.jsonl.")
    sample_every: int = setting(500, low=1, resumable=True, help="Steps between sample grids in <out>/samples.")
    checkpoint_every: int = setting(1000, low=1, resumable=True, help="Steps between checkpoints.")
    snapshot_every: int = setting(10000, low=0, resumable=True, help="Steps between kept generator snapshots (0: none).")
    eval_every: int = setting(
        0, low=0, resumable=True, help="Steps between FID/KID evaluations on fixed images (logged; the best model is kept in <out>/best)."
    )
    eval_images: int = setting(50, low=2, help="Images per domain for --eval-every (test split first).")
    tensorboard: bool = setting(
        False,
        resumable=True,
        help="Also write TensorBoard event files into <out>: losses, learning rate, speed, evaluations, sample grids (needs pip install 'gantrans[tensorboard]').",
    )
    max_bad_steps: int = setting(
        10,
        low=1,
        resumable=True,
        help="Steps in a row with NaN or infinite gradients (each skipped) after which training stops as diverged, exit code 3, keeping the last good checkpoint.",
    )

    def __post_init__(self) -> None:
        check_settings(self)
        _check(self.steps is not None or self.epochs + self.decay_epochs > 0, "--epochs + --decay-epochs must be > 0")
        # Adam's step is about lr per weight: above 1 every weight jumps by more than its whole scale.
        _check(0 < self.lr <= 1, f"--lr must be in (0, 1] (got {self.lr})")
        _check(self.beta1 < 1 and self.beta2 < 1, "--beta1 and --beta2 must be in [0, 1)")
        _check(
            self.n_critic == 1 or self.n_generator == 1,
            f"--n-critic {self.n_critic} and --n-generator {self.n_generator}: give more steps to one side only",
        )
        _check(0 <= self.ema < 1, f"--ema must be in [0, 1): the decay of the average, e.g. 0.999 (got {self.ema})")
        _check(
            getattr(getattr(self.model, "adversarial", None), "gan_loss", None) != "wgan" or self.clip > 0,
            "--gan-loss wgan needs --clip (e.g. 0.01): clipping the critic's weights is what makes it a WGAN (Arjovsky et al. 2017)",
        )

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
    """Read a `--config` file (a full or partial TrainConfig): JSON, or YAML when it ends in .yaml/.yml."""
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise UsageError(f"--config {path}: {error.strerror or error}") from None
    is_yaml = Path(path).suffix.lower() in (".yaml", ".yml")
    try:
        values = _read_yaml(text) if is_yaml else json.loads(text)
    except json.JSONDecodeError as error:
        raise UsageError(f"--config {path}: not valid JSON ({error.msg} at line {error.lineno})") from None
    except _YamlError as error:
        raise UsageError(f"--config {path}: not valid YAML ({error})") from None
    if not isinstance(values, dict):
        raise UsageError(f"--config {path}: expected {'a mapping of settings' if is_yaml else 'a JSON object'}")
    return values


class _YamlError(ValueError):
    """A YAML file that does not parse, said in one line."""


# PyYAML reads YAML 1.1, where `1e-4` (no dot) is text; JSON and YAML 1.2 read it as the number users mean.
_YAML_EXPONENT_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def _read_yaml(text: str) -> Any:
    """The plain values of a YAML document (safe loading: no tags that build objects)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver("tag:yaml.org,2002:float", _YAML_EXPONENT_FLOAT, list("-+0123456789."))
    try:
        return yaml.load(text, Loader=Loader)  # noqa: S506  (a SafeLoader subclass)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise _YamlError(f"{getattr(error, 'problem', None) or type(error).__name__}{where}") from None
