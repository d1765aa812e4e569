"""Image decoding, encoding and normalisation rules shared by training and translation.

Every image enters as 8-bit RGB: EXIF orientation applied, palette/grayscale/16-bit/alpha
converted (alpha composited on white). Models see float tensors in [-1, 1].
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import BinaryIO, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor

from gantrans.errors import GantransError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
NORMALIZATION = "uint8/127.5-1"  # the pixel mapping every model uses; stored in model metadata

# The errors Pillow raises for files that are not (complete, sane) images.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


class ImageDecodeError(GantransError):
    """A file that cannot be decoded as an image."""


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def find_images(folder: Path) -> list[Path]:
    """Image files under `folder`, recursively, sorted; hidden files and folders skipped."""
    found = []
    for directory, subdirectories, files in os.walk(folder, followlinks=True):
        subdirectories[:] = sorted(d for d in subdirectories if not d.startswith("."))
        found += [Path(directory) / name for name in files if is_image_path(Path(name))]
    return sorted(found)


def load_rgb(source: Path | str | BinaryIO | bytes, name: str | None = None) -> Image.Image:
    """Decode an image file (or bytes) into an upright 8-bit RGB PIL image."""
    label = name or str(source if not isinstance(source, bytes) else "<bytes>")
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    try:
        with Image.open(source) as image:
            # exif_transpose also forces the full decode, so truncated files fail here, not later.
            return to_rgb(ImageOps.exif_transpose(image))
    except FileNotFoundError:
        raise ImageDecodeError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise ImageDecodeError(f"{label}: is a folder, not an image") from None
    except _DECODE_ERRORS as error:
        reason = str(error).split("\n")[0] or type(error).__name__
        raise ImageDecodeError(f"{label}: not a readable image ({reason})") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """Palette, grayscale, 16-bit, float, CMYK and alpha images -> 8-bit RGB."""
    if image.mode.startswith("I") or image.mode == "F":
        image = _high_bit_depth_to_8bit(image)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("LA", "La", "PA", "RGBa") or (image.mode == "L" and "transparency" in image.info):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    return image.convert("RGB")


def _high_bit_depth_to_8bit(image: Image.Image) -> Image.Image:
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        # Float images: values in [0, 1] are the common convention; otherwise scale by the maximum.
        peak = 1.0 if values.size == 0 or values.max() <= 1.0 else values.max()
        values = values / peak * 255.0
    else:  # I;16 and friends, or 32-bit I holding 16-bit data (how Pillow opens 16-bit PNGs)
        values = values / 257.0
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="L")


def image_to_uint8(image: Image.Image | np.ndarray) -> Tensor:
    """RGB image (PIL or HxWx3 uint8 array) -> uint8 tensor [3, H, W]."""
    return torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1).contiguous()


def to_model_range(images: Tensor) -> Tensor:
    """uint8 [.., 3, H, W] -> float in [-1, 1] (done on the device, so only bytes cross the bus)."""
    return images.float().div_(127.5).sub_(1.0)


def to_uint8(images: Tensor) -> Tensor:
    """Float images in [-1, 1] -> uint8, rounding to the nearest level."""
    return images.detach().float().add(1.0).mul(127.5).round_().clamp_(0, 255).to(torch.uint8)


def tensor_to_image(image: Tensor) -> Image.Image:
    """A float image [3, H, W] in [-1, 1] -> RGB PIL image."""
    return Image.fromarray(to_uint8(image).cpu().permute(1, 2, 0).numpy(), mode="RGB")


def save_image(image: Image.Image, destination: Path | BinaryIO, format: str | None = None) -> None:
    """Write `image`; the format follows the file suffix (PNG when there is none)."""
    if format is None and isinstance(destination, Path):
        format = Image.registered_extensions().get(destination.suffix.lower(), "PNG")
    image.save(destination, format=format or "PNG")


def image_grid(columns: Sequence[Tensor], max_rows: int = 4) -> Image.Image:
    """Sample grid: one column per image batch (e.g. real x, fake y, reconstructed x), one row per example."""
    rows = min(max_rows, columns[0].shape[0])
    height, width = columns[0].shape[-2:]
    grid = Image.new("RGB", (width * len(columns), height * rows), (255, 255, 255))
    for column, images in enumerate(columns):
        for row in range(rows):
            grid.paste(tensor_to_image(images[row]), (column * width, row * height))
    return grid
