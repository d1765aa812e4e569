"""`gantrans export`: one ONNX file per direction that onnxruntime runs as gantrans translates, any size,
self-describing; the README's deployment code runs without gantrans; the CPU speed benchmark runs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gantrans import __version__, checkpoint
from gantrans.export import export_model
from gantrans.methods import PRESETS
from gantrans.translate import Translator

from conftest import assert_one_line_error, invoke, tiny_config, tiny_preset

ROOT = Path(__file__).resolve().parent.parent
NEEDS = "gantrans export needs the export extra: pip install 'gantrans[export]'"


@pytest.fixture(scope="module")
def onnxruntime():
    """onnxruntime, once the export extra's packages are all importable (else the test skips, saying why)."""
    pytest.importorskip("onnx", reason=NEEDS)
    pytest.importorskip("onnxscript", reason=NEEDS)
    return pytest.importorskip("onnxruntime", reason=NEEDS)


def save_tiny_model(preset: str, folder: Path, domains: tuple[str, ...] | None = None, **overrides: object) -> Path:
    """A tiny model of `preset` (with settings `overrides`) with seeded random weights, saved as a run
    folder (no training needed)."""
    tiny = tiny_preset(preset)
    config = tiny_config(folder.parent / "no-data", folder, method=preset, **{**tiny.overrides, **overrides})
    method = checkpoint.build_method(config, domains or tiny.domains, training=False, seed=0)
    checkpoint.save_model(folder / checkpoint.MODEL_FILE, method, config, step=3)
    return folder


@pytest.fixture(scope="module")
def horse2zebra(tmp_path_factory, onnxruntime) -> tuple[Path, dict[str, Path]]:
    """A tiny CycleGAN run folder `horse2zebra`, and its exported files by target domain."""
    run = save_tiny_model("cyclegan", tmp_path_factory.mktemp("runs") / "horse2zebra")
    paths = list(export_model(run))
    return run, {metadata(path)["target"]: path for path in paths}


def metadata(path: Path) -> dict[str, str]:
    import onnxruntime

    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map


