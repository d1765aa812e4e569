"""Translator: a trained model applied to tensors, images, files, folders and streams (where the
outputs of files go, and the rules for writing them, are in `gantrans/outputs.py`)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from gantrans import checkpoint
from gantrans.config import PRECISIONS
from gantrans.device import resolve_device, uses_bf16
from gantrans.errors import GantransError, UsageError, is_out_of_memory
from gantrans.images import ImageDecodeError, ImageTooLargeError, image_to_uint8, load_rgb, tensor_to_image, to_model_range
from gantrans.methods import Method
from gantrans.outputs import InputFile, Outputs, Result

# The largest image translated whole (~16.8 MP, 4096x4096): larger ones need the tiling of a later
# version. Checked from the header, after --size, before anything is decoded.
MAX_TRANSLATE_PIXELS = 2**24
MAX_SIZE = math.isqrt(MAX_TRANSLATE_PIXELS)  # --size is the shorter side: beyond this no image fits


class Translator:
    """Translate images with a trained model. Sizes are kept: inputs are padded to the
    generator's stride and the result is cropped back."""

    def __init__(self, method: Method, info: checkpoint.ModelInfo, device: torch.device, bf16: bool = False) -> None:
        self.method, self.info, self.device = method, info, device
        self.bf16 = bf16  # generators run under bf16 autocast; results are returned in fp32

    @classmethod
    def load(cls, path: Path | str, device: str = "auto", precision: str = "auto") -> Translator:
        """The model at `path` on `device`; `precision` fp32, bf16, or auto (bf16 on a CUDA GPU that has it)."""
        if precision not in PRECISIONS:
            raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)} (got {precision!r})")
        resolved = resolve_device(device)
        method, info = checkpoint.load_model(path, resolved)
        return cls(method, info, resolved, uses_bf16(precision, resolved))

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

    @torch.inference_mode()
    def translate_tensor(self, images: Tensor, target: str, source: str | None = None) -> Tensor:
        """Images in [-1, 1], NCHW of any size -> translated images of the same size."""
        self.check_target(target)
        height, width = images.shape[-2:]
        stride, min_side = self.method.stride, self.method.min_side
        pad_bottom, pad_right = max(-height % stride, min_side - height), max(-width % stride, min_side - width)
        images = images.to(self.device)
        if pad_bottom or pad_right:
            # Reflection continues the image naturally; it needs the pad to be smaller than the side.
            mode = "reflect" if pad_bottom < height and pad_right < width else "replicate"
            images = F.pad(images, (0, pad_right, 0, pad_bottom), mode=mode)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            translated = self.method.translate(images, target, source)
        return translated[..., :height, :width].float()

    def translate_images(
        self, images: Sequence[Image.Image], target: str, source: str | None = None, size: int | None = None
    ) -> list[Image.Image]:
        """PIL images -> translated PIL images; images of equal size go through the network together.
        An image of more than MAX_TRANSLATE_PIXELS (after resizing to `size`) is an ImageTooLargeError."""
        for image in images:
            check_translatable(image.size, size)
        if size is not None:
            images = [resize_shorter_side(image, size) for image in images]
        results: list[Image.Image | None] = [None] * len(images)
        groups: dict[tuple[int, int], list[int]] = {}
        for index, image in enumerate(images):
            groups.setdefault(image.size, []).append(index)
        for indices in groups.values():
            batch = to_model_range(torch.stack([image_to_uint8(images[i]) for i in indices]))
            for index, output in zip(indices, self.translate_tensor(batch, target, source)):
                results[index] = tensor_to_image(output)
        return [result for result in results if result is not None]


def resize_shorter_side(image: Image.Image, size: int) -> Image.Image:
    width, height = resized(image.size, size)
    return image.resize((width, height), Image.BICUBIC)


def resized(size: tuple[int, int], shorter_side: int | None) -> tuple[int, int]:
    """(width, height) after scaling so the shorter side is `shorter_side` (None: unchanged)."""
    if shorter_side is None:
        return size
    scale = shorter_side / min(size)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


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
        f"{label}: {width}x{height} is more than gantrans translates whole ({MAX_TRANSLATE_PIXELS} pixels); "
        f"use --size {max(fits, 1)} or less"
    )


@dataclass(frozen=True)
class _Job:
    """A decoded input waiting for its batch, and where its translation goes."""

    input: Path
    image: Image.Image
    destination: Path


