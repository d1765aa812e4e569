"""The shared-latent method: its four remedies, each on and off, and translation both ways."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from gantrans import checkpoint
from gantrans.cli import app
from gantrans.errors import UsageError
from gantrans.methods import PRESETS, AdversarialConfig
from gantrans.translate import Translator

from conftest import fresh_fakes, tiny_flags, write_images

TINY = {"ngf": 4, "n_blocks": 2}


def tiny(gan_loss: str = "lsgan", **settings):
    adversarial = AdversarialConfig(ndf=4, n_layers_d=2, gan_loss=gan_loss)
    model = dataclasses.replace(PRESETS["shared-latent"].model, adversarial=adversarial, **{**TINY, **settings})
    return dataclasses.replace(PRESETS["shared-latent"], model=model)


def build(domains=("real", "anime"), **settings):
    return checkpoint.build_method(tiny(**settings), domains, training=True, seed=0)


def two_looks(count: int = 2, side: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Dark images and bright images: domains a classifier tells apart at once."""
    generator = torch.Generator().manual_seed(0)
    dark = torch.rand(count, 3, side, side, generator=generator) * 0.5 - 1
    bright = torch.rand(count, 3, side, side, generator=generator) * 0.5 + 0.5
    return dark, bright


def test_default_uses_all_four_remedies_and_a_vae_gan_per_domain():
    method = build()
    assert {"shared_encoder", "shared_decoder"} <= set(method.generators)
    assert set(method.discriminators) == {"discriminator_0", "discriminator_1", "latent_discriminator"}
    terms = method.generator_loss(two_looks(), 0).terms
    assert set(terms) == {"rec", "adv", "kl", "cycle", "semantic", "latent"}
    assert set(method.discriminator_loss(two_looks(), fresh_fakes(method, two_looks())).terms) == {"d_image", "d_latent"}


@pytest.mark.parametrize(
    "setting, value, term, module",
    [
        ("shared_layers", 0, None, "shared_encoder"),
        ("latent_adversary", "off", "latent", "latent_discriminator"),
        ("lambda_cycle", 0.0, "cycle", None),
        ("lambda_semantic", 0.0, "semantic", None),
        ("vae", False, "kl", None),
    ],
)
def test_each_remedy_switches_off(setting, value, term, module):
    method = build(**{setting: value})
    modules = set(method.generators) | set(method.discriminators)
    assert module is None or (module in set(build().generators) | set(build().discriminators) and module not in modules)
    terms = method.generator_loss(two_looks(), 0).terms
    assert term is None or term not in terms
    assert all(torch.isfinite(value) for value in terms.values())


def test_shared_layers_are_one_set_of_parameters():
    """An update driven by domain 0's path alone moves domain 1's path through the shared blocks."""
    images, _ = two_looks()
    for shared_layers, moves in ((1, True), (0, False)):
        method = build(shared_layers=shared_layers)
        before = method.encode(images, 1).detach()
        method.encode(images, 0).pow(2).mean().backward()
        assert all(p.grad is None for p in method.generators["encoder_1"].parameters())
        torch.optim.SGD(method.generators.parameters(), lr=0.5).step()
        assert (not torch.equal(before, method.encode(images, 1))) is moves


@pytest.mark.parametrize("kind", ["confusion", "reversal"])
def test_latent_loss_moves_the_encoders_to_confuse_the_latent_discriminator(kind):
    only_latent = {"lambda_adversarial": 0.0, "lambda_rec": 0.0, "lambda_cycle": 0.0, "lambda_semantic": 0.0, "vae": False}
    method = build(latent_adversary=kind, **only_latent)
    batch = two_looks(4)
    optimizer = torch.optim.Adam(method.discriminators["latent_discriminator"].parameters(), lr=1e-2)
    for _ in range(30):  # first the classifier learns to tell the domains' codes apart
        method.zero_grad()
        method.discriminator_loss(batch, fresh_fakes(method, batch)).total.backward()
        optimizer.step()
    classifier_loss = lambda: float(method.discriminator_loss(batch, fresh_fakes(method, batch)).terms["d_latent"])  # noqa: E731
    before = classifier_loss()
    method.discriminators.requires_grad_(False)
    method.generator_loss(batch, 0).total.backward()
    torch.optim.SGD(method.generators.parameters(), lr=0.05).step()
    assert classifier_loss() > before


