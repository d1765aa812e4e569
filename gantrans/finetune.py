"""Fine-tuning: a new run that starts from a trained model (`gantrans train --init-from MODEL`).

MODEL is a run folder or a model file (.safetensors), trained by gantrans or written by `gantrans
import`. The new run starts at step 0 in its own folder, with fresh optimizers, learning-rate
schedule, image pools and random state. Only weights come from the model:

  generators        from the model file, which is what `gantrans translate MODEL` uses (for a run
                    trained with --ema, the average): the new run's step 0 translates as the model does
  discriminators    and the other networks that train beside the generators (CUT's projection heads):
                    from the run's training state when MODEL is a run folder that has one, else fresh
                    (a model file holds generators only)
  --ema's average   starts from the loaded generators (the trainer builds it from the live ones)

The settings that shape these networks (declared `network=True` on their fields) are the model's:
`presets.finetune_config` takes them from it, and `check_source` refuses a config that contradicts
them. Domains are matched by name when the data has the model's names, else by order (`matched_domains`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from gantrans import checkpoint
from gantrans.checkpoint import CheckpointError, ModelInfo, unprefixed
from gantrans.config import TrainConfig
from gantrans.errors import DataError, UsageError
from gantrans.methods import METHODS, Method
from gantrans.settings import setting_table, shown
from gantrans.training_state import load_training_networks


@dataclass(frozen=True)
class InitSource:
    """The model a fine-tune starts from."""

    path: Path  # as the user named it: a run folder or a model file
    model: ModelInfo  # the model file's metadata: its config, domains and generators
    state_file: Path | None  # the run's training state beside it (discriminators...), when there is one

    @property
    def trained_as(self) -> str:
        """The --method the model was trained as (a preset such as discogan, or an imported model's method)."""
        return self.model.method


def init_source(path: Path | str) -> InitSource:
    """The model at `path`: a run folder (or its training-state file) or a model file; one clear
    error when it is none of these."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent if path.name == checkpoint.STATE_FILE else None
    if folder is not None and not (folder / checkpoint.MODEL_FILE).is_file():
        raise CheckpointError(
            f"--init-from {path}: no model there (no {checkpoint.MODEL_FILE}); give a run folder or a .safetensors model file"
        )
    try:
        model = checkpoint.read_model_info(folder if folder is not None else path)
    except CheckpointError as error:
        raise CheckpointError(f"--init-from: {error}") from None
    state_file = folder / checkpoint.STATE_FILE if folder is not None else None
    return InitSource(path, model, state_file if state_file is not None and state_file.is_file() else None)


def check_method(method: str, shown_method: str, source: InitSource) -> None:
    """A clear error when a fine-tune of `method` (the user typed `shown_method`) cannot start from `source`."""
    if method != source.model.config.method:
        raise UsageError(
            f"--method {shown_method}: {source.path} is a {source.trained_as} model, and a fine-tune keeps the model's method; leave --method out"
        )


def check_source(config: TrainConfig, source: InitSource, run_dir: Path) -> None:
    """A clear error when the run `config` (writing to `run_dir`) cannot start from `source`: another
    method, a network setting other than the model's, a generator it trains that the model lacks, or
    the model's own folder as the new run's."""
    saved = source.model.config
    check_method(config.method, config.preset or config.method, source)
    for setting in setting_table().values():
        if setting.network and (not setting.methods or config.method in setting.methods):
            ours, theirs = setting.value_in(config), setting.value_in(saved)
            if ours != theirs:
                raise UsageError(
                    f"{setting.flag} {shown(ours)}: the model {source.path} has {setting.flag} {shown(theirs)}, "
                    f"and a fine-tune keeps the model's networks; leave {setting.flag} out"
                )
    with torch.device("meta"):  # the generator names only: no memory, no time
        needed = tuple(METHODS[saved.method](saved.model, source.model.domains, training=False).generators)
    missing = [name for name in needed if name not in source.model.generators]
    if missing:
        raise CheckpointError(
            f"--init-from {source.path}: the model holds {', '.join(source.model.generators)} only, and {source.trained_as} "
            f"trains {', '.join(missing)} too" + (" (gantrans import the B -> A generator too)" if source.model.step == 0 else "")
        )
    if run_dir.resolve() == source.model.path.parent.resolve():
        raise UsageError(
            f"the new run's folder {run_dir} is the folder of the model it starts from: give another --out (--resume continues that run instead)"
        )


def matched_domains(files: dict[str, list[Path]], source: InitSource) -> tuple[dict[str, list[Path]], list[str]]:
    """The data's domains lined up with the model's, and what the user should be told. The data's
    names are kept. With the model's names (in any order) each domain goes to its namesake; with other
    names, the i-th domain of the data takes the model's i-th (a note says which became which); names
    the two share at different places are an error, as the order would cross them."""
    model, data = source.model.domains, tuple(files)
    if len(data) != len(model):
        raise DataError(
            f"--init-from {source.path}: the model translates {len(model)} domains ({', '.join(model)}), the data has {len(data)} ({', '.join(data)})"
        )
    if set(data) == set(model):
        return {name: files[name] for name in model}, []
    crossed = [name for name in data if name in model and data.index(name) != model.index(name)]
    if crossed:
        raise DataError(
            f"--init-from {source.path}: the data's domain {crossed[0]} is the model's domain {model.index(crossed[0]) + 1}, not {data.index(crossed[0]) + 1}: "
            f"name the folders in the model's order ({','.join(model)}) with --domains"
        )
    renamed = ", ".join(f"{old} -> {new}" for old, new in zip(model, data))
    return files, [f"domains matched by order: the model's {renamed} (--domains sets which folder comes first)"]


def load_initial_weights(source: InitSource, config: TrainConfig, method: Method) -> list[str]:
    """Load `source` into `method` (built for training from `config`, which `check_source` must pass
    first): its generators, and its discriminators and training-only networks when the run's training
    state has them. Returns what the user should be told."""
    check_source(config, source, Path(config.out))
    tensors = checkpoint.read_weights(source.model)  # names, shapes and finite values checked against its config
    for name, generator in method.generators.items():
        generator.load_state_dict(unprefixed(name, tensors))
    if source.state_file is not None:
        load_training_networks(source.state_file, method)
        return []
    fresh = "discriminators" + (f" and {', '.join(method.auxiliary)} networks" if len(method.auxiliary) else "")
    return [
        f"{source.model.path} holds only generators: the {fresh} start fresh (a run folder with its {checkpoint.STATE_FILE} brings them too)"
    ]
