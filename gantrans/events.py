"""What `gantrans.training.train()` yields: the CLI renders these events, tests and notebooks
iterate them. Plain frozen records, so consumers need not import the trainer to read them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Union


@dataclass(frozen=True)
class Started:
    run_dir: Path
    start_step: int  # > 0 when resuming
    total_steps: int
    steps_per_epoch: int
    domain_sizes: dict[str, int]
    device: str
    workers: int
    cached: bool  # decoded images kept in memory
    data_on_device: bool  # decoded images kept on the training device, cropped there
    precision: str  # fp32 or bf16
    processes: int  # training processes (ranks); this event comes from each
    ema: float = 0.0  # decay of the generators' moving average, which translates (0: none)
    init_from: str = ""  # the model a fine-tune starts from (on its first start only)


@dataclass(frozen=True)
class StepDone:
    step: int  # steps completed
    total_steps: int
    losses: dict[str, float] | None  # means since the last log line, on log steps only
    images_per_second: float | None  # on log steps only
    lr: float


@dataclass(frozen=True)
class FileSkipped:
    message: str  # names the file and why it could not be decoded


@dataclass(frozen=True)
class Warned:
    message: str  # something the user should know that does not stop the run (resumed on changed data)


@dataclass(frozen=True)
class SamplesWritten:
    step: int
    path: Path


@dataclass(frozen=True)
class CheckpointWritten:
    """A checkpoint of `step` is on disk (the latest one is written in the background and
    announced once its files are whole)."""

    step: int
    path: Path
    snapshot: bool  # a kept copy rather than the latest


@dataclass(frozen=True)
class Evaluated:
    step: int
    scores: dict[str, dict[str, float]]  # direction ("x->y") -> {"fid": ..., "kid": ...}
    best: bool  # the best mean FID so far: the generators were kept in <out>/best


@dataclass(frozen=True)
class Finished:
    step: int
    run_dir: Path
    seconds: float
    interrupted: bool
    skipped_files: int


Event = Union[Started, StepDone, FileSkipped, Warned, SamplesWritten, CheckpointWritten, Evaluated, Finished]
