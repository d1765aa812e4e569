"""Shared fixtures: tiny image folders and tiny configs, so every test runs in seconds on a CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image

from gantrans import weights
from gantrans.config import TrainConfig
from gantrans.methods import PRESETS
from gantrans.settings import replaced, setting_table


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test downloads: pip is refused (a test that needs the real one, or a fake, sets it itself).
    Without the files in the cache, a test skips or fails instead."""

    def refuse(requirement: str, *args: object, **kwargs: object) -> None:
        raise weights.DownloadError(f"tests do not download ({requirement})")

    monkeypatch.setattr(weights, "pip_download", refuse)


def write_images(folder: Path, count: int, size: tuple[int, int] = (40, 36), seed: int = 0, tint: tuple[float, float, float] = (1, 1, 1)) -> list[Path]:
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
        "root": str(root), "size": 16, "load_size": 20, "workers": 0, "out": str(out), "steps": 6, "batch_size": 1, "log_every": 1,
        "sample_every": 3, "checkpoint_every": 4, "snapshot_every": 0, "device": "cpu",
    }  # fmt: skip
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
