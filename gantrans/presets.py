"""Building a run's config: from a method's preset, a --config file and flags (`make_train_config`),
from a model to fine-tune and the flags (`finetune_config`), or from a saved run and the flags of the
resuming command (`resume_config`)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from gantrans import checkpoint, finetune
from gantrans.config import TrainConfig
from gantrans.errors import GantransError, UsageError
from gantrans.methods import PRESETS
from gantrans.settings import setting_of, setting_table


def default_run_dir(config: TrainConfig) -> Path:
    """runs/<data folder>-<method>, and -finetune for a run that starts from a model (which may well
    live in the plain name's folder, trained on the same data)."""
    name = f"{Path(os.path.abspath(config.data.root)).name}-{config.preset or config.method}"
    return Path("runs") / (f"{name}-finetune" if config.init_from else name)


def method_of(config_file: dict[str, Any] | None) -> str | None:
    """The --method a `--config` file was written for (its preset, else its method), so that a
    `--dry-run` output trains the same run without repeating --method."""
    values = config_file or {}
    for key in ("preset", "method"):
        if isinstance(values.get(key), str) and values[key] in PRESETS:
            return values[key]
    return None


def make_train_config(method: str | None, overrides: dict[str, Any], config_file: dict[str, Any] | None = None) -> TrainConfig:
    """The preset of `method` (default cyclegan), then a `--config` file's values, then `overrides`
    (setting name -> value). With `init_from` among them, a fine-tune: see `finetune_config`.

    Each setting goes to its place in the config tree (`settings.setting_table`); a setting the
    method does not have is an error naming its flag.
    """
    source = overrides.get("init_from") or (config_file or {}).get("init_from")
    if source:
        return finetune_config(str(source), method, overrides, config_file)
    return _built(method or "cyclegan", overrides, config_file)


def finetune_config(
    source_path: str, method: str | None, overrides: dict[str, Any], config_file: dict[str, Any] | None = None
) -> TrainConfig:
    """A new run that starts from the model at `source_path` (see `gantrans/finetune.py`). The method's
    own settings (networks and loss weights) are the model's; the rest, the defaults of the preset it
    was trained as (or `method`, a preset of the same method). A `--config` file and `overrides` lay
    over both, but a network setting that differs from the model's is an error naming its flag."""
    source = finetune.init_source(source_path)
    preset = method or source.trained_as
    if preset in PRESETS:  # an unknown one is refused by _built
        finetune.check_method(PRESETS[preset].method, preset, source)
    changes = {**overrides, "init_from": os.path.abspath(source_path)}
    config = _built(preset, changes, config_file, model=source.model.config.to_dict()["model"])
    finetune.check_source(config, source, Path(config.out) if config.out else default_run_dir(config))
    return config


def _built(method: str, overrides: dict[str, Any], config_file: dict[str, Any] | None, model: dict[str, Any] | None = None) -> TrainConfig:
    """The preset of `method` (with the method's settings `model` instead of the preset's, when given),
    then `config_file`, then `overrides`."""
    if method not in PRESETS:
        raise UsageError(f"unknown method {method!r}; choose one of: {', '.join(PRESETS)}")
    base = PRESETS[method].to_dict()
    if model is not None:
        base["model"] = model
    values = _merged(base, checkpoint.upgraded_config(config_file or {}, version=1))
    table = setting_table()
    for name, value in overrides.items():
        setting = setting_of(table, name, values["method"], method)
        place = values
        for part in setting.path[:-1]:
            place = place[part]
        place[setting.name] = value
    return checkpoint.config_from_dict(values)


def _merged(values: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`values` with `changes` laid over it, block by block: a file's partial `model.adversarial`
    keeps the preset's other settings of that block."""
    merged = dict(values)
    for key, value in changes.items():
        merged[key] = _merged(merged[key], value) if isinstance(merged.get(key), dict) and isinstance(value, dict) else value
    return merged


def resume_config(
    run_dir: Path, overrides: dict[str, Any], method: str | None = None, config_file: dict[str, Any] | None = None
) -> TrainConfig:
    """The saved config of the run in `run_dir`, with what the command line asks for.

    Settings given with their saved values are fine: the command that started the run, with
    --resume added, resumes it. Settings declared resumable may change; any other change is an error naming
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
    _check_resumed_source(run_dir, config, requested.pop("init_from", ""))
    root = requested.pop("root", None)
    changes = {name: value for name, value in requested.items() if not _same_value(value, saved_setting(config, name))}
    table = setting_table()
    fixed = [name for name in changes if not (name in table and table[name].resumable)]
    if fixed:
        described = ", ".join(
            f"--{name.replace('_', '-')} {_shown(saved_setting(config, name))} -> {_shown(changes[name])}" for name in fixed
        )
        raise UsageError(
            f"{described}: cannot change when resuming (the run keeps its saved config); leave it out, or start a new run with --out DIR"
        )
    data_changes = {name: value for name, value in changes.items() if name in ("workers", "on_device")}
    train_changes = {name: value for name, value in changes.items() if name not in data_changes}
    if "epochs" in train_changes or "decay_epochs" in train_changes:
        train_changes.setdefault("steps", None)  # epochs given: they replace a step count
    data = dataclasses.replace(config.data, root=_resumed_data_root(config.data.root, root), **data_changes)
    return dataclasses.replace(config, data=data, out=str(run_dir), **train_changes)


def _check_resumed_source(run_dir: Path, config: TrainConfig, given: str) -> None:
    """--init-from on --resume may only name the model the run started from: a resumed run continues
    from its own checkpoint, never from the model again."""
    if not given or os.path.abspath(given) == config.init_from:
        return
    started = f"started from {config.init_from}" if config.init_from else "did not start from a model"
    raise UsageError(
        f"--init-from {given}: the run in {run_dir} {started}, and --resume continues it from its own checkpoint; "
        "leave --init-from out, or start a new run with --out DIR"
    )


def saved_setting(config: TrainConfig, name: str) -> Any:
    """The value of setting `name` (a flag's name with underscores) in `config`, wherever it lives."""
    return setting_of(setting_table(), name, config.method, config.preset or config.method).value_in(config)


def _flat_settings(config_file: dict[str, Any]) -> dict[str, Any]:
    """A --config file's values as setting name -> value, from wherever each lives in the tree."""
    values, flat = checkpoint.upgraded_config(config_file, version=1), {}
    for name, setting in setting_table().items():
        place: Any = values
        for part in setting.path:
            place = place.get(part, _ABSENT) if isinstance(place, dict) else _ABSENT
        if place is not _ABSENT and name != "out":
            flat[name] = place
    return flat


_ABSENT = object()


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
