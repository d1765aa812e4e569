"""Image decoding, encoding and normalisation rules shared by training and translation.

Every image enters as 8-bit RGB: EXIF orientation applied, palette/grayscale/16-bit/alpha
converted (alpha composited on white). Models see float tensors in [-1, 1].
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import os
import stat
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, ImageOps, features
from torch import Tensor

from gantrans.errors import GantransError

# HEIC/HEIF need the optional pillow-heif package; AVIF is built into recent Pillow.
HEIF_EXTENSIONS = (".heic", ".heif")
HAS_HEIF = importlib.util.find_spec("pillow_heif") is not None  # looked up, not imported: no side effect at import
IMAGE_EXTENSIONS = (
    (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
    + ((".avif",) if "avif" in features.modules and features.check_module("avif") else ())  # Pillow >= 11.3
    + (HEIF_EXTENSIONS if HAS_HEIF else ())
)
NORMALIZATION = "uint8/127.5-1"  # the pixel mapping every model uses; stored in model metadata
# The largest image decoded at all (~134 MP, more than any camera): 400 MB as RGB. Checked from the
# header, so a 1 KB file that claims 12000x12000 costs nothing. Pillow's own bomb check warns from 89 MP.
MAX_DECODE_PIXELS = 2**27
MIN_CELL_WIDTH = 96  # sample grid cells are at least this wide, so that a column's label fits above it

# The errors Pillow raises for files that are not (complete, sane) images.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


class ImageDecodeError(GantransError):
    """A file that cannot be decoded as an image."""


class ImageTooLargeError(ImageDecodeError):
    """An image with more pixels than gantrans decodes or translates whole."""


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def find_images(folder: Path) -> list[Path]:
    """Image files under `folder`, recursively, sorted; hidden files and folders skipped."""
    return sorted(path for path in _files_under(folder) if is_image_path(path))


def _files_under(folder: Path) -> Iterator[Path]:
    """Every non-hidden file under `folder`. Folder links are followed (data sets are often linked in), but
    each real folder is listed once, and never one above `folder`: `self -> .` or `up -> ..` cannot loop."""
    real = Path(os.path.realpath(folder))
    visited = {file_identity(path) for path in (real, *real.parents)}  # the ancestors too: a link up is a loop
    for directory, subdirectories, files in os.walk(folder, followlinks=True):
        subdirectories[:] = sorted(d for d in subdirectories if not d.startswith(".") and _first_visit(Path(directory) / d, visited))
        yield from (Path(directory) / name for name in files if not name.startswith("."))


def file_identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of what `path` points to, or None when it cannot be reached: the same file
    under any name, links and hard links included."""
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_dev, status.st_ino


def _first_visit(directory: Path, visited: set[tuple[int, int] | None]) -> bool:
    identity = file_identity(directory)
    if identity is None or identity in visited:
        return False
    visited.add(identity)
    return True


def no_images_message(folder: Path) -> str:
    """Why `folder` gave no images: the extensions looked for and what was there instead."""
    others = list(_files_under(folder))
    heif = sum(path.suffix.lower() in HEIF_EXTENSIONS for path in others)
    there = f"; {len(others)} other file(s) there" if others else "; it holds no files"
    if heif and not HAS_HEIF:
        there += f", {heif} of them HEIC/HEIF (pip install pillow-heif to read those)"
    return f"no images in {folder} (looked for {' '.join(IMAGE_EXTENSIONS)}{there})"


def load_rgb(
    source: Path | str | BinaryIO | bytes, name: str | None = None, check_size: Callable[[tuple[int, int]], None] | None = None
) -> Image.Image:
    """Decode an image file (or bytes) into an upright 8-bit RGB PIL image.

    The size is checked from the header before anything is decoded: more than MAX_DECODE_PIXELS, or
    a size `check_size` raises for, is an error. A path that is not a regular file (a FIFO, a device)
    is an error without being opened: opening a FIFO waits for a writer forever."""
    label = name or str(source if not isinstance(source, bytes) else "<bytes>")
    _register_plugins()
    try:
        with _open(source, label) as stream, warnings.catch_warnings():
            # Pillow warns from 89 MP on; MAX_DECODE_PIXELS is the limit here (a local filter, not a global one).
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(stream) as image:
                width, height = image.size
                if width * height > MAX_DECODE_PIXELS:
                    raise ImageTooLargeError(f"{label}: {width}x{height} pixels is more than gantrans decodes ({MAX_DECODE_PIXELS} pixels)")
                if check_size is not None:
                    check_size(image.size)
                # exif_transpose also forces the full decode, so truncated files fail here, not later.
                return to_rgb(ImageOps.exif_transpose(image))
    except Image.DecompressionBombError:
        raise ImageTooLargeError(f"{label}: more pixels than gantrans decodes ({MAX_DECODE_PIXELS} pixels)") from None
    except FileNotFoundError:
        raise ImageDecodeError(f"{label}: no such file") from None
    except _DECODE_ERRORS as error:
        reason = (isinstance(error, OSError) and error.strerror) or str(error).split("\n")[0] or type(error).__name__
        hint = "; HEIC/HEIF images need the optional pillow-heif package (pip install pillow-heif)" if _is_unread_heif(label) else ""
        raise ImageDecodeError(f"{label}: not a readable image ({reason}){hint}") from None


