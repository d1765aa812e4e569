"""Building a run's config: from a method's preset, a --config file and flags (`make_train_config`), or
from a saved run and the flags of the resuming command (`resume_config`)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from gantrans import checkpoint
from gantrans.config import DataConfig, TrainConfig
from gantrans.errors import GantransError, UsageError
from gantrans.methods import METHODS, PRESETS


def default_run_dir(config: TrainConfig) -> Path:
    return Path("runs") / f"{Path(os.path.abspath(config.data.root)).name}-{config.preset or config.method}"


# Settings that may change when a run is resumed; everything else must stay as saved.
RESUMABLE_SETTINGS = (
    "steps", "epochs", "decay_epochs", "device", "log_every", "sample_every", "checkpoint_every", "snapshot_every", "workers", "eval_every",
    "precision", "compile", "channels_last", "on_device", "lr", "max_bad_steps", "ema",
)  # fmt: skip


def make_train_config(method: str, overrides: dict[str, Any], config_file: dict[str, Any] | None = None) -> TrainConfig:
    """The preset of `method`, then a `--config` file's values, then `overrides` (flag name -> value).

    Each override goes to the dataclass that has a field of its name: TrainConfig, DataConfig or
    the method's own config; a setting the method does not have is an error.
    """
    if method not in PRESETS:
        raise UsageError(f"unknown method {method!r}; choose one of: {', '.join(PRESETS)}")
    values = PRESETS[method].to_dict()
    for key, value in (config_file or {}).items():
        values[key] = {**values[key], **value} if isinstance(values.get(key), dict) and isinstance(value, dict) else value
    model_fields = {f.name for f in dataclasses.fields(METHODS[values["method"]].config_class)}
    data_fields = {f.name for f in dataclasses.fields(DataConfig)}
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"model", "data", "method"}
    for name, value in overrides.items():
        if name in train_fields:
            values[name] = value
        elif name in data_fields:
            values["data"][name] = value
        elif name in model_fields:
            values["model"][name] = value
        else:
            raise UsageError(f"--{name.replace('_', '-')} does not apply to --method {method}")
    return TrainConfig.from_dict(values)


def resume_config(
    run_dir: Path, overrides: dict[str, Any], method: str | None = None, config_file: dict[str, Any] | None = None
) -> TrainConfig:
    """The saved config of the run in `run_dir`, with what the command line asks for.

    Settings given with their saved values are fine: the command that started the run, with
    --resume added, resumes it. RESUMABLE_SETTINGS may change; any other change is an error naming
    old -> new. `overrides["root"]` may point at a moved copy of the data (checked when training starts).
    """
    config = saved_config(run_dir)
    file_values = config_file or {}
    trained_as = config.preset or config.method
    for given, saved in ((method, trained_as), (file_values.get("preset") or None, trained_as), (file_values.get("method"), config.method)):
        if given is not None and given != saved:
            raise UsageError(f"--method {given}: the run in {run_dir} was trained with --method {trained_as}; leave it out to resume")
    requested = {**_flat_settings(file_values), **overrides}
    if not requested.get("domains", True):
        del requested["domains"]  # none named: "every sub-folder", which the run found and saved
    root = requested.pop("root", None)
    changes = {name: value for name, value in requested.items() if not _same_value(value, saved_setting(config, name))}
    fixed = [name for name in changes if name not in RESUMABLE_SETTINGS]
    if fixed:
        described = ", ".join(f"--{name.replace('_', '-')} {_shown(saved_setting(config, name))} -> {_shown(changes[name])}" for name in fixed)
        raise UsageError(f"{described}: cannot change when resuming (the run keeps its saved config); leave it out, or start a new run with --out DIR")
    data_changes = {name: value for name, value in changes.items() if name in ("workers", "on_device")}
    train_changes = {name: value for name, value in changes.items() if name not in data_changes}
    if "epochs" in train_changes or "decay_epochs" in train_changes:
        train_changes.setdefault("steps", None)  # epochs given: they replace a step count
    data = dataclasses.replace(config.data, root=_resumed_data_root(config.data.root, root), **data_changes)
    return dataclasses.replace(config, data=data, out=str(run_dir), **train_changes)


def saved_setting(config: TrainConfig, name: str) -> Any:
    """The value of setting `name` (a flag's name with underscores) in `config`, wherever it lives."""
    for part in (config, config.data, config.model):
        if name in {f.name for f in dataclasses.fields(part)} - {"model", "data", "method"}:
            return getattr(part, name)
    raise UsageError(f"--{name.replace('_', '-')} does not apply to --method {config.preset or config.method}")


def _flat_settings(config_file: dict[str, Any]) -> dict[str, Any]:
    """A --config file's values as flag name -> value (its "data" and "model" parts flattened)."""
    flat = {name: value for name, value in config_file.items() if name not in ("data", "model", "out", "method", "preset")}
    for part in ("data", "model"):
        if isinstance(config_file.get(part), dict):
            flat.update(config_file[part])
    return flat


def _same_value(given: Any, saved: Any) -> bool:
    return (tuple(given) if isinstance(given, list) else given) == saved


def _shown(value: Any) -> str:
    return ",".join(value) if isinstance(value, tuple) else str(value)


def _resumed_data_root(saved: str, given: str | None) -> str:
    """The data folder a resumed run reads: the saved one, or `given` (the data moved, or a relative
    --data from another directory), as an absolute path."""
    if given is None:
        if not Path(saved).is_dir():
            raise UsageError(f"the run's data folder {saved} is not there any more: pass --data DIR to resume on the data's new place")
        return saved
    return os.path.abspath(given)


def saved_config(run_dir: Path) -> TrainConfig:
    """The config of the run in `run_dir` (for `--resume`)."""
    path = Path(run_dir) / checkpoint.STATE_FILE
    if not path.is_file():
        raise GantransError(f"nothing to resume in {run_dir}: no {checkpoint.STATE_FILE}")
    return checkpoint.read_model_info(path).config
