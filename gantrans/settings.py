"""The settings table: every field of the config tree as the command line names it.

The config dataclasses (`config.py`, each method's config in `methods/`) are the one place a setting
is declared, with its help, choices, range, whether a resumed run may change it and whether it shapes
a network (`config.setting`). This module walks that tree once and answers what the CLI, `gantrans
settings`, `--set`, resume and fine-tuning need: which flag sets which field, and what each preset's
default is.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections import Counter
from dataclasses import dataclass
from typing import Any

from gantrans.config import DataConfig, TrainConfig, flag_name
from gantrans.errors import UsageError
from gantrans.methods import METHODS, PRESETS


@dataclass(frozen=True)
class Setting:
    """One field of the config tree, as the user sets it."""

    path: tuple[str, ...]  # where it lives: ("data", "size"), ("lr",), ("model", "n_blocks")
    flag: str  # "--size", "--data"
    kind: Any  # the field's type: int, float, str, bool, tuple[int, ...], int | None ...
    help: str
    choices: tuple[str, ...]
    low: float | None
    high: float | None
    resumable: bool
    network: bool  # shapes a network: a fine-tune (--init-from) takes it from the model
    default_text: str  # how the default reads when it is worked out at run time (None in the config)
    methods: tuple[str, ...]  # the methods whose config has it; () for the settings every run has

    @property
    def name(self) -> str:
        return self.path[-1]

    @property
    def dotted(self) -> str:
        return ".".join(self.path)

    def value_in(self, config: TrainConfig) -> Any:
        """This setting's value in `config`."""
        value: Any = config
        for part in self.path:
            value = getattr(value, part)
        return value

    def value_kind(self) -> Any:
        """The field's type without `| None`."""
        if typing.get_origin(self.kind) in (typing.Union, types.UnionType):
            return next(option for option in typing.get_args(self.kind) if option is not type(None))
        return self.kind


def _settings_of(cls: type, prefix: tuple[str, ...], methods: tuple[str, ...]) -> list[Setting]:
    """The settings of dataclass `cls` at `prefix`, those of its nested blocks (a method's `adversarial`) included."""
    hints = typing.get_type_hints(cls)
    settings = []
    for field in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[field.name]) and prefix:
            settings += _settings_of(hints[field.name], (*prefix, field.name), methods)
        elif field.metadata:
            settings.append(
                Setting(
                    path=(*prefix, field.name),
                    flag=flag_name(field),
                    kind=hints[field.name],
                    help=field.metadata["help"],
                    choices=tuple(field.metadata["choices"]),
                    low=field.metadata["low"],
                    high=field.metadata["high"],
                    resumable=field.metadata["resumable"],
                    network=field.metadata["network"],
                    default_text=field.metadata["default_text"],
                    methods=methods,
                )
            )
    return settings


def setting_table() -> dict[str, Setting]:
    """Every setting by field name. Field names are unique across the tree (a method's `n_blocks` and
    another's are the same setting), so one flag per name is enough."""
    table = {setting.name: setting for setting in _settings_of(TrainConfig, (), ()) + _settings_of(DataConfig, ("data",), ())}
    model_settings: dict[str, list[tuple[str, Setting]]] = {}
    for method, implementation in METHODS.items():
        for setting in _settings_of(implementation.config_class, ("model",), (method,)):
            if setting.name in table:
                raise AssertionError(f"{implementation.config_class.__name__}.{setting.name} clashes with a run or data setting")
            model_settings.setdefault(setting.name, []).append((method, setting))
    for name, owners in model_settings.items():
        if len({setting.network for _, setting in owners}) > 1:
            raise AssertionError(f"methods disagree on whether --{name.replace('_', '-')} shapes a network")
        helps = {setting.help for _, setting in owners}
        # Methods that mean different things by one name say so: "stargan: ...; shared-latent: ...".
        text = (
            owners[0][1].help if len(helps) == 1 else "; ".join(f"{method}: {_lowered(setting.help)}" for method, setting in owners) + "."
        )
        table[name] = dataclasses.replace(owners[0][1], help=text, methods=tuple(method for method, _ in owners))
    return table


