"""The speed levers keep results: bf16 autocast, compiled networks, channels-last, images on the device."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from gantrans.batches import DeviceImages, collate
from gantrans.config import DataConfig
from gantrans.data import UnpairedDataset
from gantrans.device import uses_bf16
from gantrans.errors import UsageError
from gantrans.folders import discover_domains
from gantrans.nn.norm import norm_layer
from gantrans.step import train_step
from gantrans.training import train
from gantrans.translate import Translator

from conftest import tensors, tiny_method


def same_weights(first: Path, second: Path, atol: float = 0.0) -> bool:
    a, b = tensors(first / "training_state.safetensors"), tensors(second / "training_state.safetensors")
    return a.keys() == b.keys() and all(torch.allclose(a[k].float(), b[k].float(), atol=atol, rtol=0) for k in a)


def test_bf16_autocast_losses_track_fp32_and_leave_fp32_weights(make_config):
    results = {}
    for bf16 in (False, True):
        torch.manual_seed(0)  # the same batch both times
        method, optimizers, batch = tiny_method(make_config)
        g_losses, d_losses, _ = train_step(method, optimizers, batch, 0, make_config(), bf16=bf16)
        results[bf16] = {**g_losses.terms, **d_losses.terms}
        assert all(value.dtype == torch.float32 for value in results[bf16].values())  # losses are computed in fp32
        assert all(parameter.dtype == torch.float32 for parameter in method.parameters())
        assert g_losses.fakes["fake_y"].dtype == (torch.bfloat16 if bf16 else torch.float32)  # the forward really ran in bf16
    for name, value in results[False].items():
        assert results[True][name] == pytest.approx(float(value), rel=0.05, abs=0.01), name


@pytest.mark.parametrize("kind", ["instance", "instance-affine", "batch"])
def test_norms_compute_in_fp32_under_bf16_autocast(kind):
    # Features far from zero against their spread: centring in bf16 (ulp 0.25 at 50) shifts the map.
    features = (50 + torch.randn(2, 4, 32, 32)).to(torch.bfloat16)
    norm = norm_layer(kind, 4)
    expected = norm(features.float())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        normalised = norm(features)
    assert normalised.dtype == torch.bfloat16
    assert (normalised.float() - expected).abs().max() < 0.02  # bf16 rounding of the output (ulp 1/64 below 4), no more
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain = F.instance_norm(features)
    assert (plain.float() - F.instance_norm(features.float())).abs().max() > 0.02  # what the fp32 norms avoid


def test_precision_auto_means_fp32_on_cpu():
    cpu = torch.device("cpu")
    assert not uses_bf16("auto", cpu) and not uses_bf16("fp32", cpu) and uses_bf16("bf16", cpu)


def test_a_bf16_run_saves_fp32_weights_and_translates_in_either_precision(make_config, tmp_path):
    config = make_config(precision="bf16", steps=2)
    list(train(config))
    assert {tensor.dtype for tensor in tensors(Path(config.out) / "generators.safetensors").values()} == {torch.float32}
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    fp32 = Translator.load(config.out, "cpu", "fp32").translate_tensor(images, "zebra")
    bf16 = Translator.load(config.out, "cpu", "bf16").translate_tensor(images, "zebra")
    assert bf16.dtype == torch.float32 and (bf16 - fp32).abs().max() < 0.05
    with pytest.raises(UsageError, match="--precision must be one of"):
        Translator.load(config.out, "cpu", "fp16")


@pytest.mark.slow
def test_compiled_networks_train_as_eager_ones(make_config, quick_compile):
    eager, compiled = make_config("eager", steps=2), make_config("compiled", steps=2, compile=True)
    list(train(eager))
    list(train(compiled))
    assert same_weights(Path(eager.out), Path(compiled.out), atol=1e-6)


@pytest.mark.slow
def test_a_gradient_penalty_keeps_the_discriminators_eager(make_config, quick_compile, monkeypatch):
    compiled = []
    compile_module = torch.nn.Module.compile
    monkeypatch.setattr(
        torch.nn.Module,
        "compile",
        lambda self, **options: compiled.append(type(self).__name__) or compile_module(self, backend="aot_eager"),
    )
    events = list(train(make_config(method="stargan", steps=2, compile=True)))  # WGAN-GP: double backward
    assert events[-1].step == 2
    assert compiled and not any("Discriminator" in name for name in compiled)


def test_channels_last_trains_as_contiguous(make_config):
    # No norm: biases in front of instance norm have a zero gradient, which Adam turns into steps of
    # the sign of rounding noise, and NHWC kernels round differently.
    plain, nhwc = make_config("plain", steps=2, norm="none"), make_config("nhwc", steps=2, norm="none", channels_last=True)
    list(train(plain))
    list(train(nhwc))
    assert same_weights(Path(plain.out), Path(nhwc.out), atol=1e-6)


def test_images_on_the_device_give_the_batches_of_the_decoding_path(tiny_data):
    (tiny_data / "horse" / "img_002.png").write_bytes(b"not an image")
    dataset = UnpairedDataset(discover_domains(tiny_data), DataConfig(size=16, load_size=20), seed=3)
    images = DeviceImages.build(dataset, torch.device("cpu"))
    assert images is not None and any("img_002.png" in message for message in images.skipped)
    samples = range(0, 12)  # two epochs: flips, crops and replacement of the bad file included
    expected, _ = collate([dataset[sample] for sample in samples])
    assert all(torch.equal(got, want) for got, want in zip(images.batch(samples), expected))


def test_a_run_from_images_on_the_device_equals_the_decoding_run(make_config, tiny_data):
    decoded, on_device = make_config("decoded", steps=3, batch_size=2), make_config("device", steps=3, batch_size=2, on_device=True)
    list(train(decoded))
    events = list(train(on_device))
    assert events[0].data_on_device
    assert same_weights(Path(decoded.out), Path(on_device.out))


def test_images_of_several_sizes_cannot_live_on_the_device(make_config, tiny_data):
    config = make_config(preprocess="none", on_device=True)
    with pytest.raises(UsageError, match="--on-device needs images of one size"):
        list(train(dataclasses.replace(config, data=dataclasses.replace(config.data, root=str(_mixed_sizes(tiny_data))))))


def _mixed_sizes(root: Path) -> Path:
    from PIL import Image

    Image.new("RGB", (24, 32)).save(root / "horse" / "tall.png")
    return root


def test_background_writes_run_in_order_and_a_failure_surfaces_as_one_clear_error(tmp_path):
    from gantrans.errors import GantransError
    from gantrans.storage import BackgroundWriter

    order: list[str] = []
    writer = BackgroundWriter()
    assert writer.submit("first", lambda: order.append("state"), lambda: order.append("model")) == []
    assert writer.submit("second", lambda: order.append("next")) == ["first"]  # waits for the first batch
    assert writer.wait() == ["second"]  # reported once its files are written, and only once
    assert writer.wait() == [] and writer.poll() == []
    assert order == ["state", "model", "next"]

    def full_disk() -> None:
        raise OSError(28, "No space left on device", str(tmp_path / "training_state.safetensors"))

    writer.submit("never reported", full_disk, lambda: order.append("never"))
    with pytest.raises(GantransError, match=r"cannot write .*training_state.safetensors: No space left on device"):
        writer.wait()
    assert order[-1] == "next"  # the model file is not written after a failed state file
    assert writer.wait() == []  # the error is reported once, and the failed batch never as written
