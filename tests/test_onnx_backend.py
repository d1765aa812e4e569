"""`gantrans translate --backend onnxruntime`: the same images as PyTorch's for odd sizes and every kind of
method; each direction exported once into the cache, again for a changed model; what it refuses in one
line (bf16, another device, --tile, a missing extra); images that go in tiles run in PyTorch, with a note."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_export import NEEDS, save_tiny_model

from gantrans import checkpoint
from gantrans import translate as translation
from gantrans.translate import Translator

from conftest import assert_one_line_error, invoke, tiny_config, tiny_preset

EXPORTING = "for onnxruntime (once, cached in"


@pytest.fixture
def onnxruntime(monkeypatch, tmp_path):
    """onnxruntime, once the export extra's packages are all importable (else the test skips, saying
    why); the cache in a fresh folder of the test's own."""
    pytest.importorskip("onnx", reason=NEEDS)
    pytest.importorskip("onnxscript", reason=NEEDS)
    module = pytest.importorskip("onnxruntime", reason=NEEDS)
    monkeypatch.setenv("GANTRANS_CACHE", str(tmp_path / "cache"))
    return module


def write_inputs(folder: Path, sizes: list[tuple[int, int]]) -> Path:
    """Random RGB PNGs of `sizes` (width, height) in `folder`."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index, (width, height) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(folder / f"in{index}.png")
    return folder


def translate(run: Path, inputs: Path, out: Path, to: str, *flags: str):
    result = invoke("translate", str(inputs), "--to", to, "--model", str(run), "--out", str(out), "--device", "cpu", *flags)
    assert result.exit_code == 0, result.stderr
    return result


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path), dtype=np.int16)


def cached_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cache" / "onnx").rglob("*.onnx"))


# --- the same images as PyTorch ---------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("preset, to", [("cyclegan", "all"), ("cut", "zebra"), ("stargan", "blond")])
def test_onnxruntime_translates_as_torch_does(preset, to, tmp_path, onnxruntime):
    """A two-way method (both directions), a one-way one and StarGAN, on odd sizes (two of one size: a batch)."""
    run = save_tiny_model(preset, tmp_path / "run")
    inputs = write_inputs(tmp_path / "in", [(37, 29), (37, 29), (23, 41)])
    translate(run, inputs, tmp_path / "torch", to)
    result = translate(run, inputs, tmp_path / "ort", to, "--backend", "onnxruntime")
    expected = sorted(path.name for path in (tmp_path / "torch").iterdir())
    assert sorted(path.name for path in (tmp_path / "ort").iterdir()) == expected and len(expected) >= 3
    for name in expected:
        torch_image, ort_image = pixels(tmp_path / "torch" / name), pixels(tmp_path / "ort" / name)
        assert ort_image.shape == torch_image.shape and np.abs(ort_image - torch_image).max() <= 1, name
    directions = len(tiny_preset(preset).domains) if to == "all" else 1
    assert result.stderr.count(EXPORTING) == directions == len(cached_files(tmp_path))


@pytest.mark.slow
def test_the_library_runs_onnxruntime_behind_the_same_translator(tmp_path, onnxruntime):
    run = save_tiny_model("direct", tmp_path / "run")
    ort = Translator.load(run, device="cpu", backend="onnxruntime")
    plain = Translator.load(run, device="cpu")
    assert (ort.backend, plain.backend) == ("onnxruntime", "torch")
    images = torch.rand(2, 3, 13, 19, generator=torch.Generator().manual_seed(0)) * 2 - 1
    got, expected = ort.translate_tensor(images, "painting"), plain.translate_tensor(images, "painting")
    assert got.shape == expected.shape and (got - expected).abs().max() <= 1e-4


# --- the cache --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_export_is_cached_once_and_redone_for_a_changed_model(tmp_path, monkeypatch, onnxruntime):
    run = save_tiny_model("direct", tmp_path / "run")
    inputs = write_inputs(tmp_path / "in", [(21, 17)])
    first = translate(run, inputs, tmp_path / "out", "painting", "--backend", "onnxruntime")
    exporting = [line for line in first.stderr.splitlines() if EXPORTING in line]
    (cached,) = cached_files(tmp_path)
    assert exporting == [
        f"gantrans: exporting {run / checkpoint.MODEL_FILE} (photo -> painting) for onnxruntime (once, cached in {cached.parent})"
    ]
    made = cached.stat().st_mtime_ns
    exporter = sys.modules["onnxscript"]
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # a cached file needs only onnxruntime (onnxscript: ~1 s to import)
    again = translate(run, inputs, tmp_path / "out", "painting", "--backend", "onnxruntime")
    assert EXPORTING not in again.stderr and cached_files(tmp_path) == [cached] and cached.stat().st_mtime_ns == made
    # The same path, other weights (as a training run saving again): exported anew, under a new key.
    tiny = tiny_preset("direct")
    config = tiny_config(tmp_path / "no-data", run, method="direct", **tiny.overrides)
    method = checkpoint.build_method(config, tiny.domains, training=False, seed=1)
    checkpoint.save_model(run / checkpoint.MODEL_FILE, method, config, step=3)
    monkeypatch.setitem(sys.modules, "onnxscript", exporter)
    changed = translate(run, inputs, tmp_path / "changed", "painting", "--backend", "onnxruntime")
    assert changed.stderr.count(EXPORTING) == 1 and len(cached_files(tmp_path)) == 2
    translate(run, inputs, tmp_path / "torch", "painting")
    assert np.abs(pixels(tmp_path / "changed" / "in0.painting.png") - pixels(tmp_path / "torch" / "in0.painting.png")).max() <= 1


# --- what it refuses ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, fragment",
    [
        (["--precision", "bf16"], "--backend onnxruntime runs in fp32 only: drop --precision bf16, or use --backend torch"),
        (["--device", "cuda"], "--backend onnxruntime runs on the CPU: drop --device cuda"),
        (["--tile", "64"], "--tile runs in PyTorch only"),
    ],
)
def test_what_onnxruntime_does_not_do_is_one_line_before_anything_is_loaded(flags, fragment, tmp_path):
    write_inputs(tmp_path / "in", [(20, 20)])
    result = invoke(
        "translate",
        str(tmp_path / "in"),
        "--to",
        "x",
        "--model",
        str(tmp_path / "nope"),
        "--out",
        str(tmp_path / "out"),
        "--backend",
        "onnxruntime",
        *flags,
    )
    assert_one_line_error(result, 2, fragment)
    assert not (tmp_path / "out").exists()


def test_an_unknown_backend_is_one_line(tmp_path):
    result = invoke("translate", str(tmp_path), "--to", "x", "--backend", "tensorrt")
    assert_one_line_error(result, 2, "--backend must be one of torch, onnxruntime (got 'tensorrt')")


@pytest.mark.parametrize("module", ["onnxruntime", "onnxscript"])
def test_without_the_export_extra_the_backend_says_how_to_install_it(module, tmp_path, monkeypatch):
    """onnxruntime is checked before anything is translated; the exporter's onnxscript when a file is to be exported."""
    run = save_tiny_model("direct", tmp_path / "run")
    inputs = write_inputs(tmp_path / "in", [(20, 20)])
    monkeypatch.setenv("GANTRANS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed: importing it fails
    result = invoke(
        "translate", str(inputs), "--to", "painting", "--model", str(run), "--out", str(tmp_path / "out"), "--backend", "onnxruntime"
    )
    assert_one_line_error(result, 1, "pip install 'gantrans[export]'")
    assert f"gantrans translate --backend onnxruntime needs {module}" in result.stderr
    assert not list(tmp_path.rglob("*.onnx")) and not list(tmp_path.rglob("*.painting.png"))


def test_the_library_refuses_tiles_with_onnxruntime(tmp_path, onnxruntime):
    ort = Translator.load(save_tiny_model("direct", tmp_path / "run"), device="cpu", backend="onnxruntime")
    with pytest.raises(translation.UsageError, match="--tile runs in PyTorch only"):
        ort.translate_images([Image.new("RGB", (20, 20))], "painting", options=translation.TranslateOptions(tile=64))


# --- tiles on their own: in PyTorch ------------------------------------------------------------------


def test_images_that_go_in_tiles_on_their_own_run_in_pytorch_with_one_note(tmp_path, monkeypatch, onnxruntime):
    run = save_tiny_model("direct", tmp_path / "run")
    inputs = write_inputs(tmp_path / "in", [(40, 36), (33, 45)])
    monkeypatch.setattr(translation, "MAX_WHOLE_PIXELS", 1000)  # both images now go in tiles
    ort = translate(run, inputs, tmp_path / "ort", "painting", "--backend", "onnxruntime")
    notes = [line for line in ort.stderr.splitlines() if "in tiles" in line]
    assert len(notes) == 1 and notes[0].startswith("gantrans: note: 40x36 goes in tiles, which run in PyTorch, not onnxruntime"), ort.stderr
    assert not cached_files(tmp_path)  # nothing ran in onnxruntime, so nothing was exported
    translate(run, inputs, tmp_path / "torch", "painting")
    for name in ("in0.painting.png", "in1.painting.png"):
        assert np.array_equal(pixels(tmp_path / "ort" / name), pixels(tmp_path / "torch" / name)), name


def test_onnxruntime_failing_to_allocate_is_out_of_memory_for_the_fallback(tmp_path, onnxruntime):
    from gantrans.errors import is_out_of_memory
    from gantrans.onnx_backend import OnnxRuntime
    from gantrans.onnx_file import Direction

    class FullSession:
        def run(self, outputs: object, feeds: object) -> None:
            raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to allocate memory for requested buffer of size 123")

    method, info = checkpoint.load_model(save_tiny_model("direct", tmp_path / "run"))
    runtime = OnnxRuntime(method, info, "0" * 64)
    runtime._sessions[Direction("painting", "photo")] = FullSession()
    with pytest.raises(MemoryError) as raised:
        runtime.run(torch.zeros(1, 3, 16, 16), "painting", None)
    assert is_out_of_memory(raised.value) and "Failed to allocate memory" in str(raised.value)


def test_running_out_of_memory_in_onnxruntime_falls_back_to_tiles_in_pytorch(tmp_path, monkeypatch, onnxruntime):
    from gantrans.onnx_backend import OnnxRuntime

    def out_of_memory(self: OnnxRuntime, images: torch.Tensor, target: str, source: str | None) -> torch.Tensor:
        raise MemoryError("onnxruntime: Failed to allocate memory")

    run = save_tiny_model("direct", tmp_path / "run")
    monkeypatch.setattr(OnnxRuntime, "run", out_of_memory)
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (30, 26, 3), dtype=np.uint8))
    (got,) = Translator.load(run, device="cpu", backend="onnxruntime").translate_images([image], "painting")
    # PyTorch running out of memory whole, the same way: the same tiles follow.
    plain = Translator.load(run, device="cpu")
    monkeypatch.setattr(plain, "_forward", lambda images, target, source: out_of_memory(None, images, target, source))
    (expected,) = plain.translate_images([image], "painting")
    assert got.size == image.size and np.array_equal(np.asarray(got), np.asarray(expected))
