"""Inception features of images and of image files, cached per set of files.

FID and KID follow the standard convention (see `gantrans/inception.py`): TF Inception-v3 pool3
features of 8-bit images resized to 299x299 with TF1's bilinear resize. Features of a set of
image files are cached (keyed by the files' names, sizes and modification times), so evaluating
several models against the same data decodes it once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import load_file
from torch import Tensor

from gantrans.images import ImageDecodeError, image_to_uint8, load_rgb
from gantrans.inception import INPUT_SIDE, FIDInceptionV3, tf1_bilinear_resize
from gantrans.storage import atomic_save
from gantrans.weights import cache_home

FEATURE_CACHE_VERSION = "1"  # bump when the feature convention changes: old cached features are then ignored


def image_features(images: Iterable[Tensor], network: FIDInceptionV3, batch_size: int = 32) -> Tensor:
    """Inception features [N, 2048] of uint8 images [3, H, W] of any sizes."""
    device = next(network.buffers()).device
    features, pending = [], []
    with torch.inference_mode():
        for image in images:
            pending.append(tf1_bilinear_resize(image.to(device)[None].float(), INPUT_SIDE, INPUT_SIDE))
            if len(pending) == batch_size:
                features.append(network(torch.cat(pending)).cpu())
                pending = []
        if pending:
            features.append(network(torch.cat(pending)).cpu())
    return torch.cat(features) if features else torch.zeros(0, 2048)


def file_features(paths: Sequence[Path], network: FIDInceptionV3, batch_size: int = 32) -> tuple[Tensor, list[str]]:
    """Features of image files (cached by the files' identity), and the messages of files skipped as unreadable."""
    cached = cache_home() / "features" / f"{_files_key(paths)}.safetensors"
    if cached.is_file():
        return load_file(str(cached))["features"], []
    skipped: list[str] = []
    features = image_features(_decoded(paths, skipped), network, batch_size)
    if not skipped:  # a set with unreadable files is recomputed, so its warnings are repeated
        atomic_save({"features": features.contiguous()}, cached, {"files": str(len(paths)), "convention": FEATURE_CACHE_VERSION})
    return features, skipped


def _decoded(paths: Sequence[Path], skipped: list[str]) -> Iterator[Tensor]:
    return (image_to_uint8(image) for _, image in readable(paths, skipped))


def readable(paths: Sequence[Path], skipped: list[str]) -> Iterator[tuple[Path, Image.Image]]:
    """The decodable images among `paths` with their paths, one at a time; the others' messages go to `skipped`."""
    for path in paths:
        try:
            yield path, load_rgb(path)
        except ImageDecodeError as error:
            skipped.append(str(error))


def _files_key(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256(FEATURE_CACHE_VERSION.encode())
    for path in sorted(paths):
        stat = path.stat()
        digest.update(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]
