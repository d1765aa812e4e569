"""Crash-safe file writes, and one writer per run folder."""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; runs are not guarded there
    fcntl = None  # type: ignore[assignment]

from gantrans.errors import GantransError

if TYPE_CHECKING:  # torch only where tensors are saved: the report's writers use this module without it
    from torch import Tensor

LOCK_FILE = ".lock"
_TEMPORARY = re.compile(r"^\..+\.tmp-(\d+)$")  # what `temporary_name` makes


def temporary_name(path: Path) -> Path:
    """The hidden name a file is written under before it is renamed to `path`."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def atomic_save(tensors: Mapping[str, Tensor], path: Path, metadata: Mapping[str, str]) -> None:
    """save_file to a temporary name, flush to disk, then rename over `path`."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_name(path)
    cpu_tensors = {name: tensor.detach().to("cpu").contiguous() for name, tensor in tensors.items()}
    try:
        save_file(cpu_tensors, str(temporary), metadata=dict(metadata))
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)  # after a failed write (disk full); gone after the rename anyway


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files that writers killed mid-write left under `folder` (their process
    is gone); returns them. A checkpoint's temporary is as large as the checkpoint."""
    removed = []
    for path in folder.rglob(".*.tmp-*"):
        match = _TEMPORARY.match(path.name)
        if match and path.is_file() and not _process_alive(int(match.group(1))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid > 0  # someone else's process, or not a PID at all
    return True


class FolderInUseError(GantransError):
    """Another gantrans process is writing to the folder."""


@contextlib.contextmanager
def exclusive_folder(folder: Path) -> Iterator[None]:
    """Hold an advisory lock (`flock` on `folder/.lock`) while writing to `folder`: a second
    writer gets one line naming the holder's PID instead of interleaving its files with ours.
    The lock goes with the process, however it ends (even kill -9)."""
    folder.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    with open(folder / LOCK_FILE, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise FolderInUseError(
                f"{folder} is in use by another gantrans process (PID {holder}): wait for it to finish, or use another --out"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class BackgroundWriter:
    """Runs file writes on one background thread, in order, so training goes on while the disk works
    (a full-size CycleGAN checkpoint is ~400 MB). One batch of writes at a time: `submit` first waits
    for the previous one, so at most one copy of the state is held. Each batch carries a report (an
    event) that `poll()` or `wait()` hand back only once its files are all on disk, so nothing is
    announced as written before it is; a failed write is raised there as a GantransError."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._report: object = None
        self._error: BaseException | None = None

    def submit(self, report: object, *writes: Callable[[], None]) -> list[object]:
        """Start `writes` once the previous batch is done; returns the previous batch's report (if any)."""
        finished = self.wait()

        def run() -> None:
            try:
                for write in writes:
                    write()
            except BaseException as error:  # noqa: BLE001  (handed to the training thread by wait())
                self._error = error

        # A daemon: an aborted run (second Ctrl-C) does not wait for it; the rename that ends each
        # write has not happened then, so the previous file stays whole.
        self._report = report
        self._thread = threading.Thread(target=run, name="gantrans-writer", daemon=True)
        self._thread.start()
        return finished

    def poll(self) -> list[object]:
        """The report of the batch in flight if it has finished by now (without waiting), else []."""
        return self.wait() if self._thread is not None and not self._thread.is_alive() else []

    def wait(self) -> list[object]:
        """Wait for the batch in flight; returns its report ([] when there was none)."""
        if self._thread is None:
            return []
        self._thread.join()
        self._thread = None
        error, self._error = self._error, None
        report, self._report = self._report, None
        if isinstance(error, OSError):
            raise GantransError(f"cannot write {error.filename or 'a checkpoint'}: {error.strerror or error}") from None
        if error is not None:
            raise error
        return [report]


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """`write(temporary)` under a hidden temporary name beside `path`, then rename it over `path`: a kill
    mid-write leaves no partial file under the real name (and an older `path` stays whole). The temporary
    is removed on any failure. No fsync: it is for crashes of this process (images are cheap to redo),
    not for power loss, and a sync per image would slow folders of thousands."""
    temporary = temporary_name(path)
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)  # after a failure; gone after the rename anyway
