"""Decoding rules, data layouts, bad files, preprocessing and seeded unpaired sampling."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gantrans.batches import batches, collate
from gantrans.config import DataConfig
from gantrans.data import Sample, UnpairedDataset
from gantrans.errors import DataError
from gantrans.folders import discover_domains
from gantrans.images import ImageDecodeError, find_images, load_rgb, to_model_range, to_uint8

from conftest import write_images

# --- decoding -------------------------------------------------------------------------------------


def test_exif_orientation_is_applied(tmp_path):
    """A 20x10 image tagged 'rotate 90 CW' (orientation 6) loads as 10x20, its left edge on top."""
    pixels = np.zeros((10, 20, 3), np.uint8)
    pixels[:, :2] = 255  # a white stripe on the left edge
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    Image.fromarray(pixels).save(path, exif=exif, quality=95)
    image = np.asarray(load_rgb(path))
    assert image.shape == (20, 10, 3)
    assert image[:2].mean() > 200 and image[-2:].mean() < 50  # the stripe is now the top rows


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda: Image.new("L", (4, 4), 100), (100, 100, 100)),
        (lambda: Image.new("RGBA", (4, 4), (10, 20, 30, 0)), (255, 255, 255)),  # transparent -> white
        (lambda: Image.new("RGBA", (4, 4), (10, 20, 30, 255)), (10, 20, 30)),
        (lambda: Image.new("LA", (4, 4), (50, 0)), (255, 255, 255)),
        (lambda: Image.new("RGB", (4, 4), (1, 2, 3)).convert("P", palette=Image.ADAPTIVE), (1, 2, 3)),
        (lambda: Image.fromarray(np.full((4, 4), 65535, np.uint16)), (255, 255, 255)),  # 16-bit grayscale
        (lambda: Image.fromarray(np.full((4, 4), 32896, np.uint16)), (128, 128, 128)),
        (lambda: Image.fromarray(np.full((4, 4), 0.5, np.float32)), (128, 128, 128)),  # float in [0, 1]
    ],
)
def test_every_mode_becomes_8bit_rgb(tmp_path, make, expected):
    image = make()
    path = tmp_path / ("image.tif" if image.mode == "F" else "image.png")
    image.save(path)
    loaded = load_rgb(path)
    assert loaded.mode == "RGB" and loaded.getpixel((0, 0)) == expected


def test_palette_with_transparency_is_composited_on_white(tmp_path):
    image = Image.new("P", (2, 1))
    image.putpalette([0, 0, 0, 200, 0, 0] + [0] * 762)
    image.putpixel((1, 0), 1)
    image.info["transparency"] = 0
    path = tmp_path / "palette.png"
    image.save(path, transparency=0)
    assert np.asarray(load_rgb(path)).reshape(-1, 3).tolist() == [[255, 255, 255], [200, 0, 0]]


@pytest.mark.parametrize("content", [b"", b"not an image", b"\x89PNG\r\n\x1a\n broken"])
def test_undecodable_files_raise_a_clear_error_naming_the_file(tmp_path, content):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(ImageDecodeError, match="bad.png: not a readable image"):
        load_rgb(path)


def test_truncated_jpeg_is_an_error(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageDecodeError, match="cut.jpg"):
        load_rgb(path)


def test_pixel_mapping_round_trips():
    levels = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).expand(1, 3, 16, 16)
    model_range = to_model_range(levels)
    assert model_range.min() == -1 and model_range.max() == 1
    assert torch.equal(to_uint8(model_range), levels)


# --- layouts --------------------------------------------------------------------------------------


def test_find_images_is_recursive_sorted_and_skips_hidden(tmp_path):
    for name in ["b.PNG", "a.jpg", "sub/c.JpEg", ".hidden.png", ".cache/d.png", "notes.txt", "e.webp"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert [p.relative_to(tmp_path).as_posix() for p in find_images(tmp_path)] == ["a.jpg", "b.PNG", "e.webp", "sub/c.JpEg"]


def test_domain_folder_layout(tiny_data):
    files = discover_domains(tiny_data)
    assert list(files) == ["horse", "zebra"] and [len(v) for v in files.values()] == [6, 4]
    assert list(discover_domains(tiny_data, ("zebra", "horse"))) == ["zebra", "horse"]


def test_cyclegan_layout_with_and_without_names(tmp_path):
    for folder, count in [("trainA", 3), ("trainB", 2), ("testA", 1), ("testB", 1)]:
        write_images(tmp_path / folder, count)
    assert {k: len(v) for k, v in discover_domains(tmp_path).items()} == {"A": 3, "B": 2}
    assert list(discover_domains(tmp_path, ("photo", "vangogh"))) == ["photo", "vangogh"]
    assert {k: len(v) for k, v in discover_domains(tmp_path, ("photo", "vangogh"), split="test").items()} == {"photo": 1, "vangogh": 1}
    with pytest.raises(DataError, match="exactly 2 names"):
        discover_domains(tmp_path, ("a", "b", "c"))


def test_train_test_split_layout(tmp_path):
    write_images(tmp_path / "train" / "day", 2)
    write_images(tmp_path / "train" / "night", 2)
    write_images(tmp_path / "test" / "day", 1)
    write_images(tmp_path / "test" / "night", 1)
    assert list(discover_domains(tmp_path)) == ["day", "night"]
    assert [len(v) for v in discover_domains(tmp_path, split="test").values()] == [1, 1]


def test_layout_errors_say_what_was_found(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        discover_domains(tmp_path / "nowhere")
    write_images(tmp_path / "loose", 2)
    with pytest.raises(DataError, match="no domain folders .*holds 2 images directly"):
        discover_domains(tmp_path / "loose")
    write_images(tmp_path / "data" / "horse", 1)
    (tmp_path / "data" / "zebra").mkdir()
    (tmp_path / "data" / "zebra" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match=r"domain 'zebra': no images in .*zebra \(looked for \.jpg .*; 1 other file\(s\) there\)"):
        discover_domains(tmp_path / "data")
    with pytest.raises(DataError, match="folder .*cat not found; .* has: horse, zebra"):
        discover_domains(tmp_path / "data", ("horse", "cat"))


# --- sampling and preprocessing --------------------------------------------------------------------


def dataset(root: Path, seed: int = 0, **data) -> UnpairedDataset:
    config = DataConfig(root=str(root), **{"size": 16, "load_size": 20, **data})
    return UnpairedDataset(discover_domains(root), config, seed)


def all_batches(data: UnpairedDataset, start: int, stop: int, workers: int = 0, batch_size: int = 2) -> list:
    return [images for images, _ in batches(data, batch_size, start, stop, workers, pin_memory=False)]


def test_epoch_visits_the_larger_domain_once(tiny_data):
    data = dataset(tiny_data, flip=False, preprocess="none")
    assert len(data) == 6
    horse_images = {np.asarray(load_rgb(p).resize((40, 36))).tobytes() for p in discover_domains(tiny_data)["horse"]}
    seen = {data[i].images[0].permute(1, 2, 0).numpy().tobytes() for i in range(6)}
    assert seen == horse_images  # each horse exactly once in epoch 0
    assert [data[i].images[0].shape for i in range(2)] == [(3, 36, 40)] * 2


def test_sampling_is_seeded_and_independent_of_workers(tiny_data):
    same = [all_batches(dataset(tiny_data, seed=1), 0, 4), all_batches(dataset(tiny_data, seed=1), 0, 4, workers=2)]
    other = all_batches(dataset(tiny_data, seed=2), 0, 4)
    for a, b in zip(*same):
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert any(not torch.equal(x, y) for a, c in zip(same[0], other) for x, y in zip(a, c))


def test_starting_at_step_k_gives_the_tail_of_the_full_stream(tiny_data):
    full, tail = all_batches(dataset(tiny_data), 0, 7), all_batches(dataset(tiny_data), 4, 7)
    assert all(torch.equal(x, y) for a, b in zip(full[4:], tail) for x, y in zip(a, b))


@pytest.mark.parametrize(
    "settings, shape",
    [
        ({"preprocess": "resize-crop"}, (3, 16, 16)),
        ({"preprocess": "crop"}, (3, 16, 16)),
        ({"preprocess": "scale-width"}, (3, 16, 16)),  # 40x36 -> 16x14.4 -> height rounded to a multiple of 4
        ({"preprocess": "scale-width-crop", "load_size": 24}, (3, 16, 16)),
        ({"preprocess": "none"}, (3, 36, 40)),
        ({"preprocess": "crop", "size": 48, "load_size": 48}, (3, 48, 48)),  # smaller than the crop: enlarged first
    ],
)
def test_preprocess_modes_give_the_expected_shapes(tiny_data, settings, shape):
    assert dataset(tiny_data, **settings)[0].images[0].shape == shape


def test_no_flip_means_never_flipped(tiny_data):
    flipped = [dataset(tiny_data, flip=True, preprocess="none")[i].images[0] for i in range(12)]
    plain = [dataset(tiny_data, flip=False, preprocess="none")[i].images[0] for i in range(12)]
    assert any(not torch.equal(a, b) for a, b in zip(flipped, plain))
    assert all(torch.equal(a, b) or torch.equal(a.flip(-1), b) for a, b in zip(flipped, plain))


def test_corrupt_file_is_skipped_and_named(tiny_data):
    (tiny_data / "horse" / "img_002.png").write_bytes(b"garbage")
    data = dataset(tiny_data)
    messages = [m for _, skipped in batches(data, 2, 0, 6, 0, False) for m in skipped]
    assert len(messages) == 1 and "img_002.png: not a readable image" in messages[0]  # reported once, then avoided


def test_a_domain_with_no_decodable_image_is_an_error(tiny_data):
    for path in (tiny_data / "zebra").iterdir():
        path.write_bytes(b"garbage")
    with pytest.raises(DataError, match="'zebra': none of its 4 images could be decoded"):
        dataset(tiny_data)[0]


def test_cache_decodes_each_file_once(tiny_data):
    data = dataset(tiny_data)
    data.enable_cache()
    first = [data[i].images for i in range(6)]
    for path in tiny_data.rglob("*.png"):
        path.unlink()  # from now on only the cache can serve images
    again = [data[i].images for i in range(6)]
    assert all(torch.equal(a, b) for x, y in zip(first, again) for a, b in zip(x, y))


def test_collate_refuses_mixed_sizes_clearly():
    samples = [Sample((torch.zeros(3, 8, 8, dtype=torch.uint8),), ()), Sample((torch.zeros(3, 8, 12, dtype=torch.uint8),), ())]
    # The advice must not be "--batch-size 1": at batch 1 the two domains' images can differ too.
    with pytest.raises(DataError, match=r"different sizes in one step \(12x8, 8x8\).*use --preprocess scale-width-crop") as caught:
        collate(samples)
    assert "batch-size" not in str(caught.value)
    one_step_two_domains = [Sample((torch.zeros(3, 8, 8, dtype=torch.uint8), torch.zeros(3, 8, 12, dtype=torch.uint8)), ())]
    with pytest.raises(DataError, match="different sizes in one step"):
        collate(one_step_two_domains)
