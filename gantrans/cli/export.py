"""`gantrans export`: a model's translations as files that run without gantrans (ONNX)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from gantrans.cli.app import app, user_errors


@app.command(no_args_is_help=True)
@user_errors
def export(
    model: Path = typer.Argument(..., help="Run folder or .safetensors file."),
    format: str = typer.Option("onnx", "--format", help="File format: onnx (needs pip install 'gantrans[export]')."),
    to: Optional[str] = typer.Option(
        None, "--to", "-t", help="Target domain.  [default: every domain the model translates into, one file each]"
    ),
    source: Optional[str] = typer.Option(
        None, "--from", help="The inputs' domain, for methods that need it (shared-latent).  [default: the model's other domain]"
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Output folder, or a .onnx file name for one direction.  [default: beside the model]"
    ),
) -> None:
    """Export a model as one ONNX file per direction (<model>.<domain>.onnx); prints each written path.

    \b
    Examples: gantrans export runs/horse2zebra --format onnx
              gantrans export runs/horse2zebra --to zebra --out zebra.onnx
    Each file takes float32 NCHW RGB in [-1, 1] of any size padded to the stride in its metadata;
    onnxruntime, NumPy and Pillow run it (README: Export and deployment).
    """
    from gantrans.export import export_model

    for path in export_model(model, format, to, source, out):
        print(path, flush=True)
