"""What `gantrans translate` may be told about sizes: the scale the network sees an image at (the
input's, a given shorter side, or the scale the model was trained at), and how an image is split
into tiles. Pure rules; the Translator applies them."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from PIL import Image

from gantrans.config import DataConfig
from gantrans.errors import UsageError
from gantrans.images import MAX_DECODE_PIXELS, ImageTooLargeError
from gantrans.tile_norm import TILE_NORMS

# The largest image translated at all (~134 MP: the decoding limit, beyond a 100-MP camera), after
# --size; from 2**24 pixels on an image is translated in tiles, so this bounds memory only through the
# decoded image and its output (about 14 bytes a pixel: 1.9 GB here), not through the network.
MAX_TRANSLATE_PIXELS = MAX_DECODE_PIXELS
MAX_SIZE = math.isqrt(MAX_TRANSLATE_PIXELS)  # --size is the shorter side: beyond this no image fits
# The largest image translated whole, even where memory would allow more: larger ones go in tiles,
# whose memory does not grow with the image.
MAX_WHOLE_PIXELS = 2**24
SCALES = ("input", "train")
TILE_RANGE = (16, 16384)
# An input this many times the training scale (or more) gets a hint, unless a scale or tiling was chosen.
HINT_FACTOR = 3


@dataclass(frozen=True)
class TranslateOptions:
    """How images are sized and split for the network (the size flags of `gantrans translate`)."""

    size: int | None = None  # resize inputs so that the shorter side has this many pixels
    scale: str | None = None  # "input" or "train" (the scale the model was trained at); None: "input", with a hint for large inputs
    keep_scale: bool = False  # with scale "train": return the network's size, not the input's
    tile: int | None = None  # tile side in pixels; None: tiles only when an image would not fit whole
    tile_overlap: int = 32  # width of the zone where neighbouring tiles are blended
    tile_norm: str = "thumbnail"  # instance-norm statistics of tiled images: "thumbnail" (fast) or "exact"

    def __post_init__(self) -> None:
        if self.size is not None and not 0 < self.size <= MAX_SIZE:
            raise UsageError(f"--size must be between 1 and {MAX_SIZE} (got {self.size})")
        if self.scale is not None and self.scale not in SCALES:
            raise UsageError(f"--scale must be one of {', '.join(SCALES)} (got {self.scale!r})")
        if self.size is not None and self.scale == "train":
            raise UsageError("--size and --scale train both choose the scale the network sees: give one of them")
        if self.keep_scale and self.scale != "train":
            raise UsageError("--keep-scale goes with --scale train (with --size, outputs already keep the network's size)")
        if self.tile is not None and not TILE_RANGE[0] <= self.tile <= TILE_RANGE[1]:
            raise UsageError(f"--tile must be between {TILE_RANGE[0]} and {TILE_RANGE[1]} pixels (got {self.tile})")
        if self.tile_overlap < 0 or self.tile_overlap >= (self.tile or TILE_RANGE[1]):
            side = f"the --tile side {self.tile}" if self.tile else f"the largest tile side {TILE_RANGE[1]}"
            raise UsageError(f"--tile-overlap must be at least 0 and less than {side} (got {self.tile_overlap})")
        if self.tile_norm not in TILE_NORMS:
            raise UsageError(f"--tile-norm must be one of {', '.join(TILE_NORMS)} (got {self.tile_norm!r})")


def with_size(options: TranslateOptions | None, size: int | None) -> TranslateOptions:
    """`options` (default ones when None) with --size `size`, when given."""
    options = options or TranslateOptions()
    return options if size is None else dataclasses.replace(options, size=size)


def training_scale(data: DataConfig) -> tuple[str, int] | None:
    """Which side of a training image the model saw at how many pixels: ("shorter", load size) for
    resize-crop (images are squeezed to load x load), ("width", ...) for the scale-width modes; None for
    crop and none, which keep images at the scale they come in (unknown here)."""
    if data.preprocess == "resize-crop":
        return "shorter", data.load_size
    if data.preprocess in ("scale-width", "scale-width-crop"):
        return "width", data.size if data.preprocess == "scale-width" else data.load_size
    return None


def resized(size: tuple[int, int], shorter_side: int | None) -> tuple[int, int]:
    """(width, height) after scaling so the shorter side is `shorter_side` (None: unchanged)."""
    if shorter_side is None:
        return size
    scale = shorter_side / min(size)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def network_size(size: tuple[int, int], options: TranslateOptions, data: DataConfig) -> tuple[int, int]:
    """The (width, height) the network sees an image of `size` at."""
    if options.scale != "train":
        return resized(size, options.size)
    scale = training_scale(data)
    if scale is None:
        return size  # trained on images as they came: the input's own scale is the training scale
    side, pixels = scale
    if side == "width":
        return pixels, max(1, round(size[1] * pixels / size[0]))
    return resized(size, pixels)


def network_input(image: Image.Image, options: TranslateOptions, data: DataConfig) -> Image.Image:
    """`image` resized to what the network sees (bicubic), or itself."""
    size = network_size(image.size, options, data)
    return image if size == image.size else image.resize(size, Image.BICUBIC)


def final_output(translated: Image.Image, input_size: tuple[int, int], options: TranslateOptions) -> Image.Image:
    """The translation at the size it is returned: with --scale train, back at the input's size
    (bicubic) unless --keep-scale; otherwise at the network's size (the input's, or --size's)."""
    if options.scale != "train" or options.keep_scale or translated.size == input_size:
        return translated
    return translated.resize(input_size, Image.BICUBIC)


