"""`gantrans eval`: a model's report, or two folders compared."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from gantrans.cli.app import DeviceOption, app, stderr, user_errors
from gantrans.errors import GantransError, UsageError
from gantrans.eval_table import direction_rows, metric_table


@app.command("eval", no_args_is_help=True)
@user_errors
def evaluate(
    model: Optional[Path] = typer.Option(None, "--model", help="Run folder or .safetensors file to evaluate (with --data)."),
    data: Optional[Path] = typer.Option(
        None, "--data", "-d", help="The model's data folder: its test split is translated, or all images when it has none."
    ),
    split: str = typer.Option("test", help="Which split of --data to evaluate on."),
    limit: Optional[int] = typer.Option(None, "--n", help="Evaluate at most this many images per domain.  [default: all]"),
    classifier: Optional[Path] = typer.Option(
        None,
        "--classifier",
        help="A stargan run whose domain classifier judges the translations (independent of the model).  [default: a stargan model's own]",
    ),
    reference_dir: Optional[Path] = typer.Option(
        None,
        "--reference-dir",
        help="Paired ground truth, when you have it: REF/<target domain>/<same file name as the input>; adds L1, PSNR and SSIM.",
    ),
    fid: Optional[tuple[Path, Path]] = typer.Option(
        None, "--fid", help="Two image folders: FID and KID between them, as pytorch-fid computes FID."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print the results as one JSON object on stdout."),
    html: Optional[Path] = typer.Option(
        None, "--html", metavar="FILE", help="Also write the evaluation as one HTML page: the table, warnings and example translations."
    ),
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
              gantrans eval --model runs/h2z --data data/h2z --html h2z.html
              gantrans eval --fid data/test/zebra out/zebra --json

    A model in a training run's folder keeps the result in RUN/evaluations/, and its report
    (RUN/report/index.html) shows it.

    The results are printed first: what comes after (the example translations, keeping the result)
    can only fail with a warning. Only an --html page that could not be written fails the command
    (exit 1, after the results), as the file asked for is missing.

    The pretrained networks are downloaded on first use (or by `gantrans fetch-weights`).
    """
    from gantrans.device import resolve_device

    if (fid is None) == (model is None):
        raise UsageError("give --model RUN --data DIR to evaluate a model, or --fid DIR1 DIR2 to compare two folders")
    if model is not None and data is None:
        raise UsageError("--model needs --data DIR: the folder of the domains it was trained on")
    if batch_size < 1 or (limit is not None and limit < 2):
        raise UsageError("--batch-size must be positive and --n at least 2")
    if html is not None and (fid is not None or html.is_dir()):
        raise UsageError(f"--html {html}: name a file for the page of a model's evaluation (with --model)")
    if fid is not None:
        _compare_folders(fid, resolve_device(device), batch_size, json_output)
    else:
        options = _ModelOptions(split, limit, classifier, reference_dir, json_output, batch_size, device, html)
        _evaluate_model(model, data, options)


def _compare_folders(folders: tuple[Path, Path], device: Any, batch_size: int, json_output: bool) -> None:
    """`eval --fid`: the folders are checked before the network is loaded."""
    import json

    from gantrans import evaluate as evaluation
    from gantrans.inception import load_inception

    for folder in folders:
        evaluation.folder_images(folder)
    comparison = evaluation.compare_folders(folders[0], folders[1], load_inception(device), batch_size)
    _warn_skipped(comparison.skipped)
    report: dict = {
        "folders": list(comparison.folders),
        "images": list(comparison.images),
        "fid": comparison.fid,
        "kid": comparison.kid,
        "kid_std": comparison.kid_std,
    }
    rows = {
        "images": " / ".join(map(str, comparison.images)),
        "FID": f"{comparison.fid:.2f}",
        "KID × 1000": f"{1000 * comparison.kid:.2f} ± {1000 * comparison.kid_std:.2f}",
    }
    if json_output:
        print(json.dumps(report))
    else:
        _print_eval_table({" vs ".join(comparison.folders): rows})


@dataclass(frozen=True)
class _ModelOptions:
    """How `eval --model` runs, as given on the command line."""

    split: str
    limit: Optional[int]
    classifier: Optional[Path]
    reference_dir: Optional[Path]
    json_output: bool
    batch_size: int
    device: str
    html: Optional[Path]


