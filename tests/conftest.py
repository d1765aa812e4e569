"""Shared fixtures and helpers, so every test runs in seconds on a CPU: tiny image folders, tiny configs
(for the library and as `gantrans train` flags), the tiny settings of every method and preset, tiny
methods, trained tiny models, and ways to run the CLI (in process and as a subprocess).

Test modules import the plain helpers with `from conftest import ...`; the fixtures need no import.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from typer.testing import CliRunner

from gantrans import checkpoint, weights
from gantrans.cli import app
from gantrans.config import TrainConfig
from gantrans.methods import METHODS, PRESETS
from gantrans.methods.base import OneWayMethod
from gantrans.presets import resume_config
from gantrans.settings import replaced, setting_table
from gantrans.step import make_optimizer
from gantrans.training import train


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test downloads: pip is refused (a test that needs the real one, or a fake, sets it itself).
    Without the files in the cache, a test skips or fails instead."""

    def refuse(requirement: str, *args: object, **kwargs: object) -> None:
        raise weights.DownloadError(f"tests do not download ({requirement})")

    monkeypatch.setattr(weights, "pip_download", refuse)


def write_images(
    folder: Path, count: int, size: tuple[int, int] = (40, 36), seed: int = 0, tint: tuple[float, float, float] = (1, 1, 1)
) -> list[Path]:
    """`count` random RGB PNGs of `size` (width, height) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        pixels = rng.random((size[1], size[0], 3)) * np.array(tint) * 255
        path = folder / f"img_{index:03d}.png"
        Image.fromarray(pixels.astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def write_domains(root: Path, domains: Sequence[str], count: int | Sequence[int], size: tuple[int, int] = (40, 36), seed: int = 0) -> Path:
    """ROOT/<domain> for each of `domains`: `count` images each (or count[i] for the i-th), seeded seed + i."""
    counts = [count] * len(domains) if isinstance(count, int) else list(count)
    for index, (domain, images) in enumerate(zip(domains, counts, strict=True)):
        write_images(root / domain, images, size=size, seed=seed + index)
    return root


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    """DATA/horse (6 images) and DATA/zebra (4 images), 40x36 random colour images."""
    root = tmp_path / "data"
    write_images(root / "horse", 6, seed=1, tint=(1.0, 0.6, 0.3))
    write_images(root / "zebra", 4, seed=2, tint=(0.3, 0.6, 1.0))
    return root


# Tiny network sizes, applied to whichever of these fields a method's config has (depth 3: 16 px crops fit a U-Net).
TINY_MODEL = {"ngf": 4, "ndf": 4, "n_blocks": 1, "depth": 3, "n_layers_d": 2, "pool_size": 3}


def tiny_config(root: Path, out: Path, method: str = "cyclegan", **overrides: object) -> TrainConfig:
    """A config of `method` small enough for a CPU test: 16 px crops, 4 filters, 1 residual block."""
    preset, table = PRESETS[method], setting_table()
    tiny = {name: value for name, value in TINY_MODEL.items() if not table[name].methods or preset.method in table[name].methods}
    settings = {
        "root": str(root),
        "size": 16,
        "load_size": 20,
        "workers": 0,
        "out": str(out),
        "steps": 6,
        "batch_size": 1,
        "log_every": 1,
        "sample_every": 3,
        "checkpoint_every": 4,
        "snapshot_every": 0,
        "device": "cpu",
    }
    return replaced(preset, {**tiny, **settings, **overrides})


@pytest.fixture
def make_config(tiny_data: Path, tmp_path: Path) -> Callable[..., TrainConfig]:
    """make_config(out_name="run", **overrides) -> a tiny TrainConfig on `tiny_data`."""

    def make(out_name: str = "run", **overrides: object) -> TrainConfig:
        return tiny_config(tiny_data, tmp_path / out_name, **overrides)

    return make


def fresh_fakes(method, batch) -> dict:
    """The translations the trainer gives a discriminator step that follows no generator step."""
    with torch.no_grad():
        return method.fresh_fakes(batch)


def tiny_method(make_config: Callable[..., TrainConfig], **overrides: object):
    """(method, optimizers, batch): a tiny horse <-> zebra method built for training, its two Adam
    optimizers, and a random batch of two 16 px images per domain."""
    config = make_config(**overrides)
    method = checkpoint.build_method(config, ("horse", "zebra"), training=True, seed=0)
    optimizers = {
        "optimizer_g": make_optimizer(method.generators.parameters(), config, torch.device("cpu")),
        "optimizer_d": make_optimizer(method.discriminators.parameters(), config, torch.device("cpu")),
    }
    batch = (torch.rand(2, 3, 16, 16) * 2 - 1, torch.rand(2, 3, 16, 16) * 2 - 1)
    return method, optimizers, batch


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny horse <-> zebra model trained for 2 steps (once per test module, through the library),
    alone in its runs folder."""
    root = write_domains(tmp_path_factory.mktemp("data"), ("horse", "zebra"), 4, seed=1)
    config = tiny_config(root, tmp_path_factory.mktemp("runs") / "h2z", steps=2)
    list(train(config))
    return Path(config.out)


