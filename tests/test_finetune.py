"""Fine-tuning (`gantrans train --init-from MODEL`): a new run that starts from a model's weights, with
the model's networks and the command line's training settings; resumed from its own checkpoints."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch

from gantrans import checkpoint, weights
from gantrans.checkpoint import unprefixed
from gantrans.errors import DataError, UsageError
from gantrans.events import Warned
from gantrans.interop import import_generators
from gantrans.methods import METHODS, PRESETS
from gantrans.nn import ResnetGenerator
from gantrans.presets import default_run_dir, make_train_config, resume_config
from gantrans.settings import setting_table
from gantrans.training import train

from conftest import TINY_PRESETS, assert_one_line_error, invoke, log_records, tensors, tiny_config, tiny_preset, write_domains

# The training settings of a tiny fine-tune; the networks' settings come from the model.
TINY_RUN = {"size": 16, "load_size": 20, "workers": 0, "device": "cpu", "log_every": 1, "sample_every": 100, "snapshot_every": 0}


def data_root(model: Path) -> str:
    return checkpoint.read_model_info(model).config.data.root


def finetune(source: Path | str, root: Path | str, out: Path, **settings: object):
    """The config of a tiny fine-tune of `source` on `root`, as `gantrans train --init-from` builds it."""
    return make_train_config(None, {**TINY_RUN, "init_from": str(source), "root": str(root), "out": str(out), "steps": 4, **settings})


def started_only(config) -> list:
    """The events of a run stopped before its first step: it writes its step-0 checkpoint."""
    return list(train(config, should_stop=lambda: True))


def state_part(run: Path, part: str) -> dict[str, torch.Tensor]:
    return unprefixed(part, tensors(run / checkpoint.STATE_FILE))


def assert_same(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> None:
    assert first.keys() == second.keys() and first
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_a_fine_tune_starts_from_the_runs_generators_and_discriminators(model_dir, tmp_path):
    # Seed 1 (the model's run had 0): weights that a start without the model would have are far from its.
    config = finetune(model_dir, data_root(model_dir), tmp_path / "ft", ema=0.9, seed=1)
    events = started_only(config)
    assert not [event for event in events if isinstance(event, Warned)]  # a run folder brings everything
    out = tmp_path / "ft"
    assert checkpoint.read_model_info(out).step == 0
    assert_same(tensors(out / checkpoint.MODEL_FILE), tensors(model_dir / checkpoint.MODEL_FILE))
    assert_same(state_part(out, "discriminators"), state_part(model_dir, "discriminators"))
    assert_same(state_part(out, "generators_ema"), state_part(model_dir, "generators"))  # the average starts there too
    # One step later the generators are one Adam step away: at most --lr per weight.
    list(train(finetune(model_dir, data_root(model_dir), tmp_path / "one", steps=1, seed=1)))
    source, tuned = state_part(model_dir, "generators"), state_part(tmp_path / "one", "generators")
    moved = max((tuned[name] - source[name]).abs().max().item() for name in source if source[name].is_floating_point())
    assert 0 < moved <= config.lr * 1.01


def test_from_a_model_file_the_discriminators_start_fresh_and_it_says_so(model_dir, tmp_path):
    config = finetune(model_dir / checkpoint.MODEL_FILE, data_root(model_dir), tmp_path / "ft")
    warnings = [event.message for event in started_only(config) if isinstance(event, Warned)]
    assert len(warnings) == 1 and "holds only generators: the discriminators start fresh" in warnings[0]
    assert_same(tensors(tmp_path / "ft" / checkpoint.MODEL_FILE), tensors(model_dir / checkpoint.MODEL_FILE))
    # The discriminators are those a run without --init-from starts with (same seed), not the model's.
    started_only(dataclasses.replace(config, init_from="", out=str(tmp_path / "plain")))
    assert_same(state_part(tmp_path / "ft", "discriminators"), state_part(tmp_path / "plain", "discriminators"))
    ours, theirs = state_part(tmp_path / "ft", "discriminators"), state_part(model_dir, "discriminators")
    assert not all(torch.equal(ours[name], theirs[name]) for name in ours)


def test_dry_run_shows_the_model_its_networks_and_the_new_training_settings(model_dir, tmp_path):
    result = invoke(
        "train", "--init-from", str(model_dir), "--data", str(tmp_path), "--dry-run", "--lambda-cycle", "5", "--lr", "1e-4", "--ngf", "4"
    )
    assert result.exit_code == 0, result.stderr
    config = json.loads(result.stdout)
    assert config["init_from"] == str(model_dir.resolve()) and config["preset"] == "cyclegan"
    # The networks and untouched loss settings are the model's (tiny), not the preset's; loss weights and training settings may change.
    assert (config["model"]["ngf"], config["model"]["n_blocks"], config["model"]["adversarial"]["ndf"], config["model"]["pool_size"]) == (
        4,
        1,
        4,
        3,
    )
    assert (config["model"]["lambda_cycle"], config["lr"], config["data"]["size"]) == (5.0, 1e-4, 256)
    # The dry run's output trains the same fine-tune.
    (tmp_path / "config.json").write_text(result.stdout)
    again = invoke("train", "--config", str(tmp_path / "config.json"), "--dry-run")
    assert again.exit_code == 0 and json.loads(again.stdout) == config, again.stderr


@pytest.mark.parametrize(
    "args, code, fragment",
    [
        (["--ngf", "8"], 2, "--ngf 8: the model {model} has --ngf 4, and a fine-tune keeps the model's networks"),
        (["--n-layers-d", "3"], 2, "has --n-layers-d 2"),
        (["--upsample", "resize"], 2, "has --upsample transpose"),
        (["--method", "stargan"], 2, "--method stargan: {model} is a cyclegan model"),
        (["--set", "model.adversarial.spectral_norm=true"], 2, "has --spectral-norm off"),
        (["--out", "{model}"], 2, "is the folder of the model it starts from"),
        (["--init-from", "{data}"], 1, "no model there (no generators.safetensors)"),
        (["--init-from", "{text}"], 1, "not a readable safetensors file"),
        (["--init-from", "{data}/nothing"], 1, "--init-from: no model at"),
    ],
)
def test_what_contradicts_the_model_is_one_line(model_dir, tmp_path, args, code, fragment):
    (tmp_path / "notes.txt").write_text("not a model")
    places = {"model": str(model_dir), "data": str(tmp_path), "text": str(tmp_path / "notes.txt")}
    args = [arg.format(**places) for arg in args]
    result = invoke("train", "--init-from", str(model_dir), "--data", str(tmp_path), "--dry-run", *args)
    assert_one_line_error(result, code, fragment.format(**places))


def test_resuming_a_fine_tune_is_exact_and_never_reads_the_model_again(model_dir, tmp_path):
    source = tmp_path / "source"
    shutil.copytree(model_dir, source)
    whole = finetune(source, data_root(model_dir), tmp_path / "whole")
    list(train(whole))
    part = finetune(source, data_root(model_dir), tmp_path / "part")
    calls = iter(range(100))
    list(train(part, should_stop=lambda: next(calls) >= 2))
    shutil.rmtree(source)  # a resume continues from its own checkpoint
    resumed = resume_config(tmp_path / "part", {"init_from": str(source)})  # the starting command, with --resume added
    assert resumed.init_from == str(source.resolve())
    list(train(resumed, resume=True))
    assert log_records(tmp_path / "part") == log_records(tmp_path / "whole")
    assert_same(tensors(tmp_path / "part" / checkpoint.STATE_FILE), tensors(tmp_path / "whole" / checkpoint.STATE_FILE))
    # Another model on --resume is refused: the run would not start from it.
    other = invoke("train", "--resume", "--out", str(tmp_path / "part"), "--init-from", str(model_dir))
    assert_one_line_error(other, 2, f"the run in {tmp_path / 'part'} started from {source.resolve()}")
    plain = invoke("train", "--resume", "--out", str(model_dir), "--init-from", str(tmp_path / "part"))
    assert_one_line_error(plain, 2, "did not start from a model")


def test_domains_go_by_name_when_the_data_has_the_models_names_else_by_order(model_dir, tmp_path):
    # Named in the other order: each still goes to its namesake.
    started_only(finetune(model_dir, data_root(model_dir), tmp_path / "swapped", domains=("zebra", "horse")))
    assert checkpoint.read_model_info(tmp_path / "swapped").domains == ("horse", "zebra")
    # Other names: by order, the data's names kept, and said.
    mine = write_domains(tmp_path / "mine", ("ponies", "stripes"), 3, seed=7)
    warnings = [event.message for event in started_only(finetune(model_dir, mine, tmp_path / "renamed")) if isinstance(event, Warned)]
    assert warnings == ["domains matched by order: the model's horse -> ponies, zebra -> stripes (--domains sets which folder comes first)"]
    assert checkpoint.read_model_info(tmp_path / "renamed").domains == ("ponies", "stripes")
    # A shared name at another place would be crossed by the order; another count cannot be matched at all.
    crossed = write_domains(tmp_path / "crossed", ("cat", "horse"), 3)
    with pytest.raises(DataError, match="the data's domain horse is the model's domain 1, not 2: name the folders in the model's order"):
        started_only(finetune(model_dir, crossed, tmp_path / "crossed-run"))
    three = write_domains(tmp_path / "three", ("a", "b", "c"), 3)
    result = invoke("train", "--init-from", str(model_dir), "--data", str(three), "--out", str(tmp_path / "three-run"), "--device", "cpu")
    assert_one_line_error(result, 1, "the model translates 2 domains (horse, zebra), the data has 3 (a, b, c)")
    assert not (tmp_path / "three-run").exists()


def reference_generator(path: Path, seed: int) -> dict[str, torch.Tensor]:
    """A reference-project generator file (ngf 4, one block) with random weights."""
    torch.manual_seed(seed)
    state = {name: tensor.normal_(0, 0.1) for name, tensor in ResnetGenerator(ngf=4, n_blocks=1).state_dict().items()}
    torch.save(state, path)
    return state


def test_an_imported_model_fine_tunes_on_folders_of_other_names(tmp_path):
    files = [tmp_path / "latest_net_G_A.pth", tmp_path / "latest_net_G_B.pth"]
    imported = [reference_generator(path, seed) for seed, path in enumerate(files)]
    import_generators(files, ("horse", "zebra"), tmp_path / "h2z")
    data = write_domains(tmp_path / "mine", ("photo", "painting"), 3, size=(40, 40))
    out = tmp_path / "ft"
    # The preset's discriminator (the reference's 70x70 PatchGAN) needs 24 px: train at 32.
    command = ["train", "--init-from", str(tmp_path / "h2z"), "--data", str(data), "--out", str(out), "--steps", "1"]
    result = invoke(*command, "--size", "32", "--load-size", "36", "--device", "cpu", "--workers", "0")
    assert result.exit_code == 0, result.stderr
    assert "horse -> painting, zebra -> photo" in result.stderr and "the discriminators start fresh" in result.stderr
    assert checkpoint.read_model_info(out).domains == ("painting", "photo")  # the folders, sorted
    tuned = state_part(out, "generators")
    for name, state in zip(("generator_xy", "generator_yx"), imported):
        assert max((tuned[f"{name}.{key}"] - value).abs().max().item() for key, value in state.items()) <= 2e-4 * 1.01
    # CycleGAN trains both directions: a one-way import cannot start it.
    import_generators(files[:1], ("horse", "zebra"), tmp_path / "one-way")
    result = invoke(*command[:2], str(tmp_path / "one-way"), *command[3:], "--dry-run")
    assert_one_line_error(result, 1, "the model holds generator_xy only, and cyclegan trains generator_yx too")


def _varied(setting, value):
    """Other values of a setting, for the network-settings check below."""
    kind = setting.value_kind()
    if kind is bool:
        return [not value]
    if setting.choices:
        return [choice for choice in setting.choices if choice != value]
    if kind is int:
        return [value + 1]
    if kind is float:
        return [value + 0.5]
    return [("relu1_2",)] if value and isinstance(value[0], str) else []


def _with(block, path: tuple[str, ...], value):
    """The config block `block` with the field at `path` (below it) set to `value`."""
    inner = value if len(path) == 1 else _with(getattr(block, path[0]), path[1:], value)
    return dataclasses.replace(block, **{path[0]: inner})


@pytest.mark.filterwarnings("ignore:for .* copying from a non-meta parameter")  # direct's VGG16, built on the meta device
@pytest.mark.parametrize("method", sorted(METHODS))
def test_settings_not_declared_network_leave_every_networks_tensors_as_they_are(method, tmp_path):
    """What a fine-tune lets the command line change must not change any tensor it loads: a setting that
    shapes one must be declared `network=True` on its field."""
    preset = next(name for name, config in PRESETS.items() if config.method == method)
    base = tiny_config(tmp_path, tmp_path / "run", preset, **tiny_preset(preset).overrides).model

    def shapes(model) -> dict[str, tuple[int, ...]]:
        with torch.device("meta"):
            built = METHODS[method](model, ("a", "b"), training=True)
        parts = (built.generators, built.discriminators, built.auxiliary)
        return {f"{index}.{name}": tuple(tensor.shape) for index, part in enumerate(parts) for name, tensor in part.state_dict().items()}

    expected, eligible, checked = shapes(base), set(), set()
    for setting in setting_table().values():
        if setting.network or setting.path[0] != "model" or method not in setting.methods:
            continue
        eligible.add(setting.flag)
        for value in _varied(setting, _value(base, setting.path[1:])):
            try:
                model = _with(base, setting.path[1:], value)
                assert shapes(model) == expected, f"{setting.flag} {value} changes the tensors: declare it network=True"
            except (UsageError, weights.DownloadError):
                continue  # a combination the config refuses; direct's frozen VGG16 without its cache (never saved)
            checked.add(setting.flag)
    assert eligible - checked <= {"--lambda-feature", "--feature-layers"}, eligible - checked


def _value(block, path: tuple[str, ...]):
    return _value(getattr(block, path[0]), path[1:]) if len(path) > 1 else getattr(block, path[0])


@pytest.mark.slow
@pytest.mark.parametrize("preset", sorted(TINY_PRESETS))
def test_every_preset_fine_tunes_from_its_own_run(preset, tmp_path):
    tiny = tiny_preset(preset)
    root = write_domains(tmp_path / "data", tiny.domains, 4, seed=3)
    list(train(tiny_config(root, tmp_path / "source", preset, **tiny.overrides, steps=2)))
    settings = {"batch_size": 1, "load_size": 16 if preset == "discogan" else 20}
    config = finetune(tmp_path / "source", root, tmp_path / "ft", **settings)
    assert config.preset == preset
    assert not [event for event in started_only(config) if isinstance(event, Warned)]
    assert_same(tensors(tmp_path / "ft" / checkpoint.MODEL_FILE), tensors(tmp_path / "source" / checkpoint.MODEL_FILE))
    for part in ("discriminators", "auxiliary"):
        source = state_part(tmp_path / "source", part)
        if source:
            assert_same(state_part(tmp_path / "ft", part), source)


def test_a_fine_tune_has_its_own_default_folder_beside_the_model_it_starts_from(tmp_path):
    config = tiny_config(tmp_path / "data", tmp_path / "unused", "cyclegan")
    plain = dataclasses.replace(config, out="")
    assert default_run_dir(plain) == Path("runs") / "data-cyclegan"
    assert default_run_dir(dataclasses.replace(plain, init_from=str(tmp_path / "model"))) == Path("runs") / "data-cyclegan-finetune"
