"""Translator: a trained model applied to tensors, images, files, folders and streams."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from gantrans import checkpoint
from gantrans.config import PRECISIONS
from gantrans.errors import GantransError, UsageError
from gantrans.images import ImageDecodeError, find_images, image_to_uint8, is_image_path, load_rgb, save_image, tensor_to_image, to_model_range
from gantrans.methods import Method
from gantrans.training import resolve_device, uses_bf16


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
            raise UsageError(f"the model {self.info.path.parent} has no generator into {target!r} (it translates into {', '.join(self.targets)})")

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

    def translate_images(self, images: Sequence[Image.Image], target: str, source: str | None = None, size: int | None = None) -> list[Image.Image]:
        """PIL images -> translated PIL images; images of equal size go through the network together."""
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
    scale = size / min(image.size)
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BICUBIC)


@dataclass(frozen=True)
class InputFile:
    path: Path
    output_stem: Path  # output name without ".<domain>.png", relative to the output folder


@dataclass(frozen=True)
class Result:
    input: Path
    output: Path | None  # None when the input failed
    error: str | None = None


def expand_inputs(arguments: Iterable[str], skip_outputs_of: Sequence[str] = ()) -> Iterator[InputFile]:
    """Files as given; folders recursively (keeping their sub-folder structure in the output).

    In folders, files named like our own outputs (<stem>.<domain>.png for a domain in
    `skip_outputs_of`) are skipped, so translating a folder twice does not translate translations.
    """
    output_suffixes = tuple(f".{domain}.png" for domain in skip_outputs_of)
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            for image in find_images(path):
                if not (output_suffixes and image.name.endswith(output_suffixes)):
                    yield InputFile(image, image.relative_to(path).with_suffix(""))
        else:
            yield InputFile(path, Path(path.stem))


def output_path(item: InputFile, target: str, out: Path | None, out_is_file: bool) -> Path:
    """Where the translation of `item` goes: <stem>.<domain>.png next to the input, under `out`, or `out` itself."""
    if out is not None and out_is_file:
        return out
    name = f"{item.output_stem.name}.{target}.png"
    if out is None:
        return item.path.with_name(name)
    return out / item.output_stem.parent / name


def translate_files(
    translator: Translator, inputs: Iterable[InputFile], target: str, out: Path | None = None,
    out_is_file: bool = False, batch_size: int = 8, source: str | None = None, size: int | None = None,
) -> Iterator[Result]:  # fmt: skip
    """Translate image files in batches, yielding one Result per input in input order.
    An unreadable input gives a Result with an error; the others are still translated."""
    translator.check_target(target)
    pending: list[tuple[InputFile, Image.Image | None, str | None]] = []
    for item in inputs:
        try:
            pending.append((item, load_rgb(item.path), None))
        except ImageDecodeError as error:
            pending.append((item, None, str(error)))
        if len(pending) >= batch_size:
            yield from _flush(translator, pending, target, out, out_is_file, source, size)
            pending = []
    yield from _flush(translator, pending, target, out, out_is_file, source, size)


def _flush(translator: Translator, pending: list, target: str, out: Path | None, out_is_file: bool, source: str | None, size: int | None) -> Iterator[Result]:
    decoded = [(item, image) for item, image, _ in pending if image is not None]
    translated = iter(translator.translate_images([image for _, image in decoded], target, source, size))
    for item, image, error in pending:
        if image is None:
            yield Result(item.path, None, error)
            continue
        destination = output_path(item, target, out, out_is_file)
        try:
            destination.parent.mkdir(parents=True, exist_ok=True)
            save_image(next(translated), destination)
        except OSError as failure:
            yield Result(item.path, None, f"{destination}: cannot write ({failure.strerror or failure})")
            continue
        yield Result(item.path, destination)


def write_grid(source: Path, outputs: Sequence[Path], destination: Path) -> None:
    """The input and its translations side by side, at the translations' size."""
    translations = [load_rgb(path) for path in outputs]
    images = [load_rgb(source).resize(translations[0].size, Image.BICUBIC), *translations]
    grid = Image.new("RGB", (sum(image.width for image in images), translations[0].height))
    for index, image in enumerate(images):
        grid.paste(image, (sum(other.width for other in images[:index]), 0))
    destination.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, destination)


def find_model(target: str | None, home: Path | None = None) -> Path:
    """The most recently written model under `home` ($GANTRANS_HOME, else ./runs) that translates into
    `target` (any model when `target` is None)."""
    home = home or Path(os.environ.get("GANTRANS_HOME") or "runs")
    candidates = sorted(home.glob(f"*/{checkpoint.MODEL_FILE}"), key=lambda path: path.stat().st_mtime, reverse=True)
    seen = []
    for candidate in candidates:
        try:
            info = checkpoint.read_model_info(candidate)
        except GantransError:
            continue
        if target is None or target in info.domains:
            return candidate.parent
        seen.append(f"{candidate.parent.name} ({', '.join(info.domains)})")
    known = f"; models there: {', '.join(seen)}" if seen else ""
    wanted = f"translates into {target!r}" if target else "was found"
    raise GantransError(f"no model under {home}/ {wanted}{known}; pass --model PATH")


def looks_like_image_file(path: Path) -> bool:
    """Whether `--out PATH` names an output file rather than a folder."""
    return not path.is_dir() and is_image_path(path)
