"""Translating image files: decoded in batches (of a bounded number of pixels), one Result per input
in input order, failures reported per input, and the grids of `--grid`. Where outputs go, and the
rules for writing them, are in `gantrans/outputs.py`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from gantrans.config import DataConfig
from gantrans.errors import GantransError
from gantrans.images import ImageDecodeError, load_rgb
from gantrans.outputs import InputFile, Outputs, Result
from gantrans.translate_options import (
    MAX_WHOLE_PIXELS,
    TranslateOptions,
    check_translatable,
    final_output,
    network_input,
    network_size,
    scale_hint,
    with_size,
)

if TYPE_CHECKING:
    from gantrans.translate import Translator

Notes = Callable[[str], None]  # where advice goes (the CLI prints it on stderr, once)


@dataclass(frozen=True)
class _Job:
    """A decoded input waiting for its batch (at the network's size), and where its translation goes."""

    input: Path
    image: Image.Image
    destination: Path
    input_size: tuple[int, int]  # (width, height) of the file, for outputs returned at the input's size


def translate_files(
    translator: Translator,
    inputs: Iterable[InputFile],
    target: str,
    outputs: Outputs | None = None,
    batch_size: int = 8,
    source: str | None = None,
    size: int | None = None,
    options: TranslateOptions | None = None,
    on_note: Notes = lambda message: None,
) -> Iterator[Result]:
    """Translate image files in batches, yielding one Result per input in input order. An input that
    cannot be read, translated or written gives a Result with an error; the others are still done.
    `size` or `options` set the scale and tiling; advice (a large input, no scale chosen) goes to `on_note`.
    A batch holds at most `batch_size` images and, beyond one image, MAX_WHOLE_PIXELS pixels."""
    translator.check_target(target)
    options = with_size(options, size)
    outputs = outputs or Outputs()
    pending: list[_Job | Result] = []
    for item in inputs:
        pending.append(_prepare(translator, item, target, outputs, options, on_note))
        if len(pending) >= batch_size or sum(job.image.width * job.image.height for job in _jobs(pending)) >= MAX_WHOLE_PIXELS:
            yield from _flush(translator, pending, target, source, outputs, options)
            pending = []
    yield from _flush(translator, pending, target, source, outputs, options)


def _jobs(pending: list[_Job | Result]) -> list[_Job]:
    return [entry for entry in pending if isinstance(entry, _Job)]


def _prepare(
    translator: Translator, item: InputFile, target: str, outputs: Outputs, options: TranslateOptions, on_note: Notes
) -> _Job | Result:
    """Check where `item` goes, then decode it (resized now, so a batch holds only what it translates)."""
    if item.problem:
        return Result(item.path, None, item.problem)
    outputs.add_inputs([item.path])  # inputs read from stdin are known only as they come
    destination = outputs.check(item, target)
    if isinstance(destination, Result):
        return destination
    data = translator.info.config.data
    try:
        image = load_rgb(item.path, check_size=lambda header: _check_header(header, str(item.path), options, data, on_note))
    except ImageDecodeError as error:
        return Result(item.path, None, str(error))
    outputs.claim(destination, item.path)
    return _Job(item.path, network_input(image, options, data), destination, image.size)


def _check_header(size: tuple[int, int], label: str, options: TranslateOptions, data: DataConfig, on_note: Notes) -> None:
    """Before decoding: refuse an image too large to translate; advise on one far above the training scale."""
    check_translatable(network_size(size, options, data), label=label)
    note = scale_hint(label, size, options, data)
    if note:
        on_note(note)


def translate_bytes(
    translator: Translator,
    data: bytes,
    target: str,
    source: str | None = None,
    options: TranslateOptions | None = None,
    on_note: Notes = lambda message: None,
    label: str = "<stdin>",
) -> Image.Image:
    """The translation of an encoded image (`-`: bytes in, bytes out), at the size `options` say;
    errors name `label`."""
    options, config = options or TranslateOptions(), translator.info.config.data
    image = load_rgb(data, label, check_size=lambda header: _check_header(header, label, options, config, on_note))
    (translated,) = translator.translate_prepared([network_input(image, options, config)], target, source, options)
    if isinstance(translated, GantransError):
        raise type(translated)(f"{label}: {translated}")
    return final_output(translated, image.size, options)


def _flush(
    translator: Translator, pending: list[_Job | Result], target: str, source: str | None, outputs: Outputs, options: TranslateOptions
) -> Iterator[Result]:
    jobs = _jobs(pending)
    # The jobs' images are at the network's size already (_prepare): straight to the translator.
    results = iter(translator.translate_prepared([job.image for job in jobs], target, source, options) if jobs else [])
    for entry in pending:
        if isinstance(entry, Result):
            yield entry
            continue
        translated = next(results)
        if isinstance(translated, GantransError):
            yield Result(entry.input, None, f"{entry.input}: {translated}")
        else:
            yield outputs.save(final_output(translated, entry.input_size, options), entry.destination, entry.input)


def translate_batch(
    translator: Translator,
    images: Sequence[Image.Image],
    target: str,
    source: str | None = None,
    size: int | None = None,
    options: TranslateOptions | None = None,
) -> list[Image.Image | GantransError]:
    """The translation of each of `images`, at the size the network sees it (resized as `size` or
    `options` say; unchanged when it is already), or the error that stopped it: running out of
    memory even in the smallest tiles (see fallback.py) fails that image only."""
    options = with_size(options, size)
    images = [network_input(image, options, translator.info.config.data) for image in images]
    return translator.translate_prepared(images, target, source, options)


def translate_all(
    translator: Translator,
    items: Iterable[InputFile],
    targets: Sequence[str],
    outputs: Outputs,
    grid: bool = False,
    batch_size: int = 8,
    source: str | None = None,
    size: int | None = None,
    options: TranslateOptions | None = None,
    on_note: Notes = lambda message: None,
) -> Iterator[Result]:
    """translate_files for each target, then (with `grid`) the grid of each input translated into all."""
    if len(targets) > 1 or grid:
        items = list(items)  # walked once per target
    done: dict[Path, list[Path]] = {}
    for target in targets:
        for result in translate_files(translator, items, target, outputs, batch_size, source, size, options, on_note):
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
