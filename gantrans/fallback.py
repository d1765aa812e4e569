"""Running out of memory is a reason to translate differently before it is an error: a batch that
does not fit goes one image at a time, an image that does not fit goes in tiles, tiles that do not
fit in smaller tiles, and only an image that fails in the smallest tiles is an error naming its size."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

import torch
from PIL import Image

from gantrans.errors import OutOfMemoryError, is_out_of_memory
from gantrans.translate_options import TranslateOptions

if TYPE_CHECKING:
    from gantrans.translate import Translator

MIN_TILE = 64  # tiles are halved after running out of memory down to this side, then it is an error

T = TypeVar("T")


def translate_group(
    translator: Translator, images: Sequence[Image.Image], target: str, source: str | None, options: TranslateOptions
) -> list[Image.Image | OutOfMemoryError]:
    """Images of one size (the network's): whole in batches of what memory allows, one at a time
    after a batch runs out of memory, in tiles when even one does not fit."""
    per_pass = _attempt(translator, translator.images_per_pass, images[0].size, target, source, options)
    if per_pass is None:  # even the small probe pass that measures the network ran out of memory
        return [_failed(image, "measuring the network") for image in images]
    if per_pass == 0:
        return [_tiled(translator, image, target, source, options) for image in images]
    results: list[Image.Image | OutOfMemoryError] = []
    for start in range(0, len(images), per_pass):
        chunk = images[start : start + per_pass]
        translated = _attempt(translator, translator.translate_whole, chunk, target, source) if len(chunk) > 1 else None
        results += translated or [_one(translator, image, target, source, options) for image in chunk]
    return results


def _one(
    translator: Translator, image: Image.Image, target: str, source: str | None, options: TranslateOptions
) -> Image.Image | OutOfMemoryError:
    translated = _attempt(translator, translator.translate_whole, [image], target, source)
    return translated[0] if translated else _tiled(translator, image, target, source, options, after_whole=True)


def _tiled(
    translator: Translator, image: Image.Image, target: str, source: str | None, options: TranslateOptions, after_whole: bool = False
) -> Image.Image | OutOfMemoryError:
    """`image` in tiles, halved after each time they run out of memory. `after_whole`: the image ran
    out of memory whole, though estimated to fit, so the first tiles take half its area or less."""
    settings = translator.tile_settings(target, source, options)
    margin, area = settings.overlap + 2 * settings.halo, image.width * image.height
    if after_whole and (settings.tile + margin) ** 2 > area // 2:
        settings = translator.tile_settings(target, source, options, tile=max(MIN_TILE, math.isqrt(area // 2) - margin))
    while True:
        translated = _attempt(translator, translator.translate_tiled, image, target, source, settings)
        if translated is not None:
            return translated
        smaller = translator.tile_settings(target, source, options, tile=max(MIN_TILE, settings.tile // 2))
        if smaller.tile >= settings.tile:
            return _failed(image, f"even in tiles of {settings.tile} px")
        settings = smaller


def _failed(image: Image.Image, how: str) -> OutOfMemoryError:
    width, height = image.size
    return OutOfMemoryError(f"out of memory translating {width}x{height} pixels, {how}; try --size N or another --device")


def _attempt(translator: Translator, work: Callable[..., T], *arguments: object) -> T | None:
    """`work(*arguments)`, or None when it ran out of memory (any other error is raised)."""
    try:
        return work(*arguments)
    except Exception as error:  # noqa: BLE001  (only allocation failures are handled; the rest re-raised)
        if not is_out_of_memory(error):
            raise
    # Outside the except block: the error's frames (and the tensors they hold) are released by now.
    if translator.device.type == "cuda":
        torch.cuda.empty_cache()
    return None
