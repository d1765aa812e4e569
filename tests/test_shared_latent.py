"""The shared-latent method: its four remedies, each on and off, and translation both ways; the
fully-shared networks see the domain in their norms (model format 3), and model files of format 2
(label maps at the input) load as they were."""

from __future__ import annotations

import dataclasses
import json
from itertools import combinations
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from gantrans import checkpoint
from gantrans.cli import app
from gantrans.errors import UsageError
from gantrans.events import Warned
from gantrans.methods import PRESETS, AdversarialConfig
from gantrans.nn import ImageDecoder, ImageEncoder
from gantrans.training import train
from gantrans.translate import Translator

from conftest import fresh_fakes, tiny_config, tiny_flags, write_domains, write_images

FIXTURES = Path(__file__).resolve().parent / "fixtures"

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
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # away from the initial weights (conditional norms start equal for every domain)
        for parameter in method.generators.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.1)
    method.eval()
    dark, bright = two_looks()
    with torch.no_grad():
        to_anime, to_real = method.translate(dark, "anime", "real"), method.translate(dark, "real", "real")
    assert to_anime.shape == dark.shape and (to_anime - to_real).abs().max() > 1e-3


@pytest.mark.parametrize("conditioning, differs", [("norm", True), ("input", False)])
def test_a_trained_fully_shared_model_translates_into_each_domain_differently(conditioning, differs, tmp_path):
    """Two steps tell the domains apart by far more than float rounding (~1e-6) with the domain in the
    norms; label maps at the input are cancelled by the first instance norm, so no training can (the
    bug that format 3 fixes: before it, into zebra, into horse and horse -> horse were all one image)."""
    domains = ("horse", "zebra")
    write_domains(tmp_path / "data", domains, 3, size=(20, 20))
    config = tiny_config(
        tmp_path / "data", tmp_path / "run", "shared-latent", steps=2, lr=1e-3, ema=0.0, fully_shared=True, label_conditioning=conditioning
    )
    cautions = [event.message for event in train(config) if isinstance(event, Warned)]
    assert any("every target gives the same image" in message for message in cautions) != differs, cautions
    translator = Translator.load(config.out, "cpu", "fp32")
    images = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        outputs = [translator.translate_tensor(images, target, source) for source in domains for target in domains]
    difference = min(float((first - second).abs().max()) for first, second in combinations(outputs, 2))
    largest = max(float((first - second).abs().max()) for first, second in combinations(outputs, 2))
    assert difference > 1e-3 if differs else largest < 1e-4, (difference, largest)


def test_label_conditioning_changes_nothing_without_fully_shared():
    """Only the fully-shared networks see the domain; per-domain networks are the same with either value
    (model files before format 3 read as "input" whether fully shared or not)."""
    norm, labels = build(label_conditioning="norm"), build(label_conditioning="input")
    assert isinstance(norm.generators["encoder_0"], ImageEncoder) and isinstance(norm.generators["decoder_1"], ImageDecoder)
    assert norm.generators.state_dict().keys() == labels.generators.state_dict().keys()
    labels.generators.load_state_dict(norm.generators.state_dict())
    norm.eval()
    labels.eval()
    with torch.no_grad():
        assert torch.equal(norm.translate(two_looks()[0], "anime"), labels.translate(two_looks()[0], "anime"))
    assert norm.cautions() == labels.cautions() == []


# --- model files of format 2 ---------------------------------------------------------------------------


def test_a_fully_shared_model_file_of_format_2_loads_and_translates_exactly_as_before():
    """tests/fixtures/shared-latent-2026-12-01.safetensors: a tiny fully-shared model (ngf 4, one block,
    photo/anime/sketch; seeded weights plus N(0, 0.1) noise) saved by the code of 2026-12-01 (format 2),
    with that code's translations of one 16x20 input from each domain into each domain in
    shared-latent-2026-12-01.expected.safetensors ("source.target")."""
    fixture = FIXTURES / "shared-latent-2026-12-01.safetensors"
    expected = load_file(str(FIXTURES / "shared-latent-2026-12-01.expected.safetensors"))
    info = checkpoint.read_model_info(fixture)
    assert (info.config.method, info.config.model.fully_shared, info.config.model.label_conditioning) == ("shared-latent", True, "input")
    translator = Translator.load(fixture, "cpu", "fp32")
    assert translator.method.generators["encoder"].model[1].in_channels == 3 + 3  # the label maps at the input
    for name, translation in expected.items():
        if name != "input":
            source, target = name.split(".")
            assert torch.allclose(translator.translate_tensor(expected["input"], target, source), translation, atol=1e-6), name


def test_only_shared_latent_model_files_before_format_3_read_as_label_maps_at_the_input():
    saved = json.loads(tiny(fully_shared=True).to_json())
    del saved["model"]["label_conditioning"]  # as formats 1 and 2 wrote it
    assert checkpoint.config_from_dict(saved, version=2).model.label_conditioning == "input"
    assert checkpoint.config_from_dict(saved, version=3).model.label_conditioning == "norm"
    saved["model"]["label_conditioning"] = "norm"
    assert checkpoint.config_from_dict(saved, version=2).model.label_conditioning == "norm"


def test_a_fully_shared_model_file_of_the_new_format_holds_the_conditional_norms(tmp_path):
    method = build(("photo", "anime", "sketch"), fully_shared=True)
    checkpoint.save_model(tmp_path / "model.safetensors", method, tiny(fully_shared=True), step=1)
    info = checkpoint.read_model_info(tmp_path / "model.safetensors")
    assert info.config.model.label_conditioning == "norm"
    shapes = checkpoint.expected_tensors(info)
    assert shapes["encoder.layers.0.conv.1.weight"][0] == (4, 3, 7, 7)  # no label channels at the input
    assert shapes["encoder.layers.0.norm.scale"][0] == (3, 4)  # one row per domain, from the first norm
    assert shapes["decoder.layers.0.norm1.shift"][0] == (3, 16)  # the decoder's residual block, 4 ngf channels


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