def _open(source: Path | str | BinaryIO | bytes, label: str) -> contextlib.AbstractContextManager[BinaryIO]:
    """A binary stream of `source`; for a path, only after checking that it is a regular file."""
    if isinstance(source, bytes):
        return io.BytesIO(source)
    if not isinstance(source, (str, os.PathLike)):
        return contextlib.nullcontext(source)
    mode = os.stat(source).st_mode  # FileNotFoundError and other OSErrors are reported by load_rgb
    if stat.S_ISDIR(mode):
        raise ImageDecodeError(f"{label}: is a folder, not an image")
    if not stat.S_ISREG(mode):
        raise ImageDecodeError(f"{label}: not a regular file (a pipe, socket or device)")
    # O_NONBLOCK: should the file be swapped for a FIFO after the check, opening it still returns at once.
    descriptor = os.open(source, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise ImageDecodeError(f"{label}: not a regular file (a pipe, socket or device)")
    return os.fdopen(descriptor, "rb")


@functools.cache
def _register_plugins() -> None:
    """Let Pillow open HEIC/HEIF when the optional pillow-heif is installed (done on first use, not at import)."""
    if HAS_HEIF:
        import pillow_heif  # type: ignore[import-not-found]

        pillow_heif.register_heif_opener()


def _is_unread_heif(label: str) -> bool:
    return not HAS_HEIF and Path(label).suffix.lower() in HEIF_EXTENSIONS


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
        format = image_format(destination)
    image.save(destination, format=format or "PNG")


def image_format(path: Path) -> str:
    """The format Pillow writes for `path`'s suffix; PNG when the suffix names none."""
    _register_plugins()
    return Image.registered_extensions().get(path.suffix.lower(), "PNG")


def image_grid(columns: Mapping[str, Tensor], max_rows: int = 4) -> Image.Image:
    """Sample grid: one column per image batch (e.g. "real horse", "fake zebra"), its label (the key)
    written in a header band above it, one row per example. Images narrower than MIN_CELL_WIDTH are
    enlarged by a whole factor (nearest neighbour: the pixels stay visible) so that labels fit."""
    batches = list(columns.values())
    rows = min(max_rows, max(images.shape[0] for images in batches))
    height, width = batches[0].shape[-2:]
    scale = -(-MIN_CELL_WIDTH // width)  # 1 from MIN_CELL_WIDTH pixels on
    cell_width, cell_height = width * scale, height * scale
    font = ImageFont.load_default()  # Pillow's own font: no font file needed
    labels = [_wrapped(label, font, cell_width) for label in columns]
    line_height = font.getbbox("Ag")[3] + 2
    header = Image.new("RGB", (cell_width, max(len(lines) for lines in labels) * line_height + 4), (255, 255, 255))
    grid = Image.new("RGB", (cell_width * len(batches), header.height + cell_height * rows), (255, 255, 255))
    for column, (lines, images) in enumerate(zip(labels, batches)):
        cell = header.copy()  # drawn apart, so a long word is clipped at its own column's edge
        draw = ImageDraw.Draw(cell)
        for index, text in enumerate(lines):
            draw.text(((cell_width - font.getlength(text)) / 2, 2 + index * line_height), text, fill=(0, 0, 0), font=font)
        grid.paste(cell, (column * cell_width, 0))
        for row in range(min(rows, images.shape[0])):
            image = tensor_to_image(images[row]).resize((cell_width, cell_height), Image.NEAREST)
            grid.paste(image, (column * cell_width, header.height + row * cell_height))
    return grid


def _wrapped(text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: int) -> list[str]:
    """`text` broken into lines at spaces, each as wide as `width` pixels at most (a longer word stays whole)."""
    lines: list[str] = []
    for word in text.split():
        if lines and font.getlength(f"{lines[-1]} {word}") <= width - 4:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    return lines or [""]
