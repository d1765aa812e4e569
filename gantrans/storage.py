"""Crash-safe file writes."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable, Mapping

from safetensors.torch import save_file
from torch import Tensor

from gantrans.errors import GantransError


def atomic_save(tensors: Mapping[str, Tensor], path: Path, metadata: Mapping[str, str]) -> None:
    """save_file to a temporary name, flush to disk, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    cpu_tensors = {name: tensor.detach().to("cpu").contiguous() for name, tensor in tensors.items()}
    save_file(cpu_tensors, str(temporary), metadata=dict(metadata))
    with open(temporary, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, path)


class BackgroundWriter:
    """Runs file writes on one background thread, in order, so training goes on while the disk works
    (a full-size CycleGAN checkpoint is ~400 MB). One batch of writes at a time: `submit` first waits
    for the previous one, so at most one copy of the state is held. `wait()` returns when everything
    submitted is on disk, and raises a failed write as a GantransError."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, *writes: Callable[[], None]) -> None:
        self.wait()

        def run() -> None:
            try:
                for write in writes:
                    write()
            except BaseException as error:  # noqa: BLE001  (handed to the training thread by wait())
                self._error = error

        # A daemon: an aborted run (second Ctrl-C) does not wait for it; the rename that ends each
        # write has not happened then, so the previous file stays whole.
        self._thread = threading.Thread(target=run, name="gantrans-writer", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        error, self._error = self._error, None
        if isinstance(error, OSError):
            raise GantransError(f"cannot write {error.filename or 'a checkpoint'}: {error.strerror or error}") from None
        if error is not None:
            raise error