@pytest.fixture
def quick_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    """nn.Module.compile through dynamo and AOTAutograd without generating kernels: seconds, not minutes,
    on CPU, and still the path that refuses double backward."""
    compile_module = torch.nn.Module.compile
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **options: compile_module(self, backend="aot_eager"))


def stop_and_resume(config: TrainConfig, after: int = 3) -> list:
    """Train `config`, stopped (as by Ctrl-C) after `after` steps, then resumed from its run folder to
    the end; the events of the resumed part."""
    calls = iter(range(100))
    list(train(config, should_stop=lambda: next(calls) >= after))
    return list(train(resume_config(Path(config.out), {}), resume=True))


# --- what a run leaves ------------------------------------------------------------------------------


def tensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file."""
    with safe_open(str(path), framework="pt") as handle:
        return {key: handle.get_tensor(key) for key in handle.keys()}


def log_records(run_dir: Path | str) -> list[dict]:
    """The records of a run's log.jsonl without `images_per_second`: the one value two equal runs differ in."""
    lines = (Path(run_dir) / "log.jsonl").read_text().splitlines()
    return [{key: value for key, value in json.loads(line).items() if key != "images_per_second"} for line in lines]


# --- the tiny settings of every method and preset ------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TinyPreset:
    """What a preset needs beyond tiny_config's sizes to be tested on a CPU."""

    domains: tuple[str, ...] = ("x", "y")  # its test data's domain folders (StarGAN: three)
    overrides: Mapping[str, object] = dataclasses.field(default_factory=dict)  # tiny_config settings
    flags: tuple[str, ...] = ()  # `gantrans train` sizes of its tiny CLI run (the presets of CycleGAN)
    one_way: bool = False  # translates only into its last domain (derived from the method by tiny_preset)
    paired: bool = False  # trains on pairs: the same file names in every domain folder (from the preset)

    @property
    def translates_into(self) -> tuple[str, ...]:
        return self.domains[-1:] if self.one_way else self.domains


