"""`gantrans translate`: files, folders, path lists and byte streams."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Optional

import typer

from gantrans.cli.app import DeviceOption, app, fail, stderr, user_errors
from gantrans.errors import GantransError, UsageError


@app.command(no_args_is_help=True)
@user_errors
def translate(
    inputs: Optional[list[str]] = typer.Argument(
        None, help="Image files, folders (recursive), or - for image bytes on stdin. None: image paths on stdin, one a line."
    ),
    to: str = typer.Option(..., "--to", "-t", help="Target domain, or all: one output per domain of the model."),
    model: Optional[Path] = typer.Option(
        None, "--model", help="Run folder or .safetensors file.  [default: newest model under ./runs (or $GANTRANS_HOME) that knows --to]"
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Output folder, or a file for a single input.  [default: next to each input, as <stem>.<domain>.png]"
    ),
    grid: bool = typer.Option(False, "--grid", help="Also write <stem>.grid.png: the input and its translations side by side."),
    source: Optional[str] = typer.Option(
        None, "--from", help="The inputs' domain, for methods that need it (shared-latent).  [default: the model's other domain]"
    ),
    size: Optional[int] = typer.Option(
        None, help="Resize inputs so the shorter side has this many pixels (at most 11585).  [default: keep the input size]"
    ),
    scale: Optional[str] = typer.Option(
        None,
        help="input: the network sees each image at its own scale; train: resized to the scale the model was trained at "
        "(resize-crop: shorter side = its --load-size), the output resized back to the input's size.  [default: input]",
    ),
    keep_scale: bool = typer.Option(False, "--keep-scale", help="With --scale train: keep the output at the network's size."),
    tile: Optional[int] = typer.Option(
        None,
        help="Translate in tiles of this many pixels a side, each run with a margin of context: any image size in bounded memory.  "
        "[default: tiles only for images over 16.8 MP, or that do not fit in memory]",
    ),
    tile_overlap: int = typer.Option(32, help="Pixels where neighbouring tiles are blended (raised-cosine weights), so no seam shows."),
    tile_norm: str = typer.Option(
        "thumbnail",
        help="Instance-norm statistics of a tiled image: thumbnail (the default, as it costs one extra pass over a copy of at most 2 MP; "
        "Chen et al. 2022: one tone across tiles, close to but not the whole-image result) or exact (the whole image's: "
        "the same result as translated whole, but about one partial pass over the image per norm layer, many times slower).",
    ),
    batch_size: int = typer.Option(8, help="Images per forward pass (same-sized images are batched)."),
    overwrite: bool = typer.Option(
        True, "--overwrite/--no-clobber", help="Replace existing output files, or keep them (inputs are never replaced)."
    ),
    device: str = DeviceOption,
    precision: str = typer.Option("auto", help="bf16 (autocast), fp32, or auto: bf16 on CUDA (fp32 with --backend onnxruntime)."),
    backend: str = typer.Option(
        "torch",
        help="torch, or onnxruntime: images run through onnxruntime on the CPU, fp32 (~1.15x faster than torch on 2 cores at 256 px); "
        "each direction is exported once into the cache ($GANTRANS_CACHE, else ~/.cache/gantrans); tiles still run in torch. "
        "Needs pip install 'gantrans[export]'.",
    ),
) -> None:
    """Translate images into domain --to; prints each written path on stdout.

    \b
    Examples: gantrans translate photo.jpg --to vangogh
              find shots -name '*.jpg' | gantrans translate --to vangogh --out out/
              gantrans translate - --to vangogh < in.jpg > out.png
              gantrans translate face.jpg --to all --grid --model runs/celeba-stargan
              gantrans translate pano.jpg --to vangogh --scale train     # at the scale it learned
              gantrans translate 48mp.jpg --to vangogh --tile 512        # full size, in tiles
              gantrans translate shots/ --to vangogh --backend onnxruntime   # on the CPU, a little faster
    """
    from gantrans import outputs as destinations
    from gantrans import translate as translation
    from gantrans.onnx_backend import check_backend

    options = translation.TranslateOptions(size, scale, keep_scale, tile, tile_overlap, tile_norm)
    check_backend(backend, precision, device, tile)
    inputs = _checked_inputs(inputs, batch_size)
    out_is_file = destinations.out_is_file(out)
    translator = _load_translator(model, to, device, precision, backend)
    targets = translator.targets if to == "all" else (to,)
    translator.check_target(targets[0])
    _check_sources(translator, targets, source)
    outputs = destinations.Outputs(out, out_is_file, overwrite)
    note = _once(lambda message: print(f"gantrans: note: {message}", file=sys.stderr, flush=True))
    if inputs == ["-"]:
        if len(targets) > 1 or grid:
            raise UsageError("'-' writes one image to stdout: use a single --to DOMAIN, without --grid")
        _translate_stdin_bytes(translator, targets[0], outputs, source, options, note)
        return
    if out_is_file and (len(inputs) != 1 or Path(inputs[0]).is_dir() or len(targets) > 1 or grid):
        raise UsageError(f"--out {out} is a file name, but there is more than one output: give a folder")
    items = destinations.expand_inputs(inputs or (line.strip() for line in sys.stdin if line.strip()), translator.domains)
    if inputs or len(targets) > 1 or grid:
        items = list(items)  # counted for the progress bar, checked against the outputs, walked once per target
        destinations.check_something_to_translate(items)
        outputs.add_inputs(item.path for item in items)
    outputs.create_folder()
    results = translation.translate_all(translator, items, targets, outputs, grid, batch_size, source, options=options, on_note=note)
    _write_all(results, items, len(targets) + grid)


def _load_translator(model: Optional[Path], to: str, device: str, precision: str, backend: str) -> Any:
    """The Translator of --model, or of the newest model that knows --to (named on stderr)."""
    from gantrans import translate as translation

    model_path = model or translation.find_model(
        None if to == "all" else to, on_skip=lambda message: print(f"gantrans: warning: skipped {message}", file=sys.stderr)
    )
    translator = translation.Translator.load(model_path, device, precision, backend)
    if model is None:
        stderr.print(f"using model {model_path}", soft_wrap=True)
    return translator


def _check_sources(translator: Any, targets: tuple[str, ...], source: Optional[str]) -> None:
    """Say which domain the inputs are taken to be in, for methods that need one; --to all needs --from there."""
    for target in targets:
        assumed = translator.source_domain(target, source)
        if source is None and assumed is not None:
            if len(targets) > 1:
                raise UsageError(
                    "--to all needs --from here: this model translates from a named domain, and the inputs can't be all of them"
                )
            stderr.print(f"translating from {assumed} into {target} (--from names the inputs' domain)", soft_wrap=True)


def _once(show: Callable[[str], None]) -> Callable[[str], None]:
    """`show`, for the first message only: advice is given once per run, not once per image."""
    shown = False

    def first(message: str) -> None:
        nonlocal shown
        if not shown:
            shown = True
            show(message)

    return first


def _checked_inputs(inputs: Optional[list[str]], batch_size: int) -> list[str]:
    """The inputs as given, after the checks that need no model."""
    if batch_size < 1:
        raise UsageError(f"--batch-size must be positive (got {batch_size})")
    inputs = list(inputs or [])
    if "-" in inputs and len(inputs) > 1:
        raise UsageError("'-' (image bytes on stdin) cannot be combined with other inputs")
    if not inputs and sys.stdin.isatty():
        raise UsageError("no input: give image files or folders, '-' for image bytes on stdin, or pipe image paths on stdin")
    return inputs


def _write_all(results: Iterator[Any], items: Any, outputs_per_item: int) -> None:
    """Print each written path on stdout and each failure on stderr, with a progress bar; exit 1
    when an input could not be translated."""
    failed: set[Path] = set()
    count = 0
    with _translate_progress(len(items) * outputs_per_item if isinstance(items, list) else None) as advance:
        for result in results:
            count += 1
            if result.error:
                failed.add(result.input)
                print(f"gantrans: error: {result.error}", file=sys.stderr, flush=True)
            elif result.kept:
                print(f"gantrans: kept {result.output}: it exists (--no-clobber)", file=sys.stderr, flush=True)
            else:
                print(result.output, flush=True)
            advance()
    if not count:
        raise GantransError("no image paths on stdin: pipe them in one a line (find shots -name '*.jpg' | gantrans translate ...)")
    if failed:
        fail(f"{len(failed)} input(s) could not be translated")


@contextlib.contextmanager
def _translate_progress(total: Optional[int]) -> Iterator[Callable[[], None]]:
    """A transient progress bar on stderr when it is a terminal and there is more than one image."""
    if not stderr.is_terminal or total == 1:
        yield lambda: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("[bold]translating"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=stderr,
        transient=True,
        redirect_stdout=False,
    ) as progress:
        task = progress.add_task("translate", total=total)
        yield lambda: progress.advance(task)


def _translate_stdin_bytes(
    translator: Any, to: str, outputs: Any, source: Optional[str], options: Any, note: Callable[[str], None]
) -> None:
    """Image bytes on stdin -> a PNG on stdout, or a file under (or at) --out, written like any other output."""
    from gantrans import translate as translation
    from gantrans.images import save_image
    from gantrans.outputs import InputFile

    data = sys.stdin.buffer.read()
    if not data:
        raise UsageError("'-' given but stdin is empty: pipe an image file in (gantrans translate - --to D < in.jpg)")
    translated = translation.translate_bytes(translator, data, to, source, options, note)
    if outputs.out is None:
        save_image(translated, sys.stdout.buffer, format="PNG")
        sys.stdout.buffer.flush()
        return
    outputs.create_folder()
    result = outputs.write(translated, InputFile(Path("stdin"), Path("stdin")), to)
    if result.error:
        raise GantransError(result.error)
    if result.kept:
        print(f"gantrans: kept {result.output}: it exists (--no-clobber)", file=sys.stderr, flush=True)
    else:
        print(result.output, flush=True)