def run_padded(path: Path, images: np.ndarray) -> np.ndarray:
    """What the README tells a user to do: pad (reflect) to the stride in the metadata, run, crop."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    stride, min_side = int(meta["stride"]), int(meta["min_side"])
    height, width = images.shape[-2:]
    pad_bottom, pad_right = max(-height % stride, min_side - height), max(-width % stride, min_side - width)
    padded = np.pad(images, ((0, 0), (0, 0), (0, pad_bottom), (0, pad_right)), mode="reflect")
    (translated,) = session.run(None, {meta["input"]: padded})
    return translated[..., :height, :width]


# --- every method that translates ----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_direction_runs_in_onnxruntime_as_gantrans_translates_it(preset, tmp_path, onnxruntime):
    run = save_tiny_model(preset, tmp_path / "run")
    paths = list(export_model(run))
    translator = Translator.load(run, device="cpu", precision="fp32")
    assert sorted(metadata(path)["target"] for path in paths) == sorted(tiny_preset(preset).translates_into)
    stride, min_side = translator.method.stride, translator.method.min_side
    side = max(min_side, 2 * stride) + 1  # odd (strides are even): every side needs padding
    generator = torch.Generator().manual_seed(0)
    for path in paths:
        target = metadata(path)["target"]
        for height, width in ((side, side + stride + 2), (side + 2 * stride, side + stride)):
            images = torch.rand(2, 3, height, width, generator=generator) * 2 - 1
            expected = translator.translate_tensor(images, target).numpy()
            got = run_padded(path, images.numpy())
            assert got.shape == expected.shape
            assert np.abs(got - expected).max() <= 1e-4, (path.name, height, width)


@pytest.mark.slow
def test_stargan_exports_one_file_per_target_label_for_inputs_of_any_domain(tmp_path, onnxruntime):
    run = save_tiny_model("stargan", tmp_path / "run")
    paths = list(export_model(run))
    assert [path.name for path in paths] == ["run.black.onnx", "run.blond.onnx", "run.brown.onnx"]
    assert [(metadata(path)["source"], metadata(path)["target"]) for path in paths] == [("", "black"), ("", "blond"), ("", "brown")]


@pytest.mark.slow
def test_each_stargan_file_bakes_in_its_own_target(tmp_path, onnxruntime):
    """The files' outputs differ as the targets' translations do (the target is not lost in export)."""
    tiny = tiny_preset("stargan")
    config = tiny_config(tmp_path / "no-data", tmp_path / "run", method="stargan")
    method = checkpoint.build_method(config, tiny.domains, training=False, seed=0)
    with torch.no_grad():  # conditional norms start equal for every target: make them differ, as training does
        for parameter in method.generators.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=torch.Generator().manual_seed(1)) * 0.1)
    checkpoint.save_model(tmp_path / "run" / checkpoint.MODEL_FILE, method, config, step=3)
    images = np.random.default_rng(0).uniform(-1, 1, (1, 3, 16, 20)).astype(np.float32)
    outputs = {metadata(path)["target"]: run_padded(path, images) for path in export_model(tmp_path / "run")}
    assert sorted(outputs) == sorted(tiny.domains)
    assert min(np.abs(outputs[a] - outputs[b]).max() for a in outputs for b in outputs if a < b) > 1e-3


# --- the file ------------------------------------------------------------------------------------


def test_metadata_says_what_the_file_translates_and_how_to_feed_it(horse2zebra):
    import onnx

    run, files = horse2zebra
    assert sorted(files) == ["horse", "zebra"]
    assert files["zebra"] == run / "horse2zebra.zebra.onnx"
    meta = metadata(files["zebra"])
    assert {key: meta[key] for key in ("source", "target", "method", "gantrans_version", "stride", "min_side")} == {
        "source": "horse",
        "target": "zebra",
        "method": "cyclegan",
        "gantrans_version": __version__,
        "stride": "4",
        "min_side": "8",
    }
    assert json.loads(meta["domains"]) == ["horse", "zebra"]
    assert (meta["channels"], meta["layout"], meta["dtype"], meta["range"]) == ("RGB", "NCHW", "float32", "[-1, 1]")
    assert (meta["input"], meta["output"], meta["padding"], meta["step"]) == ("images", "translated", "reflect", "3")
    model = onnx.load(str(files["zebra"]))
    onnx.checker.check_model(model, full_check=True)
    assert max(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")) >= 17
    shapes = [
        [dim.dim_param or dim.dim_value for dim in value.type.tensor_type.shape.dim] for value in (*model.graph.input, *model.graph.output)
    ]
    assert shapes == [["batch", 3, "height", "width"]] * 2
    assert "horse -> zebra" in model.doc_string and "multiples of 4" in model.doc_string
    # No stack traces with the exporting machine's paths; only the direction's own generator.
    assert str(ROOT) not in model.SerializeToString().decode("latin-1")
    names = " ".join(tensor.name for tensor in model.graph.initializer)
    assert "generator_xy" in names and "generator_yx" not in names


def test_one_file_takes_any_batch_and_size(horse2zebra):
    run, files = horse2zebra
    translator = Translator.load(run, device="cpu", precision="fp32")
    for batch, height, width in ((1, 8, 8), (3, 20, 12), (2, 12, 28)):
        images = torch.rand(batch, 3, height, width) * 2 - 1
        got = run_padded(files["horse"], images.numpy())
        assert got.shape == (batch, 3, height, width)
        assert np.abs(got - translator.translate_tensor(images, "horse").numpy()).max() <= 1e-4


def test_shared_latent_bakes_in_the_named_source(tmp_path, onnxruntime):
    run = save_tiny_model("shared-latent", tmp_path / "run")
    (path,) = export_model(run, source="real")  # only real -> anime: real into itself is no translation
    assert path.name == "run.anime.onnx" and (metadata(path)["source"], metadata(path)["target"]) == ("real", "anime")


@pytest.mark.slow
def test_shared_latent_with_three_domains_names_the_source_in_the_file(tmp_path, onnxruntime):
    run = save_tiny_model("shared-latent", tmp_path / "run", domains=("photo", "anime", "sketch"))
    assert_one_line_error(invoke("export", str(run)), 2, "name the input's with --from")
    paths = list(export_model(run, source="sketch"))
    assert [path.name for path in paths] == ["run.sketch.photo.onnx", "run.sketch.anime.onnx"]
    images = np.random.default_rng(0).uniform(-1, 1, (1, 3, 9, 13)).astype(np.float32)
    translator = Translator.load(run, device="cpu", precision="fp32")
    expected = translator.translate_tensor(torch.from_numpy(images), "anime", "sketch").numpy()
    assert np.abs(run_padded(paths[1], images) - expected).max() <= 1e-4


@pytest.mark.slow
def test_fully_shared_files_run_as_gantrans_translates_and_keep_their_target(tmp_path, onnxruntime):
    """One encoder and one decoder told the domains in their norms: each file bakes in its source and
    target, and runs as PyTorch does."""
    tiny = tiny_preset("shared-latent")
    config = tiny_config(tmp_path / "no-data", tmp_path / "run", method="shared-latent", fully_shared=True)
    method = checkpoint.build_method(config, tiny.domains, training=False, seed=0)
    with torch.no_grad():  # conditional norms start equal for every domain: make them differ, as training does
        for parameter in method.generators.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=torch.Generator().manual_seed(1)) * 0.1)
    checkpoint.save_model(tmp_path / "run" / checkpoint.MODEL_FILE, method, config, step=3)
    images = np.random.default_rng(0).uniform(-1, 1, (2, 3, 12, 20)).astype(np.float32)
    translator = Translator.load(tmp_path / "run", device="cpu", precision="fp32")
    outputs = {}
    for source in tiny.domains:
        (path,) = export_model(tmp_path / "run", source=source)
        target = metadata(path)["target"]
        outputs[source] = run_padded(path, images)
        expected = translator.translate_tensor(torch.from_numpy(images), target, source).numpy()
        assert np.abs(outputs[source] - expected).max() <= 1e-4, (source, target)
    assert np.abs(outputs[tiny.domains[0]] - outputs[tiny.domains[1]]).max() > 1e-3


def test_a_file_that_disagrees_with_pytorch_is_not_written(tmp_path, monkeypatch, onnxruntime):
    from gantrans import onnx_file

    run = save_tiny_model("direct", tmp_path / "run")
    monkeypatch.setattr(onnx_file, "SELF_CHECK_TOLERANCE", -1.0)  # any difference, even none, now disagrees
    assert_one_line_error(invoke("export", str(run)), 1, "the exported model disagrees with PyTorch")
    assert sorted(path.name for path in run.iterdir()) == [checkpoint.MODEL_FILE]


# --- the command line ----------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_prints_the_paths_it_writes_and_nothing_else(tmp_path, onnxruntime):
    run = save_tiny_model("cyclegan", tmp_path / "horse2zebra")
    result = invoke("export", str(run), "--format", "onnx")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [str(run / "horse2zebra.horse.onnx"), str(run / "horse2zebra.zebra.onnx")]
    assert result.stderr == ""  # the exporter's progress and warnings are not shown
    one = invoke("export", str(run / checkpoint.MODEL_FILE), "--to", "zebra", "--out", str(tmp_path / "deploy" / "z.onnx"))
    assert one.exit_code == 0 and one.stdout.splitlines() == [str(tmp_path / "deploy" / "z.onnx")]
    folder = invoke("export", str(run), "-t", "horse", "-o", str(tmp_path / "new" / "folder"))
    assert folder.stdout.splitlines() == [str(tmp_path / "new" / "folder" / "horse2zebra.horse.onnx")]
    assert all(Path(line).is_file() for line in result.stdout.splitlines() + one.stdout.splitlines() + folder.stdout.splitlines())


@pytest.mark.parametrize(
    "args, code, fragment",
    [
        (["--to", "cat"], 2, "unknown domain 'cat': the model"),
        (["--format", "tflite"], 2, "unknown --format 'tflite'; gantrans exports: onnx"),
        (["--out", "{tmp}/both.onnx"], 2, "names one file, but the model translates into horse, zebra"),
        (["--out", "{tmp}/a-file"], 2, "is an existing file: give a folder"),
        (["--out", "{tmp}/a-file/sub"], 1, "cannot create the folder"),
    ],
)
def test_cli_bad_requests_are_one_line_and_write_nothing(args, code, fragment, tmp_path, onnxruntime):
    run = save_tiny_model("cyclegan", tmp_path / "horse2zebra")
    (tmp_path / "a-file").write_text("not a folder")
    result = invoke("export", str(run), *(arg.replace("{tmp}", str(tmp_path)) for arg in args))
    assert_one_line_error(result, code, fragment)
    assert not list(tmp_path.rglob("*.onnx")) and not list(tmp_path.rglob(".*.tmp-*"))


def test_a_full_disk_is_one_line_naming_the_file_and_leaves_nothing(tmp_path, monkeypatch, onnxruntime):
    import errno

    run = save_tiny_model("direct", tmp_path / "run")

    def disk_full(source: object, destination: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    result = invoke("export", str(run))
    assert_one_line_error(result, 1, f"cannot write {run / 'run.painting.onnx'}: No space left on device")
    assert sorted(path.name for path in run.iterdir()) == [checkpoint.MODEL_FILE]


def test_cli_missing_model_is_one_line(tmp_path, onnxruntime):
    assert_one_line_error(invoke("export", str(tmp_path / "nope")), 1, f"no model at {tmp_path / 'nope'}")


def test_without_the_export_extra_export_says_how_to_install_it(tmp_path, monkeypatch):
    run = save_tiny_model("cyclegan", tmp_path / "horse2zebra")
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if not installed: importing it fails
    result = invoke("export", str(run))
    assert_one_line_error(result, 1, "pip install 'gantrans[export]'")
    assert "gantrans export needs onnx" in result.stderr  # and whatever else is missing here
    assert not list(tmp_path.rglob("*.onnx"))


# --- deployment without gantrans ----------------------------------------------------------------


def readme_deployment_code() -> str:
    """The Python block of the README's "Export and deployment" section."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Export and deployment\n", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    return code


