"""`gantrans train` and `gantrans settings`: flags generated from the config tree's settings."""

from __future__ import annotations

import inspect
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from gantrans.cli.app import app, stderr, user_errors
from gantrans.errors import UsageError

# The everyday flags, listed first by `train --help` in this order; then the groups below.
EVERYDAY = (
    "method",
    "root",
    "domains",
    "out",
    "size",
    "batch_size",
    "steps",
    "epochs",
    "lr",
    "device",
    "resume",
    "init_from",
    "seed",
    "config",
    "dry_run",
    "set",
)
SPEED = ("precision", "compile", "channels_last", "on_device", "workers", "cache_mb", "gpus")
RUN_OUTPUTS = (
    "log_every",
    "sample_every",
    "checkpoint_every",
    "snapshot_every",
    "eval_every",
    "eval_images",
    "tensorboard",
    "max_bad_steps",
    "overwrite",
)
SHORT_FLAGS = {"root": "-d", "out": "-o"}
METAVARS = {"root": "<dir>", "out": "<dir>"}


class SectionedCommand(typer.core.TyperCommand):
    """A command whose --help lists its options in sections: the everyday flags first."""

    def format_options(self, ctx: Any, formatter: Any) -> None:
        from gantrans.settings import setting_table

        table = setting_table()
        sections: dict[str, list[tuple[str, str]]] = {}
        params = sorted(self.get_params(ctx), key=lambda param: EVERYDAY.index(param.name) if param.name in EVERYDAY else len(EVERYDAY))
        for param in params:
            record = param.get_help_record(ctx)
            if record is None:
                continue
            setting = table.get(param.name or "")
            if param.name in EVERYDAY or param.name == "help":
                section = "Everyday options"
            elif param.name in SPEED:
                section = "Speed"
            elif param.name in RUN_OUTPUTS:
                section = "Logs, samples and checkpoints"
            elif setting is not None and setting.methods:
                section = "Method settings (`gantrans settings --method NAME` shows one preset's)"
            else:
                section = "Data and optimisation"
            sections.setdefault(section, []).append(record)
        for title, rows in sections.items():
            with formatter.section(title):
                formatter.write_dl(rows)


def _setting_parameters() -> list[inspect.Parameter]:
    """One option per setting of the config tree, named after its field, with every preset's default
    in its help. Values stay None unless given, so presets and --config files fill the rest."""
    from gantrans.settings import described, setting_table

    parameters = []
    for name, setting in setting_table().items():
        kind = setting.value_kind()
        flags = [setting.flag, *([SHORT_FLAGS[name]] if name in SHORT_FLAGS else [])]
        if kind is bool:
            flags = [f"{setting.flag}/--no-{setting.flag[2:]}"]
            annotation: Any = Optional[bool]
        elif kind in (int, float):
            annotation = Optional[kind]
        else:
            annotation = Optional[str]  # text; lists are comma-separated
        option = typer.Option(None, *flags, help=described(setting), show_default=False, metavar=METAVARS.get(name))
        parameters.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation))
    return parameters


def _train_parameters() -> list[inspect.Parameter]:
    keyword = inspect.Parameter.KEYWORD_ONLY
    fixed = {
        "method": (
            Optional[str],
            typer.Option(
                None,
                "--method",
                "-m",
                show_default=False,
                help="cyclegan (two domains, both ways), stargan (any number of domains, one generator), direct (one way, X -> Y), "
                "cut and fastcut (one way, content kept by contrasting patches: Park et al. 2020), "
                "shared-latent (per-domain encoders and decoders meeting in one code: UNIT), pix2pix (paired: each input with its true translation, "
                "U-Net and a conditional PatchGAN: Isola et al. 2017), or the CycleGAN presets discogan (Kim et al. 2017: 64 px, encoder-decoder, "
                "feature matching) and dualgan (Yi et al. 2017: WGAN with clipping, RMSProp, U-Net). --dry-run shows any preset's settings.  "
                "[default: cyclegan, or the --config file's]",
            ),
        ),
        "config": (
            Optional[Path],
            typer.Option(None, "--config", help="JSON (or .yaml/.yml) file of settings, as printed by --dry-run; flags override it."),
        ),
        "set": (
            Optional[list[str]],
            typer.Option(
                None,
                "--set",
                metavar="<name=value>",
                help="Any setting by its place in the config, repeatable: --set data.load_size=300 --set model.vae=false.",
            ),
        ),
        "resume": (bool, typer.Option(False, "--resume", help="Continue the run in --out exactly where it stopped.")),
        "overwrite": (bool, typer.Option(False, "--overwrite", help="Replace a model already in --out.")),
        "dry_run": (bool, typer.Option(False, "--dry-run", help="Print the resolved config as JSON and exit.")),
        "gpus": (
            int,
            typer.Option(
                1,
                help="Train with this many processes on this machine, one per GPU, the batch split among them (started as torchrun "
                "would; on CPU: gloo processes). Several machines: start `torchrun ... -m gantrans train` on each.",
            ),
        ),
    }
    return [
        inspect.Parameter(name, keyword, default=option, annotation=kind) for name, (kind, option) in fixed.items()
    ] + _setting_parameters()


