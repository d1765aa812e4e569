"""The contract battery, run for every method and preset (StarGAN with three domains)."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from gantrans import checkpoint
from gantrans.methods import METHODS, PRESETS
from gantrans.step import make_optimizer
from gantrans.training import train
from gantrans.translate import Translator

from conftest import TINY_PRESETS, fresh_fakes, log_records, stop_and_resume, tiny_config, tiny_preset, write_domains


@pytest.fixture(params=sorted(PRESETS))
def method_name(request) -> str:
    return request.param


@pytest.fixture
def data(tmp_path, method_name) -> Path:
    tiny = tiny_preset(method_name)
    counts = [3 if tiny.paired else 3 + index for index in range(len(tiny.domains))]  # pairs: img_000 <-> img_000 ...
    return write_domains(tmp_path / "data", tiny.domains, counts, size=(20, 20))


def config_for(method_name, data, out, **overrides):
    return tiny_config(data, out, method_name, **{**tiny_preset(method_name).overrides, **overrides})


def build(method_name, data, tmp_path, **overrides):
    config = config_for(method_name, data, tmp_path / "run", **overrides)
    method = checkpoint.build_method(config, tiny_preset(method_name).domains, training=True, seed=0)
    optimizers = {
        "optimizer_g": make_optimizer(method.generator_side().parameters(), config, torch.device("cpu")),
        "optimizer_d": make_optimizer(method.discriminators.parameters(), config, torch.device("cpu")),
    }
    batch = tuple(torch.rand(2, 3, 16, 16) * 2 - 1 for _ in tiny_preset(method_name).domains)
    return config, method, optimizers, batch


def state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The trainable weights (batch norm's running statistics follow every forward pass in training)."""
    return {name: value.detach().clone() for name, value in module.named_parameters()}


def same(before: dict[str, torch.Tensor], module: torch.nn.Module) -> bool:
    return all(torch.equal(before[name], value) for name, value in module.named_parameters())


def test_every_registry_method_has_a_preset_and_a_contract():
    for name, method_class in METHODS.items():
        assert PRESETS[name].method == name and isinstance(PRESETS[name].model, method_class.config_class)
    for name, preset in PRESETS.items():
        assert preset.preset == name and isinstance(preset.model, METHODS[preset.method].config_class)


def test_tiny_test_settings_name_only_presets_and_fit_them():
    """A new method is tested without a TINY_PRESETS entry; an entry names a preset and gives each domain once."""
    assert set(TINY_PRESETS) <= set(PRESETS), f"TINY_PRESETS names what gantrans does not have: {sorted(set(TINY_PRESETS) - set(PRESETS))}"
    for name in PRESETS:
        tiny = tiny_preset(name)
        assert set(tiny.translates_into) <= set(tiny.domains) and len(set(tiny.domains)) == len(tiny.domains) >= 2, name
    assert tiny_preset("cut").translates_into == ("zebra",) and tiny_preset("pix2pix").paired and not tiny_preset("cyclegan").paired


def test_losses_are_finite(method_name, data, tmp_path):
    _, method, _, batch = build(method_name, data, tmp_path)
    for losses in (method.generator_loss(batch, 0), method.discriminator_loss(batch, fresh_fakes(method, batch))):
        assert torch.isfinite(losses.total) and all(torch.isfinite(v) for v in losses.terms.values())


def test_generator_step_changes_only_generators(method_name, data, tmp_path):
    _, method, optimizers, batch = build(method_name, data, tmp_path)
    generators, discriminators = state(method.generators), state(method.discriminators)
    method.discriminators.requires_grad_(False)  # as the trainer does
    method.generator_loss(batch, 0).total.backward()
    optimizers["optimizer_g"].step()
    assert not same(generators, method.generators) and same(discriminators, method.discriminators)


def test_discriminator_step_changes_only_discriminators(method_name, data, tmp_path):
    _, method, optimizers, batch = build(method_name, data, tmp_path)
    generators, discriminators = state(method.generators), state(method.discriminators)
    method.discriminator_loss(batch, fresh_fakes(method, batch)).total.backward()
    optimizers["optimizer_d"].step()
    assert same(generators, method.generators) and not same(discriminators, method.discriminators)


def test_save_load_gives_identical_outputs_for_every_domain(method_name, data, tmp_path):
    config, method, optimizers, batch = build(method_name, data, tmp_path)
    method.generator_loss(batch, 0).total.backward()  # one step, so batch norm has statistics to save
    optimizers["optimizer_g"].step()
    checkpoint.save_model(tmp_path / "model" / checkpoint.MODEL_FILE, method, config, step=1)
    translator = Translator.load(tmp_path / "model", device="cpu")
    method.eval()  # as loaded models run: no dropout, batch norm's running statistics
    assert translator.targets == tiny_preset(method_name).translates_into
    with torch.no_grad():
        for domain in tiny_preset(method_name).translates_into:
            assert torch.equal(translator.translate_tensor(batch[0], domain), method.translate(batch[0], domain))


