"""Tiled translation: tiles that partition the image and blend to one; exact whole-image statistics
give the whole image's translation for every method; no seams; large images and out-of-memory
errors go to tiles on their own; the tile flags."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gantrans import checkpoint
from gantrans import translate as translation
from gantrans.methods import PRESETS
from gantrans.methods.cyclegan import CycleGAN
from gantrans.tiling import TileSettings, padded_side, spans
from gantrans.translate import TranslateOptions, Translator

from conftest import assert_one_line_error, invoke, tiny_config, tiny_preset


def ramp_image(width: int, height: int, seed: int = 0) -> Image.Image:
    """A photo-like test image: a brightness ramp across it, slow colour waves and a little noise. Each
    tile of it has its own mean: tiles normalised on their own come out as a sawtooth of tones."""
    rows, columns = np.mgrid[0:height, 0:width]
    ramp = (columns / width + rows / height)[..., None] * 160 - 80
    waves = np.stack([np.sin(columns / 29 + rows / 53), np.cos(rows / 23), np.sin((columns - rows) / 37)], axis=-1)
    noise = np.random.default_rng(seed).normal(0, 3, waves.shape)
    return Image.fromarray(np.clip(128 + ramp + 40 * waves + noise, 0, 255).astype(np.uint8))


def save_tiny_model(run: Path, method_name: str = "cyclegan", **overrides: object) -> Path:
    """An untrained tiny model of `method_name` (translation needs only its weights)."""
    config = tiny_config(run.parent / "data", run, method_name, **{**tiny_preset(method_name).overrides, **overrides})
    method = checkpoint.build_method(config, tiny_preset(method_name).domains, training=False, seed=3)
    checkpoint.save_model(run / checkpoint.MODEL_FILE, method, config, step=0)
    return run


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny horse <-> zebra CycleGAN, 8 filters and 2 residual blocks (its receptive field: 44 px)."""
    return save_tiny_model(tmp_path_factory.mktemp("runs") / "h2z", ngf=8, n_blocks=2)


@pytest.fixture(scope="module")
def translator(model_dir: Path) -> Translator:
    return Translator.load(model_dir, device="cpu")


def difference(a: Image.Image, b: Image.Image) -> np.ndarray:
    return np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16))


# --- geometry --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "length, tile, overlap, halo, stride", [(200, 48, 16, 24, 4), (64, 64, 32, 8, 4), (1000, 256, 40, 88, 4), (256, 60, 64, 16, 8)]
)
def test_tiles_partition_the_image_and_their_blend_weights_sum_to_one(length, tile, overlap, halo, stride):
    axis = spans(length, TileSettings(tile, overlap, halo, "exact"), stride, min_side=2 * stride)
    assert axis[0].core[0] == 0 and axis[-1].core[1] == length
    assert all(before.core[1] == after.core[0] for before, after in zip(axis, axis[1:]))  # cores partition the axis
    total = torch.zeros(length)
    for span in axis:
        assert span.window[0] <= span.blend[0] <= span.core[0] < span.core[1] <= span.blend[1] <= span.window[1]
        assert span.window[0] % stride == 0 and span.window[1] % stride == 0 and span.window[1] - span.window[0] >= 2 * stride
        assert span.core[1] - span.core[0] <= tile + stride  # at most the tile side (up to the stride's rounding)
        total[span.blend[0] : span.blend[1]] += span.weights
    torch.testing.assert_close(total, torch.ones(length))
    assert len(axis) > 1 or length <= tile


# --- exact statistics: tiles give the whole image --------------------------------------------------


@pytest.mark.parametrize(
    "method_name, overrides",
    [pytest.param(name, {}, id=name) for name in sorted(PRESETS)]
    + [pytest.param("shared-latent", {"fully_shared": True}, id="shared-latent-fully-shared")],
)
def test_exact_tiles_equal_the_whole_translation_for_every_method(method_name, overrides, tmp_path):
    """Instance-normalised (cyclegan, stargan, cut, shared-latent ...), conditionally normalised
    (stargan, fully-shared shared-latent), batch-normalised (discogan, pix2pix) or U-Net generators
    alike: the whole image's statistics and a halo of the receptive field reproduce the whole
    translation, within 2 grey levels (rounding)."""
    translator = Translator.load(save_tiny_model(tmp_path / "run", method_name, **overrides), device="cpu")
    image, target = ramp_image(200, 152), translator.targets[-1]
    settings = translator.tile_settings(target, options=TranslateOptions(tile=48, tile_norm="exact"))
    assert len(spans(padded_side(200, *translator.geometry), settings, *translator.geometry)) >= 3
    whole = translator.translate_whole([image], target)[0]
    assert difference(translator.translate_tiled(image, target, settings=settings), whole).max() <= 2


