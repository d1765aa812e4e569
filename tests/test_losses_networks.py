"""Loss values on known inputs; network shapes, parameter counts and reference parameter names."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gantrans import losses
from gantrans.nn import NORMS, EncoderDecoderGenerator, PatchDiscriminator, ResnetGenerator, init_weights, norm_layer

REAL, FAKE = torch.tensor([2.0, 0.0]), torch.tensor([-1.0, 1.0])


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


@pytest.mark.parametrize(
    "kind, d_loss, g_loss",
    [
        # E[(D(x)-1)^2] + E[D(G(z))^2] = (1+1)/2 + (1+1)/2 ; G: E[(D(G(z))-1)^2] = (4+0)/2
        ("lsgan", 2.0, 2.0),
        # -log sigmoid(s) = softplus(-s); -log(1 - sigmoid(s)) = softplus(s)
        ("nonsaturating", (softplus(-2) + softplus(0)) / 2 + (softplus(-1) + softplus(1)) / 2, (softplus(1) + softplus(-1)) / 2),
        ("wgan", 0.0 - 1.0, 0.0),  # E[D(G(z))] - E[D(x)] ; G: -E[D(G(z))]
        ("wgan-gp", -1.0, 0.0),
        ("hinge", (0 + 1) / 2 + (0 + 2) / 2, 0.0),  # E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]
    ],
)
def test_gan_objectives_on_known_scores(kind, d_loss, g_loss):
    assert losses.discriminator_adversarial_loss(kind, REAL, FAKE).item() == pytest.approx(d_loss)
    assert losses.generator_adversarial_loss(kind, FAKE).item() == pytest.approx(g_loss)


def test_perfect_discriminator_has_zero_lsgan_and_hinge_loss():
    assert losses.discriminator_adversarial_loss("lsgan", torch.ones(4), torch.zeros(4)).item() == 0
    assert losses.discriminator_adversarial_loss("hinge", torch.full((4,), 1.5), torch.full((4,), -1.5)).item() == 0


def test_unknown_objective_is_refused():
    with pytest.raises(ValueError, match="unknown GAN loss 'magic'"):
        losses.generator_adversarial_loss("magic", FAKE)


def test_gradient_penalty_is_zero_for_a_unit_gradient_critic():
    weight = torch.zeros(1, 3, 2, 2)
    weight[0, 0, 0, 0] = 1.0  # d(score)/d(input) has norm exactly 1
    critic = lambda images: F.conv2d(images, weight).flatten(1).sum(1)  # noqa: E731
    real, fake = torch.rand(4, 3, 2, 2), torch.rand(4, 3, 2, 2)
    assert losses.gradient_penalty(critic, real, fake).item() == pytest.approx(0.0, abs=1e-12)
    steep = lambda images: 3 * critic(images)  # noqa: E731  gradient norm 3: penalty (3 - 1)^2
    assert losses.gradient_penalty(steep, real, fake).item() == pytest.approx(4.0)


def test_r1_penalty_is_the_squared_gradient_norm_on_real_images():
    critic = lambda images: 2 * images.flatten(1).sum(1)  # noqa: E731  gradient 2 everywhere
    assert losses.r1_penalty(critic, torch.rand(3, 1, 2, 2)).item() == pytest.approx(4 * 4)  # 4 pixels x 2^2


def test_cycle_and_identity_losses_are_mean_absolute_error():
    a, b = torch.zeros(1, 3, 2, 2), torch.full((1, 3, 2, 2), 0.5)
    assert losses.cycle_loss(a, b).item() == 0.5 and losses.identity_loss(b, b).item() == 0


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_match_the_reference_networks():
    assert count(ResnetGenerator(ngf=64, n_blocks=9)) == 11_378_179
    assert count(PatchDiscriminator(ndf=64, n_layers=3)) == 2_764_737


@pytest.mark.parametrize("n_blocks, upsampling", [(9, (19, 22, 26)), (6, (16, 19, 23))])
def test_generator_parameter_names_follow_the_reference_layout(n_blocks, upsampling):
    names = set(ResnetGenerator(ngf=4, n_blocks=n_blocks).state_dict())
    expected = {
        "model.1.weight",
        "model.4.weight",
        "model.7.weight",
        f"model.{upsampling[0]}.weight",
        f"model.{upsampling[1]}.weight",
        f"model.{upsampling[2]}.bias",
    }
    expected |= {f"model.{10 + block}.conv_block.{conv}.weight" for block in range(n_blocks) for conv in (1, 5)}
    assert expected <= names and not any("running" in name for name in names)


@pytest.mark.parametrize("upsample", ["transpose", "resize"])
@pytest.mark.parametrize("height, width", [(16, 16), (24, 40)])
def test_generator_keeps_the_image_size_and_range(upsample, height, width):
    output = ResnetGenerator(ngf=4, n_blocks=2, upsample=upsample)(torch.rand(2, 3, height, width) * 2 - 1)
    assert output.shape == (2, 3, height, width) and output.abs().max() <= 1


def test_patch_discriminator_sees_70x70_patches_on_a_30x30_map():
    assert PatchDiscriminator(ndf=4, n_layers=3)(torch.rand(1, 3, 256, 256)).shape == (1, 1, 30, 30)


def test_spectral_norm_bounds_the_largest_singular_value():
    torch.manual_seed(0)
    discriminator = init_weights(PatchDiscriminator(ndf=4, n_layers=2), gain=1.0).use_spectral_norm()
    for _ in range(20):  # power iteration runs once per forward pass in training mode
        discriminator(torch.rand(1, 3, 32, 32))
    conv = discriminator.model[2]
    assert hasattr(conv, "parametrizations")
    sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2)
    assert sigma.item() == pytest.approx(1.0, abs=0.05)


def test_init_is_normal_with_small_std_and_zero_bias():
    torch.manual_seed(0)
    generator = init_weights(ResnetGenerator(ngf=16, n_blocks=1), gain=0.02)
    weight = generator.model[1].weight
    assert abs(weight.std().item() - 0.02) < 0.003 and generator.model[1].bias.abs().max() == 0


def test_l2_cycle_loss_is_the_mean_squared_error():
    reconstructed, original = torch.tensor([[1.0, -1.0]]), torch.tensor([[0.0, 1.0]])
    assert losses.cycle_loss(reconstructed, original, "l2").item() == pytest.approx((1 + 4) / 2)
    assert losses.cycle_loss(reconstructed, original).item() == pytest.approx((1 + 2) / 2)
    with pytest.raises(ValueError):
        losses.cycle_loss(reconstructed, original, "l3")


def test_feature_matching_compares_batch_means_per_layer():
    real = [torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.ones(3, 1)]  # batch means (2, 3) and (1)
    fake = [torch.tensor([[0.0, 3.0], [2.0, 3.0]]), torch.zeros(3, 1)]  # batch means (1, 3) and (0)
    assert losses.feature_matching_loss(real, fake).item() == pytest.approx((1 + 0) / 2 + 1)
    shuffled = [real[0].flip(0), real[1]]  # only the batch statistics matter, not which image is which
    assert losses.feature_matching_loss(real, shuffled).item() == 0


def test_unet_has_pix2pix_unet_256_size_and_keeps_the_image_size():
    unet = EncoderDecoderGenerator(ngf=64, depth=8, skip_connections=True, norm="batch")
    # pix2pix's unet_256 has 54,413,955 parameters; ours adds biases to the two un-normalised encoder convolutions.
    assert sum(p.numel() for p in unet.parameters()) == 54_413_955 + 64 + 512
    assert unet.stride == unet.min_side == 256
    small = EncoderDecoderGenerator(ngf=4, depth=3, norm="instance-affine")
    output = small(torch.rand(2, 3, 24, 16) * 2 - 1)
    assert output.shape == (2, 3, 24, 16) and output.abs().max() <= 1


def test_skip_connections_carry_detail_past_the_bottleneck():
    """A U-Net's output depends on each input pixel through its skips; an encoder-decoder's only
    through the 1x1 code, which its outermost layer cannot reach when the bottleneck is zeroed."""
    torch.manual_seed(0)
    for skips in (True, False):
        generator = init_weights(EncoderDecoderGenerator(ngf=4, depth=3, skip_connections=skips, norm="none"), 0.5)
        with torch.no_grad():
            generator.encoders[-1].weight.zero_()
            generator.encoders[-1].bias.zero_()
        images = torch.rand(1, 3, 8, 8)
        changed = images.clone()
        changed[..., 0, 0] += 1
        assert torch.equal(generator(images), generator(changed)) is not skips


def test_dropout_is_noise_in_training_and_off_in_evaluation():
    generator = EncoderDecoderGenerator(ngf=4, depth=3, norm="instance-affine", dropout=0.5)
    images = torch.rand(2, 3, 16, 16)
    assert not torch.equal(generator(images), generator(images))
    generator.eval()
    assert torch.equal(generator(images), generator(images))


@pytest.mark.parametrize("dcgan, n_layers, min_side", [(False, 3, 24), (False, 2, 12), (True, 3, 64), (True, 1, 16)])
def test_discriminators_report_the_smallest_side_they_accept(dcgan, n_layers, min_side):
    discriminator = PatchDiscriminator(ndf=4, n_layers=n_layers, dcgan=dcgan)
    assert discriminator.min_side == min_side
    scores, features = discriminator.scores_and_features(torch.rand(2, 3, min_side, min_side))
    assert scores.shape == (2, 1, 1, 1) and len(features) == n_layers
    with pytest.raises((RuntimeError, ValueError)):  # a map too small for a kernel or a norm
        discriminator(torch.rand(2, 3, min_side - 1, min_side - 1))


def test_dcgan_discriminator_scores_one_value_per_64px_image_and_patches_beyond():
    discriminator = PatchDiscriminator(ndf=4, n_layers=3, dcgan=True)
    assert discriminator(torch.rand(1, 3, 64, 64)).shape == (1, 1, 1, 1)
    assert discriminator(torch.rand(1, 3, 128, 128)).shape == (1, 1, 5, 5)


@pytest.mark.parametrize("kind", NORMS)
def test_every_norm_builds_and_batch_norm_keeps_running_statistics(kind):
    layer = norm_layer(kind, 3)
    assert layer(torch.rand(2, 3, 4, 4)).shape == (2, 3, 4, 4)
    assert ("running_mean" in layer.state_dict()) == (kind == "batch")


def test_colour_skip_lets_an_instance_norm_generator_see_overall_tone():
    # Instance norm after the first convolution removes a constant colour shift of the whole input, so
    # the plain generator cannot tell a dark image from a bright one; the colour skip carries it past.
    torch.manual_seed(0)
    image = torch.rand(1, 3, 16, 16) * 0.5 - 0.5
    brighter = image + 0.4
    plain = init_weights(ResnetGenerator(ngf=4, n_blocks=1)).eval()
    skipped = init_weights(ResnetGenerator(ngf=4, n_blocks=1, colour_skip=True)).eval()
    with torch.no_grad():
        assert torch.allclose(plain(image), plain(brighter), atol=1e-5)
        assert (skipped(brighter) - skipped(image)).abs().mean() > 1e-3
        assert skipped(image).shape == image.shape and skipped(image).abs().max() <= 1
    assert set(dict(skipped.named_parameters())) - set(dict(plain.named_parameters())) == {"colour_skip.weight", "colour_skip.bias"}
