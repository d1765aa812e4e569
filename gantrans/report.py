"""The run report: `<run>/report/index.html`, one page rebuilt from what is on disk (config.json,
log.jsonl, status.json, samples/, evaluations/), so it is cheap enough to write at every sample
step and can be rebuilt by `gantrans report RUN` at any time, during the run or long after.

The page needs no server and no network: charts are inline SVG, the style and the one small script
are inline, and the sample grids are referenced by relative paths (`../samples/...`), which still
work when the run folder is moved. A report written outside the run (`--out DIR`) gets its own
copies of the grids in DIR/samples/, so DIR can be shared on its own.

No torch here: a report can be rebuilt on any machine that has the run folder.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from gantrans.errors import UsageError
from gantrans.report_data import RunFolder, is_run_folder, read_run, record_evaluation
from gantrans.report_sections import report_page
from gantrans.run_status import write_text_atomically

REPORT_FOLDER = "report"


def write_report(run_dir: Path, out: Path | None = None) -> Path:
    """Write the report of the run in `run_dir` to `out`/index.html (default `<run>/report/`); its path."""
    run = read_run(run_dir)
    out = Path(out) if out is not None else Path(run_dir) / REPORT_FOLDER
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file: name a folder for the report")
    out.mkdir(parents=True, exist_ok=True)
    page = report_page(run, _sample_links(run, out), time.time())
    path = out / "index.html"
    write_text_atomically(path, page)
    return path


def _sample_links(run: RunFolder, out: Path) -> Callable[[Path], str]:
    """How the page at `out` refers to a sample grid: relatively when `out` lies inside the run folder
    (the run can be moved), else through a copy in `out`/samples/ (the report can be moved)."""
    inside = Path(os.path.abspath(out)).is_relative_to(os.path.abspath(run.path))
    if not inside:
        copies = out / "samples"
        copies.mkdir(exist_ok=True)
        for _, grid in run.samples:
            copy = copies / grid.name
            if not copy.is_file() or copy.stat().st_size != grid.stat().st_size or copy.stat().st_mtime < grid.stat().st_mtime:
                shutil.copy2(grid, copy)

    def link(grid: Path) -> str:
        target = grid if inside else out / "samples" / grid.name
        return "/".join(quote(part) for part in Path(os.path.relpath(os.path.abspath(target), os.path.abspath(out))).parts)

    return link


def keep_evaluation(model_folder: Path, step: int, result: dict[str, Any]) -> Path | None:
    """When the evaluated model lives in a training run's folder, keep `result` there (evaluations/)
    and rebuild the run's report, which shows it; the report's path, or None for a model elsewhere."""
    if not is_run_folder(model_folder):
        return None
    record_evaluation(model_folder, step, result)
    return write_report(model_folder)
