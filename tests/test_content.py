"""What keeps content: CUT's PatchNCE, FastCUT's flips, and cycle noise (applied inside the cycle only)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from gantrans import losses
from gantrans.errors import UsageError
from gantrans.methods import CUT, PRESETS, AdversarialConfig, CUTConfig, CycleGAN, SharedLatent
from gantrans.nn import ResnetGenerator

TINY_CUT = CUTConfig(ngf=4, adversarial=AdversarialConfig(ndf=4, n_layers_d=2), n_blocks=1, nce_layers=(0, 4, 7, 10), num_patches=16)


def images(seed: int, count: int = 2, size: int = 16) -> torch.Tensor:
    return torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_patch_nce_prefers_the_patch_at_the_same_place():
    unit = torch.nn.functional.normalize(torch.randn(2, 32, 8, generator=torch.Generator().manual_seed(0)), dim=-1)
    shuffled = unit[:, torch.randperm(32, generator=torch.Generator().manual_seed(1))]
    assert losses.patch_nce_loss(unit, unit, 0.07) < 0.1 < losses.patch_nce_loss(unit, shuffled, 0.07)
    # With every key the same, nothing tells the positive apart: the loss is log(number of patches).
    same_key = torch.nn.functional.normalize(torch.ones(1, 32, 8), dim=-1)
    assert torch.isclose(losses.patch_nce_loss(same_key, same_key, 0.07), torch.log(torch.tensor(32.0)))


def test_patch_nce_of_an_image_against_itself_is_lower_than_against_a_shuffled_image():
    method = CUT(TINY_CUT, ("x", "y"))
    real = images(0)
    # The same pixels in a shuffled arrangement: same colours, other content at every location.
    shuffled = real.flatten(2)[:, :, torch.randperm(256, generator=torch.Generator().manual_seed(2))].view_as(real)
    with torch.no_grad():
        itself, other = method.patch_nce(real, real), method.patch_nce(real, shuffled)
    assert itself < other
    assert itself < torch.log(torch.tensor(16.0)) < other  # better than chance among 16 patches; worse for the shuffle


def test_encoder_features_are_the_generators_own_layers():
    generator = ResnetGenerator(ngf=4, n_blocks=2)
    real = images(3)
    features = generator.encode(real, (0, 4, 7, 10))
    assert [f.shape[1] for f in features] == [3, 8, 16, 16] == [generator.layer_channels(layer) for layer in (0, 4, 7, 10)]
    assert features[0].shape[-1] == 16 + 6  # layer 0 is the reflection-padded input
    assert torch.equal(features[-1], generator.model[:11](real))


def test_projection_heads_are_trained_with_the_generator_but_not_part_of_it():
    method = CUT(TINY_CUT, ("x", "y"))
    batch = (images(4), images(5))
    method.generator_loss(batch, 0).total.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.auxiliary["projection"].parameters())
    assert not any(name.startswith("projection") for name in method.generators.state_dict())
    inference = CUT(TINY_CUT, ("x", "y"), training=False)
    assert len(inference.auxiliary) == 0 and len(inference.discriminators) == 0


def test_cut_and_fastcut_presets_follow_the_paper():
    cut, fastcut = PRESETS["cut"], PRESETS["fastcut"]
    assert (cut.model.nce_identity, cut.model.lambda_nce, cut.model.flip_equivariance) == (True, 1.0, False)
    assert (fastcut.model.nce_identity, fastcut.model.lambda_nce, fastcut.model.flip_equivariance) == (False, 10.0, True)
    assert (cut.epochs, cut.decay_epochs, fastcut.epochs, fastcut.decay_epochs) == (200, 200, 150, 50)
    assert cut.model.num_patches == 256 and cut.model.nce_temperature == 0.07 and cut.model.adversarial.gan_loss == "lsgan"
    with torch.no_grad():
        terms = (
            CUT(
                dataclasses.replace(
                    fastcut.model, **{k: getattr(TINY_CUT, k) for k in ("ngf", "adversarial", "n_blocks", "nce_layers", "num_patches")}
                ),
                ("x", "y"),
            )
            .generator_loss((images(6), images(7)), 0)
            .terms
        )
    assert set(terms) == {"adv", "nce"}  # no identity term in FastCUT


def test_fastcut_flips_about_half_of_the_steps_and_compares_in_the_inputs_orientation(monkeypatch):
    method = CUT(dataclasses.replace(TINY_CUT, flip_equivariance=True, nce_identity=False), ("x", "y"))
    seen = []
    original = method.patch_nce
    monkeypatch.setattr(
        method, "patch_nce", lambda source, output, flipped=False: seen.append(flipped) or original(source, output, flipped)
    )
    with torch.no_grad():
        for step in range(40):
            method.generator_loss((images(8), images(9)), step)
    assert 8 <= sum(seen) <= 32
    # A generator that mirrors exactly what it is given: flipped back, its features match the input's.
    real = images(10)
    with torch.no_grad():
        mirrored_back = method.patch_nce(real, real.flip(3), flipped=True)
        unflipped = method.patch_nce(real, real.flip(3), flipped=False)
    assert mirrored_back < unflipped


def test_nce_layers_must_lie_in_the_encoder():
    with pytest.raises(UsageError, match="--nce-layers must be distinct ascending generator layers from 0 to 10"):
        CUTConfig(n_blocks=1, nce_layers=(0, 4, 14))
    with pytest.raises(UsageError, match="--nce-layers"):
        CUTConfig(nce_layers=(4, 0))
    with pytest.raises(UsageError, match="--nce-temperature must be positive"):
        CUTConfig(nce_temperature=0.0)


def test_cut_translates_one_way_only():
    method = CUT(TINY_CUT, ("horse", "zebra"), training=False).eval()
    assert method.translate(images(11), "zebra").shape == (2, 3, 16, 16)
    with pytest.raises(UsageError, match="cut translates horse -> zebra only"):
        method.translate(images(11), "horse")


# -- cycle noise --------------------------------------------------------------------------------------


def cyclegan(cycle_noise: float) -> CycleGAN:
    config = dataclasses.replace(
        PRESETS["cyclegan"].model,
        ngf=4,
        adversarial=AdversarialConfig(ndf=4, n_layers_d=2),
        n_blocks=1,
        pool_size=0,
        cycle_noise=cycle_noise,
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return CycleGAN(config, ("x", "y"))


def test_cycle_noise_is_applied_inside_the_cycle_only():
    clean, noisy = cyclegan(0.0), cyclegan(0.5)
    noisy.load_state_dict(clean.state_dict())
    batch = (images(12), images(13))
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(1)
        clean_losses, noisy_losses = clean.generator_loss(batch, 0), noisy.generator_loss(batch, 0)
        clean_samples, noisy_samples = clean.samples(batch), noisy.samples(batch)
    # The translations (shown to the discriminators, written as samples, translated) are the same ...
    assert all(torch.equal(clean_losses.fakes[name], noisy_losses.fakes[name]) for name in ("fake_x", "fake_y"))
    assert all(torch.equal(clean_samples[name], noisy_samples[name]) for name in clean_samples)
    assert torch.equal(clean.translate(batch[0], "y"), noisy.translate(batch[0], "y"))
    assert torch.equal(clean_losses.terms["adv_xy"], noisy_losses.terms["adv_xy"])
    # ... and only what is translated back is not.
    assert not torch.equal(clean_losses.terms["cycle_x"], noisy_losses.terms["cycle_x"])
    assert not torch.equal(clean_losses.terms["cycle_y"], noisy_losses.terms["cycle_y"])


def test_cycle_noise_reaches_the_shared_latent_cycle_only():
    config = dataclasses.replace(
        PRESETS["shared-latent"].model, ngf=4, adversarial=AdversarialConfig(ndf=4, n_layers_d=2), n_blocks=1, shared_layers=1
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        clean = SharedLatent(config, ("x", "y"))
    noisy = SharedLatent(dataclasses.replace(config, cycle_noise=0.5), ("x", "y"))
    noisy.load_state_dict(clean.state_dict())
    clean.eval(), noisy.eval()  # no VAE sampling: only the cycle noise differs
    batch = (images(14), images(15))
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(2)
        a, b = clean.generator_loss(batch, 0), noisy.generator_loss(batch, 0)
    assert all(torch.equal(a.terms[name], b.terms[name]) for name in ("rec", "adv", "semantic"))
    assert not torch.equal(a.terms["cycle"], b.terms["cycle"])
    with pytest.raises(UsageError, match="--cycle-noise must be >= 0"):
        dataclasses.replace(config, cycle_noise=-1.0)


def test_the_trainer_trains_and_keeps_the_heads_in_the_training_state_only(tiny_data, tmp_path):
    from safetensors.torch import load_file

    from gantrans import checkpoint
    from gantrans.training import train

    from conftest import tiny_config

    config = tiny_config(tiny_data, tmp_path / "run", "cut", nce_layers=(0, 4, 7, 10), num_patches=16, steps=3)
    list(train(config))
    state, model = (load_file(str(tmp_path / "run" / name)) for name in (checkpoint.STATE_FILE, checkpoint.MODEL_FILE))
    heads = {name: tensor for name, tensor in state.items() if name.startswith("auxiliary.projection.")}
    assert heads and not any("projection" in name for name in model)
    with torch.random.fork_rng():  # the heads as the trainer built them, from the run's seed
        torch.manual_seed(config.seed)
        initial = CUT(config.model, ("horse", "zebra"))
    assert any(not torch.equal(tensor, initial.auxiliary.state_dict()[name.removeprefix("auxiliary.")]) for name, tensor in heads.items())
