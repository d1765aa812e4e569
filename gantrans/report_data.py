"""What a run folder holds, read as plain values for the run report (config.json, log.jsonl,
status.json, samples/, evaluations/), and where `gantrans eval` keeps its results of a run's model.
No torch here: a report can be rebuilt on any machine that has the run folder.

A file of the folder that is damaged or of the wrong shape (hand-edited, half-written, from another
tool) is read as missing, and a value of the wrong type in it as absent: a report never fails on one."""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gantrans.errors import GantransError, UsageError
from gantrans.run_status import RunStatus, read_status, write_text_atomically

EVALUATIONS_FOLDER = "evaluations"
_SAMPLE = re.compile(r"^step_(\d+)\.png$")


@dataclass(frozen=True)
class RunFolder:
    """What a run folder holds, as plain values."""

    path: Path  # as the caller named it (shown in commands)
    config: dict[str, Any]  # config.json ({} when missing)
    logged: tuple[dict[str, Any], ...]  # log.jsonl's loss lines: step, lr, images_per_second, terms
    scored: tuple[dict[str, Any], ...]  # log.jsonl's --eval-every lines: step, eval, best
    samples: tuple[tuple[int, Path], ...]  # (step, grid) in step order
    status: RunStatus | None
    evaluations: tuple[dict[str, Any], ...]  # saved `gantrans eval` results, in step order
    has_checkpoint: bool  # a training state to resume from

    @property
    def step(self) -> int:
        """The last step the run reached, as far as the folder tells."""
        steps = [self.status.step] if self.status else []
        steps += [record["step"] for record in self.logged[-1:]] + [step for step, _ in self.samples[-1:]]
        return max(steps, default=0)

    @property
    def domains(self) -> tuple[str, ...]:
        names = config_section(self.config, "data").get("domains")
        return tuple(str(name) for name in names) if isinstance(names, list) else ()


def config_section(config: dict[str, Any], name: str) -> dict[str, Any]:
    """config.json's `name` section ("data", "model"), or {} when it is missing or not an object."""
    section = config.get(name)
    return section if isinstance(section, dict) else {}


def read_run(run_dir: Path) -> RunFolder:
    """The run folder's contents; a clear error when `run_dir` is not a training run's folder."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir} is not a folder: give the run folder of a training run (its --out)")
    if not (run_dir / "config.json").is_file() and not (run_dir / "log.jsonl").is_file():
        raise GantransError(f"{run_dir} is not a training run folder: it has neither config.json nor log.jsonl")
    config = _json_file(run_dir / "config.json")
    records = _log_records(run_dir / "log.jsonl")
    status = read_status(run_dir)
    samples = sorted(
        (int(match.group(1)), path) for path in (run_dir / "samples").glob("step_*.png") if (match := _SAMPLE.match(path.name))
    )
    if status is not None:
        # After --overwrite the grids of an older, longer run may still be there: show this run's only.
        samples = [(step, path) for step, path in samples if step <= status.step]
    evaluations = [_evaluation(_json_file(path)) for path in sorted((run_dir / EVALUATIONS_FOLDER).glob("step_*.json"))]
    return RunFolder(
        path=run_dir,
        config=config if isinstance(config, dict) else {},
        logged=tuple(record for record in records if "eval" not in record),
        scored=tuple(_scores(record) for record in records if isinstance(record.get("eval"), dict)),
        samples=tuple(samples),
        status=status,
        evaluations=tuple(evaluation for evaluation in evaluations if evaluation is not None),
        has_checkpoint=(run_dir / "training_state.safetensors").is_file(),  # checkpoint.STATE_FILE, whose module imports torch
    )


def _scores(record: dict[str, Any]) -> dict[str, Any]:
    """An --eval-every log line with only its directions' scores that are objects."""
    return {**record, "eval": {name: scores for name, scores in record["eval"].items() if isinstance(scores, dict)}}


def _evaluation(record: Any) -> dict[str, Any] | None:
    """A saved `gantrans eval` result with its directions that are objects, their warnings as text;
    None for anything else."""
    if not isinstance(record, dict) or not isinstance(record.get("directions"), list):
        return None
    directions = []
    for direction in record["directions"]:
        if isinstance(direction, dict):
            warnings = direction.get("warnings")
            directions.append({**direction, "warnings": [str(m) for m in warnings] if isinstance(warnings, list) else []})
    return {**record, "directions": directions}


def _json_file(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _log_records(path: Path) -> list[dict[str, Any]]:
    """log.jsonl's records; a line being written (or otherwise unreadable) is left out."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            records.append(record)
    return records


def record_evaluation(run_dir: Path, step: int, result: dict[str, Any]) -> Path:
    """Keep a `gantrans eval` result of the run's model (`ModelReport.to_dict()` with its warnings) in
    `<run>/evaluations/step_NNNNNNN.json`, where the run report finds it; its path."""
    record = {"step": step, "time": time.time(), **result}
    path = Path(run_dir) / EVALUATIONS_FOLDER / f"step_{step:07d}.json"
    write_text_atomically(path, json.dumps(record, indent=1) + "\n")
    return path


def forget_evaluations(run_dir: Path) -> None:
    """Remove the kept `gantrans eval` results of a run folder (they judge a model a fresh start replaces)."""
    folder = Path(run_dir) / EVALUATIONS_FOLDER
    if folder.is_dir():
        shutil.rmtree(folder)


def is_run_folder(folder: Path) -> bool:
    """Whether `folder` is a training run's folder (where a report and evaluations belong)."""
    return (Path(folder) / "config.json").is_file() and (Path(folder) / "log.jsonl").is_file()
