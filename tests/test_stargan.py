"""StarGAN's generator sees its target domain: conditional instance norms (what they compute, under
autocast, with hooks on their instance norm, compiled), trained models that translate into each
target differently, and model files of format 2 (label maps at the input) that load as they were."""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from gantrans import checkpoint
from gantrans.events import Warned
from gantrans.nn import ConditionalInstanceNorm2d, ConditionalResnetGenerator, ResnetGenerator
from gantrans.nn.norm import InstanceNorm2d
from gantrans.training import train
from gantrans.translate import Translator

from conftest import invoke, tiny_config, write_domains

FIXTURES = Path(__file__).resolve().parent / "fixtures"
DOMAINS = ("black", "blond", "brown")


def largest_difference_between_targets(translate, images: torch.Tensor) -> float:
    """The largest difference between the translations of `images` into two of DOMAINS."""
    with torch.no_grad():
        outputs = [translate(images, domain) for domain in DOMAINS]
    return max(float((first - second).abs().max()) for first, second in combinations(outputs, 2))


def random_norm(channels: int = 4, conditions: int = 3) -> ConditionalInstanceNorm2d:
    norm = ConditionalInstanceNorm2d(channels, conditions)
    with torch.no_grad():
        norm.scale.copy_(torch.rand(conditions, channels) + 0.5)
        norm.shift.copy_(torch.randn(conditions, channels))
    return norm


# --- the conditional norm ------------------------------------------------------------------------------


def test_conditional_norm_scales_and_shifts_an_instance_norm_by_the_condition():
    torch.manual_seed(0)
    norm, features = random_norm(), torch.randn(2, 4, 5, 6) * 3 + 2
    conditions = F.one_hot(torch.tensor([2, 0]), 3).float()
    expected = F.instance_norm(features) * norm.scale[[2, 0], :, None, None] + norm.shift[[2, 0], :, None, None]
    assert torch.allclose(norm(features, conditions), expected, atol=1e-5)
    fresh = ConditionalInstanceNorm2d(4, 3)  # scale 1, shift 0: training starts from a plain instance norm
    assert torch.equal(fresh(features, conditions), InstanceNorm2d(4)(features))


def test_hooks_on_instance_norms_see_the_features_before_normalisation_and_can_replace_the_result():
    """How tiled translation fixes statistics across tiles: hooks on every InstanceNorm2d module.
    The conditional norm calls its own InstanceNorm2d on the features alone, then scales and shifts."""
    torch.manual_seed(0)
    norm, features = random_norm(), torch.randn(1, 4, 5, 6)
    conditions = F.one_hot(torch.tensor([1]), 3).float()
    inner = [module for module in norm.modules() if isinstance(module, InstanceNorm2d)]
    assert len(inner) == 1 and not inner[0].affine
    seen = []
    inner[0].register_forward_pre_hook(lambda module, args: seen.append(args))
    inner[0].register_forward_hook(lambda module, args, output: torch.zeros_like(output))  # a replaced normalisation
    output = norm(features, conditions)
    assert len(seen) == 1 and len(seen[0]) == 1 and torch.equal(seen[0][0], features)
    assert torch.allclose(output, norm.shift[1, :, None, None].expand_as(output))  # the shift still applies


def test_conditional_norm_runs_in_fp32_under_bf16_autocast():
    torch.manual_seed(0)
    norm = random_norm()
    features = torch.randn(2, 4, 8, 8) * 0.1 + 40  # mean large against the spread: bf16 statistics would lose it
    conditions = F.one_hot(torch.tensor([0, 2]), 3).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = norm(features.bfloat16(), conditions)
    assert output.dtype == torch.bfloat16
    expected = norm(features.bfloat16().float(), conditions)
    assert (output.float() - expected).abs().max() < 0.05  # bf16 rounding of the result only


@pytest.mark.slow
def test_conditional_generator_compiles_into_one_graph():
    torch.manual_seed(0)
    generator = ConditionalResnetGenerator(3, ngf=4, n_blocks=1).eval()
    images, conditions = torch.rand(2, 3, 16, 16) * 2 - 1, F.one_hot(torch.tensor([0, 2]), 3).float()
    compiled = torch.compile(generator, backend="aot_eager", fullgraph=True)  # a graph break is an error
    with torch.no_grad():
        assert torch.allclose(compiled(images, conditions), generator(images, conditions), atol=1e-6)


