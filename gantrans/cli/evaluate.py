"""`gantrans eval`: a model's report, or two folders compared."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from gantrans.cli.app import DeviceOption, app, stderr, user_errors
from gantrans.errors import UsageError


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


def _evaluate_model(
    model: Path,
    data: Path,
    split: str,
    limit: Optional[int],
    classifier: Optional[Path],
    reference_dir: Optional[Path],
    json_output: bool,
    batch_size: int,
    device: str,
) -> None:
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
    judges = evaluation.Judges(
        load_inception(resolved), load_lpips(resolved), evaluation.load_domain_classifier(judge, resolved) if judge else None
    )
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
        "cycle error gain: noise, JPEG": "-"
        if report.hidden_information is None
        else f"{report.hidden_information:.2f}, {report.hidden_information_jpeg:.2f}",
        **(
            {}
            if report.reference_l1 is None
            else {
                "reference L1 ↓": f"{report.reference_l1:.4f}",
                "reference PSNR ↑": f"{report.reference_psnr:.2f} dB",
                "reference SSIM ↑": f"{report.reference_ssim:.3f}",
            }
        ),
    }


def _print_eval_table(columns: dict[str, dict[str, str]]) -> None:
    """Metrics as rows, one column per direction (or folder pair)."""
    from rich.table import Table

    table = Table("", *columns)
    metrics = list(dict.fromkeys(metric for cells in columns.values() for metric in cells))  # every column's, in order
    for metric in metrics:
        table.add_row(metric, *(cells.get(metric, "-") for cells in columns.values()))
    Console().print(table)