def train(**options: Any) -> None:
    """Train a translation model on unpaired image folders.

    \b
    Examples: gantrans train --method cyclegan --data data/horse2zebra
              gantrans train --init-from runs/horse2zebra --data my_photos --out runs/mine   (fine-tune)
              gantrans train --method shared-latent --data data/faces2anime --dry-run
              gantrans settings --method stargan    (every setting with that preset's default)

    Ctrl-C saves a checkpoint and stops; the same command with --resume continues it. Prints the run
    folder on stdout. Exit codes: 3 diverged (NaN), 4 out of memory; the last good checkpoint is kept.
    """
    from gantrans import presets, training
    from gantrans.config import load_config_file
    from gantrans.settings import parse_assignment, parse_text, setting_table

    method, config, assignments = options.pop("method"), options.pop("config"), options.pop("set") or []
    resume, overwrite, dry_run, gpus = options.pop("resume"), options.pop("overwrite"), options.pop("dry_run"), options.pop("gpus")
    table = setting_table()
    overrides = {
        name: parse_text(table[name], value) if isinstance(value, str) else value for name, value in options.items() if value is not None
    }
    overrides.update(parse_assignment(text, table) for text in assignments)
    if "root" in overrides:
        overrides["root"] = str(overrides["root"])
    file_values = load_config_file(config) if config else None
    method = method or presets.method_of(file_values)
    if resume:
        out = overrides.pop("out", None)
        if out is None and "root" not in overrides:
            raise UsageError("--resume needs --out RUN (or the --data and --method of the run)")
        # The command that started the run, with --resume added, resumes it: only changed settings are refused.
        run_dir = Path(out) if out else presets.default_run_dir(presets.make_train_config(method, overrides))
        resolved = presets.resume_config(run_dir, overrides, method, file_values)
    else:
        if "root" not in overrides and not (file_values or {}).get("data", {}).get("root"):
            raise UsageError("--data DIR is required (a folder with one sub-folder of images per domain)")
        resolved = presets.make_train_config(method, overrides, file_values)
    if dry_run:
        print(resolved.to_json())
        return
    if gpus < 1:
        raise UsageError(f"--gpus must be >= 1 (got {gpus})")
    if gpus > 1 and "WORLD_SIZE" not in os.environ:  # in the workers it starts, --gpus has been applied
        from gantrans.distributed import launch

        training.check_launch(resolved, resume, overwrite, gpus)
        raise typer.Exit(launch(gpus, sys.argv[1:]))
    _run_training(resolved, resume, overwrite)


train.__signature__ = inspect.Signature(_train_parameters())  # type: ignore[attr-defined]
app.command(no_args_is_help=True, cls=SectionedCommand)(user_errors(train))


@app.command("settings")
@user_errors
def settings(
    method: str = typer.Option("cyclegan", "--method", "-m", help="The preset whose defaults to show."),
) -> None:
    """List every training setting of a --method: flag, that preset's default, choices or range, help."""
    from rich.table import Table

    from gantrans.methods import PRESETS
    from gantrans.settings import setting_table, shown

    if method not in PRESETS:
        raise UsageError(f"--method {method}: unknown; choose one of: {', '.join(PRESETS)}")
    rows = Table("flag", "default", "meaning", box=None, pad_edge=False)
    for setting in setting_table().values():
        if setting.methods and PRESETS[method].method not in setting.methods:
            continue
        value = setting.value_in(PRESETS[method])
        bounds = f"{setting.low} to {setting.high}" if setting.high is not None else f">= {setting.low}" if setting.low is not None else ""
        notes = [
            f"Choices: {', '.join(setting.choices)}." if setting.choices else f"Range: {bounds}." if bounds else "",
            "May change on --resume." if setting.resumable else "",
            "With --init-from: the model's." if setting.network else "",
        ]
        rows.add_row(
            setting.flag, setting.default_text if value in (None, "") else shown(value), " ".join([setting.help, *filter(None, notes)])
        )
    Console(soft_wrap=False).print(rows)


def _run_training(config: Any, resume: bool, overwrite: bool) -> None:
    from gantrans import training
    from gantrans.progress import TrainingDisplay

    stop = threading.Event()
    rank = int(os.environ.get("RANK", "0"))
    # With several processes the workers must agree on the step to stop at, and under torchrun
    # Ctrl-C reaches each of them twice (from the terminal and from torchrun): no abort on a second.
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1

    def request_stop(signum: int, frame: Any) -> None:
        if stop.is_set() and not distributed:  # a second Ctrl-C aborts at once
            raise KeyboardInterrupt
        if not stop.is_set() and rank == 0:
            what = "the next log step" if distributed else "this step"
            stderr.print(
                f"[yellow]stopping: finishing {what} and writing a checkpoint" + ("" if distributed else " (Ctrl-C again to abort)") + "[/]"
            )
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        # Every rank trains; rank 0 speaks for them.
        with TrainingDisplay(stderr if rank == 0 else Console(stderr=True, quiet=True)) as display:
            for event in training.train(config, resume=resume, overwrite=overwrite, should_stop=stop.is_set):
                display.show(event)
                if isinstance(event, training.Finished):
                    finished = event
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if rank == 0:
        print(finished.run_dir)
    if finished.interrupted:
        raise typer.Exit(130)
