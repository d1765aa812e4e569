"""Errors that mean "the user asked for something that cannot be done" (not bugs).

The CLI prints their message as one line on stderr and exits with `exit_code`; anything
else is a bug and keeps its traceback.
"""


class GantransError(Exception):
    """A user error: bad data, a missing file, an unknown domain. Exit code 1."""

    exit_code = 1


class UsageError(GantransError):
    """An option value or combination that cannot work. Exit code 2, like a parse error."""

    exit_code = 2
