"""The known-truth benchmark's data: disjoint domains, the hidden transform, and its truth files."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

spec = importlib.util.spec_from_file_location("quality", Path(__file__).parent.parent / "benchmarks" / "quality.py")
quality = importlib.util.module_from_spec(spec)
spec.loader.exec_module(quality)


def test_the_hidden_transform_inverts_recolours_and_textures():
    digit = np.zeros((28, 28))
    digit[8:20, 12:16] = 1.0  # a stroke
    image = np.asarray(quality.painted(quality.as_digit(digit)), dtype=np.float64)
    stroke, paper = image[16, 16], image[1, 1:4]
    assert stroke[2] > 2 * stroke[0] and stroke.sum() < 250  # dark blue ink where the digit was white
    assert (paper[:, 0] > 180).all() and (paper[:, 2] < paper[:, 0]).all()  # yellow paper where it was black
    assert len({tuple(pixel) for pixel in image[0, :12]}) > 1  # striped, not flat


@pytest.mark.parametrize("dataset", ["digits", "photos"])
def test_build_makes_unpaired_domains_and_the_truth_of_each_test_input(tmp_path, monkeypatch, dataset):
    digits = np.random.default_rng(0).random((30, 28, 28))
    monkeypatch.setattr(quality, "mnist_digits", lambda: digits)
    monkeypatch.setattr(
        quality,
        "photo_patches",
        lambda count, rng, columns: [Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)) for _ in range(count)],
    )
    monkeypatch.setattr(quality, "TRAIN_PER_DOMAIN", 6)
    monkeypatch.setattr(quality, "TEST", 3)
    root, inputs = quality.build(tmp_path / "data", dataset), quality.DOMAIN[dataset]
    counts = {
        f"{split}/{domain}": len(list((root / split / domain).iterdir())) for split in ("train", "test") for domain in (inputs, "painted")
    }
    assert counts == {f"train/{inputs}": 6, "train/painted": 6, f"test/{inputs}": 3, "test/painted": 3}
    for path in sorted((root / "test" / inputs).iterdir()):
        truth = Image.open(root / "truth" / "painted" / path.name)
        assert np.array_equal(np.asarray(truth), np.asarray(quality.painted(Image.open(path))))
    train_painted = {np.asarray(Image.open(p)).tobytes() for p in (root / "train" / "painted").iterdir()}
    assert not train_painted & {np.asarray(Image.open(p)).tobytes() for p in (root / "truth" / "painted").iterdir()}  # nothing paired
    scores = quality.baselines(root, inputs)
    assert scores["identity"][0] > scores["mean painted image"][0] > 0


def test_paired_data_holds_each_training_input_with_its_truth(tmp_path, monkeypatch):
    monkeypatch.setattr(quality, "mnist_digits", lambda: np.random.default_rng(1).random((30, 28, 28)))
    monkeypatch.setattr(quality, "TRAIN_PER_DOMAIN", 6)
    monkeypatch.setattr(quality, "TEST", 3)
    root = quality.build(tmp_path / "data", "digits")
    inputs = sorted((root / "paired" / "digit").iterdir())
    assert [p.name for p in inputs] == [p.name for p in sorted((root / "train" / "digit").iterdir())]
    for path in inputs:
        assert np.array_equal(
            np.asarray(Image.open(root / "paired" / "painted" / path.name)), np.asarray(quality.painted(Image.open(path)))
        )


def test_the_table_puts_each_method_in_the_gap_between_the_mean_image_and_pix2pix():
    row = {"seconds": 60.0, "psnr": 20.0, "ssim": 0.5, "fid": 10.0, "kid": 0.01}
    results = {"cut+ema=0": {**row, "l1": 0.06}, "pix2pix": {**row, "l1": 0.02}, "cyclegan": {**row, "l1": 0.12}}
    text = quality.table(results, {"identity": (0.3, 10.0, 0.1), "mean painted image": (0.10, 15.0, 0.3)}, 1000)
    rows = {line.split("|")[1].strip(): line.split("|")[-2].strip() for line in text.splitlines()[2:]}
    assert rows["cut+ema=0"] == "50%" and rows["pix2pix *(paired: upper bound)*"] == "100%" and rows["cyclegan"] == "-25%"
    assert rows["*baseline: mean painted image*"] == "0%"
    assert quality.parse_method("cyclegan+cycle_noise=0.1+ema=0.999") == ("cyclegan", {"cycle_noise": 0.1, "ema": 0.999})