def scale_hint(label: str, size: tuple[int, int], options: TranslateOptions, data: DataConfig) -> str | None:
    """A note for an input HINT_FACTOR times the training scale or more, when neither a scale nor
    tiling was asked for: the model learned its patterns at a much smaller scale."""
    scale = training_scale(data)
    if scale is None or options.scale is not None or options.size is not None or options.tile is not None:
        return None
    side, pixels = scale
    seen = size[0] if side == "width" else min(size)
    if seen < HINT_FACTOR * pixels:
        return None
    # An image over MAX_WHOLE_PIXELS goes through in tiles already: --tile is no advice for it.
    at_full_size = "" if size[0] * size[1] > MAX_WHOLE_PIXELS else ", --tile at full size"
    return (
        f"{label} is {size[0]}x{size[1]}, {seen / pixels:.0f}x the scale this model was trained at ({side} side {pixels} px): "
        f"--scale train translates at that scale{at_full_size} (--scale input keeps this and hides this note)"
    )


def resize_shorter_side(image: Image.Image, size: int) -> Image.Image:
    """`image` resized (bicubic) so that its shorter side is `size` pixels."""
    return image.resize(resized(image.size, size), Image.BICUBIC)


def check_translatable(size: tuple[int, int], shorter_side: int | None = None, label: str = "image") -> None:
    """An ImageTooLargeError when an image of `size`, resized to `shorter_side`, is more than
    MAX_TRANSLATE_PIXELS: checked from the header, before decoding or resizing allocates anything."""
    if shorter_side is not None and not 0 < shorter_side <= MAX_SIZE:
        raise UsageError(f"--size must be between 1 and {MAX_SIZE} (got {shorter_side})")
    width, height = resized(size, shorter_side)
    if width * height <= MAX_TRANSLATE_PIXELS:
        return
    longer, shorter = max(size), min(size)
    fits = math.isqrt(MAX_TRANSLATE_PIXELS * shorter // longer) // 64 * 64  # a round shorter side that fits
    raise ImageTooLargeError(
        f"{label}: {width}x{height} is more than gantrans translates ({MAX_TRANSLATE_PIXELS} pixels); use --size {max(fits, 1)} or less"
    )
