"""Errors that mean "the user asked for something that cannot be done" (not bugs).

The CLI prints their message as one line on stderr and exits with `exit_code`; anything
else is a bug and keeps its traceback. Exit codes: 1 user error, 2 usage error, 3 training
diverged, 4 out of memory (130: interrupted, from the CLI itself).
"""


class GantransError(Exception):
    """A user error: bad data, a missing file, an unknown domain. Exit code 1."""

    exit_code = 1


class UsageError(GantransError):
    """An option value or combination that cannot work. Exit code 2, like a parse error."""

    exit_code = 2


class DataError(GantransError):
    """Missing folders, empty domains, undecodable data sets. Exit code 1."""


class DivergedError(GantransError):
    """Training went to NaN or infinity and stopped; the last good checkpoint is kept. Exit code 3."""

    exit_code = 3


class OutOfMemoryError(GantransError):
    """The device ran out of memory; nothing was written after the last checkpoint. Exit code 4."""

    exit_code = 4


def is_out_of_memory(error: BaseException) -> bool:
    """Whether `error` is an allocation failure: CUDA's, the CPU allocator's, or Python's."""
    if isinstance(error, MemoryError):
        return True
    message = str(error)
    return isinstance(error, RuntimeError) and ("out of memory" in message or "can't allocate memory" in message)
