"""The `gantrans` command: a thin Typer layer over the library, one module per group of commands.

Importing this package registers every command on `app`, in the order `gantrans --help` lists them.
"""

# isort: off
from gantrans.cli import train  # train, settings
from gantrans.cli import translate
from gantrans.cli import export
from gantrans.cli import evaluate  # eval
from gantrans.cli import report
from gantrans.cli import models  # bench, import, fetch-weights, models
from gantrans.cli.app import app, main

# isort: on

__all__ = ["app", "main", "evaluate", "export", "models", "report", "train", "translate"]
