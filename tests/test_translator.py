"""The Translator API: any input size is kept, batching changes nothing, inputs map to outputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from gantrans import checkpoint
from gantrans.outputs import InputFile, expand_inputs, output_path
from gantrans.translate import Translator, resize_shorter_side

from conftest import tiny_config


@pytest.fixture
def translator(tmp_path) -> Translator:
    config = tiny_config(tmp_path / "data", tmp_path / "run")
    method = checkpoint.build_method(config, ("horse", "zebra"), training=False, seed=3)
    checkpoint.save_model(tmp_path / "run" / checkpoint.MODEL_FILE, method, config, step=0)
    return Translator.load(tmp_path / "run", device="cpu")


@pytest.mark.parametrize("height, width", [(51, 37), (3, 5), (1, 1), (8, 8), (9, 13)])
def test_any_size_is_kept(translator, height, width):
    output = translator.translate_tensor(torch.rand(2, 3, height, width) * 2 - 1, "zebra")
    assert output.shape == (2, 3, height, width) and torch.isfinite(output).all()


def test_batching_same_sized_images_changes_nothing(translator):
    images = [Image.effect_noise((20, 12), 60 + i).convert("RGB") for i in range(3)] + [Image.new("RGB", (9, 7), (9, 99, 199))]
    together = translator.translate_images(images, "horse")
    alone = [translator.translate_images([image], "horse")[0] for image in images]
    assert [image.size for image in together] == [(20, 12)] * 3 + [(9, 7)]
    assert all(a.tobytes() == b.tobytes() for a, b in zip(together, alone))


def test_size_option_resizes_the_shorter_side(translator):
    (output,) = translator.translate_images([Image.new("RGB", (40, 20))], "zebra", size=10)
    assert output.size == (20, 10) and resize_shorter_side(Image.new("RGB", (30, 90)), 15).size == (15, 45)


def test_folder_inputs_mirror_structure_and_skip_earlier_outputs_and_grids(tmp_path):
    for name in ["a.png", "sub/b.jpg", "sub/b.zebra.png", "sub/b.grid.png", "notes.txt"]:
        (tmp_path / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(tmp_path / "in" / name) if name != "notes.txt" else (tmp_path / "in" / name).write_text("x")
    items = list(expand_inputs([str(tmp_path / "in")], skip_outputs_of=("horse", "zebra")))
    assert [item.output_stem.as_posix() for item in items] == ["a", "sub/b"]
    assert output_path(items[1], "zebra", Path("out"), False) == Path("out/sub/b.zebra.png")
    assert output_path(items[1], "zebra", None, False) == tmp_path / "in" / "sub" / "b.zebra.png"
    assert output_path(InputFile(Path("x/y.jpg"), Path("y")), "zebra", Path("z.jpg"), True) == Path("z.jpg")
