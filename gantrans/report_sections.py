"""The run report's page, section by section: status, settings, warnings, losses, evaluations,
sample grids (the charts' sections are in `gantrans/report_curves.py`)."""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from gantrans.report_curves import losses_card, scores_card
from gantrans.report_data import RunFolder, config_section
from gantrans.report_html import Html, card, facts, join, page, tag, void, warning_list

STATE_WORDS = {
    "running": "running",
    "finished": "finished",
    "interrupted": "interrupted",
    "diverged": "diverged",
    "failed": "failed",
    "gone": "stopped unexpectedly",
    "unknown": "status unknown",
}


def report_page(run: RunFolder, link: Callable[[Path], str], now: float) -> str:
    """The whole report page of `run`; `link` gives a sample grid's address from the page."""
    sections = [_header(run), _settings(run), _warnings(run), losses_card(run), scores_card(run), _samples(run, link)]
    footer = join([f"built {_clock(now)} from {run.path}", Html(" · "), tag("code", f"gantrans report {shlex.quote(str(run.path))}")])
    title = f"{run.path.name or run.path} · gantrans run"
    return page(title, join(sections), join([footer, Html(" rebuilds it")]))


def _state(run: RunFolder) -> str:
    if run.status is None:  # a run from before status files: finished if it reached its --steps
        steps = run.config.get("steps")
        return "finished" if isinstance(steps, int) and run.step >= steps else "unknown"
    return "gone" if run.status.is_gone() else run.status.state


def _header(run: RunFolder) -> Html:
    state, status = _state(run), run.status
    total = status.total_steps if status else _count(run.config.get("steps"), 0)
    step = run.step
    share = min(1.0, step / total) if total else 0.0
    words = [f"step {step:,}" + (f" of {total:,} ({share:.0%})" if total else "")]
    if status and state == "running" and status.images_per_second:
        per_step = _images_per_step(run)
        words.append(f"{status.images_per_second:.1f} images/s")
        if total and per_step:
            words.append(f"about {_duration((total - step) * per_step / status.images_per_second)} left")
    if status and status.updated_at > status.started_at > 0:
        words.append(f"{_duration(status.updated_at - status.started_at)} this session")
    if status and status.updated_at:
        words.append(f"updated {_clock(status.updated_at)}" + (" (reload for the latest)" if state == "running" else ""))
    lines = [tag("div", " · ".join(words))]
    if state == "gone" and status is not None:
        lines.append(tag("div", f"The training process (PID {status.pid}) is gone: killed, or its machine went down.", class_="muted"))
    if status and status.message:
        lines.append(tag("div", status.message))
    lines.append(_next_step(run, state))
    title = join([tag("h1", run.path.name or str(run.path)), tag("span", STATE_WORDS.get(state, state), class_=f"pill {state}")])
    bar = tag("div", tag("div", "", style=f"width:{share * 100:.1f}%"), class_="progress")
    subtitle = tag("div", f"{_method(run.config)} · {' · '.join(run.domains) or 'domains unknown'} · {run.path.resolve()}", class_="sub")
    return tag("header", join([tag("div", title, class_="top"), subtitle, tag("div", join([bar, *lines]), class_=f"status {state}")]))


def _next_step(run: RunFolder, state: str) -> Html:
    """The command that continues a stopped run (with a halved --lr after a divergence)."""
    if state in ("running", "finished", "unknown"):
        return Html("")
    if not run.has_checkpoint:
        return tag("div", "No checkpoint was written before it stopped: start it again.", class_="muted")
    command = f"gantrans train --resume --out {shlex.quote(str(run.path))}"
    if state == "diverged" and isinstance(run.config.get("lr"), (int, float)):
        command += f" --lr {run.config['lr'] / 2:g}"
    return join([tag("div", "Continue from its last checkpoint:", class_="muted"), tag("code", command, class_="cmd")])


def _images_per_step(run: RunFolder) -> int:
    """Images per step, as the log's speed counts them: the batch in every domain."""
    return _count(run.config.get("batch_size"), 1) * max(1, len(run.domains))


