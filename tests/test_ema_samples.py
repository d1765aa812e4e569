"""Generator EMA (--ema): the average, what uses it, how it resumes; and sample grids of fixed, labelled images."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from gantrans import checkpoint
from gantrans.checkpoint import config_from_dict
from gantrans.config import DataConfig
from gantrans.data import UnpairedDataset
from gantrans.errors import UsageError
from gantrans.events import SamplesWritten
from gantrans.folders import discover_domains
from gantrans.images import MIN_CELL_WIDTH, image_grid, load_rgb, to_model_range
from gantrans.presets import make_train_config, resume_config
from gantrans.run_folder import column_label
from gantrans.step import GeneratorEMA, train_step
from gantrans.training import train
from gantrans.translate import Translator

from conftest import (
    gantrans,
    invoke,
    log_records,
    stop_and_resume,
    tensors,
    tiny_config,
    tiny_flags,
    tiny_method,
    write_domains,
    write_images,
)

CPU = torch.device("cpu")


def prefixed(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {name[len(prefix) :]: value for name, value in state.items() if name.startswith(prefix)}


def parameters(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone().double() for name, value in module.named_parameters()}


def initial_generators(config) -> dict[str, torch.Tensor]:
    """The generators a run of `config` starts from (seeded initialisation)."""
    return checkpoint.build_method(config, ("horse", "zebra"), training=True, seed=config.seed).generators.state_dict()


def average(decay: float, old: dict[str, torch.Tensor], new: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: decay * old[name].double() + (1 - decay) * new[name].double() for name in old}


def close(expected: dict[str, torch.Tensor], actual: dict[str, torch.Tensor]) -> bool:
    return expected.keys() == actual.keys() and all(
        torch.allclose(expected[k].double(), actual[k].double(), rtol=0, atol=1e-6) for k in expected
    )


# --- the moving average ---------------------------------------------------------------------------


def test_ema_lags_the_live_weights_by_the_decayed_average_of_their_history(make_config):
    """After each generator step (none on a discriminator-only step), ema = d * ema + (1 - d) * live;
    batch norm's running statistics are copied."""
    config = make_config(ema=0.7, n_critic=2, norm="batch", lr=0.01)
    method, optimizers, batch = tiny_method(make_config, norm="batch", lr=0.01)
    ema = GeneratorEMA(method, config, CPU, torch.contiguous_format)
    expected = parameters(method.generators)
    for step in range(6):
        train_step(method, optimizers, batch, step, config, ema=ema)
        if (step + 1) % config.n_critic == 0:  # a generator step: the average takes one step towards it
            expected = average(0.7, expected, parameters(method.generators))
    averaged = parameters(ema.method.generators)
    assert close(expected, averaged)
    assert not close(parameters(method.generators), averaged)  # it lags
    live_buffers, ema_buffers = dict(method.generators.named_buffers()), dict(ema.method.generators.named_buffers())
    assert any("running_mean" in name for name in live_buffers)
    assert all(torch.equal(live_buffers[name], ema_buffers[name]) for name in live_buffers)
    assert not ema.method.training and not any(p.requires_grad for p in ema.method.parameters())


def test_ema_zero_saves_the_live_weights_as_today(make_config):
    config = make_config(steps=2)
    assert config.ema == 0.0  # cyclegan's preset: off
    list(train(config))
    model, state = tensors(Path(config.out) / checkpoint.MODEL_FILE), tensors(Path(config.out) / checkpoint.STATE_FILE)
    assert close(prefixed(state, "generators."), model) and model
    assert not prefixed(state, "generators_ema.")


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_model_file_holds_the_ema_weights_and_the_state_both(make_config, precision):
    """One step with decay 0.9: the model file is 0.9 * initial + 0.1 * live; the state keeps both."""
    config = make_config(steps=1, ema=0.9, precision=precision)
    list(train(config))
    model, state = tensors(Path(config.out) / checkpoint.MODEL_FILE), tensors(Path(config.out) / checkpoint.STATE_FILE)
    live = prefixed(state, "generators.")
    assert close(average(0.9, initial_generators(config), live), model)
    assert not close(live, model)
    assert {tensor.dtype for tensor in model.values()} == {torch.float32}
    assert prefixed(state, "generators_ema.").keys() == model.keys()
    assert all(torch.equal(prefixed(state, "generators_ema.")[name], model[name]) for name in model)
    # Translation uses what the model file holds: the average.
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    translator = Translator.load(config.out, "cpu", "fp32")
    reference, _ = checkpoint.load_model(Path(config.out))
    with torch.no_grad():
        assert torch.equal(translator.translate_tensor(images, "zebra"), reference.translate(images, "zebra"))