@pytest.mark.parametrize(
    "method_name, overrides",
    [pytest.param(name, {}, id=name) for name in sorted(PRESETS) if len(tiny_preset(name).translates_into) >= 2]
    + [pytest.param("shared-latent", {"fully_shared": True}, id="shared-latent-fully-shared")],  # one encoder and decoder for all
)
def test_each_target_gets_its_own_translation(method_name, overrides, data, tmp_path):
    """The same images translated into two targets must differ by far more than float rounding (~1e-6),
    whatever the weights: a generator shared by several targets (StarGAN's, shared-latent's fully-shared
    decoder) must see the target it is asked for. Before format 3 both fed it as input label maps,
    which an instance norm cancels."""
    _, method, _, batch = build(method_name, data, tmp_path, **overrides)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # away from the initial weights (conditional norms start equal for every target)
        for parameter in method.generators.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.1)
        method.eval()
        outputs = {target: method.translate(batch[0], target) for target in tiny_preset(method_name).translates_into}
    for first, second in combinations(outputs, 2):
        assert (outputs[first] - outputs[second]).abs().max() > 1e-3, (first, second)


@pytest.mark.slow
def test_seeded_runs_repeat_and_resume_is_exact(method_name, data, tmp_path):
    first = config_for(method_name, data, tmp_path / "a", steps=7, checkpoint_every=100)
    second = config_for(method_name, data, tmp_path / "b", steps=7, checkpoint_every=100)
    list(train(first))
    list(train(second))
    assert log_records(first.out) == log_records(second.out)
    interrupted = config_for(method_name, data, tmp_path / "c", steps=7, checkpoint_every=100)
    stop_and_resume(interrupted)
    assert log_records(interrupted.out) == log_records(first.out)


def test_sample_grid_shows_every_domain(method_name, data, tmp_path):
    _, method, _, batch = build(method_name, data, tmp_path)
    with torch.no_grad():
        columns = method.samples(batch)
    assert all(images.shape[-2:] == (16, 16) for images in columns.values())
    if method_name == "stargan":
        assert list(columns) == ["real", "to_black", "to_blond", "to_brown"] and columns["real"].shape[0] == 3


def test_stargan_counts_one_generator_step_per_n_critic_steps(tmp_path):
    write_domains(tmp_path / "data", tiny_preset("stargan").domains, 3, size=(20, 20))
    config = tiny_config(tmp_path / "data", tmp_path / "run", "stargan", steps=10)
    assert config.n_critic == 5
    list(train(config))
    records = log_records(config.out)
    assert [step for step, record in enumerate(records, 1) if "adv" in record] == [5, 10]
    assert all("d_adv" in record and "d_cls_real" in record and "d_gp" in record for record in records)


def test_spectral_norm_applies_to_every_discriminator(method_name, data, tmp_path):
    _, method, optimizers, batch = build(method_name, data, tmp_path, spectral_norm=True)
    convs = [m for m in method.discriminators.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(hasattr(conv, "parametrizations") for conv in convs)
    method.discriminator_loss(batch, fresh_fakes(method, batch)).total.backward()  # still trains
    optimizers["optimizer_d"].step()


def test_discogan_updates_the_discriminators_once_per_two_generator_steps(tmp_path):
    write_domains(tmp_path / "data", tiny_preset("discogan").domains, 3, size=(20, 20))
    config = config_for("discogan", tmp_path / "data", tmp_path / "run", steps=6)
    assert config.n_generator == 2
    list(train(config))
    records = log_records(config.out)
    assert [step for step, record in enumerate(records, 1) if "d_x" in record] == [2, 4, 6]
    assert all({"adv_xy", "fm_xy", "cycle_x"} <= set(record) for record in records)


def test_discogan_cycle_weight_follows_its_curriculum(tmp_path):
    write_domains(tmp_path / "data", tiny_preset("discogan").domains, 3, size=(20, 20))
    _, method, _, batch = build("discogan", tmp_path / "data", tmp_path, cycle_warmup_steps=100)
    method.eval()  # the same outputs at both steps
    with torch.no_grad():
        during, after = method.generator_loss(batch, 99).terms, method.generator_loss(batch, 100).terms
    assert torch.allclose(after["cycle_x"], during["cycle_x"] * 10.0 / 0.1)  # lambda_cycle / lambda_cycle_warmup
    assert torch.equal(after["adv_xy"], during["adv_xy"]) and torch.equal(after["fm_xy"], during["fm_xy"])


def test_sample_grids_leave_training_unchanged(tmp_path):
    """Samples run in evaluation mode: batch norm's running statistics stay as training left them."""
    write_domains(tmp_path / "data", tiny_preset("discogan").domains, 3, size=(20, 20))
    runs = [
        config_for("discogan", tmp_path / "data", tmp_path / name, steps=4, sample_every=every) for name, every in (("a", 1), ("b", 100))
    ]
    for config in runs:
        list(train(config))
    assert len(list((tmp_path / "a" / "samples").iterdir())) == 4
    first, second = (load_file(str(Path(config.out) / checkpoint.MODEL_FILE)) for config in runs)
    assert any("running_mean" in name for name in first)
    assert first.keys() == second.keys() and all(torch.equal(first[name], second[name]) for name in first)