def _count(value: object, default: int) -> int:
    """A positive whole number of config.json, or `default` (missing, or not a number: a damaged file)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default


def _method(config: dict[str, Any]) -> str:
    method, preset = str(config.get("method", "?")), str(config.get("preset") or config.get("method", "?"))
    return preset if preset == method else f"{preset} ({method})"


def _settings(run: RunFolder) -> Html:
    config, status = run.config, run.status
    model, data = config_section(config, "model"), config_section(config, "data")
    adversarial = config_section(model, "adversarial")
    sizes = status.domain_sizes if status else {}
    rows: list[tuple[str, object]] = [("method", _method(config))]
    rows.append(("domains", ", ".join(f"{name} ({sizes[name]:,})" if name in sizes else name for name in run.domains) or "?"))
    if "size" in data:
        resized = f" (from {data.get('load_size', '?')})" if "crop" in str(data.get("preprocess")) else ""
        rows.append(("image size", f"{data['size']} px{resized}, {data.get('preprocess', '?')}"))
    rows.append(("batch size", str(config.get("batch_size", "?"))))
    steps = (
        f"{status.total_steps:,} steps"
        if status
        else f"{_count(config.get('steps'), 0):,} steps"
        if _count(config.get("steps"), 0)
        else None
    )
    rows.append(("length", steps or f"{config.get('epochs', '?')} + {config.get('decay_epochs', '?')} epochs"))
    rows.append(("learning rate", f"{config.get('lr', '?')} ({config.get('optimizer', '?')})"))
    if adversarial:
        rows.append(("GAN loss", str(adversarial.get("gan_loss", "?")) + (" + spectral norm" if adversarial.get("spectral_norm") else "")))
    if "generator" in model:
        rows.append(("generator", f"{model['generator']}, {model.get('ngf', '?')} filters" + _blocks(model)))
    weights = [f"{name[len('lambda_') :]} {value:g}" for name, value in model.items() if _is_weight(name, value)]
    if weights:
        rows.append(("loss weights", " · ".join(weights)))
    ema = config.get("ema")
    rows.append(("generator EMA", f"{ema:g}" if isinstance(ema, (int, float)) and ema else "off"))
    if status and status.device:
        processes = f" × {status.processes} processes" if status.processes > 1 else ""
        rows.append(("device", f"{status.device}, {status.precision}{processes}"))
    speeds = [record["images_per_second"] for record in run.logged if isinstance(record.get("images_per_second"), (int, float))]
    if speeds:
        rows.append(("speed", f"{speeds[-1]:.1f} images/s (mean {sum(speeds) / len(speeds):.1f})"))
    rows.append(("data", str(data.get("root", "?"))))
    whole = tag("details", join([tag("summary", "the whole config (config.json)"), tag("pre", json.dumps(config, indent=2))]))
    return card("Settings", join([facts(rows), whole]), "settings")


def _blocks(model: dict[str, Any]) -> str:
    if model.get("generator") == "resnet" and "n_blocks" in model:
        return f", {model['n_blocks']} blocks"
    return f", depth {model['depth']}" if "depth" in model else ""


def _is_weight(name: str, value: object) -> bool:
    """A loss weight worth showing: a lambda_ setting in use (warm-up settings are schedules, not weights)."""
    return (
        name.startswith("lambda_")
        and "warmup" not in name
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
        and value != 0
    )


def _warnings(run: RunFolder) -> Html:
    """What training warned about (skipped files, changed data, a report it could not write)."""
    status = run.status
    if status is None or not status.warnings:
        return Html("")
    more = [f"… and {status.more_warnings} more"] if status.more_warnings else []
    return card("Warnings during training", warning_list([*status.warnings, *more]), "warnings", f"{len(status.warnings)} shown")


def _samples(run: RunFolder, link: Callable[[Path], str]) -> Html:
    """The sample grids of every sample step, one at a time, the latest first (a slider moves through them)."""
    if not run.samples:
        every = run.config.get("sample_every")
        return card(
            "Samples", tag("p", f"No sample grid yet (one every {every} steps)." if every else "No sample grid.", class_="muted"), "samples"
        )
    last = len(run.samples) - 1
    buttons = [tag("button", symbol, type="button", data_move=move, title=hint) for symbol, move, hint in _BUTTONS[:2]]
    buttons.append(void("input", type="range", min=0, max=last, value=last, aria_label="sample step"))
    buttons += [tag("button", symbol, type="button", data_move=move, title=hint) for symbol, move, hint in _BUTTONS[2:]]
    buttons.append(tag("span", f"step {run.samples[-1][0]:,}", class_="step-label"))
    figures = [
        tag("figure", _grid(path, link(path), step, lazy=index != last), data_label=f"step {step:,}", hidden=index != last)
        for index, (step, path) in enumerate(run.samples)
    ]
    body = tag("div", join([tag("div", join(buttons), class_="controls"), *figures]), class_="slider")
    note = f"{len(run.samples)} grids · the same held-out images at every step"
    return card("Samples", body, "samples", note)


def _grid(path: Path, address: str, step: int, lazy: bool) -> Html:
    """A grid picture, linked to itself (full size in a new view), shown at up to twice its size: small
    grids are enlarged so their pixels can be seen, large ones fit the page. Hidden ones load when shown."""
    try:
        with Image.open(path) as grid:  # reads the header only
            width, height = grid.size
    except (OSError, ValueError):  # being written, or damaged: the browser will say so
        width, height = 0, 0
    size = {"width": width, "height": height, "style": f"max-width:min(100%,{2 * width}px)"} if width else {}
    picture = void("img", src=address, alt=f"sample grid at step {step:,}", loading="lazy" if lazy else None, **size)
    return tag("a", picture, href=address)


_BUTTONS = (("first", "first", "first grid"), ("◀", "-1", "previous grid"), ("▶", "1", "next grid"), ("latest", "last", "latest grid"))


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(round(max(seconds, 0))), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def _clock(moment: float) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(moment))
    except (OverflowError, ValueError, OSError):  # a time no clock shows (a damaged status.json)
        return "?"