@pytest.mark.slow
def test_the_readme_deployment_code_translates_as_gantrans_does_without_gantrans_or_torch(tmp_path, monkeypatch, onnxruntime):
    code = readme_deployment_code()
    assert "gantrans" not in code.split("session =")[0] and "torch" not in code  # imports: onnxruntime, numpy, Pillow
    run = save_tiny_model("cyclegan", tmp_path / "runs" / "horse2zebra")
    monkeypatch.chdir(tmp_path)
    exported = invoke("export", "runs/horse2zebra", "--format", "onnx")  # the README's first command
    assert "runs/horse2zebra/horse2zebra.zebra.onnx" in exported.stdout.splitlines(), exported.stderr
    horse = Image.fromarray(np.random.default_rng(3).integers(0, 256, (37, 29, 3), dtype=np.uint8))
    horse.save(tmp_path / "horse.jpg", quality=95)
    (tmp_path / "deploy.py").write_text(code)
    blocked = "import sys; sys.modules['gantrans'] = sys.modules['torch'] = None; exec(open('deploy.py').read())"
    done = subprocess.run([sys.executable, "-c", blocked], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (expected,) = Translator.load(run, device="cpu", precision="fp32").translate_images([Image.open(tmp_path / "horse.jpg")], "zebra")
    got = np.asarray(Image.open(tmp_path / "horse.zebra.png"), dtype=np.int16)
    assert got.shape == (37, 29, 3) and np.abs(got - np.asarray(expected, dtype=np.int16)).max() <= 1


# --- the CPU speed benchmark ----------------------------------------------------------------------


@pytest.mark.slow
def test_cpu_inference_benchmark_runs_and_records(tmp_path, onnxruntime):
    results = tmp_path / "RESULTS.md"
    command = [sys.executable, str(ROOT / "benchmarks" / "cpu_inference.py"), "--size", "16", "--ngf", "4", "--n-blocks", "1"]
    done = subprocess.run(
        [*command, "--repeats", "2", "--warmup", "1", "--peak-gflops", "100", "--record", "--results", str(results)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert [row.split("|")[1].strip() for row in rows[1:]] == ["PyTorch eager fp32", "PyTorch channels-last fp32", "onnxruntime fp32"]
    recorded = results.read_text()
    assert "cpu_inference.py --size 16" in recorded and rows[-1] in recorded and "peak 100 GFLOP/s (--peak-gflops)" in recorded


def test_the_cli_and_the_export_module_load_onnx_only_when_exporting():
    """`gantrans --help` and every other command start without the exporter's packages (heavy, and optional);
    so does the translator, whose onnxruntime backend imports them when it is chosen."""
    names = ("onnx", "onnxscript", "onnxruntime", "gantrans.training")
    check = f"import sys, gantrans.cli, gantrans.export, gantrans.translate, gantrans.onnx_backend; print(' '.join(name for name in {names!r} if name in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120
    )
    assert result.returncode == 0 and result.stdout.split() == [], result.stdout + result.stderr