def setting_of(table: dict[str, Setting], name: str, method: str, shown_method: str) -> Setting:
    """The setting `name` of a run of `method` (a METHODS key), or an error naming its flag and
    `shown_method` (the preset the user typed)."""
    setting = table.get(name)
    if setting is None or (setting.methods and method not in setting.methods):
        raise UsageError(f"{setting.flag if setting else '--' + name.replace('_', '-')} does not apply to --method {shown_method}")
    return setting


def _lowered(text: str) -> str:
    return text[:1].lower() + text[1:].rstrip(".")


def preset_defaults(setting: Setting) -> dict[str, Any]:
    """The setting's default in each preset that has it."""
    defaults = {}
    for preset, config in PRESETS.items():
        if setting.methods and config.method not in setting.methods:
            continue
        defaults[preset] = setting.value_in(config)
    return defaults


def shown(value: Any) -> str:
    """A setting's value as the user would type it."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "none"
    return "none" if value is None else str(value)


def default_summary(setting: Setting) -> str:
    """`9; stargan: 6, direct: 2`: the most common preset default, then the presets that differ."""
    defaults = preset_defaults(setting)
    if all(value is None or value == "" for value in defaults.values()):
        return setting.default_text  # worked out at run time, or none
    common, _ = Counter(shown(value) for value in defaults.values()).most_common(1)[0]
    others = [f"{preset}: {shown(value)}" for preset, value in defaults.items() if shown(value) != common]
    return common + (f"; {', '.join(others)}" if others else "")


def described(setting: Setting, preset: str | None = None) -> str:
    """The setting's help with where it applies, its choices or range, and its default(s)."""
    parts = [setting.help]
    if setting.methods and set(setting.methods) != set(METHODS):
        parts.append(f"({', '.join(setting.methods)})")
    if setting.choices:
        parts.append(f"Choices: {', '.join(setting.choices)}.")
    default = shown(preset_defaults(setting).get(preset)) if preset else default_summary(setting)
    return " ".join(parts) + (f"  [default: {default}]" if default else "")


def parse_text(setting: Setting, text: str) -> Any:
    """A value typed on the command line (`--nce-layers 0,4,7`, `--set model.vae=false`) as JSON-like data
    for the config: lists from commas, numbers and true/false from JSON, other words as text."""
    kind = setting.value_kind()
    if kind is tuple or typing.get_origin(kind) is tuple:
        item_kind = (typing.get_args(kind) or (str,))[0]
        items = [item.strip() for item in text.split(",") if item.strip()]
        if item_kind is int:
            try:
                return [int(item) for item in items]
            except ValueError:
                raise UsageError(f"{setting.flag} takes whole numbers separated by commas (got {text!r})") from None
        return items
    if kind is str:
        return text
    if text.lower() in ("on", "off"):
        return text.lower() == "on"
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text  # the config's type check names the setting and what it wants


def parse_assignment(text: str, table: dict[str, Setting]) -> tuple[str, Any]:
    """`data.load_size=300` (or `load_size=300`) -> ("load_size", 300), for `--set`."""
    path, separator, value = text.partition("=")
    if not separator:
        raise UsageError(f"--set takes SETTING=VALUE, e.g. --set data.load_size=300 (got {text!r})")
    key = path.strip().lstrip("-")
    by_path = {setting.dotted: setting for setting in table.values()}
    setting = by_path.get(key) or table.get(key.replace("-", "_"))  # data.load_size, load_size, --load-size
    if setting is None:
        raise UsageError(f"--set {path}: no such setting; `gantrans settings` lists them")
    return setting.name, parse_text(setting, value.strip())


def replaced(config: TrainConfig, changes: dict[str, Any]) -> TrainConfig:
    """`config` with settings changed by name (`{"ndf": 4, "size": 16}`), wherever each lives in the
    tree; every changed block is checked again. For notebooks and tests; the CLI builds configs with
    `presets.make_train_config`."""
    table = setting_table()
    nested: dict[str, Any] = {}
    for name, value in changes.items():
        setting = setting_of(table, name, config.method, config.preset or config.method)
        place = nested
        for part in setting.path[:-1]:
            place = place.setdefault(part, {})
        place[setting.name] = value

    def apply(block: Any, block_changes: dict[str, Any]) -> Any:
        # One replace per block, so that settings checked together (--n-blocks, --nce-layers) change together.
        values = {name: apply(getattr(block, name), value) if isinstance(value, dict) else value for name, value in block_changes.items()}
        return dataclasses.replace(block, **values)

    return apply(config, nested)
