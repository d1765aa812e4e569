"""`gantrans report`: a run's report page, rebuilt from its folder."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from gantrans.cli.app import app, user_errors


@app.command("report", no_args_is_help=True)
@user_errors
def report(
    run: Path = typer.Argument(..., metavar="RUN", help="The run folder (train's --out).", show_default=False),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Write the page here, with copies of the sample grids, instead of RUN/report/.  [default: RUN/report]"
    ),
) -> None:
    """Write a run's report: one HTML page that opens from file:// in any browser, without a network.

    \b
    Status and the command to resume, settings, a curve per loss term (moving average, log scale),
    evaluation scores over time with the best step marked, the latest `gantrans eval` and its
    warnings, and the sample grids of every step.

    Training writes RUN/report/index.html by itself, at each sample step and at the end; this
    rebuilds it (a run from an older gantrans), or writes a copy to share (--out DIR). Prints the
    page's path.

    \b
    Example: gantrans report runs/horse2zebra-cyclegan   ->  runs/horse2zebra-cyclegan/report/index.html
    """
    from gantrans.report import write_report

    print(write_report(run, out))
