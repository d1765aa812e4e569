"""What a training run keeps in its folder besides checkpoints (`gantrans/checkpoint.py`): the
checks on the folder, the log, sample grids, the best model of --eval-every, and what a resume or a
failed run finds there.

  config.json                 the resolved config
  log.jsonl                   one JSON line per log step (and per evaluation)
  samples/step_NNNNNNN.png    sample grids
  snapshots/                  kept copies of the generators (--snapshot-every)
  best/generators.safetensors the generators with the best mean FID so far (--eval-every)
  status.json                 the run's state, step, device and speed (`gantrans/run_status.py`)
  report/index.html           the run's report page (`gantrans/report.py`)
  evaluations/step_NNNNNNN.json  results of `gantrans eval` of the run's model, for the report
  events.out.tfevents.*       TensorBoard's files (--tensorboard)
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import safe_open
from torch import Tensor

from gantrans import checkpoint
from gantrans.errors import GantransError
from gantrans.events import Warned
from gantrans.images import image_grid, save_image
from gantrans.methods import Method
from gantrans.training_state import saved_domain_sizes


def check_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> None:
    """A clear error when `run_dir` cannot take this run: a file, nothing to resume, or a model it would overwrite."""
    if run_dir.exists() and not run_dir.is_dir():
        raise GantransError(f"--out {run_dir} is a file, not a folder: name a folder for the run")
    has_model = (run_dir / checkpoint.STATE_FILE).exists() or (run_dir / checkpoint.MODEL_FILE).exists()
    if resume and not (run_dir / checkpoint.STATE_FILE).exists():
        raise GantransError(f"nothing to resume in {run_dir}: no {checkpoint.STATE_FILE}")
    if has_model and not resume and not overwrite:
        step = checkpoint.read_model_info(run_dir).step if (run_dir / checkpoint.MODEL_FILE).exists() else "?"
        raise GantransError(
            f"{run_dir} already holds a model (step {step}): pass --resume to continue it, --out DIR for a new run, or --overwrite"
        )


def truncate_log(log_path: Path, step: int) -> None:
    """Keep log lines up to `step` (a resumed run rewrites what came after its checkpoint)."""
    if not log_path.exists():
        return
    kept = [line for line in log_path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    log_path.write_text("".join(line + "\n" for line in kept))


def append_log(path: Path, record: dict[str, object]) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")


def write_samples(run_dir: Path, model: Method, inputs: tuple[Tensor, ...], step: int) -> Path:
    """The sample grid of `step`: the method's columns for the fixed sample `inputs`, labelled."""
    path = run_dir / "samples" / f"step_{step:07d}.png"
    path.parent.mkdir(exist_ok=True)
    was_training = model.training
    # Evaluation mode, as `translate` runs the generators: no dropout, batch norm's running
    # statistics (which sampling then leaves untouched).
    model.eval()
    with torch.no_grad():
        columns = model.samples(inputs)
    model.train(was_training)
    save_image(image_grid({column_label(name, model.domains): images for name, images in columns.items()}), path)
    return path


def column_label(name: str, domains: tuple[str, ...]) -> str:
    """A sample column's label from a method's key: words apart, and the x / y of two-domain methods
    named ("fake_y" -> "fake zebra"): the grid is read by people who know their domains' names."""
    words = name.split("_")
    if len(domains) == 2 and len(words) > 1 and words[-1] in ("x", "y"):
        words[-1] = domains["xy".index(words[-1])]
    return " ".join(words)


def best_model_path(run_dir: Path) -> Path:
    """Where --eval-every keeps the generators with the best mean FID so far."""
    return run_dir / "best" / checkpoint.MODEL_FILE


def best_fid(run_dir: Path) -> float:
    """The mean FID of the kept best model, from its metadata (infinity before there is one), so a
    resumed run knows what it has to beat."""
    path = best_model_path(run_dir)
    if not path.is_file():
        return math.inf
    with safe_open(str(path), framework="pt") as handle:
        return float((handle.metadata() or {}).get("eval_fid", math.inf))


def last_checkpoint(run_dir: Path) -> str:
    """Which checkpoint a run that stopped on an error leaves, in words."""
    path = run_dir / checkpoint.STATE_FILE
    if not path.is_file():
        return f"No checkpoint had been written to {run_dir} yet"
    try:
        return f"The last good checkpoint (step {checkpoint.read_model_info(path).step}) is kept in {run_dir}"
    except GantransError:
        return f"The last checkpoint in {run_dir} is unchanged"


def data_changes(run_dir: Path, domain_sizes: dict[str, int]) -> Iterator[Warned]:
    """A warning when a resumed run finds other image counts than it saved (moved or edited data)."""
    saved = saved_domain_sizes(run_dir / checkpoint.STATE_FILE)
    if saved is not None and saved != domain_sizes:
        changes = ", ".join(
            f"{domain} {saved.get(domain, 0)} -> {count}" for domain, count in domain_sizes.items() if saved.get(domain) != count
        )
        yield Warned(
            f"the data changed since the run was saved (images: {changes}); it goes on with the data as it is, so the batches differ from an uninterrupted run's"
        )
