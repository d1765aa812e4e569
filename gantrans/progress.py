"""Rendering of training events on stderr: a live rich progress bar in a terminal, plain lines in logs."""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

from gantrans import events

PLAIN_LINE_SECONDS = 10.0


def format_losses(losses: dict[str, float]) -> str:
    return "  ".join(f"{name} {value:.3f}" for name, value in losses.items())


def format_duration(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


class TrainingDisplay:
    """Shows `training` events; use as a context manager around the event loop."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.interactive = console.is_terminal
        self.progress = Progress(
            TextColumn("[bold]training"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[speed]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
        )
        self.losses = Text("")
        self.live = Live(Group(self.progress, self.losses), console=console, refresh_per_second=4, transient=False, redirect_stdout=False)
        self.task = None
        self.last_speed: float | None = None
        self.last_line = float("-inf")

    def __enter__(self) -> TrainingDisplay:
        if self.interactive:
            self.live.start()
        return self

    def __exit__(self, kind: type | None, error: BaseException | None, trace: TracebackType | None) -> None:
        if self.interactive:
            self.live.stop()

    def show(self, event: events.Event) -> None:
        if isinstance(event, events.Started):
            self._started(event)
        elif isinstance(event, events.StepDone):
            self._step(event)
        elif isinstance(event, (events.FileSkipped, events.Warned)):
            # File names are text from the disk: escaped, so "[red]" in one is not read as markup.
            what = f"skipped {event.message}" if isinstance(event, events.FileSkipped) else event.message
            self.console.print(f"[yellow]warning:[/] {escape(what)}", soft_wrap=True, markup=True, highlight=False)
        elif isinstance(event, events.CheckpointWritten) and not self.interactive:
            self.console.print(f"checkpoint at step {event.step}: {event.path}", soft_wrap=True)
        elif isinstance(event, events.Evaluated):
            scores = "  ".join(f"{name} FID {score['fid']:.2f} KID {score['kid']:.4f}" for name, score in event.scores.items())
            self.console.print(
                f"eval at step {event.step}: {scores}" + ("  (best so far: kept in best/)" if event.best else ""), soft_wrap=True
            )
        elif isinstance(event, events.Finished):
            self._finished(event)

    def _started(self, event: events.Started) -> None:
        sizes = ", ".join(f"{name} {count}" for name, count in event.domain_sizes.items())
        resumed = f", resuming at step {event.start_step}" if event.start_step else ""
        if event.data_on_device:
            memory = f"decoded once onto {event.device}"
        else:
            memory = "decoded once into memory" if event.cached else f"{event.workers} decoding workers"
        processes = f" x {event.processes} processes" if event.processes > 1 else ""
        ema = f", generator EMA {event.ema}" if event.ema else ""
        start = f", starting from {event.init_from}" if event.init_from else ""
        self.console.print(
            f"training {event.run_dir}: {event.total_steps} steps ({event.steps_per_epoch}/epoch) on {event.device}{processes}, "
            f"{event.precision}{ema}; images: {sizes}; {memory}{resumed}{start}",
            soft_wrap=True,
        )
        self.task = self.progress.add_task("train", total=event.total_steps, completed=event.start_step, speed="")

    def _step(self, event: events.StepDone) -> None:
        if event.images_per_second is not None:
            self.last_speed = event.images_per_second
        speed = f"{self.last_speed:.1f} img/s" if self.last_speed is not None else ""
        self.progress.update(self.task, completed=event.step, speed=speed)
        if event.losses is not None:
            self.losses.plain = f"  lr {event.lr:.2e}  {format_losses(event.losses)}"
            # In a log, one line per PLAIN_LINE_SECONDS is plenty (the full record is log.jsonl).
            now = time.monotonic()
            if not self.interactive and (now - self.last_line >= PLAIN_LINE_SECONDS or event.step == event.total_steps):
                self.last_line = now
                self.console.print(f"step {event.step}/{event.total_steps}  {speed}  {self.losses.plain.strip()}", soft_wrap=True)

    def _finished(self, event: events.Finished) -> None:
        if self.interactive:
            self.live.stop()
        how = "stopped" if event.interrupted else "finished"
        skipped = f"; skipped {event.skipped_files} unreadable image(s)" if event.skipped_files else ""
        speed = f" ({self.last_speed:.1f} img/s)" if self.last_speed else ""
        self.console.print(f"{how} at step {event.step} after {format_duration(event.seconds)}{speed}{skipped}", soft_wrap=True)
        self.console.print(f"model: {event.run_dir}/generators.safetensors  samples: {event.run_dir}/samples/", soft_wrap=True)
        if event.interrupted:
            self.console.print(f"continue with: gantrans train --resume --out {event.run_dir}", soft_wrap=True)
