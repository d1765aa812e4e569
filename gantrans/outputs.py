"""Where translations go: the inputs a command names, their output paths, and the rules every write
follows (inside its folder, never over an input, never twice in one run, whole files only)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from gantrans.errors import GantransError, UsageError
from gantrans.images import IMAGE_EXTENSIONS, file_identity, find_images, image_format, is_image_path, no_images_message, save_image
from gantrans.names import OutsideFolderError, inside
from gantrans.storage import write_atomically


@dataclass(frozen=True)
class InputFile:
    path: Path
    output_stem: Path  # output name without ".<domain>.png", relative to the output folder
    problem: str | None = None  # why there is nothing to translate here (a folder without images)


@dataclass(frozen=True)
class Result:
    input: Path
    output: Path | None  # None when the input failed
    error: str | None = None
    kept: bool = False  # `output` existed and was kept (--no-clobber); nothing was written


def expand_inputs(arguments: Iterable[str], skip_outputs_of: Sequence[str] = ()) -> Iterator[InputFile]:
    """Files as given; folders recursively (keeping their sub-folder structure in the output).

    In folders, files named like our own outputs (<stem>.<domain>.png for a domain in
    `skip_outputs_of`, and <stem>.grid.png) are skipped, so translating a folder twice does not
    translate translations. A folder with nothing to translate is an InputFile with a `problem`.
    """
    output_suffixes = tuple(f".{name}.png" for name in (*skip_outputs_of, "grid"))
    for argument in arguments:
        path = Path(argument)
        if not path.is_dir():
            yield InputFile(path, Path(path.stem))
            continue
        images = find_images(path)
        inputs = [image for image in images if not image.name.endswith(output_suffixes)]
        if images and not inputs:
            yield InputFile(
                path,
                Path(path.name),
                f"nothing to translate in {path}: its {len(images)} image(s) are all earlier outputs (*.<domain>.png, *.grid.png)",
            )
        elif not inputs:
            yield InputFile(path, Path(path.name), no_images_message(path))
        yield from (InputFile(image, image.relative_to(path).with_suffix("")) for image in inputs)


def check_something_to_translate(items: Sequence[InputFile]) -> None:
    """A GantransError when no input holds anything to translate (all are folders without images):
    one clear line instead of a silent exit 0."""
    if items and all(item.problem for item in items):
        raise GantransError("; ".join(item.problem for item in items if item.problem))


def output_path(item: InputFile, target: str, out: Path | None, out_is_file: bool) -> Path:
    """Where the translation of `item` goes: <stem>.<domain>.png next to the input, under `out`, or `out` itself."""
    if out is not None and out_is_file:
        return out
    name = f"{item.output_stem.name}.{target}.png"
    if out is None:
        return item.path.parent / name
    return out / item.output_stem.parent / name


class Outputs:
    """Where translations go, and the rules every write follows: inside the folder it is meant for, never
    over an input of this run, never twice in one run (the later input is an error naming the earlier),
    over an existing file only with `overwrite`, and through a temporary file, so none is ever partial."""

    def __init__(self, out: Path | None = None, out_is_file: bool = False, overwrite: bool = True) -> None:
        self.out, self.out_is_file, self.overwrite = out, out_is_file, overwrite
        self._inputs: dict[tuple[int, int], Path] = {}  # (st_dev, st_ino) of this run's inputs: links and hard links too
        self._claimed: dict[str, Path] = {}  # real path of each output of this run -> the input it belongs to

    def add_inputs(self, paths: Iterable[Path]) -> None:
        for path in paths:
            identity = file_identity(path)
            if identity is not None:
                self._inputs.setdefault(identity, path)

    def create_folder(self) -> None:
        """Create the --out folder now: a folder that cannot be created is one error, not one per input."""
        folder = self.out.parent if self.out is not None and self.out_is_file else self.out
        try:
            if folder is not None:
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise GantransError(f"cannot create the --out folder {folder}: {error.strerror or error}") from None

    def check(self, item: InputFile, target: str) -> Path | Result:
        """The destination of `item`'s translation into `target`, or the Result that ends it here:
        an error (outside its folder, an input, taken) or a kept file (--no-clobber; claimed, so a
        later input with the same output name is still an error)."""
        destination = output_path(item, target, self.out, self.out_is_file)
        folder = item.path.parent if self.out is None else self.out.parent if self.out_is_file else self.out
        try:
            inside(folder, destination)
        except OutsideFolderError as error:
            return Result(item.path, None, f"{item.path}: {error}")
        identity = file_identity(destination)
        replaced = self._inputs.get(identity) if identity else None
        if replaced is not None:
            what = "the input itself" if replaced == item.path else f"the input {replaced}"
            return Result(
                item.path, None, f"{item.path}: not translated: its output {destination} is {what}, and inputs are never replaced"
            )
        earlier = self._claimed.get(os.path.realpath(destination))
        if earlier is not None:
            other = "the same input, given twice" if earlier == item.path else earlier
            return Result(
                item.path,
                None,
                f"{item.path}: not translated: its output {destination} is already written from {other} in this run (rename one of them)",
            )
        if not self.overwrite and os.path.lexists(destination):
            self.claim(destination, item.path)
            return Result(item.path, destination, kept=True)
        return destination

    def claim(self, destination: Path, source: Path) -> None:
        """Reserve `destination` for `source`: a later input with the same output name is an error."""
        self._claimed[os.path.realpath(destination)] = source

    def save(self, image: Image.Image, destination: Path, source: Path) -> Result:
        """Write `image` to `destination` (claimed by `source`) through a temporary file."""
        try:
            destination.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(destination, lambda temporary: save_image(image, temporary, image_format(destination)))
        except OSError as failure:
            return Result(source, None, f"{destination}: cannot write ({failure.strerror or failure})")
        return Result(source, destination)

    def write(self, image: Image.Image, item: InputFile, target: str) -> Result:
        """check, claim and save in one: for outputs made one at a time (grids, stdin)."""
        destination = self.check(item, target)
        if isinstance(destination, Result):
            return destination
        self.claim(destination, item.path)
        return self.save(image, destination, item.path)


def looks_like_image_file(path: Path) -> bool:
    """Whether `--out PATH` names an output file rather than a folder."""
    return not path.is_dir() and is_image_path(path)


def out_is_file(out: Path | None) -> bool:
    """Whether `--out` names an output file (else a folder, or None). An existing file that is not named
    like an image is a UsageError: it is neither a folder to write into nor an image to replace."""
    if out is None or looks_like_image_file(out):
        return out is not None
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is an existing file, neither a folder nor an image file name ({' '.join(IMAGE_EXTENSIONS)})")
    return False