def translate_files(
    translator: Translator,
    inputs: Iterable[InputFile],
    target: str,
    outputs: Outputs | None = None,
    batch_size: int = 8,
    source: str | None = None,
    size: int | None = None,
) -> Iterator[Result]:
    """Translate image files in batches, yielding one Result per input in input order. An input that
    cannot be read, translated or written gives a Result with an error; the others are still done."""
    translator.check_target(target)
    outputs = outputs or Outputs()
    pending: list[_Job | Result] = []
    for item in inputs:
        pending.append(_prepare(item, target, outputs, size))
        if len(pending) >= batch_size:
            yield from _flush(translator, pending, target, source, outputs)
            pending = []
    yield from _flush(translator, pending, target, source, outputs)


def _prepare(item: InputFile, target: str, outputs: Outputs, size: int | None) -> _Job | Result:
    """Check where `item` goes, then decode it (resized now, so a batch holds only what it translates)."""
    if item.problem:
        return Result(item.path, None, item.problem)
    outputs.add_inputs([item.path])  # inputs read from stdin are known only as they come
    destination = outputs.check(item, target)
    if isinstance(destination, Result):
        return destination
    try:
        image = load_rgb(item.path, check_size=lambda header: check_translatable(header, size, str(item.path)))
    except ImageDecodeError as error:
        return Result(item.path, None, str(error))
    outputs.claim(destination, item.path)
    return _Job(item.path, image if size is None else resize_shorter_side(image, size), destination)


def _flush(translator: Translator, pending: list[_Job | Result], target: str, source: str | None, outputs: Outputs) -> Iterator[Result]:
    jobs = [entry for entry in pending if isinstance(entry, _Job)]
    translated, failure = translate_batch(translator, [job.image for job in jobs], target, source) if jobs else ([], None)
    results = iter(translated)
    for entry in pending:
        if isinstance(entry, Result):
            yield entry
        elif failure is not None:
            yield Result(entry.input, None, f"{entry.input}: {failure}")
        else:
            yield outputs.save(next(results), entry.destination, entry.input)


def translate_batch(
    translator: Translator,
    images: Sequence[Image.Image],
    target: str,
    source: str | None = None,
    size: int | None = None,
) -> tuple[list[Image.Image], str | None]:
    """The translations of `images`, or none and why: running out of memory fails this batch only."""
    try:
        return translator.translate_images(images, target, source, size), None
    except Exception as error:  # noqa: BLE001  (only allocation failures are handled; the rest re-raised)
        if not is_out_of_memory(error):
            raise
    # Outside the except block: the error's frames (and the tensors they hold) are released by now.
    if translator.device.type == "cuda":
        torch.cuda.empty_cache()
    width, height = max((image.size for image in images), key=lambda size: size[0] * size[1])
    return [], f"out of memory translating a batch of {len(images)} image(s) of up to {width}x{height}; try --batch-size 1 or --size N"


def translate_all(
    translator: Translator,
    items: Iterable[InputFile],
    targets: Sequence[str],
    outputs: Outputs,
    grid: bool = False,
    batch_size: int = 8,
    source: str | None = None,
    size: int | None = None,
) -> Iterator[Result]:
    """translate_files for each target, then (with `grid`) the grid of each input translated into all."""
    if len(targets) > 1 or grid:
        items = list(items)  # walked once per target
    done: dict[Path, list[Path]] = {}
    for target in targets:
        for result in translate_files(translator, items, target, outputs, batch_size, source, size):
            if result.output is not None:
                done.setdefault(result.input, []).append(result.output)
            yield result
    for item in items if grid else ():
        if len(done.get(item.path, [])) == len(targets):
            yield write_grid(item, done[item.path], outputs)


def write_grid(item: InputFile, translations: Sequence[Path], outputs: Outputs) -> Result:
    """The input and its translations side by side, at the translations' size, as <stem>.grid.png."""
    destination = outputs.check(item, "grid")
    if isinstance(destination, Result):
        return destination
    try:
        images = [load_rgb(path) for path in translations]
        images.insert(0, load_rgb(item.path).resize(images[0].size, Image.BICUBIC))
    except ImageDecodeError as error:
        return Result(item.path, None, f"{destination}: not written ({error})")
    grid = Image.new("RGB", (sum(image.width for image in images), images[0].height))
    for index, image in enumerate(images):
        grid.paste(image, (sum(other.width for other in images[:index]), 0))
    outputs.claim(destination, item.path)
    return outputs.save(grid, destination, item.path)


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