# What a preset needs beyond the defaults above: its domain names in the tests, and the settings the tiny
# sizes force. A new method needs no entry: it is tested as ("x", "y") at tiny_config's sizes.
# DCGAN's discriminator needs 2**(n_layers_d + 3) pixels, and DiscoGAN's curriculum ends mid-run so that
# resuming crosses it. CUT's layers must lie in the one-block encoder of the tiny generator. pix2pix runs
# on the folders layout (tiny_config makes its own DataConfig).
TINY_PRESETS: dict[str, TinyPreset] = {
    "cyclegan": TinyPreset(("horse", "zebra")),
    "stargan": TinyPreset(("black", "blond", "brown")),
    "direct": TinyPreset(("photo", "painting")),
    "discogan": TinyPreset(
        ("shoe", "bag"),
        overrides={"n_layers_d": 1, "cycle_warmup_steps": 4},
        flags=("--size", "16", "--load-size", "16", "--depth", "3", "--n-layers-d", "1", "--batch-size", "2"),
    ),
    "dualgan": TinyPreset(("sketch", "photo"), flags=("--size", "16", "--load-size", "20", "--depth", "3", "--n-layers-d", "2")),
    "shared-latent": TinyPreset(("real", "anime")),
    "cut": TinyPreset(("horse", "zebra"), overrides={"nce_layers": (0, 4, 7, 10), "num_patches": 16}),
    "fastcut": TinyPreset(("summer", "winter"), overrides={"nce_layers": (0, 4, 7, 10), "num_patches": 16}),
    "pix2pix": TinyPreset(("edges", "photo"), overrides={"paired": "folders"}),
}


def tiny_preset(name: str) -> TinyPreset:
    """The tiny test settings of `--method name`: its TINY_PRESETS entry (or the defaults), with whether it
    translates one way (its method is a OneWayMethod) and trains on pairs (its preset's data) filled in."""
    preset = PRESETS[name]
    return dataclasses.replace(
        TINY_PRESETS.get(name, TinyPreset()),
        one_way=issubclass(METHODS[preset.method], OneWayMethod),
        paired=preset.data.paired != "none",
    )


# The presets that are settings of CycleGAN (DiscoGAN, DualGAN): trained and used as CycleGAN is.
CYCLEGAN_PRESETS = sorted(name for name, preset in PRESETS.items() if preset.method == "cyclegan" and name != "cyclegan")


# --- the command line ------------------------------------------------------------------------------


def tiny_flags(**settings: object) -> list[str]:
    """tiny_config's sizes as `gantrans train` flags, on the CPU without decoding processes; `settings`
    (name -> value, as in the config) add flags or replace these, and a value of None leaves one out."""
    values = {"size": 16, "load_size": 20, "ngf": 4, "ndf": 4, "n_blocks": 1, "n_layers_d": 2, "device": "cpu", "workers": 0, **settings}
    return [item for name, value in values.items() if value is not None for item in (f"--{name.replace('_', '-')}", str(value))]


TINY_FLAGS = tiny_flags()


def invoke(*args: str, env: dict | None = None, input: bytes | str | None = None):
    """`gantrans ARGS` in this process, through Typer's CliRunner (stdout and stderr apart)."""
    return CliRunner(env=env).invoke(app, list(args), input=input)


def assert_one_line_error(result, code: int, fragment: str) -> None:
    """Exit code `code`, exactly one line on stderr, naming `fragment`, and no traceback."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gantrans: error:") and fragment in lines[0], result.stderr
    assert "Traceback" not in result.stderr + result.stdout


# `python -m gantrans` with this interpreter (and so this checkout, through PYTHONPATH), for Popen.
GANTRANS_COMMAND = [sys.executable, "-m", "gantrans"]


def wait_until_logged(out: Path, process: subprocess.Popen, lines: int = 2, timeout: float = 90) -> None:
    """Wait until the training `process` has logged `lines` steps in OUT/log.jsonl (failing if it ends first)."""
    deadline = time.time() + timeout
    while not ((out / "log.jsonl").exists() and (out / "log.jsonl").read_text().count("\n") >= lines):
        assert time.time() < deadline and process.poll() is None, "training did not start"
        time.sleep(0.2)


def gantrans(
    *args: str, cwd: Path | None = None, input: bytes | str | None = None, text: bool = True, timeout: float = 300, preexec_fn=None
) -> subprocess.CompletedProcess:
    """`gantrans ARGS` as a real process (in `cwd`, or here); its output captured (bytes with text=False)."""
    return subprocess.run(
        [*GANTRANS_COMMAND, *args], cwd=cwd, input=input, capture_output=True, text=text, timeout=timeout, preexec_fn=preexec_fn
    )