# --- trained models ------------------------------------------------------------------------------------


@pytest.mark.parametrize("conditioning, differs", [("norm", True), ("input", False)])
def test_a_trained_generator_translates_into_each_target_differently(conditioning, differs, tmp_path):
    """Two steps are enough to tell the targets apart by far more than float rounding (~1e-6) with
    the target in the norms; label maps at the input are cancelled by the first instance norm, so no
    training can (this is the bug that format 3 fixes)."""
    write_domains(tmp_path / "data", DOMAINS, 3, size=(20, 20))
    config = tiny_config(
        tmp_path / "data", tmp_path / "run", "stargan", steps=2, n_critic=1, lr=1e-3, ema=0.0, label_conditioning=conditioning
    )
    cautions = [event.message for event in train(config) if isinstance(event, Warned)]
    assert any("every target gives the same image" in message for message in cautions) != differs, cautions
    translator = Translator.load(config.out, "cpu", "fp32")
    difference = largest_difference_between_targets(translator.translate_tensor, torch.rand(1, 3, 16, 16) * 2 - 1)
    assert difference > 1e-3 if differs else difference < 1e-4, difference


def test_new_runs_condition_the_norms_and_a_config_file_without_the_setting_does_too(tmp_path):
    (tmp_path / "data").mkdir()
    assert (
        json.loads(invoke("train", "--method", "stargan", "--data", str(tmp_path / "data"), "--dry-run").stdout)["model"][
            "label_conditioning"
        ]
        == "norm"
    )
    # A config file written before format 3 (no such setting) trains a new run: today's default.
    old = {"method": "stargan", "preset": "stargan", "data": {"root": str(tmp_path / "data")}, "model": {"ngf": 8}}
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert json.loads(invoke("train", "--config", str(tmp_path / "old.json"), "--dry-run").stdout)["model"]["label_conditioning"] == "norm"


# --- model files of format 2 ---------------------------------------------------------------------------


def test_a_stargan_model_file_of_format_2_loads_and_translates_exactly_as_before():
    """tests/fixtures/stargan-2026-12-01.safetensors: a tiny StarGAN (ngf 4, one block; seeded weights
    plus N(0, 0.1) noise) saved by the code of 2026-12-01 (format 2), with that code's translations of
    one 16x20 input into each domain in stargan-2026-12-01.expected.safetensors."""
    fixture = FIXTURES / "stargan-2026-12-01.safetensors"
    expected = load_file(str(FIXTURES / "stargan-2026-12-01.expected.safetensors"))
    info = checkpoint.read_model_info(fixture)
    assert (info.config.method, info.config.model.ngf, info.domains) == ("stargan", 4, DOMAINS)
    assert info.config.model.label_conditioning == "input"
    translator = Translator.load(fixture, "cpu", "fp32")
    assert isinstance(translator.method.generators["generator"], ResnetGenerator)
    for domain in DOMAINS:
        assert torch.allclose(translator.translate_tensor(expected["input"], domain), expected[domain], atol=1e-6), domain


def test_only_model_files_before_format_3_read_as_label_maps_at_the_input():
    saved = json.loads(tiny_config(Path("data"), Path("run"), "stargan").to_json())
    del saved["model"]["label_conditioning"]  # as formats 1 and 2 wrote it
    assert checkpoint.config_from_dict(saved, version=2).model.label_conditioning == "input"
    assert checkpoint.config_from_dict(saved, version=3).model.label_conditioning == "norm"
    saved["model"]["label_conditioning"] = "norm"
    assert checkpoint.config_from_dict(saved, version=3).model.label_conditioning == "norm"


def test_a_model_file_of_the_new_format_says_so_and_holds_the_conditional_norms(tmp_path):
    config = tiny_config(tmp_path / "data", tmp_path / "run", "stargan")
    method = checkpoint.build_method(config, DOMAINS, training=False)
    checkpoint.save_model(tmp_path / "model.safetensors", method, config, step=1)
    info = checkpoint.read_model_info(tmp_path / "model.safetensors")
    assert info.config.model.label_conditioning == "norm" and checkpoint.FORMAT_VERSION == 3
    shapes = checkpoint.expected_tensors(info)
    assert shapes["generator.blocks.0.norm1.scale"][0] == (3, 16)  # one row per domain, 4 ngf channels
    assert shapes["generator.encoder.1.weight"][0] == (4, 3, 7, 7)  # no label channels at the input
