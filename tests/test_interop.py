"""Import of generators saved by other projects: the reference CycleGAN project's `latest_net_G_*.pth`,
and networks under other names, prefixes and checkpoint nesting, recognised by shapes and order.

The source networks here are written in the tests, independently of gantrans.nn, as other projects
write them; an import passes when the gantrans model computes what the source module computes.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gantrans import checkpoint
from gantrans.errors import GantransError, UsageError
from gantrans.interop import Architecture, import_generators, recognise
from gantrans.nn import ResnetGenerator
from gantrans.translate import Translator

from conftest import assert_one_line_error, invoke


def reference_forward(state: dict[str, torch.Tensor], images: torch.Tensor, n_blocks: int) -> torch.Tensor:
    """The reference resnet generator computed straight from its state-dict keys (written independently
    of gantrans.nn): c7s1 - two stride-2 convs - residual blocks - two transposed convs - c7s1 - tanh."""

    def conv(x, key, stride=1, padding=0, reflect=0):
        if reflect:
            x = F.pad(x, (reflect,) * 4, mode="reflect")
        return F.conv2d(x, state[f"{key}.weight"], state[f"{key}.bias"], stride=stride, padding=padding)

    def norm_relu(x):
        return F.relu(F.instance_norm(x, eps=1e-5))

    x = norm_relu(conv(images, "model.1", reflect=3))
    x = norm_relu(conv(x, "model.4", stride=2, padding=1))
    x = norm_relu(conv(x, "model.7", stride=2, padding=1))
    for block in range(10, 10 + n_blocks):
        y = norm_relu(conv(x, f"model.{block}.conv_block.1", reflect=1))
        x = x + F.instance_norm(conv(y, f"model.{block}.conv_block.5", reflect=1), eps=1e-5)
    first_up = 10 + n_blocks
    for key in (f"model.{first_up}", f"model.{first_up + 3}"):
        x = norm_relu(F.conv_transpose2d(x, state[f"{key}.weight"], state[f"{key}.bias"], stride=2, padding=1, output_padding=1))
    return torch.tanh(conv(x, f"model.{first_up + 7}", reflect=3))


def reference_file(path: Path, n_blocks: int, seed: int, extra: dict | None = None) -> dict[str, torch.Tensor]:
    """A generator saved as the reference project saves it, with the stray keys old files carry."""
    torch.manual_seed(seed)
    state = {
        k: v.normal_(0, 0.1) if v.dtype.is_floating_point else v for k, v in ResnetGenerator(ngf=8, n_blocks=n_blocks).state_dict().items()
    }
    stray = {
        "model.2.running_mean": torch.zeros(8),
        "model.2.running_var": torch.ones(8),
        "model.10.conv_block.2.num_batches_tracked": torch.tensor(0),
    }
    torch.save({**state, **stray, **(extra or {})}, path)
    return state


# -- source networks as other projects write them ----------------------------------------------------


def make_norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.InstanceNorm2d(channels, affine=kind == "affine")


class Block(nn.Module):
    """A residual block whose layers are called `block` (the reference says `conv_block`)."""

    def __init__(self, channels: int, norm: str, dropout: bool, bias: bool) -> None:
        super().__init__()
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias), make_norm(norm, channels), nn.ReLU()]
        layers += [nn.Dropout(0.5)] if dropout else []
        self.block = nn.Sequential(*layers, nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias), make_norm(norm, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class OtherResnet(nn.Module):
    """A ResNet generator with its own module names: head, down, blocks, up, tail."""

    def __init__(self, ngf: int, n_blocks: int, norm: str = "instance", dropout: bool = False, bias: bool = True) -> None:
        super().__init__()
        self.head = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7, bias=bias), make_norm(norm, ngf), nn.ReLU())
        self.down = nn.ModuleList(
            nn.Sequential(nn.Conv2d(ngf * m, ngf * m * 2, 3, stride=2, padding=1, bias=bias), make_norm(norm, ngf * m * 2), nn.ReLU())
            for m in (1, 2)
        )
        self.blocks = nn.Sequential(*(Block(ngf * 4, norm, dropout, bias) for _ in range(n_blocks)))
        self.up = nn.ModuleList(
            nn.Sequential(
                nn.ConvTranspose2d(ngf * m, ngf * m // 2, 3, stride=2, padding=1, output_padding=1, bias=bias),
                make_norm(norm, ngf * m // 2),
                nn.ReLU(),
            )
            for m in (4, 2)
        )
        self.tail = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(x)
        for layer in self.down:
            x = layer(x)
        x = self.blocks(x)
        for layer in self.up:
            x = layer(x)
        return self.tail(x)


class UnetLevel(nn.Module):
    """One level of a U-Net nested the way the reference nests them (`model.model.1.model.3...`):
    `model` runs down, the inner level, up; a level's output is its input and the upsampled
    features side by side, input first."""

    def __init__(self, outer: int, inner: int, inside: nn.Module | None, norm: str, image_channels: int = 0) -> None:
        super().__init__()
        self.outermost = image_channels > 0
        bias = norm != "batch"  # the reference builds convs without bias before batch norm, even where none follows
        down = nn.Conv2d(image_channels or outer, inner, 4, stride=2, padding=1, bias=bias)
        if self.outermost:
            layers = [down, inside, nn.ReLU(), nn.ConvTranspose2d(inner * 2, outer, 4, stride=2, padding=1), nn.Tanh()]
        elif inside is None:
            layers = [nn.LeakyReLU(0.2), down, nn.ReLU(), nn.ConvTranspose2d(inner, outer, 4, stride=2, padding=1, bias=bias)]
            layers.append(make_norm(norm, outer))
        else:
            layers = [nn.LeakyReLU(0.2), down, make_norm(norm, inner), inside, nn.ReLU()]
            layers += [nn.ConvTranspose2d(inner * 2, outer, 4, stride=2, padding=1, bias=bias), make_norm(norm, outer), nn.Dropout(0.5)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


class ReferenceLikeUnet(nn.Module):
    """unet_128 (depth 7) / unet_256 (depth 8) in the reference's nesting, here of any depth >= 5."""

    def __init__(self, ngf: int, depth: int, norm: str) -> None:
        super().__init__()
        level = UnetLevel(ngf * 8, ngf * 8, None, norm)
        for _ in range(depth - 5):
            level = UnetLevel(ngf * 8, ngf * 8, level, norm)
        for multiple in (4, 2, 1):
            level = UnetLevel(ngf * multiple, ngf * multiple * 2, level, norm)
        self.model = UnetLevel(3, ngf, level, norm, image_channels=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def randomised(network: nn.Module, seed: int) -> nn.Module:
    """Every weight random (zero biases would hide a bias left out), batch statistics too; eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in network.state_dict().items():
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            elif tensor.is_floating_point():
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.2)
    return network.eval()


def imported_output(tmp_path: Path, payload: object, images: torch.Tensor, *args: str) -> torch.Tensor:
    """Save `payload`, import it with `gantrans import FILE ... --domains a,b`, translate `images` into b."""
    torch.save(payload, tmp_path / "source.pth")
    result = invoke("import", str(tmp_path / "source.pth"), "--domains", "a,b", "--out", str(tmp_path / "model"), *args)
    assert result.exit_code == 0, result.stderr
    return Translator.load(tmp_path / "model", device="cpu").translate_tensor(images, "b")


# -- the same outputs -----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("n_blocks", [9, 6])
def test_imported_generators_compute_what_the_reference_computes(tmp_path, n_blocks):
    state_a = reference_file(tmp_path / "latest_net_G_A.pth", n_blocks, seed=1)
    state_b = reference_file(tmp_path / "latest_net_G_B.pth", n_blocks, seed=2)
    import_generators([tmp_path / "latest_net_G_A.pth", tmp_path / "latest_net_G_B.pth"], ("horse", "zebra"), tmp_path / "model")
    translator = Translator.load(tmp_path / "model", device="cpu")
    assert translator.info.config.model.n_blocks == n_blocks and translator.info.config.model.ngf == 8
    images = torch.rand(2, 3, 24, 32) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(translator.translate_tensor(images, "zebra"), reference_forward(state_a, images, n_blocks), atol=1e-5)
        assert torch.allclose(translator.translate_tensor(images, "horse"), reference_forward(state_b, images, n_blocks), atol=1e-5)


def wrapped(state: dict[str, torch.Tensor], how: str) -> object:
    """A state dict as other projects save it: bare, under `module.`, or nested in a checkpoint."""
    discriminator = nn.Sequential(nn.Conv2d(3, 4, 4, stride=2, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(4, 1, 4, padding=1)).state_dict()
    if how == "module":
        return {f"module.{key}": value for key, value in state.items()}
    if how == "netG-prefix":  # one flat dict of a wrapper module with a generator and a discriminator
        return {**{f"netG.{key}": value for key, value in state.items()}, **{f"netD.{key}": value for key, value in discriminator.items()}}
    if how == "G_A":
        return {"G_A": state, "D_A": discriminator, "epoch": 7, "optimizer": {"param_groups": [{"lr": 2e-4}]}}
    return {how: state} if how != "bare" else state


@pytest.mark.parametrize("how", ["bare", "module", "netG-prefix", "G_A", "state_dict", "netG", "model"])
def test_a_resnet_under_other_names_and_wrappers_imports_exactly(tmp_path, how):
    source = randomised(OtherResnet(ngf=4, n_blocks=2), seed=3)
    images = torch.rand(2, 3, 16, 20) * 2 - 1
    translated = imported_output(tmp_path, wrapped(source.state_dict(), how), images)
    with torch.no_grad():
        assert torch.allclose(translated, source(images), atol=1e-6)
    assert checkpoint.read_model_info(tmp_path / "model").config.model.n_blocks == 2


@pytest.mark.parametrize(
    "options, norm",
    [
        ({"norm": "affine"}, "instance-affine"),
        ({"dropout": True}, "instance"),
        ({"norm": "batch", "bias": False}, "batch"),  # the reference's batch-norm layout: no conv biases but the last
        ({"norm": "affine", "dropout": True, "bias": False}, "instance-affine"),
    ],
)
def test_resnet_norms_dropout_and_missing_biases_import_exactly(tmp_path, options, norm):
    source = randomised(OtherResnet(ngf=4, n_blocks=3, **options), seed=4)
    images = torch.rand(1, 3, 20, 16) * 2 - 1
    translated = imported_output(tmp_path, source.state_dict(), images)
    with torch.no_grad():
        assert torch.allclose(translated, source(images), atol=1e-6)
    config = checkpoint.read_model_info(tmp_path / "model").config.model
    assert (config.norm, config.ngf, config.n_blocks) == (norm, 4, 3)


@pytest.mark.parametrize("norm, depth", [("batch", 5), ("instance", 6), ("affine", 5)])
def test_a_reference_unet_imports_as_pix2pix_exactly(tmp_path, norm, depth):
    source = randomised(ReferenceLikeUnet(ngf=2, depth=depth, norm=norm), seed=5)
    assert "model.model.1.model.3.model.1.weight" in source.state_dict()  # the reference's nesting
    images = torch.rand(2, 3, 128, 64) * 2 - 1
    translated = imported_output(tmp_path, source.state_dict(), images)
    with torch.no_grad():
        expected = source(images)
    # A bias before an instance norm is dropped (the norm cancels it): equal up to rounding there.
    assert torch.allclose(translated, expected, atol=1e-6 if norm == "batch" else 2e-5)
    info = checkpoint.read_model_info(tmp_path / "model")
    expected_norm = {"affine": "instance-affine"}.get(norm, norm)
    assert (info.method, info.config.model.generator, info.config.model.depth, info.config.model.norm) == (
        "pix2pix",
        "unet",
        depth,
        expected_norm,
    )


def test_two_unets_import_as_a_two_way_model(tmp_path):
    sources = [randomised(ReferenceLikeUnet(ngf=2, depth=5, norm="batch"), seed=seed) for seed in (6, 7)]
    for name, source in zip(("G_A", "G_B"), sources):
        torch.save(source.state_dict(), tmp_path / f"{name}.pth")
    imported = import_generators([tmp_path / "G_A.pth", tmp_path / "G_B.pth"], ("a", "b"), tmp_path / "model")
    assert imported.method == "cyclegan"
    translator = Translator.load(tmp_path / "model", device="cpu")
    images = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(translator.translate_tensor(images, "b"), sources[0](images), atol=1e-6)
        assert torch.allclose(translator.translate_tensor(images, "a"), sources[1](images), atol=1e-6)


def test_generators_trained_with_dropout_import(tmp_path):
    state = ResnetGenerator(ngf=4, n_blocks=6).state_dict()
    renamed = {key.replace("conv_block.5.", "conv_block.6."): value for key, value in state.items()}
    torch.save(renamed, tmp_path / "G.pth")
    import_generators([tmp_path / "G.pth"], ("a", "b"), tmp_path / "model")
    loaded, _ = checkpoint.load_model(tmp_path / "model")
    assert all(torch.equal(loaded.generators["generator_xy"].state_dict()[k], v) for k, v in state.items())


def test_one_file_imports_one_direction(tmp_path):
    reference_file(tmp_path / "G_A.pth", 6, seed=0)
    import_generators([tmp_path / "G_A.pth"], ("photo", "monet"), tmp_path / "model")
    translator = Translator.load(tmp_path / "model", device="cpu")
    assert translator.targets == ("monet",)
    with pytest.raises(UsageError, match="no generator into 'photo'"):
        translator.check_target("photo")
    assert checkpoint.read_model_info(tmp_path / "model").generators == ("generator_xy",)


# -- choosing among several, and what is refused -----------------------------------------------------


def test_key_chooses_among_several_generators_in_one_checkpoint(tmp_path):
    sources = [randomised(OtherResnet(ngf=4, n_blocks=1), seed=seed) for seed in (8, 9)]
    checkpoint_file = tmp_path / "last.pth"
    torch.save({"G_A": sources[0].state_dict(), "G_B": sources[1].state_dict(), "epoch": 3}, checkpoint_file)
    out = tmp_path / "model"
    assert_one_line_error(
        invoke("import", str(checkpoint_file), "--domains", "a,b", "--out", str(out)),
        1,
        "holds 2 generators (G_A, G_B): choose one with --key G_A, or both directions by giving the file twice with --key G_A,G_B",
    )
    assert not out.exists()
    images = torch.rand(1, 3, 16, 16) * 2 - 1
    assert torch.allclose(imported_output(tmp_path, torch.load(checkpoint_file), images, "--key", "G_B"), sources[1](images), atol=1e-6)
    both = invoke(
        "import", str(checkpoint_file), str(checkpoint_file), "--domains", "a,b", "--out", str(out), "--key", "G_A,G_B", "--overwrite"
    )
    assert both.exit_code == 0, both.stderr
    translator = Translator.load(out, device="cpu")
    assert torch.allclose(translator.translate_tensor(images, "a"), sources[1](images), atol=1e-6)
    assert_one_line_error(
        invoke("import", str(checkpoint_file), "--domains", "a,b", "--out", str(tmp_path / "new"), "--key", "G_C"),
        1,
        "no tensor group named 'G_C'",
    )
    assert_one_line_error(
        invoke("import", str(checkpoint_file), "--domains", "a,b", "--out", str(tmp_path / "new"), "--key", "G_A,G_B,G_C"),
        2,
        "one per file",
    )
    flat = {f"netG_{name}.{key}": value for name, source in zip("AB", sources) for key, value in source.state_dict().items()}
    torch.save({"state_dict": flat, "epoch": 3}, checkpoint_file)
    several = invoke("import", str(checkpoint_file), "--domains", "a,b", "--out", str(tmp_path / "new"))
    assert "holds 2 generators (state_dict/netG_A, state_dict/netG_B)" in several.stderr
    translated = imported_output(tmp_path, torch.load(checkpoint_file), images, "--key", "state_dict/netG_B", "--overwrite")
    assert torch.allclose(translated, sources[1](images), atol=1e-6)
    torch.save({"state_dict": {"G_A": sources[0].state_dict()}}, tmp_path / "nested.pth")
    assert_one_line_error(
        invoke("import", str(tmp_path / "nested.pth"), "--domains", "a,b", "--out", str(tmp_path / "new"), "--key", "G_A"),
        1,
        "it holds state_dict/G_A (nested names are joined with '/': --key state_dict/G_A)",
    )


def test_shapes_that_fit_two_architectures_alike_are_refused(tmp_path):
    # A parameter-free norm is indistinguishable from no norm: offered both, the import refuses to guess.
    torch.save(OtherResnet(ngf=4, n_blocks=1).state_dict(), tmp_path / "G.pth")
    both = [Architecture("resnet", 4, 1, "instance"), Architecture("resnet", 4, 1, "none")]
    with pytest.raises(GantransError, match=r"ambiguous: its tensors fit a ResNet generator .*instance norm.* and a ResNet .*no norm"):
        recognise(tmp_path / "G.pth", architectures=both)
    assert recognise(tmp_path / "G.pth").architecture == both[0]  # by default parameter-free means instance norm


def test_partial_matches_are_refused_naming_where_they_stop_without_claiming_an_architecture(tmp_path):
    state = OtherResnet(ngf=4, n_blocks=2).state_dict()

    def refusal(tensors: dict[str, torch.Tensor]) -> str:
        torch.save(tensors, tmp_path / "odd.pth")
        with pytest.raises(GantransError) as error:
            import_generators([tmp_path / "odd.pth"], ("a", "b"), tmp_path / "m")
        assert not (tmp_path / "m").exists()
        return str(error.value)

    leftover = refusal({**state, "extra.weight": torch.zeros(3, 3, 1, 1)})
    assert "no generator layout fits its 21 tensors" in leftover
    assert "the closest, a ResNet generator (ngf 4, 2 residual blocks, instance norm)" in leftover
    assert "leaves 1 over: extra.weight (3, 3, 1, 1)" in leftover
    missing = refusal({key: value for key, value in state.items() if not key.startswith("tail.")})
    assert "no generator layout fits" in missing and "needs 1 more after the file's last: model.19.weight (3, 4, 7, 7)" in missing
    wrong = refusal({**state, "blocks.1.block.5.weight": torch.zeros(16, 16, 5, 5)})
    assert "expects model.11.conv_block.5.weight (16, 16, 3, 3) where the file has blocks.1.block.5.weight (16, 16, 5, 5)" in wrong
    assert "it starts with only.weight (4, 3, 3, 3), where a ResNet generator starts with floating-point weights (ngf, 3, 7, 7)" in refusal(
        {"only.weight": torch.zeros(4, 3, 3, 3), "only.bias": torch.zeros(4)}
    )
    assert "not a generator gantrans can import (it holds no convolution weights)" in refusal({"scale": torch.ones(3)})
    with pytest.raises(GantransError, match="holds no tensors"):
        torch.save({"epoch": 3}, tmp_path / "empty.pth")
        recognise(tmp_path / "empty.pth")


def test_the_cli_prints_the_mapping_on_stderr_and_the_model_on_stdout(tmp_path):
    source = OtherResnet(ngf=4, n_blocks=1)
    torch.save({"netG": {f"module.{key}": value for key, value in source.state_dict().items()}}, tmp_path / "ckpt.pth")
    result = invoke("import", str(tmp_path / "ckpt.pth"), "--domains", "horse,zebra", "--out", str(tmp_path / "model"))
    assert result.exit_code == 0 and result.stdout.strip() == str(tmp_path / "model")
    lines = result.stderr.splitlines()
    assert (
        lines[0]
        == f"{tmp_path / 'ckpt.pth'} [netG]: a ResNet generator (ngf 4, 1 residual block, instance norm) -> cyclegan generator_xy (horse -> zebra)"
    )
    assert lines[1].split() == ["module.head.1.weight", "->", "model.1.weight", "(4,", "3,", "7,", "7)"]
    assert lines[9].strip() == "... 8 more (--verbose lists every tensor)"
    verbose = invoke(
        "import", str(tmp_path / "ckpt.pth"), "--domains", "horse,zebra", "--out", str(tmp_path / "model"), "--overwrite", "-v"
    )
    assert verbose.exit_code == 0 and verbose.stderr.splitlines()[-1].split() == ["module.tail.1.bias", "->", "model.18.bias", "(3)"]
    assert len(verbose.stderr.splitlines()) == 1 + 16
    reference_file(tmp_path / "G_A.pth", 1, seed=0)
    plain = invoke("import", str(tmp_path / "G_A.pth"), "--domains", "horse,zebra", "--out", str(tmp_path / "ref"))
    assert plain.stderr.splitlines()[1:] == [
        "  16 tensors, under our names",
        "  left out 3 unused norm statistics: model.2.running_mean, model.2.running_var, model.10.conv_block.2.num_batches_tracked",
    ]


class Payload:
    """Unpickling this would run code: the weights-only loader must refuse it."""

    ran = False

    def __reduce__(self):
        return (setattr, (Payload, "ran", True))


def test_a_file_with_code_in_it_is_refused_and_the_code_does_not_run(tmp_path):
    with open(tmp_path / "evil.pth", "wb") as handle:
        pickle.dump({"model.1.weight": Payload()}, handle, protocol=2)
    with pytest.raises(GantransError, match="not a loadable weights-only PyTorch file"):
        import_generators([tmp_path / "evil.pth"], ("a", "b"), tmp_path / "m")
    assert Payload.ran is False
    assert not (tmp_path / "m").exists()


def test_bad_arguments_are_refused_before_any_file_is_read(tmp_path):
    (tmp_path / "text.pth").write_text("hello")
    with pytest.raises(GantransError, match="not a loadable weights-only PyTorch file"):
        import_generators([tmp_path / "text.pth"], ("a", "b"), tmp_path / "m")
    with pytest.raises(UsageError, match="--domains needs two names"):
        import_generators([tmp_path / "text.pth"], ("a",), tmp_path / "m")
    with pytest.raises(UsageError, match="one or two generator files"):
        import_generators([tmp_path / "text.pth"] * 3, ("a", "b"), tmp_path / "m")