def test_exact_statistics_are_what_makes_tiles_agree(translator, monkeypatch):
    """The same tiles with the statistics of a 4x smaller thumbnail (as a 48 MP photo's 1 MP one) are
    far from the whole image: the exact test above can fail."""
    image = ramp_image(200, 152)
    whole = translator.translate_whole([image], "zebra")[0]
    monkeypatch.setattr(translation, "THUMBNAIL_PIXELS", 200 * 152 // 16)
    settings = translator.tile_settings("zebra", options=TranslateOptions(tile=48, tile_norm="thumbnail"))
    assert difference(translator.translate_tiled(image, "zebra", settings=settings), whole).max() > 2


# --- no seams --------------------------------------------------------------------------------------


def boundary_gradient_ratio(image: Image.Image, cuts: list[int], axis: int) -> float:
    """Mean absolute difference between neighbouring pixels across the lines before `cuts` (along
    `axis`: 1 columns, 0 rows), over the mean absolute difference across all other lines."""
    gradient = np.abs(np.diff(np.asarray(image, dtype=np.float64), axis=axis)).mean(axis=(1 - axis, 2))
    at_cuts = np.zeros(len(gradient), dtype=bool)
    at_cuts[[cut - 1 for cut in cuts]] = True
    return gradient[at_cuts].mean() / gradient[~at_cuts].mean()


def test_tile_boundaries_do_not_show(translator, monkeypatch):
    """Default (thumbnail) statistics from a 4x smaller thumbnail: across the tile boundaries, the
    output changes no more than elsewhere. Tiles translated on their own (each its own statistics,
    no context, no blending) fail the same measure."""
    width, height = 256, 192
    image = ramp_image(width, height)
    monkeypatch.setattr(translation, "THUMBNAIL_PIXELS", width * height // 16)
    settings = translator.tile_settings("zebra", options=TranslateOptions(tile=64))
    assert settings.norm == "thumbnail" and settings.overlap == 32
    rows, columns = (spans(padded_side(side, *translator.geometry), settings, *translator.geometry) for side in (height, width))
    row_cuts, column_cuts = [span.core[0] for span in rows[1:]], [span.core[0] for span in columns[1:]]
    tiled = translator.translate_tiled(image, "zebra", settings=settings)
    assert boundary_gradient_ratio(tiled, column_cuts, 1) <= 1.1 and boundary_gradient_ratio(tiled, row_cuts, 0) <= 1.1
    naive = Image.new("RGB", (width, height))
    for top, bottom in (row.core for row in rows):
        for left, right in (column.core for column in columns):
            naive.paste(translator.translate_whole([image.crop((left, top, right, bottom))], "zebra")[0], (left, top))
    assert boundary_gradient_ratio(naive, column_cuts, 1) > 1.25 and boundary_gradient_ratio(naive, row_cuts, 0) > 1.25


# --- tiles without being asked ---------------------------------------------------------------------


def spy_on_tiles(monkeypatch) -> list[tuple[int, int]]:
    """The sizes of the images Translator.translate_tiled is called with, from now on."""
    calls: list[tuple[int, int]] = []
    tiled = Translator.translate_tiled

    def spy(self, image, *args, **kwargs):
        calls.append(image.size)
        return tiled(self, image, *args, **kwargs)

    monkeypatch.setattr(Translator, "translate_tiled", spy)
    return calls


def test_images_larger_than_memory_or_the_whole_limit_go_in_tiles(translator, monkeypatch):
    image = ramp_image(120, 96)
    whole = translator.translate_whole([image], "zebra")[0]
    calls = spy_on_tiles(monkeypatch)
    assert translator.translate_images([image], "zebra")[0].tobytes() == whole.tobytes() and calls == []
    # Free memory for a quarter of the image: tiles, at the size that fits.
    needs = translator.profile("zebra")
    monkeypatch.setattr(translation, "free_memory", lambda device: int(needs.bytes_per_pixel * 120 * 96 / 4 / 0.5))
    assert translator.images_per_pass((120, 96), "zebra") == 0
    (output,) = translator.translate_images([image], "zebra")
    assert calls == [(120, 96)] and difference(output, whole).max() <= 2  # its thumbnail is itself: exact
    monkeypatch.undo()
    monkeypatch.setattr(translation, "MAX_WHOLE_PIXELS", 100 * 80)  # beyond it: tiles, whatever the memory
    calls = spy_on_tiles(monkeypatch)
    assert translator.images_per_pass((120, 96), "zebra") == 0 and translator.images_per_pass((100, 80), "zebra") > 0
    translator.translate_images([image], "zebra")
    assert calls == [(120, 96)]


@pytest.mark.parametrize(
    "error",
    [
        MemoryError(),
        RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9216000000 bytes"),
        torch.OutOfMemoryError("CUDA out of memory"),
    ],
)
def test_out_of_memory_falls_back_to_single_images_then_to_tiles(model_dir, translator, tmp_path, monkeypatch, error):
    small = [ramp_image(40, 36, seed) for seed in range(3)]
    expected = [translator.translate_whole([image], "zebra")[0] for image in small]
    (tmp_path / "in").mkdir()
    for index, image in enumerate([*small, ramp_image(320, 240)]):
        image.save(tmp_path / "in" / f"{index}.png")
    translate_method, calls = CycleGAN.translate, []

    def one_image_of_160_squared_fits(self, images, *args):  # a batch, or a larger image, runs out
        calls.append(tuple(images.shape))
        if images.shape[0] > 1 or images.shape[-2] * images.shape[-1] > 160 * 160:
            raise error
        return translate_method(self, images, *args)

    monkeypatch.setattr(CycleGAN, "translate", one_image_of_160_squared_fits)
    result = invoke("translate", str(tmp_path / "in"), "--to", "zebra", "--model", str(model_dir), "--scale", "input")
    assert result.exit_code == 0 and result.stderr == "", result.stderr
    assert result.stdout.split() == [str(tmp_path / "in" / f"{index}.zebra.png") for index in range(4)]
    assert calls[1:5] == [(3, 3, 36, 40), (1, 3, 36, 40), (1, 3, 36, 40), (1, 3, 36, 40)]  # after the 64 px probe: batch, then one by one
    assert calls[5] == (1, 3, 240, 320) and max(shape[-2] * shape[-1] for shape in calls[-12:]) <= 160 * 160  # whole, ..., tiles
    for index, image in enumerate(expected):
        assert Image.open(tmp_path / "in" / f"{index}.zebra.png").tobytes() == image.tobytes()
    assert Image.open(tmp_path / "in" / "3.zebra.png").size == (320, 240)


# --- the flags -------------------------------------------------------------------------------------


def test_tile_flags_translate_in_tiles_equal_to_the_whole_image_in_exact_mode(model_dir, tmp_path):
    ramp_image(200, 152).save(tmp_path / "a.png")
    whole = invoke("translate", str(tmp_path / "a.png"), "--to", "zebra", "--model", str(model_dir), "--out", str(tmp_path / "whole.png"))
    flags = ["--tile", "48", "--tile-overlap", "16", "--tile-norm", "exact"]
    tiled = invoke(
        "translate", str(tmp_path / "a.png"), "--to", "zebra", "--model", str(model_dir), "--out", str(tmp_path / "tiled.png"), *flags
    )
    assert whole.exit_code == 0 and tiled.exit_code == 0, tiled.stderr
    assert difference(Image.open(tmp_path / "tiled.png"), Image.open(tmp_path / "whole.png")).max() <= 2


@pytest.mark.parametrize(
    "flags, fragment",
    [
        (["--tile", "8"], "--tile must be between 16 and 16384 pixels (got 8)"),
        (["--tile", "64", "--tile-overlap", "64"], "--tile-overlap must be at least 0 and less than the --tile side 64 (got 64)"),
        (["--tile-norm", "fast"], "--tile-norm must be one of thumbnail, exact (got 'fast')"),
        (["--scale", "native"], "--scale must be one of input, train (got 'native')"),
        (["--scale", "train", "--size", "64"], "--size and --scale train both choose the scale the network sees"),
        (["--keep-scale"], "--keep-scale goes with --scale train"),
    ],
)
def test_bad_tile_and_scale_flags_are_one_line(model_dir, tmp_path, flags, fragment):
    ramp_image(20, 16).save(tmp_path / "a.png")
    result = invoke("translate", str(tmp_path / "a.png"), "--to", "zebra", "--model", str(model_dir), *flags)
    assert_one_line_error(result, 2, fragment)
    assert not (tmp_path / "a.zebra.png").exists()
