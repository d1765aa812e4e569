"""`--tensorboard`: the training events as TensorBoard event files beside log.jsonl (losses, learning
rate, speed, evaluation scores, sample grids), through `torch.utils.tensorboard`. The `tensorboard`
package is an optional extra: without it the flag is refused before training starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from gantrans import events
from gantrans.errors import UsageError

INSTALL = "pip install 'gantrans[tensorboard]'"
EVENT_FILE = "events.out.tfevents."  # how torch's writer names its files


def require_tensorboard() -> Any:
    """torch's SummaryWriter class, or a UsageError saying what to install."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UsageError(f"--tensorboard needs the tensorboard package: {INSTALL} (or pip install tensorboard)") from None
    return SummaryWriter


class TensorBoardLog:
    """Writes what the training events carry into event files in `run_dir`, where TensorBoard finds them."""

    def __init__(self, run_dir: Path, start_step: int, writer_class: Any) -> None:
        # TensorBoard hides what older files of the folder hold at steps >= purge_step: a resumed run
        # purges what the old session logged after its checkpoint, as log.jsonl is truncated. A fresh
        # start's 0 hides a replaced run's points too, but its files stay and not every reader of event
        # files honours the purge: the watcher removes them (`remove_event_files`).
        self.writer = writer_class(log_dir=str(run_dir), purge_step=start_step)

    def see(self, event: events.Event) -> None:
        if isinstance(event, events.StepDone) and event.losses is not None:
            for name, value in event.losses.items():
                self.writer.add_scalar(f"loss/{name}", value, event.step)
            self.writer.add_scalar("train/lr", event.lr, event.step)
            if event.images_per_second is not None:
                self.writer.add_scalar("train/images_per_second", event.images_per_second, event.step)
        elif isinstance(event, events.Evaluated):
            for direction, scores in event.scores.items():
                for metric, value in scores.items():
                    self.writer.add_scalar(f"eval/{metric}/{direction}", value, event.step)
        elif isinstance(event, events.SamplesWritten):
            with Image.open(event.path) as grid:
                self.writer.add_image("samples", np.asarray(grid.convert("RGB")), event.step, dataformats="HWC")
            self.writer.flush()  # a sample step is a good moment for TensorBoard to see everything so far

    def close(self) -> None:
        self.writer.close()


def remove_event_files(run_dir: Path) -> None:
    """Remove the event files a replaced run left in `run_dir`, which a reader that ignores purge_step
    would show beside the new run's; the folder's subfolders are not ours."""
    for path in Path(run_dir).glob(f"{EVENT_FILE}*"):
        if path.is_file():
            path.unlink(missing_ok=True)
