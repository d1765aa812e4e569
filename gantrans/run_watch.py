"""What the main training process keeps up to date as the events go by, without touching the loop:
`<run>/status.json` and the report `<run>/report/index.html` (at the start, at each sample step and
evaluation, at the end, and when the run stops on an error), and the TensorBoard files of
`--tensorboard`. Rebuilding the report reads the run folder, so it costs a fraction of a sample step.

A report, status or TensorBoard file that cannot be written (full disk, a bug) is a warning, never
the end of a run: TensorBoard stops being written after its first failure.

A fresh start (step 0, as `--overwrite` makes) forgets what the folder holds of a replaced run that
the new one would not overwrite: its `gantrans eval` results and its TensorBoard event files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

from gantrans import events
from gantrans.config import TrainConfig
from gantrans.errors import DivergedError, GantransError
from gantrans.report import write_report
from gantrans.report_data import forget_evaluations
from gantrans.run_status import RunStatus, this_process, write_status


def watch_run(stream: Generator[events.Event, None, None], config: TrainConfig, is_main: bool) -> Iterator[events.Event]:
    """`stream`'s events, passed on; on the main process, the status, report and TensorBoard files
    written as they go. `--tensorboard` without its package is refused before the first event."""
    writer_class = check_outputs(config)  # on every process: each would fail the same way
    if not is_main:
        yield from stream
        return
    watcher = _Watcher(writer_class)
    with contextlib.closing(stream):  # a consumer that stops iterating stops the run at once, as before
        try:
            for event in stream:
                extra = watcher.see(event)
                yield event
                yield from extra
        except BaseException as error:
            watcher.stopped(error)
            raise
        finally:
            watcher.close()


def check_outputs(config: TrainConfig) -> Any:
    """Refuse what this module cannot write: `--tensorboard` without its package. TensorBoard's
    writer class when it is asked for, else None."""
    if not config.tensorboard:
        return None
    from gantrans.tensorboard import require_tensorboard

    return require_tensorboard()


class _Watcher:
    """The run's status as the events tell it, and where it is written."""

    def __init__(self, writer_class: Any) -> None:
        self.writer_class = writer_class
        self.tensorboard: Any = None
        self.run_dir: Path | None = None
        self.status: RunStatus | None = None
        self.failed = False  # a report failure is reported once

    def see(self, event: events.Event) -> list[events.Event]:
        """Take `event` in; the warnings to pass on (a report that could not be written)."""
        if isinstance(event, events.Started):
            return self._started(event) + self._write()
        if self.status is None:
            return []
        warned = self._to_tensorboard(event)
        if isinstance(event, events.Finished):
            warned += self._close_tensorboard()  # flushed now, while a failure can still be passed on
        return warned + self._take(event)

    def _take(self, event: events.Event) -> list[events.Event]:
        """The status after `event`; its writing's warnings."""
        assert self.status is not None
        if isinstance(event, events.StepDone):
            speed = event.images_per_second if event.images_per_second is not None else self.status.images_per_second
            self.status = dataclasses.replace(self.status, step=event.step, images_per_second=speed)
        elif isinstance(event, events.FileSkipped):
            self.status = self.status.with_warning(f"skipped {event.message}")
        elif isinstance(event, events.Warned):
            self.status = self.status.with_warning(event.message)
        elif isinstance(event, (events.SamplesWritten, events.Evaluated)):
            return self._write()
        elif isinstance(event, events.Finished):
            self.status = dataclasses.replace(self.status, state="interrupted" if event.interrupted else "finished", step=event.step)
            return self._write()
        return []

    def _started(self, event: events.Started) -> list[events.Event]:
        self.run_dir = Path(event.run_dir)
        now = time.time()
        self.status = RunStatus(
            state="running",
            step=event.start_step,
            total_steps=event.total_steps,
            start_step=event.start_step,
            device=event.device,
            precision=event.precision,
            processes=event.processes,
            domain_sizes=dict(event.domain_sizes),
            started_at=now,
            updated_at=now,
            **this_process(),
        )
        warned = self._forget_replaced_run() if event.start_step == 0 else []
        if self.writer_class is not None:
            from gantrans.tensorboard import TensorBoardLog

            try:
                self.tensorboard = TensorBoardLog(self.run_dir, event.start_step, self.writer_class)
            except Exception as error:  # noqa: BLE001  (TensorBoard is a view of the run: it must never end one)
                warned += self._tensorboard_failed(error)
        return warned

    def _forget_replaced_run(self) -> list[events.Event]:
        """On a fresh start, remove the replaced run's evaluations and TensorBoard files: the report and
        TensorBoard would show them as this run's. (A resumed run keeps both: they are its own.)"""
        assert self.run_dir is not None
        from gantrans.tensorboard import remove_event_files

        try:
            forget_evaluations(self.run_dir)
            remove_event_files(self.run_dir)
        except OSError as error:
            return self._warned(f"the replaced run's evaluations or TensorBoard files could not be removed ({error})")
        return []

    def _to_tensorboard(self, event: events.Event) -> list[events.Event]:
        """`event` into the TensorBoard files, if they are written; a warning when that fails."""
        if self.tensorboard is None:
            return []
        try:
            self.tensorboard.see(event)
        except Exception as error:  # noqa: BLE001  (a full disk, an unreadable grid: training goes on)
            return self._tensorboard_failed(error)
        return []

    def _close_tensorboard(self) -> list[events.Event]:
        log, self.tensorboard = self.tensorboard, None
        if log is None:
            return []
        try:
            log.close()
        except Exception as error:  # noqa: BLE001
            return self._tensorboard_failed(error)
        return []

    def _tensorboard_failed(self, error: Exception) -> list[events.Event]:
        """Stop writing TensorBoard after its first failure (so one warning), closing what is open."""
        log, self.tensorboard = self.tensorboard, None
        if log is not None:
            with contextlib.suppress(Exception):  # it failed already: its own error is the one that matters
                log.close()
        return self._warned(f"the TensorBoard files could not be written ({type(error).__name__}: {error}); training goes on without them")

    def _warned(self, message: str) -> list[events.Event]:
        """A warning to pass on, also kept in the status (and so shown by the report)."""
        if self.status is not None:
            self.status = self.status.with_warning(message)
        return [events.Warned(message)]

    def _write(self) -> list[events.Event]:
        """Write the status and rebuild the report; a warning (once) when that fails."""
        if self.status is None or self.run_dir is None:
            return []
        self.status = dataclasses.replace(self.status, updated_at=time.time())
        try:
            write_status(self.run_dir, self.status)
            write_report(self.run_dir)
        except Exception as error:  # noqa: BLE001  (the report is a view of the run: it must never end one)
            if not self.failed:
                self.failed = True
                return [events.Warned(f"the run report could not be written ({error}); training goes on")]
        return []

    def stopped(self, error: BaseException) -> None:
        """The run ended on `error`: say how in the status and the report."""
        if self.status is None or self.status.state != "running":
            return
        if isinstance(error, GeneratorExit):
            state, message = "interrupted", ""
        elif isinstance(error, KeyboardInterrupt):
            state, message = "interrupted", "Aborted by a second Ctrl-C; the last checkpoint is kept."
        elif isinstance(error, DivergedError):
            state, message = "diverged", str(error)
        else:
            state, message = "failed", str(error) if isinstance(error, GantransError) else f"{type(error).__name__}: {error}"
        self.status = dataclasses.replace(self.status, state=state, message=message)
        self._write()

    def close(self) -> None:
        """Close TensorBoard's files if the run ended before Finished; the run's own error, if any, is the
        one raised (a failure here is one more symptom of the same end)."""
        with contextlib.suppress(Exception):
            self._close_tensorboard()
