"""Import of the reference CycleGAN project's published generators (`latest_net_G_*.pth`)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from gantrans import checkpoint
from gantrans.errors import GantransError, UsageError
from gantrans.interop import import_reference_cyclegan
from gantrans.nn import ResnetGenerator
from gantrans.translate import Translator


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


@pytest.mark.slow
@pytest.mark.parametrize("n_blocks", [9, 6])
def test_imported_generators_compute_what_the_reference_computes(tmp_path, n_blocks):
    state_a = reference_file(tmp_path / "latest_net_G_A.pth", n_blocks, seed=1)
    state_b = reference_file(tmp_path / "latest_net_G_B.pth", n_blocks, seed=2)
    import_reference_cyclegan([tmp_path / "latest_net_G_A.pth", tmp_path / "latest_net_G_B.pth"], ("horse", "zebra"), tmp_path / "model")
    translator = Translator.load(tmp_path / "model", device="cpu")
    assert translator.info.config.model.n_blocks == n_blocks and translator.info.config.model.ngf == 8
    images = torch.rand(2, 3, 24, 32) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(translator.translate_tensor(images, "zebra"), reference_forward(state_a, images, n_blocks), atol=1e-5)
        assert torch.allclose(translator.translate_tensor(images, "horse"), reference_forward(state_b, images, n_blocks), atol=1e-5)


def test_one_file_imports_one_direction(tmp_path):
    reference_file(tmp_path / "G_A.pth", 6, seed=0)
    import_reference_cyclegan([tmp_path / "G_A.pth"], ("photo", "monet"), tmp_path / "model")
    translator = Translator.load(tmp_path / "model", device="cpu")
    assert translator.targets == ("monet",)
    with pytest.raises(UsageError, match="no generator into 'photo'"):
        translator.check_target("photo")
    assert checkpoint.read_model_info(tmp_path / "model").generators == ("generator_xy",)


def test_generators_trained_with_dropout_import(tmp_path):
    state = ResnetGenerator(ngf=4, n_blocks=6).state_dict()
    renamed = {key.replace("conv_block.5.", "conv_block.6."): value for key, value in state.items()}
    torch.save(renamed, tmp_path / "G.pth")
    import_reference_cyclegan([tmp_path / "G.pth"], ("a", "b"), tmp_path / "model")
    loaded, _ = checkpoint.load_model(tmp_path / "model")
    assert all(torch.equal(loaded.generators["generator_xy"].state_dict()[k], v) for k, v in state.items())


def test_mismatching_files_are_refused_with_what_differs(tmp_path):
    unet = {"model.model.0.weight": torch.zeros(1)}
    torch.save(unet, tmp_path / "unet.pth")
    with pytest.raises(GantransError, match="U-Net generator"):
        import_reference_cyclegan([tmp_path / "unet.pth"], ("a", "b"), tmp_path / "m")
    state = ResnetGenerator(ngf=4, n_blocks=6).state_dict()
    state["model.26.weight"] = torch.zeros(3, 4, 5, 5)
    del state["model.23.bias"]
    torch.save(state, tmp_path / "odd.pth")
    with pytest.raises(GantransError, match=r"missing model\.23\.bias.*unexpected model\.26\.weight"):
        import_reference_cyclegan([tmp_path / "odd.pth"], ("a", "b"), tmp_path / "m")
    (tmp_path / "text.pth").write_text("hello")
    with pytest.raises(GantransError, match="not a loadable weights-only PyTorch file"):
        import_reference_cyclegan([tmp_path / "text.pth"], ("a", "b"), tmp_path / "m")
    with pytest.raises(UsageError, match="--domains needs two names"):
        import_reference_cyclegan([tmp_path / "odd.pth"], ("a",), tmp_path / "m")


class Payload:
    """Unpickling this would run code: the weights-only loader must refuse it."""

    ran = False

    def __reduce__(self):
        return (setattr, (Payload, "ran", True))


def test_a_file_with_code_in_it_is_refused_and_the_code_does_not_run(tmp_path):
    with open(tmp_path / "evil.pth", "wb") as handle:
        pickle.dump({"model.1.weight": Payload()}, handle, protocol=2)
    with pytest.raises(GantransError, match="not a loadable weights-only PyTorch file"):
        import_reference_cyclegan([tmp_path / "evil.pth"], ("a", "b"), tmp_path / "m")
    assert Payload.ran is False
    assert not (tmp_path / "m").exists()