def test_snapshots_are_the_ema_weights(make_config):
    config = make_config(steps=2, ema=0.9, snapshot_every=2)
    list(train(config))
    snapshot = tensors(Path(config.out) / "snapshots" / "generators_step0000002.safetensors")
    state = tensors(Path(config.out) / checkpoint.STATE_FILE)
    assert close(prefixed(state, "generators_ema."), snapshot) and not close(prefixed(state, "generators."), snapshot)


def test_sample_grids_are_drawn_by_the_ema_generators(make_config, tiny_data):
    config = make_config(steps=1, ema=0.9, sample_every=1)
    (event,) = [event for event in train(config) if isinstance(event, SamplesWritten)]
    model, _ = checkpoint.load_model(Path(config.out))  # the averaged generators
    data = dataclasses.replace(config.data, domains=("horse", "zebra"))
    batch = tuple(to_model_range(images) for images in UnpairedDataset(discover_domains(tiny_data), data, seed=0).sample_batch(16))
    with torch.no_grad():
        columns = model.samples(batch)
    expected = image_grid({column_label(name, model.domains): images for name, images in columns.items()})
    assert np.array_equal(np.asarray(Image.open(event.path)), np.asarray(expected))


def test_eval_every_scores_the_ema_generators(make_config, monkeypatch):
    """--eval-every's evaluation gets the averaged generators (and may keep them as the best)."""
    scored = []

    def fake_evaluation(config, run_dir, device):
        def evaluate(method, config, step):
            scored.append({name: value.clone() for name, value in method.generators.state_dict().items()})
            return {"horse->zebra": {"fid": 1.0, "kid": 0.0}}

        return evaluate

    monkeypatch.setattr("gantrans.run_setup.training_evaluation", fake_evaluation)
    config = make_config(steps=2, ema=0.9, eval_every=2)
    list(train(config))
    state = tensors(Path(config.out) / checkpoint.STATE_FILE)
    assert len(scored) == 1 and close(prefixed(state, "generators_ema."), scored[0])


def test_resume_with_ema_is_exact(make_config):
    """k steps, stop, resume == one run: same losses, same live and averaged weights."""
    straight = make_config("straight", steps=6, ema=0.8, checkpoint_every=100)
    list(train(straight))
    interrupted = make_config("interrupted", steps=6, ema=0.8, checkpoint_every=100)
    stop_and_resume(interrupted)
    assert log_records(straight.out) == log_records(interrupted.out)
    for name in (checkpoint.STATE_FILE, checkpoint.MODEL_FILE):
        a, b = tensors(Path(straight.out) / name), tensors(Path(interrupted.out) / name)
        assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a), name
    assert prefixed(tensors(Path(straight.out) / checkpoint.STATE_FILE), "generators_ema.")


def test_a_run_without_ema_resumed_with_it_starts_the_average_at_the_live_weights(make_config):
    config = make_config(steps=2)
    list(train(config))
    live_before = prefixed(tensors(Path(config.out) / checkpoint.STATE_FILE), "generators.")
    resumed = resume_config(Path(config.out), {"ema": 0.75, "steps": 3})  # --ema may change on resume
    assert resumed.ema == 0.75
    list(train(resumed, resume=True))
    state, model = tensors(Path(config.out) / checkpoint.STATE_FILE), tensors(Path(config.out) / checkpoint.MODEL_FILE)
    assert close(average(0.75, live_before, prefixed(state, "generators.")), model)


@pytest.mark.slow
def test_ema_follows_compiled_generators(make_config, quick_compile):
    """--compile: the average is of the networks' own weights, as in an eager run."""
    eager, compiled = make_config("eager", steps=2, ema=0.5), make_config("compiled", steps=2, ema=0.5, compile=True)
    list(train(eager))
    list(train(compiled))
    a, b = tensors(Path(eager.out) / checkpoint.MODEL_FILE), tensors(Path(compiled.out) / checkpoint.MODEL_FILE)
    assert close(a, b)
    assert not close(a, prefixed(tensors(Path(compiled.out) / checkpoint.STATE_FILE), "generators."))