def test_fully_shared_networks_translate_both_ways_from_the_domain_label():
    method = build(fully_shared=True)
    assert set(method.generators) == {"encoder", "decoder"}
    method.eval()
    dark, bright = two_looks()
    with torch.no_grad():
        to_anime, to_real = method.translate(dark, "anime", "real"), method.translate(dark, "real", "real")
    assert to_anime.shape == dark.shape and not torch.equal(to_anime, to_real)


def test_vae_samples_codes_in_training_and_uses_their_means_to_translate():
    method = build()
    batch = two_looks()
    assert not torch.equal(method.generator_loss(batch, 0).total, method.generator_loss(batch, 0).total)
    method.eval()
    with torch.no_grad():
        assert torch.equal(method.translate(batch[0], "anime"), method.translate(batch[0], "anime"))


def test_three_domains_train_and_need_the_source_named(tmp_path):
    method = build(("real", "anime", "sketch"), gan_loss="wgan-gp")
    batch = two_looks(2) + (torch.rand(2, 3, 16, 16),)
    for seed in range(4):  # some steps send two sources into one target: their fakes outnumber its reals
        method.rng.manual_seed(seed)
        losses = method.generator_loss(batch, 0)
        assert torch.isfinite(losses.total) and torch.isfinite(method.discriminator_loss(batch, losses.fakes).total)
    checkpoint.save_model(tmp_path / checkpoint.MODEL_FILE, method, tiny(), step=1)
    translator = Translator.load(tmp_path, device="cpu")
    with pytest.raises(UsageError, match="name the input's with --from"):
        translator.translate_tensor(torch.rand(1, 3, 16, 16), "anime")
    assert translator.translate_tensor(torch.rand(1, 3, 16, 16), "anime", "sketch").shape == (1, 3, 16, 16)
    with pytest.raises(UsageError, match="unknown source domain 'cartoon'"):
        translator.translate_tensor(torch.rand(1, 3, 16, 16), "anime", "cartoon")


def test_cli_trains_and_translates_both_ways(tmp_path):
    write_images(tmp_path / "data" / "anime", 3, size=(20, 20), seed=1)
    write_images(tmp_path / "data" / "real", 4, size=(20, 20), seed=2)
    runner = CliRunner()
    sizes = tiny_flags(n_blocks=2, workers=None)
    result = runner.invoke(
        app,
        ["train", "--method", "shared-latent", "--data", str(tmp_path / "data"), *sizes, "--steps", "3", "--out", str(tmp_path / "run")],
    )
    assert result.exit_code == 0, result.stderr
    image = write_images(tmp_path / "in", 1, size=(23, 17))[0]
    for target, source in (("anime", "real"), ("real", "anime")):
        result = runner.invoke(
            app, ["translate", str(image), "--to", target, "--model", str(tmp_path / "run"), "--out", str(tmp_path / "out")]
        )
        assert result.exit_code == 0, result.stderr
        assert f"translating from {source} into {target}" in result.stderr
        assert Path(result.stdout.strip()).name == f"img_000.{target}.png"
    result = runner.invoke(
        app,
        [
            "translate",
            str(image),
            "--to",
            "all",
            "--grid",
            "--from",
            "anime",
            "--model",
            str(tmp_path / "run"),
            "--out",
            str(tmp_path / "out2"),
        ],
    )
    assert result.exit_code == 0 and "translating from" not in result.stderr
    assert [Path(p).name for p in result.stdout.split()] == ["img_000.anime.png", "img_000.real.png", "img_000.grid.png"]
    result = runner.invoke(app, ["translate", str(image), "--to", "all", "--model", str(tmp_path / "run"), "--out", str(tmp_path / "out3")])
    assert (
        result.exit_code == 2
        and result.stderr.strip()
        == "gantrans: error: --to all needs --from here: this model translates from a named domain, and the inputs can't be all of them"
    )


def test_help_shows_every_remedy():
    help_text = " ".join(CliRunner().invoke(app, ["train", "--help"]).stdout.split())
    for flag in ("--shared-layers", "--fully-shared", "--latent-adversary", "--lambda-cycle", "--lambda-semantic", "--vae"):
        assert flag in help_text
