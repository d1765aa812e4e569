"""`<run>/status.json`: what the trainer last said about its run (state, step, device, speed,
warnings), for the report and for anyone who polls a run. Written by the main process only.

Plain JSON and no torch, so the report can be rebuilt anywhere from the run folder.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gantrans.storage import write_atomically

STATUS_FILE = "status.json"
STATES = ("running", "finished", "interrupted", "diverged", "failed")
MAX_WARNINGS = 20  # the first ones are kept in full; the rest are counted


@dataclass(frozen=True)
class RunStatus:
    """One run's state as its trainer last wrote it."""

    state: str  # one of STATES
    step: int  # steps completed
    total_steps: int
    start_step: int = 0  # > 0 when this session resumed the run
    device: str = ""
    precision: str = ""
    processes: int = 1
    domain_sizes: dict[str, int] = dataclasses.field(default_factory=dict)
    images_per_second: float | None = None  # the latest log line's
    started_at: float = 0.0  # Unix time this session started
    updated_at: float = 0.0
    message: str = ""  # why a run stopped on an error
    warnings: tuple[str, ...] = ()  # skipped files, changed data (the first MAX_WARNINGS)
    more_warnings: int = 0  # how many more there were
    pid: int = 0  # the training process, to tell a running run from a killed one
    host: str = ""

    def with_warning(self, message: str) -> RunStatus:
        """This status with one more warning (kept while there are fewer than MAX_WARNINGS)."""
        if len(self.warnings) < MAX_WARNINGS:
            return dataclasses.replace(self, warnings=(*self.warnings, message))
        return dataclasses.replace(self, more_warnings=self.more_warnings + 1)

    def is_gone(self) -> bool:
        """Whether a run that says it is running has lost its process (killed, or the machine went down):
        known only on the machine that trains it."""
        return self.state == "running" and self.host == socket.gethostname() and self.pid > 0 and not _alive(self.pid)


def this_process() -> dict[str, Any]:
    """The `pid` and `host` fields of a status written by this process."""
    return {"pid": os.getpid(), "host": socket.gethostname()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's process: alive
    return True


def write_status(run_dir: Path, status: RunStatus) -> None:
    """Write `<run>/status.json` whole (a reader never sees half of it)."""
    write_text_atomically(Path(run_dir) / STATUS_FILE, json.dumps(dataclasses.asdict(status), indent=1) + "\n")


def read_status(run_dir: Path) -> RunStatus | None:
    """The run's status, or None when it has none (a run from before status files, or not a run)."""
    try:
        values = json.loads((Path(run_dir) / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(values, dict) or values.get("state") not in STATES:
        return None
    # A value of the wrong type (a hand-edited or foreign file) is left out: its field keeps its default.
    values = {name: value for name, value in values.items() if name in _TYPES and _fits(value, _TYPES[name])}
    values["warnings"] = tuple(str(message) for message in values.get("warnings", ()))
    sizes = values.get("domain_sizes", {})
    values["domain_sizes"] = {str(name): size for name, size in sizes.items() if _fits(size, int)}
    try:
        return RunStatus(**values)
    except TypeError:  # a required field missing: treat as no status
        return None


_TYPES: dict[str, Any] = {
    **{name: int for name in ("step", "total_steps", "start_step", "processes", "more_warnings", "pid")},
    **{name: str for name in ("state", "device", "precision", "message", "host")},
    **{name: float for name in ("images_per_second", "started_at", "updated_at")},
    "domain_sizes": dict,
    "warnings": list,
}


def _fits(value: object, kind: Any) -> bool:
    """Whether a JSON value is of a status field's kind (a float field takes any finite number)."""
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return isinstance(value, kind) and (kind is not int or not isinstance(value, bool))


def write_text_atomically(path: Path, text: str) -> None:
    """Write `text` whole over `path` (storage.write_atomically), creating its folder: a browser or a
    reader never gets half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))