@pytest.mark.slow
def test_two_processes_keep_the_average_of_one(tiny_data, tmp_path):
    """Each rank updates its own average after the all-reduced step: rank 0 saves what one process would."""
    tiny = tiny_flags(norm="none", pool_size=0, batch_size=4, sample_every=100, snapshot_every=0)
    result = gantrans(
        "train", "--data", str(tiny_data), *tiny, "--steps", "3", "--ema", "0.5", "--out", "multi", "--gpus", "2", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    single = config_from_dict({**json.loads((tmp_path / "multi" / "config.json").read_text()), "out": str(tmp_path / "single")})
    assert single.ema == 0.5
    list(train(single))
    one, two = tensors(tmp_path / "single" / checkpoint.MODEL_FILE), tensors(tmp_path / "multi" / checkpoint.MODEL_FILE)
    assert one.keys() == two.keys() and all(torch.allclose(one[k], two[k], atol=2e-6) for k in one)


def test_ema_is_validated_and_a_train_flag():
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(UsageError, match=r"--ema must be in \[0, 1\)"):
            make_train_config("cyclegan", {"root": "d", "ema": bad})
    assert make_train_config("cyclegan", {"root": "d", "ema": 0.999}).ema == 0.999
    result = invoke("train", "--data", "d", "--ema", "0.99", "--dry-run")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["ema"] == 0.99


# --- samples --------------------------------------------------------------------------------------


def test_sample_images_are_the_first_test_images_centre_cropped(tmp_path):
    root = tmp_path / "data"
    for split, seed in (("train", 0), ("test", 10)):
        write_domains(root / split, ("horse", "zebra"), 6, size=(40, 24), seed=seed)
    files = discover_domains(root)
    config = make_train_config("cyclegan", {"root": str(root), "domains": ("horse", "zebra"), "size": 16, "load_size": 20}).data
    batch = UnpairedDataset(files, config, seed=0).sample_batch(16)
    assert [images.shape for images in batch] == [(4, 3, 16, 16)] * 2 and batch[0].dtype == torch.uint8
    for domain, images in zip(("horse", "zebra"), batch):
        test_files = sorted((root / "test" / domain).iterdir())[:4]  # the held-out ones, in name order
        expected = [np.asarray(ImageOps.fit(load_rgb(path), (16, 16), Image.BICUBIC)) for path in test_files]
        assert all(torch.equal(image.permute(1, 2, 0), torch.from_numpy(array.copy())) for image, array in zip(images, expected))
    # Without a test split: the first training images; every call gives the same ones.
    flat = tmp_path / "flat"
    write_images(flat / "a", 3, size=(24, 40), seed=1)
    write_images(flat / "b", 5, size=(24, 40), seed=2)
    dataset = UnpairedDataset(discover_domains(flat), DataConfig(root=str(flat), domains=("a", "b"), size=16, load_size=20), seed=0)
    first, again = dataset.sample_batch(16), dataset.sample_batch(16)
    assert [images.shape[0] for images in first] == [3, 3]  # as many per domain as the smallest has
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    expected = np.asarray(ImageOps.fit(load_rgb(flat / "b" / "img_000.png"), (16, 16), Image.BICUBIC))
    assert torch.equal(first[1][0].permute(1, 2, 0), torch.from_numpy(expected.copy()))


def test_grid_columns_carry_their_labels_in_a_header_band():
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    grid = np.asarray(image_grid({"real horse": images, "fake zebra": images}))
    cell = MIN_CELL_WIDTH  # 32 px images are enlarged 3x to 96 px
    header = grid.shape[0] - 2 * cell
    assert grid.shape[1] == 2 * cell and header > 5
    first, second = grid[:header, :cell], grid[:header, cell:]
    assert (first < 128).any() and (second < 128).any()  # dark text on the white band
    assert not np.array_equal(first, second)  # different names, different pixels
    assert np.array_equal(grid[header:, :cell], grid[header:, cell:])  # the same images below them
    same = np.asarray(image_grid({"real horse": images, "real horse ": images}))
    assert np.array_equal(same[:header, :cell], same[:header, cell:])  # the label is all that differs
    assert column_label("reconstructed_x", ("horse", "zebra")) == "reconstructed horse"
    assert column_label("fake_y", ("horse", "zebra")) == "fake zebra"
    assert column_label("to_blond", ("black", "blond", "brown")) == "to blond"


def test_samples_show_the_same_held_out_images_at_every_step(tmp_path):
    root = tmp_path / "data"
    for split, seed in (("train", 0), ("test", 10)):
        write_domains(root / split, ("horse", "zebra"), 5, size=(20, 20), seed=seed)
    config = tiny_config(root, tmp_path / "run", steps=2, sample_every=1, lr=0.01)
    paths = [event.path for event in train(config) if isinstance(event, SamplesWritten)]
    first, second = (np.asarray(Image.open(path)) for path in paths)
    cell = MIN_CELL_WIDTH
    header = first.shape[0] - 4 * cell  # 4 fixed images per domain, one per row
    assert first.shape == second.shape == (header + 4 * cell, 6 * cell, 3)
    real = slice(0, cell)  # "real horse": the test images, enlarged
    assert np.array_equal(first[header:, real], second[header:, real])
    assert not np.array_equal(first[header:, cell : 2 * cell], second[header:, cell : 2 * cell])  # their translations moved on
    test_image = np.asarray(load_rgb(sorted((root / "test" / "horse").iterdir())[0]).resize((16, 16), Image.BICUBIC))
    assert np.array_equal(first[header : header + cell : cell // 16, real][:, :: cell // 16], test_image)