def _evaluate_model(model: Path, data: Path, options: _ModelOptions) -> None:
    """`eval --model`: the data is checked (two images a domain) before the networks are loaded."""
    import json

    from gantrans import checkpoint
    from gantrans import evaluate as evaluation
    from gantrans.device import resolve_device
    from gantrans.features import load_lpips
    from gantrans.inception import load_inception
    from gantrans.translate import Translator

    translator = Translator.load(model, options.device)
    evaluation.evaluation_files(data, translator.domains, options.split, options.limit)
    resolved = resolve_device(options.device)
    judge = options.classifier
    if judge is None and translator.info.method == "stargan" and (translator.info.path.parent / checkpoint.STATE_FILE).is_file():
        judge = translator.info.path.parent
        stderr.print("domain accuracy by the model's own classifier (--classifier RUN for an independent one)", soft_wrap=True)
    judges = evaluation.Judges(
        load_inception(resolved), load_lpips(resolved), evaluation.load_domain_classifier(judge, resolved) if judge else None
    )
    result = evaluation.evaluate_model(translator, data, judges, options.split, options.limit, options.reference_dir, options.batch_size)
    stderr.print(f"evaluated on the {result.split} split of {data}", soft_wrap=True)
    _warn_skipped(result.skipped)
    for direction in result.directions:
        for warning in direction.warnings:
            print(f"gantrans: warning: {warning}", file=sys.stderr)
    # The results first: an evaluation can take long, and nothing after it may lose it.
    if options.json_output:
        print(json.dumps(result.to_dict()), flush=True)
    else:
        _print_eval_table({f"{d.source} → {d.target}": direction_rows(vars(d)) for d in result.directions})
    page_written = _write_page(translator, data, result, options) if options.html is not None else True
    _keep(translator, result)
    if not page_written:
        raise typer.Exit(1)


def _write_page(translator: Any, data: Path, result: Any, options: _ModelOptions) -> bool:
    """The --html page, its path on stderr (stdout carries the table or JSON); examples that cannot be
    made are a warning (the page goes without them), a page that cannot be written one error line."""
    from gantrans.eval_page import direction_examples, write_evaluation_page

    assert options.html is not None
    examples = {}
    try:
        for d in result.directions:
            examples[(d.source, d.target)] = direction_examples(translator, data, options.split, d.source, d.target, options.reference_dir)
    except Exception as error:  # noqa: BLE001  (out of memory, an unreadable image: the page goes without)
        _warn(f"the evaluation page has no example translations: {_reason(error)}")
        examples = {}
    try:
        stderr.print(f"evaluation page: {write_evaluation_page(options.html, result, examples, options.reference_dir)}", soft_wrap=True)
    except Exception as error:  # noqa: BLE001  (the results are printed: say what is missing, in one line)
        print(f"gantrans: error: could not write the evaluation page {options.html}: {_reason(error)}", file=sys.stderr)
        return False
    return True


def _keep(translator: Any, result: Any) -> None:
    """The result kept in the model's run folder (whose report then shows it), the report's path on
    stderr; a warning when that fails (a read-only folder, a damaged file): the evaluation stands."""
    from gantrans.report import keep_evaluation

    folder = translator.info.path.parent
    try:
        report = keep_evaluation(folder, translator.info.step, result.to_dict())
    except Exception as error:  # noqa: BLE001
        _warn(f"could not keep the evaluation in {folder}: {_reason(error)}")
        return
    if report is not None:
        stderr.print(f"run report: {report}", soft_wrap=True)


def _reason(error: Exception) -> str:
    """An error in a few words, on one line."""
    text = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    text = " ".join(text.split()) or type(error).__name__
    return text if isinstance(error, (OSError, GantransError)) else f"{type(error).__name__}: {text}"


def _warn(message: str) -> None:
    print(f"gantrans: warning: {message}", file=sys.stderr)


def _warn_skipped(messages: tuple[str, ...]) -> None:
    for message in messages:
        print(f"gantrans: warning: skipped {message}", file=sys.stderr)


def _print_eval_table(columns: dict[str, dict[str, str]]) -> None:
    """Metrics as rows, one column per direction (or folder pair)."""
    from rich.table import Table

    header, rows = metric_table(columns)
    table = Table(*header)
    for row in rows:
        table.add_row(*row)
    Console().print(table)
