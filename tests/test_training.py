"""The method/trainer contract, checkpoints, determinism and exact resume."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from gantrans import checkpoint
from gantrans.checkpoint import config_from_dict
from gantrans.errors import GantransError, UsageError
from gantrans.events import CheckpointWritten, Finished, SamplesWritten
from gantrans.methods import METHODS
from gantrans.methods.cyclegan import ImagePool
from gantrans.presets import make_train_config, resume_config
from gantrans.step import learning_rate_factor, make_optimizer, train_step
from gantrans.training import train

from conftest import fresh_fakes, log_records, tensors, tiny_method


def run(config, **kwargs) -> list:
    return list(train(config, **kwargs))


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


def changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(before[name], value) for name, value in module.state_dict().items())


@pytest.mark.parametrize("gan_loss", ["lsgan", "nonsaturating", "wgan-gp", "hinge"])
def test_losses_are_finite_for_every_objective(make_config, gan_loss):
    method, _, batch = tiny_method(make_config, gan_loss=gan_loss)
    g_losses = method.generator_loss(batch, 0)
    d_losses = method.discriminator_loss(batch, fresh_fakes(method, batch))
    for value in [g_losses.total, d_losses.total, *g_losses.terms.values(), *d_losses.terms.values()]:
        assert torch.isfinite(value).all()
    assert set(g_losses.terms) == {"adv_xy", "adv_yx", "cycle_x", "cycle_y", "identity_x", "identity_y"}
    assert set(d_losses.terms) == {"d_x", "d_y"}


def test_discriminator_step_changes_only_discriminators(make_config):
    method, optimizers, batch = tiny_method(make_config)
    generators, discriminators = snapshot(method.generators), snapshot(method.discriminators)
    train_step(method, optimizers, batch, 0, make_config(n_critic=2))  # step 1 of 2: D only
    assert not changed(generators, method.generators)
    assert changed(discriminators, method.discriminators)


def test_generator_step_leaves_no_gradient_on_discriminators(make_config):
    """The G step backpropagates through frozen discriminators: their weights get no gradient."""
    method, optimizers, batch = tiny_method(make_config)
    method.discriminators.requires_grad_(False)
    method.generator_loss(batch, 0).total.backward()
    method.discriminators.requires_grad_(True)
    assert all(p.grad is None for p in method.discriminators.parameters())
    assert all(p.grad is not None for p in method.generators.parameters())


def test_generator_and_discriminator_step_both_update(make_config):
    method, optimizers, batch = tiny_method(make_config)
    generators, discriminators = snapshot(method.generators), snapshot(method.discriminators)
    g_losses, d_losses, skipped = train_step(method, optimizers, batch, 0, make_config())
    assert float(skipped) == 0.0
    assert g_losses is not None and set(g_losses.fakes) == {"fake_x", "fake_y"}
    assert changed(generators, method.generators) and changed(discriminators, method.discriminators)


def test_identity_loss_can_be_switched_off(make_config):
    method, _, batch = tiny_method(make_config, lambda_identity=0.0)
    assert "identity_x" not in method.generator_loss(batch, 0).terms


def test_image_pool_fills_then_mixes_and_round_trips():
    generator = torch.Generator().manual_seed(0)
    pool = ImagePool(4, generator)
    first = torch.arange(4.0).view(4, 1, 1, 1)
    assert torch.equal(pool.query(first), first)  # filling: images pass through
    returned = pool.query(torch.full((32, 1, 1, 1), 9.0))
    assert 0 < (returned != 9.0).sum() < 32  # once full: about half are old images
    state, rng_state = pool.state("pool"), generator.get_state()
    later = pool.query(torch.full((16, 1, 1, 1), 7.0))
    restored = ImagePool(4, torch.Generator())
    restored.load_state(state, "pool", torch.device("cpu"))
    restored.generator.set_state(rng_state)
    assert torch.equal(restored.query(torch.full((16, 1, 1, 1), 7.0)), later)


def test_pool_size_zero_passes_images_through():
    images = torch.rand(3, 3, 4, 4)
    assert torch.equal(ImagePool(0, torch.Generator()).query(images), images)


def test_train_writes_model_state_samples_and_log(make_config):
    config = make_config(steps=6, sample_every=3)
    events = run(config)
    run_dir = Path(config.out)
    assert isinstance(events[-1], Finished) and events[-1].step == 6
    samples = [e.path for e in events if isinstance(e, SamplesWritten)]
    assert [p.name for p in samples] == ["step_0000003.png", "step_0000006.png"]
    from PIL import Image

    # 6 columns (x, G(x), F(G(x)), y, F(y), G(F(y))) of 16 px images enlarged 6x to 96 px, labelled in a
    # header band; one row for each of the 4 fixed sample images per domain
    width, height = Image.open(samples[0]).size
    assert width == 6 * 96 and 4 * 96 < height < 4 * 96 + 40
    assert [line["step"] for line in log_records(run_dir)] == [1, 2, 3, 4, 5, 6]
    assert json.loads((run_dir / "config.json").read_text())["model"]["ngf"] == 4
    assert not list(run_dir.glob(".*tmp*"))  # atomic writes leave no temporary files


def test_model_file_is_safetensors_with_metadata(make_config):
    config = make_config(steps=2)
    run(config)
    for name in (checkpoint.MODEL_FILE, checkpoint.STATE_FILE):
        raw = (Path(config.out) / name).read_bytes()
        header_length = int.from_bytes(raw[:8], "little")
        assert raw[8:9] == b"{" and json.loads(raw[8 : 8 + header_length])  # a JSON header, no pickle
        assert not raw.startswith((b"PK", b"\x80"))  # neither torch's zip nor a pickle stream
    with safe_open(str(Path(config.out) / checkpoint.MODEL_FILE), framework="pt") as handle:
        metadata = handle.metadata()
        keys = set(handle.keys())
    assert {"format", "format_version", "method", "config", "domains", "image_size", "normalization", "step", "generators"} <= set(metadata)
    assert json.loads(metadata["domains"]) == ["horse", "zebra"] and metadata["step"] == "2" and metadata["image_size"] == "16"
    assert all(key.startswith(("generator_xy.", "generator_yx.")) for key in keys)  # generators only


def test_save_then_load_gives_identical_outputs(make_config, tmp_path):
    method, _, batch = tiny_method(make_config)
    config = make_config()
    checkpoint.save_model(tmp_path / "m.safetensors", method, config, step=3)
    loaded, info = checkpoint.load_model(tmp_path / "m.safetensors")
    assert info.step == 3 and info.domains == ("horse", "zebra") and info.config == config
    with torch.no_grad():
        for target in ("horse", "zebra"):
            assert torch.equal(method.translate(batch[0], target), loaded.translate(batch[0], target))


def test_same_seed_same_run_other_seed_other_run(make_config):
    runs = [make_config(name, seed=seed, steps=4) for name, seed in (("a", 1), ("b", 1), ("c", 2))]
    for config in runs:
        run(config)
    a, b, c = (log_records(Path(config.out)) for config in runs)
    assert a == b and a != c
    weights_a, weights_b = (tensors(Path(config.out) / checkpoint.MODEL_FILE) for config in runs[:2])
    assert all(torch.equal(weights_a[key], weights_b[key]) for key in weights_a)


@pytest.mark.parametrize("gan_loss", ["lsgan", "wgan-gp"])
def test_resume_continues_exactly(make_config, gan_loss):
    """N steps in one go == k steps, stop, resume for N - k (same losses, same weights)."""
    straight = make_config("straight", steps=8, gan_loss=gan_loss, checkpoint_every=100)
    run(straight)
    interrupted = make_config("interrupted", steps=8, gan_loss=gan_loss, checkpoint_every=100)
    calls = iter(range(100))
    events = run(interrupted, should_stop=lambda: next(calls) >= 3)
    assert events[-1].interrupted and events[-1].step == 3
    assert checkpoint.read_model_info(interrupted.out).step == 3
    run(resume_config(Path(interrupted.out), {}), resume=True)
    assert log_records(Path(straight.out)) == log_records(Path(interrupted.out))
    final_a = tensors(Path(straight.out) / checkpoint.STATE_FILE)
    final_b = tensors(Path(interrupted.out) / checkpoint.STATE_FILE)
    assert final_a.keys() == final_b.keys() and all(torch.equal(final_a[k], final_b[k]) for k in final_a)


def test_resume_can_extend_but_not_change_the_model(make_config):
    config = make_config(steps=2)
    run(config)
    extended = resume_config(Path(config.out), {"steps": 4})
    assert extended.steps == 4 and extended.model == config.model
    assert run(extended, resume=True)[-1].step == 4
    with pytest.raises(UsageError, match="--ngf 4 -> 8: cannot change when resuming"):
        resume_config(Path(config.out), {"ngf": 8})
    # The settings the run started with, typed again, are no change: up-arrow and --resume resumes.
    same = {"ngf": 4, "size": 16, "load_size": 20, "batch_size": 1, "lr": 2e-4, "domains": ("horse", "zebra"), "root": config.data.root}
    assert resume_config(Path(config.out), same, method="cyclegan").model == config.model
    with pytest.raises(UsageError, match="--method discogan: the run .* was trained with --method cyclegan"):
        resume_config(Path(config.out), {}, method="discogan")
    with pytest.raises(UsageError, match=r"--size 16 -> 32, --n-blocks 1 -> 2: cannot change"):
        resume_config(Path(config.out), {**same, "size": 32, "n_blocks": 2})
    assert resume_config(Path(config.out), {"lr": 1e-4}).lr == 1e-4  # a lower rate after a divergence is allowed


def test_existing_model_is_never_overwritten_by_accident(make_config):
    config = make_config(steps=2)
    run(config)
    before = (Path(config.out) / checkpoint.MODEL_FILE).read_bytes()
    with pytest.raises(GantransError, match="already holds a model"):
        run(config)
    assert (Path(config.out) / checkpoint.MODEL_FILE).read_bytes() == before
    assert run(config, overwrite=True)[-1].step == 2
    with pytest.raises(GantransError, match="nothing to resume"):
        run(make_config("empty"), resume=True)


def test_checkpoints_and_snapshots_are_written_on_schedule(make_config):
    config = make_config(steps=6, checkpoint_every=2, snapshot_every=3)
    events = run(config)
    latest = [e.step for e in events if isinstance(e, CheckpointWritten) and not e.snapshot]
    snapshots = [e.path.name for e in events if isinstance(e, CheckpointWritten) and e.snapshot]
    assert latest == [2, 4, 6]
    assert snapshots == ["generators_step0000003.safetensors", "generators_step0000006.safetensors"]
    assert checkpoint.read_model_info(Path(config.out) / "snapshots" / snapshots[0]).step == 3


def test_n_critic_runs_one_generator_step_per_n_discriminator_steps(make_config):
    config = make_config(steps=6, n_critic=3)
    run(config)
    lines = log_records(Path(config.out))
    assert ["adv_xy" in line for line in lines] == [False, False, True, False, False, True]
    assert all("d_x" in line for line in lines)


def test_learning_rate_is_constant_then_decays_linearly_to_zero():
    factors = [learning_rate_factor(step, 4, 8) for step in range(8)]
    assert factors[:4] == [1.0] * 4
    assert factors[4:] == pytest.approx([1.0, 0.75, 0.5, 0.25])
    config = make_train_config("cyclegan", {"root": "x", "epochs": 2, "decay_epochs": 3})
    assert (config.total_steps(10), config.decay_start(10)) == (50, 20)
    # A step count keeps each preset's split: CycleGAN decays over the last half, DiscoGAN and DualGAN never.
    assert make_train_config("cyclegan", {"root": "x", "steps": 7}).decay_start(10) == 3
    assert make_train_config("stargan", {"root": "x"}).decay_start(10) == 100_000
    for preset in ("discogan", "dualgan"):
        assert make_train_config(preset, {"root": "x", "steps": 500}).decay_start(10) == 500


def test_make_train_config_routes_flags_and_rejects_foreign_ones():
    config = make_train_config("cyclegan", {"root": "d", "ngf": 8, "size": 64, "load_size": 70, "batch_size": 2})
    assert (config.model.ngf, config.data.size, config.batch_size) == (8, 64, 2)
    with pytest.raises(UsageError, match="--lambda-cls does not apply to --method cyclegan"):
        make_train_config("cyclegan", {"lambda_cls": 1.0})
    with pytest.raises(UsageError, match="unknown method"):
        make_train_config("dreamgan", {})
    with pytest.raises(UsageError, match="--load-size"):
        make_train_config("cyclegan", {"size": 64, "load_size": 32})


def test_config_round_trips_through_json():
    config = make_train_config("cyclegan", {"root": "d", "domains": ("a", "b"), "steps": 5, "spectral_norm": True})
    assert config_from_dict(json.loads(config.to_json())) == config
    assert dataclasses.is_dataclass(config.model) and set(METHODS) >= {config.method}


def test_weight_clipping_bounds_every_discriminator_weight(make_config):
    config = make_config(gan_loss="wgan", clip=0.01, lr=0.5)
    method, optimizers, batch = tiny_method(make_config, gan_loss="wgan", clip=0.01, lr=0.5)
    train_step(method, optimizers, batch, 0, config)
    assert max(p.abs().max().item() for p in method.discriminators.parameters()) <= 0.01
    assert any(p.abs().max().item() > 0.01 for p in method.generators.parameters())  # generators are not clipped


def test_plain_wgan_requires_clipping():
    with pytest.raises(UsageError, match="--gan-loss wgan needs --clip"):
        make_train_config("cyclegan", {"root": "d", "gan_loss": "wgan"})
    assert make_train_config("cyclegan", {"root": "d", "gan_loss": "wgan", "clip": 0.01}).clip == 0.01


def test_r1_penalty_adds_to_the_discriminator_loss_only(make_config):
    plain, _, batch = tiny_method(make_config)
    penalised, _, _ = tiny_method(make_config, lambda_r1=10.0)
    penalised.load_state_dict(plain.state_dict())
    fakes = {"fake_x": batch[0], "fake_y": batch[1]}
    assert penalised.discriminator_loss(batch, fakes).total > plain.discriminator_loss(batch, fakes).total
    assert torch.equal(penalised.generator_loss(batch, 0).total, plain.generator_loss(batch, 0).total)


def test_optimizers_follow_the_config():
    parameters = [torch.nn.Parameter(torch.zeros(2))]
    rmsprop = make_optimizer(parameters, make_train_config("dualgan", {"root": "x"}), torch.device("cpu"))
    assert isinstance(rmsprop, torch.optim.RMSprop)
    assert (rmsprop.defaults["lr"], rmsprop.defaults["alpha"], rmsprop.defaults["momentum"]) == (5e-5, 0.9, 0)
    adam = make_optimizer(parameters, make_train_config("discogan", {"root": "x"}), torch.device("cpu"))
    assert isinstance(adam, torch.optim.Adam) and adam.defaults["weight_decay"] == 1e-5 and adam.defaults["betas"] == (0.5, 0.999)
