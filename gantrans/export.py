"""Export: each translation direction of a model as one ONNX file that onnxruntime runs without
gantrans or PyTorch (see the README's "Export and deployment"). Which directions, and where their
files go, are decided here; how one direction becomes a file is in onnx_file.py.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from gantrans import checkpoint
from gantrans.errors import GantransError, UsageError
from gantrans.methods import Method
from gantrans.names import inside
from gantrans.onnx_file import Direction, check_exporter, export_onnx, input_domain, onnx_metadata
from gantrans.translate import Translator

# Re-exported: what callers of the exporter (benchmarks/cpu_inference.py) import from here.
__all__ = ["Direction", "check_exporter", "directions", "export_model", "export_onnx", "onnx_metadata"]

FORMATS = ("onnx",)
SUFFIX = ".onnx"


def export_model(
    model: Path | str, format: str = "onnx", to: str | None = None, source: str | None = None, out: Path | None = None
) -> Iterator[Path]:
    """Export the model at `model` (run folder or .safetensors file) into `to`, or into every domain it
    translates into: one file per direction, in `out` (a folder, or a .onnx file for one direction;
    default: beside the model, as <model>.<domain>.onnx). Yields each path once it is written. Every
    check (format, packages, model, domains, destinations) comes before the first file."""
    if format not in FORMATS:
        raise UsageError(f"unknown --format {format!r}; gantrans exports: {', '.join(FORMATS)}")
    check_exporter()
    translator = Translator.load(model, device="cpu", precision="fp32")
    chosen = directions(translator, to, source)
    paths = destinations(translator.info, translator.method, chosen, out)
    for direction, path in zip(chosen, paths):
        export_onnx(translator.method, direction, path, onnx_metadata(translator.info, translator.method, direction))
        yield path


def directions(translator: Translator, to: str | None, source: str | None) -> list[Direction]:
    """The directions to export: into `to`, or into every domain the model translates into (for a
    method that translates from a named domain, `source`'s own domain left out)."""
    method = translator.method
    if to is not None:
        translator.check_target(to)
    targets = translator.targets if to is None else (to,)
    if to is None and source is not None and translator.source_domain(targets[0], source) is not None:
        targets = tuple(target for target in targets if target != source)  # the source into itself reconstructs
    return [Direction(target, input_domain(method, target, source)) for target in targets]


def file_name(info: checkpoint.ModelInfo, direction: Direction, method: Method) -> str:
    """<model>.<target>.onnx; <model>.<source>.<target>.onnx when the method bakes in one of 3+ sources."""
    model = info.path.parent.resolve().name if info.path.name == checkpoint.MODEL_FILE else info.path.stem
    named_source = method.source_domain(direction.target, direction.source or None) is not None and len(method.domains) > 2
    return ".".join([model, *([direction.source] if named_source else []), direction.target]) + SUFFIX


def destinations(info: checkpoint.ModelInfo, method: Method, chosen: Sequence[Direction], out: Path | None) -> list[Path]:
    """Where each direction's file goes: `out` itself when it names one .onnx file, else in the folder
    `out` (created) or beside the model."""
    if out is not None and out.suffix == SUFFIX and not out.is_dir():
        if len(chosen) != 1:
            targets = ", ".join(direction.target for direction in chosen)
            raise UsageError(f"--out {out} names one file, but the model translates into {targets}: give a folder, or --to DOMAIN")
        _make_folder(out.parent)
        return [out]
    folder = info.path.parent if out is None else out
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--out {folder} is an existing file: give a folder, or a file name ending in {SUFFIX}")
    _make_folder(folder)
    return [inside(folder, folder / file_name(info, direction, method)) for direction in chosen]


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise GantransError(f"cannot create the folder {folder}: {error.strerror or error}") from None
