"""Translator: a trained model applied to tensors, images, files, folders and streams (where the
outputs of files go, and the rules for writing them, are in `gantrans/outputs.py`)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from gantrans import checkpoint
from gantrans.config import PRECISIONS
from gantrans.device import resolve_device, uses_bf16
from gantrans.errors import GantransError, UsageError
from gantrans.fallback import translate_group
from gantrans.file_translation import translate_all, translate_batch, translate_bytes, translate_files, write_grid
from gantrans.images import image_to_uint8, tensor_to_image, to_model_range
from gantrans.memory import NetworkProfile, auto_tile, free_memory, profile
from gantrans.methods import Method
from gantrans.onnx_backend import TILES_IN_PYTORCH, TILES_REFUSED, OnnxRuntime, check_backend
from gantrans.tile_norm import instance_norm_layers
from gantrans.tiling import TileSettings, pad_for_network, padded_side, round_up, thumbnail_size, translate_tiled
from gantrans.translate_options import (
    MAX_SIZE,
    MAX_TRANSLATE_PIXELS,
    MAX_WHOLE_PIXELS,
    TranslateOptions,
    check_translatable,
    final_output,
    network_input,
    network_size,
    resize_shorter_side,
    with_size,
)

# Re-exported: what callers of the translation library import from here.
__all__ = [
    "MAX_SIZE",
    "MAX_TRANSLATE_PIXELS",
    "TranslateOptions",
    "Translator",
    "check_translatable",
    "find_model",
    "resize_shorter_side",
    "translate_all",
    "translate_batch",
    "translate_bytes",
    "translate_files",
    "write_grid",
]
MAX_HALO = 128  # context around a tile, in input pixels: a ResNet-9's receptive field (88) fits
# The thumbnail whose statistics normalise tiles (tile norm "thumbnail"), at most: the larger, the
# closer its statistics to the full image's; its one pass costs ~4% of a 48 MP image's.
THUMBNAIL_PIXELS = 2**21

log = logging.getLogger(__name__)


class Translator:
    """Translate images with a trained model. Sizes are kept: inputs are padded to the generator's
    stride and the result is cropped back. Images too large for memory go in tiles. The generators
    run in PyTorch, or (`onnx`) whole images run in onnxruntime sessions; tiles always run in PyTorch."""

    def __init__(
        self, method: Method, info: checkpoint.ModelInfo, device: torch.device, bf16: bool = False, onnx: OnnxRuntime | None = None
    ) -> None:
        self.method, self.info, self.device = method, info, device
        self.bf16 = bf16  # generators run under bf16 autocast; results are returned in fp32
        self.onnx = onnx  # None: the generators run in PyTorch
        self._profiles: dict[tuple[str, str | None], NetworkProfile] = {}  # measured on first need, per direction
        self._tiles_noted = False  # with onnx: that tiles run in PyTorch is said once

    @classmethod
    def load(cls, path: Path | str, device: str = "auto", precision: str = "auto", backend: str = "torch") -> Translator:
        """The model at `path` on `device`; `precision` fp32, bf16, or auto (bf16 on a CUDA GPU that has it);
        `backend` torch, or onnxruntime (on the CPU, fp32; each direction exported into the cache on first use)."""
        if precision not in PRECISIONS:
            raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)} (got {precision!r})")
        check_backend(backend, precision, device)
        if backend == "onnxruntime":
            onnx = OnnxRuntime.load(path)
            return cls(onnx.method, onnx.info, torch.device("cpu"), onnx=onnx)
        resolved = resolve_device(device)
        method, info = checkpoint.load_model(path, resolved)
        return cls(method, info, resolved, uses_bf16(precision, resolved))

    @property
    def backend(self) -> str:
        return "torch" if self.onnx is None else "onnxruntime"

    @property
    def domains(self) -> tuple[str, ...]:
        return self.info.domains

    @property
    def targets(self) -> tuple[str, ...]:
        """The domains this model can translate into (all of them, unless weights are missing)."""
        return tuple(d for d in self.domains if (names := self.method.generators_for(d)) and set(names) <= set(self.method.generators))

    def check_target(self, target: str) -> None:
        if target not in self.domains:
            raise UsageError(f"unknown domain {target!r}: the model {self.info.path.parent} knows {', '.join(self.domains)}")
        if target not in self.targets:
            raise UsageError(
                f"the model {self.info.path.parent} has no generator into {target!r} (it translates into {', '.join(self.targets)})"
            )

    def source_domain(self, target: str, source: str | None) -> str | None:
        """The input domain assumed when translating into `target` (None: the method needs none)."""
        return self.method.source_domain(target, source)

    @property
    def geometry(self) -> tuple[int, int]:
        """The generators' (stride, min_side): image sides must be multiples of the one and at least the other."""
        return self.method.stride, self.method.min_side

    def _forward(self, images: Tensor, target: str, source: str | None) -> Tensor:
        """Padded images through the generators into `target`, in the backend's runtime."""
        if self.onnx is not None:
            return self.onnx.run(images, target, source)
        return self._torch_forward(images, target, source)

    def _torch_forward(self, images: Tensor, target: str, source: str | None) -> Tensor:
        """In PyTorch, whatever the backend: what tiles and the memory probe need (hooks on its layers)."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return self.method.translate(images, target, source)

    @torch.inference_mode()
    def translate_tensor(self, images: Tensor, target: str, source: str | None = None) -> Tensor:
        """Images in [-1, 1], NCHW of any size -> translated images of the same size (whole, in one pass)."""
        self.check_target(target)
        height, width = images.shape[-2:]
        translated = self._forward(pad_for_network(images.to(self.device), *self.geometry), target, source)
        return translated[..., :height, :width].float()

    @torch.inference_mode()
    def translate_tiled(
        self, image: Image.Image, target: str, source: str | None = None, settings: TileSettings | None = None
    ) -> Image.Image:
        """`image` translated in tiles (`settings`: by default from tile_settings()), at its size."""
        self.check_target(target)
        settings = settings or self.tile_settings(target, source)
        if self.onnx is not None and not self._tiles_noted:
            self._tiles_noted = True
            log.info(TILES_IN_PYTORCH.format(size=f"{image.width}x{image.height}"))
        layers = instance_norm_layers(self.method.generators[name] for name in self.method.generators_for(target))
        thumbnail = self._thumbnail(image, settings) if settings.norm == "thumbnail" and layers else None
        canvas = translate_tiled(
            lambda tile: self._torch_forward(tile, target, source),
            layers,
            np.asarray(image),
            settings,
            self.geometry,
            self.device,
            thumbnail,
        )
        return Image.fromarray(canvas)

    def _thumbnail(self, image: Image.Image, settings: TileSettings) -> Tensor:
        """`image` downscaled to THUMBNAIL_PIXELS, or to a tile's network input if smaller (what fits
        as a tile fits as a thumbnail), in [-1, 1], padded for the network."""
        pixels = min(THUMBNAIL_PIXELS, (settings.tile + settings.overlap + 2 * settings.halo) ** 2)
        small = image.resize(thumbnail_size(*image.size, pixels, self.method.stride), Image.BICUBIC, reducing_gap=3.0)
        return pad_for_network(to_model_range(image_to_uint8(small)[None].to(self.device)), *self.geometry)

    def profile(self, target: str, source: str | None = None) -> NetworkProfile:
        """What translating into `target` needs per pixel, and its receptive field (measured once)."""
        key = (target, source)
        if key not in self._profiles:
            networks = [self.method.generators[name] for name in self.method.generators_for(target)]
            with torch.inference_mode():
                self._profiles[key] = profile(
                    lambda probe: self._torch_forward(probe, target, source), networks, self.geometry, self.device
                )
        return self._profiles[key]

    def tile_settings(
        self, target: str, source: str | None = None, options: TranslateOptions | None = None, tile: int | None = None
    ) -> TileSettings:
        """Tiles for translating into `target`: of side `tile`, else --tile's, else the largest that fits
        memory (up to 1024); a halo of the receptive field (at most MAX_HALO), overlap as `options` say."""
        options = options or TranslateOptions()
        stride, min_side = self.geometry
        needs = self.profile(target, source)
        halo = round_up(min(needs.receptive_radius, MAX_HALO), stride)
        side = tile or options.tile or auto_tile(needs, free_memory(self.device), options.tile_overlap + 2 * halo, stride)
        side = padded_side(side, stride, min_side)
        return TileSettings(side, min(options.tile_overlap, side // 2), halo, options.tile_norm)

    def images_per_pass(
        self, size: tuple[int, int], target: str, source: str | None = None, options: TranslateOptions | None = None
    ) -> int:
        """How many images of `size` (width, height) one forward pass takes whole, as memory allows: 0
        for tiles (asked for with --tile, or beyond MAX_WHOLE_PIXELS or memory)."""
        pixels = padded_side(size[0], *self.geometry) * padded_side(size[1], *self.geometry)
        if (options and options.tile is not None) or pixels > MAX_WHOLE_PIXELS:
            return 0
        return self.profile(target, source).pixels_that_fit(free_memory(self.device)) // pixels

    def translate_images(
        self,
        images: Sequence[Image.Image],
        target: str,
        source: str | None = None,
        size: int | None = None,
        options: TranslateOptions | None = None,
    ) -> list[Image.Image]:
        """PIL images -> translated PIL images. `size` or `options` (scale, tiles) set the size the network
        sees; images of equal size go through it together when memory allows, or one by one, or in tiles.
        An image of more than MAX_TRANSLATE_PIXELS (after resizing) is an ImageTooLargeError; one that
        runs out of memory even in the smallest tiles an OutOfMemoryError."""
        options = with_size(options, size)
        for image in images:
            check_translatable(network_size(image.size, options, self.info.config.data))
        inputs = [network_input(image, options, self.info.config.data) for image in images]
        results = self.translate_prepared(inputs, target, source, options)
        for result in results:
            if isinstance(result, GantransError):
                raise result
        return [final_output(result, image.size, options) for result, image in zip(results, images)]  # type: ignore[arg-type]

    def translate_prepared(
        self, images: Sequence[Image.Image], target: str, source: str | None = None, options: TranslateOptions | None = None
    ) -> list[Image.Image | GantransError]:
        """Images already at the network's size -> each one's translation, or the error that stopped it."""
        self.check_target(target)
        options = options or TranslateOptions()
        if options.tile is not None and self.onnx is not None:
            raise UsageError(TILES_REFUSED)
        results: list[Image.Image | GantransError | None] = [None] * len(images)
        groups: dict[tuple[int, int], list[int]] = {}
        for index, image in enumerate(images):
            groups.setdefault(image.size, []).append(index)
        for indices in groups.values():
            for index, result in zip(indices, translate_group(self, [images[i] for i in indices], target, source, options)):
                results[index] = result
        return [result for result in results if result is not None]

    def translate_whole(self, images: Sequence[Image.Image], target: str, source: str | None = None) -> list[Image.Image]:
        """Images of one size through the network together, whole."""
        batch = to_model_range(torch.stack([image_to_uint8(image) for image in images]))
        return [tensor_to_image(output) for output in self.translate_tensor(batch, target, source)]


def find_model(target: str | None, home: Path | None = None, on_skip: Callable[[str], None] = lambda message: None) -> Path:
    """The most recently written model under `home` ($GANTRANS_HOME, else ./runs) that translates into
    `target` (any model when `target` is None). A model file that cannot be read is passed over and
    handed to `on_skip` (the CLI warns)."""
    home = home or Path(os.environ.get("GANTRANS_HOME") or "runs")
    candidates = sorted(home.glob(f"*/{checkpoint.MODEL_FILE}"), key=lambda path: path.stat().st_mtime, reverse=True)
    seen = []
    for candidate in candidates:
        try:
            info = checkpoint.read_model_info(candidate)
        except GantransError as error:
            on_skip(str(error))
            continue
        if target is None or target in info.domains:
            return candidate.parent
        seen.append(f"{candidate.parent.name} ({', '.join(info.domains)})")
    known = f"; models there: {', '.join(seen)}" if seen else ""
    wanted = f"translates into {target!r}" if target else "was found"
    raise GantransError(f"no model under {home}/ {wanted}{known}; pass --model PATH")
