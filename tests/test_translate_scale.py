"""Translation at the training scale (--scale train, --keep-scale), and the hint for inputs far
above it. The tiny model was trained on resize-crop: images squeezed to 20 px, 16 px crops."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image
from test_tiling import ramp_image, save_tiny_model

from gantrans.config import DataConfig
from gantrans.translate import TranslateOptions, Translator
from gantrans.translate_options import network_size, scale_hint, training_scale

from conftest import invoke


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("runs") / "h2z")  # --load-size 20, --preprocess resize-crop


def translate(model_dir: Path, *args: str):
    return invoke("translate", *args, "--to", "zebra", "--model", str(model_dir))


def test_training_scale_follows_the_preprocessing():
    assert training_scale(DataConfig(size=256, load_size=286)) == ("shorter", 286)
    assert training_scale(DataConfig(size=256, load_size=512, preprocess="scale-width-crop")) == ("width", 512)
    assert training_scale(DataConfig(size=256, preprocess="scale-width")) == ("width", 256)
    assert training_scale(DataConfig(preprocess="crop")) is None and training_scale(DataConfig(preprocess="none")) is None
    train = TranslateOptions(scale="train")
    assert network_size((4000, 3000), train, DataConfig(load_size=286)) == (381, 286)
    assert network_size((4000, 3000), train, DataConfig(size=256, preprocess="scale-width")) == (256, 192)
    assert network_size((4000, 3000), train, DataConfig(preprocess="crop")) == (4000, 3000)  # crops of the images as they came
    assert network_size((4000, 3000), TranslateOptions(size=300), DataConfig()) == (400, 300)


def test_scale_train_returns_the_input_size_or_with_keep_scale_the_networks(model_dir, tmp_path):
    ramp_image(80, 64).save(tmp_path / "a.png")
    result = translate(model_dir, str(tmp_path / "a.png"), "--scale", "train", "--out", str(tmp_path / "same.png"))
    assert result.exit_code == 0 and result.stderr == "", result.stderr
    assert Image.open(tmp_path / "same.png").size == (80, 64)
    result = translate(model_dir, str(tmp_path / "a.png"), "--scale", "train", "--keep-scale", "--out", str(tmp_path / "kept.png"))
    assert result.exit_code == 0 and Image.open(tmp_path / "kept.png").size == (25, 20)  # shorter side: the load size, 20
    # The same through the library and through stdin.
    translator = Translator.load(model_dir, device="cpu")
    (output,) = translator.translate_images([ramp_image(80, 64)], "zebra", options=TranslateOptions(scale="train"))
    assert output.size == (80, 64) and output.tobytes() == Image.open(tmp_path / "same.png").tobytes()
    piped = invoke(
        "translate",
        "-",
        "--to",
        "zebra",
        "--model",
        str(model_dir),
        "--scale",
        "train",
        "--keep-scale",
        input=(tmp_path / "a.png").read_bytes(),
    )
    assert (
        piped.exit_code == 0
        and Image.open(tmp_path / "kept.png").tobytes() == Image.open(io.BytesIO(piped.stdout_bytes)).convert("RGB").tobytes()
    )


def test_a_large_input_gets_one_hint_per_run(model_dir, tmp_path):
    (tmp_path / "in").mkdir()
    for name, size in [("a", (80, 64)), ("b", (90, 70)), ("c", (40, 36))]:
        ramp_image(*size).save(tmp_path / "in" / f"{name}.png")
    result = translate(model_dir, str(tmp_path / "in"))
    assert result.exit_code == 0
    notes = [line for line in result.stderr.splitlines() if line.startswith("gantrans: note:")]
    assert notes == [
        f"gantrans: note: {tmp_path / 'in' / 'a.png'} is 80x64, 3x the scale this model was trained at (shorter side 20 px): "
        "--scale train translates at that scale, --tile at full size (--scale input keeps this and hides this note)"
    ]
    for chosen in (["--scale", "input"], ["--scale", "train"], ["--tile", "64"], ["--size", "32"]):
        assert "note" not in translate(model_dir, str(tmp_path / "in"), *chosen).stderr
    assert "note" not in translate(model_dir, str(tmp_path / "in" / "c.png")).stderr  # 36 px: less than 3x 20 px
    assert scale_hint("x", (59, 200), TranslateOptions(), DataConfig(size=16, load_size=20)) is None
    # A photo tiled anyway (over 16.8 MP) is told of --scale train only.
    large = scale_hint("x", (8000, 6000), TranslateOptions(), DataConfig())
    assert large is not None and "--scale train" in large and "--tile" not in large
