"""Translating an image in tiles: any size in bounded memory, without visible seams.

The image (padded to the generator's stride) is cut into cores that partition it. Each tile's network
input is its core, plus half the blend overlap on each inner side, plus a halo of context: the pixels
near a tile's edge see the network's own padding instead of their neighbours, so the halo (as wide as
the network's receptive field, up to a cap) is run and cropped away. Where neighbouring tiles overlap,
they are blended with raised-cosine weights (sin^2 rising as cos^2 falls: they sum to one), so what
differences remain fade instead of stepping. All tile edges lie on multiples of the stride, so every
tile's feature grid is the whole image's.

Instance norm layers normalise each tile with statistics of the whole image (`tile_norm.py`).
The output is written into a uint8 array in bands of one tile row: no full-size float copy is kept.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gantrans.images import to_uint8
from gantrans.tile_norm import Forward, Region, Statistics, exact_statistics, hooked, thumbnail_statistics


@dataclass(frozen=True)
class TileSettings:
    """How an image is tiled. Sides are in input pixels; `tile` and `halo` are multiples of the stride."""

    tile: int  # the largest core side
    overlap: int  # width of the blended zone between neighbouring tiles
    halo: int  # context around each tile, run through the network and cropped away
    norm: str  # instance-norm statistics: "thumbnail" or "exact" (see tile_norm.py)


@dataclass(frozen=True)
class Span:
    """One tile along one axis: its core, the part of the output it contributes to, and its network input."""

    core: tuple[int, int]
    blend: tuple[int, int]
    window: tuple[int, int]
    weights: Tensor  # over `blend`: 1, with raised-cosine ramps where a neighbour overlaps


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def padded_side(side: int, stride: int, min_side: int) -> int:
    """`side` padded to a multiple of `stride` and to at least `min_side`."""
    return max(round_up(side, stride), round_up(min_side, stride))


def pad_for_network(images: Tensor, stride: int, min_side: int) -> Tensor:
    """Images padded at the bottom and right to sides the generator takes. Reflection continues the
    image naturally; it needs the pad to be smaller than the side (else the edge is repeated)."""
    height, width = images.shape[-2:]
    return padded_to(images, padded_side(height, stride, min_side), padded_side(width, stride, min_side))


def padded_to(images: Tensor, height: int, width: int) -> Tensor:
    """Images padded at the bottom and right to `height` x `width`: reflected where the pad is smaller
    than the side, else the edge repeated."""
    pad_bottom, pad_right = height - images.shape[-2], width - images.shape[-1]
    if not (pad_bottom or pad_right):
        return images
    mode = "reflect" if pad_bottom < images.shape[-2] and pad_right < images.shape[-1] else "replicate"
    return F.pad(images, (0, pad_right, 0, pad_bottom), mode=mode)


def spans(length: int, settings: TileSettings, stride: int, min_side: int) -> list[Span]:
    """The tiles along an axis of `length` (a multiple of `stride`) pixels."""
    count = max(1, math.ceil(length / settings.tile))
    edges = sorted({round(index * length / count / stride) * stride for index in range(count + 1)})
    half = min([settings.overlap, *(stop - start for start, stop in zip(edges, edges[1:]))]) // 2  # a core's two ramps never meet
    ramp = torch.sin((torch.arange(2 * half) + 0.5) / max(2 * half, 1) * math.pi / 2).square()  # 0 -> 1; 1 - ramp falls
    result = []
    for start, stop in zip(edges, edges[1:]):
        blend = (start - half if start > 0 else 0, stop + half if stop < length else length)
        first = max(0, (blend[0] - settings.halo) // stride * stride)
        last = min(length, round_up(max(blend[1] + settings.halo, first + min_side), stride))
        first = min(first, max(0, (last - min_side) // stride * stride))  # a tile at the far end grows backwards
        weights = torch.ones(blend[1] - blend[0])
        if start > 0 and half:
            weights[: 2 * half] = ramp
        if stop < length and half:
            weights[-2 * half :] = 1 - ramp
        result.append(Span((start, stop), blend, (first, last), weights))
    return result


def thumbnail_size(width: int, height: int, pixels: int, stride: int = 1) -> tuple[int, int]:
    """(width, height) scaled down to at most `pixels` pixels, sides rounded down to multiples of
    `stride` (so that no padding adds to them); unchanged when smaller already."""
    if width * height <= pixels:
        return width, height
    scale = math.sqrt(pixels / (width * height))
    return max(stride, int(width * scale) // stride * stride), max(stride, int(height * scale) // stride * stride)


def translate_tiled(
    forward: Forward,
    layers: Sequence[nn.Module],
    image: np.ndarray,
    settings: TileSettings,
    geometry: tuple[int, int],
    device: torch.device,
    thumbnail: Tensor | None = None,
) -> np.ndarray:
    """The translation of `image` (uint8 [H, W, 3]) in tiles, as uint8 [H, W, 3]. `geometry` is the
    generator's (stride, min_side); `layers` are its instance-norm layers, normalised with statistics
    of the whole image (with norm "thumbnail", from `thumbnail`: the image downscaled, in [-1, 1],
    NCHW, padded for the network). Call under torch.inference_mode."""
    stride, min_side = geometry
    height, width = image.shape[:2]
    rows = spans(padded_side(height, stride, min_side), settings, stride, min_side)
    columns = spans(padded_side(width, stride, min_side), settings, stride, min_side)
    tiles = [(Region(*row.window, *column.window), Region(*row.core, *column.core)) for row in rows for column in columns]

    def load(region: Region) -> Tensor:
        return _load(image, region, device)

    statistics = _whole_image_statistics(forward, layers, settings.norm, tiles, load, thumbnail)
    canvas = np.empty((height, width, 3), np.uint8)
    carry = torch.zeros(3, 0, width)  # the rows of the band above that the next tile row blends into
    for index, row in enumerate(rows):
        top, bottom = row.blend[0], min(row.blend[1], height)
        if top >= height:
            break  # a row of padding only
        band = torch.zeros(3, bottom - top, width)
        band[:, : carry.shape[1]] = carry
        for column in columns:
            left, right = column.blend[0], min(column.blend[1], width)
            if left < width:
                band[:, :, left:right] += _translate_tile(forward, layers, statistics, load, row, column, (bottom, right))
        done = min(rows[index + 1].blend[0], height) if index + 1 < len(rows) else bottom
        canvas[top:done] = to_uint8(band[:, : done - top]).permute(1, 2, 0).numpy()
        carry = band[:, done - top :]
    return canvas


def _translate_tile(
    forward: Forward,
    layers: Sequence[nn.Module],
    statistics: Sequence[Statistics],
    load: Callable[[Region], Tensor],
    row: Span,
    column: Span,
    end: tuple[int, int],
) -> Tensor:
    """One tile's weighted contribution to its blend region, cut at `end` (the image's bottom, right), on the CPU."""
    with hooked(layers, statistics):
        output = forward(load(Region(*row.window, *column.window)))[0]
    (top, _), (left, _) = row.blend, column.blend
    bottom, right = end
    part = output[:, top - row.window[0] : bottom - row.window[0], left - column.window[0] : right - column.window[0]]
    return part.float().cpu() * (row.weights[: bottom - top, None] * column.weights[None, : right - left])


def _load(image: np.ndarray, region: Region, device: torch.device) -> Tensor:
    """The tile `region` of `image` in [-1, 1], [1, 3, h, w] on `device`; rows and columns past the
    image's edge (the stride's padding) are reflected, as the whole image would be."""
    height, width = image.shape[:2]
    # A copy of the window: the image's array may be read-only (PIL's), and torch wants to own what it reads.
    part = torch.from_numpy(np.array(image[region.top : min(region.bottom, height), region.left : min(region.right, width)]))
    tile = part.to(device).permute(2, 0, 1).contiguous().float().div_(127.5).sub_(1.0)[None]
    return padded_to(tile, region.bottom - region.top, region.right - region.left)


def _whole_image_statistics(
    forward: Forward,
    layers: Sequence[nn.Module],
    norm: str,
    tiles: Sequence[tuple[Region, Region]],
    load: Callable[[Region], Tensor],
    thumbnail: Tensor | None,
) -> list[Statistics]:
    if not layers:
        return []  # batch norm (running averages) or no normalisation: tiles need nothing shared
    if norm == "exact":
        return exact_statistics(forward, layers, tiles, load)
    if thumbnail is None:
        raise ValueError("norm 'thumbnail' needs a thumbnail")
    return thumbnail_statistics(forward, layers, thumbnail)
