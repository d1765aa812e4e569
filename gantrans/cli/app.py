"""The `gantrans` Typer app, and what every command shares: one-line errors, exit codes, the log on stderr.

stdout carries results (paths, JSON); progress, warnings and errors go to stderr.
Exit codes: 0 success, 1 user error (one line, no traceback), 2 usage error, 3 training diverged,
4 out of memory, 130 interrupted.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console

from gantrans import __version__
from gantrans.errors import GantransError, is_out_of_memory

app = typer.Typer(
    name="gantrans",
    help="Learn image-to-image translation from unpaired folders of images, then translate from the shell.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts are plain: "[default: 256]" must not be read as a rich style tag
    context_settings={"help_option_names": ["-h", "--help"]},
)
stderr = Console(stderr=True, highlight=False)


def fail(message: str, code: int = 1) -> None:
    """One plain line on stderr (no rich wrapping: it must stay one line in logs and pipelines)."""
    print(f"gantrans: error: {message}", file=sys.stderr, flush=True)
    raise typer.Exit(code)


def user_errors(command: Callable) -> Callable:
    """Turn GantransError into one line on stderr and its exit code; the machine's refusals (a full
    or read-only disk, no memory) into one line too; Ctrl-C into exit 130."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except GantransError as error:
            fail(str(error), error.exit_code)
        except BrokenPipeError:
            # The reader of stdout went away (`... | head -1`): stop quietly, as SIGPIPE would.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(141) from None
        except OSError as error:
            where = f"{error.filename}: " if error.filename else ""
            fail(f"{where}{error.strerror or error}")
        except (RuntimeError, MemoryError) as error:
            if not is_out_of_memory(error):
                raise
            fail("out of memory: try a smaller --batch-size or --size", 4)
        except KeyboardInterrupt:
            print("gantrans: interrupted", file=sys.stderr)
            raise typer.Exit(130) from None

    return wrapper


def version_callback(value: bool) -> None:
    if value:
        print(f"gantrans {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: bool = typer.Option(False, "--version", callback=version_callback, is_eager=True, help="Print the version and exit."),
) -> None:
    """gantrans: unpaired image-to-image translation (CycleGAN and friends)."""
    _show_library_log()  # for every command: a first-use download of pretrained weights says so on stderr


DeviceOption = typer.Option("auto", "--device", help="auto (CUDA when present), cpu, cuda or cuda:N.")


class _StderrLog(logging.Handler):
    """The library's log records as `gantrans: ...` lines on stderr. sys.stderr is looked up per
    record, not kept: test runners and rich's live display replace it."""

    def emit(self, record: logging.LogRecord) -> None:
        prefix = "gantrans: warning: " if record.levelno >= logging.WARNING else "gantrans: "
        print(prefix + record.getMessage(), file=sys.stderr, flush=True)


def _show_library_log() -> None:
    """Show the library's info lines (such as a weights download) on stderr; once, however often called."""
    logger = logging.getLogger("gantrans")
    if not any(isinstance(handler, _StderrLog) for handler in logger.handlers):
        logger.addHandler(_StderrLog())
        logger.setLevel(logging.INFO)


def main() -> None:
    app(prog_name="gantrans")
