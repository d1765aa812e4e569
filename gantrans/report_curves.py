"""The run report's charts: one loss curve per logged term, and the evaluation scores over time with
the best step marked (and the latest `gantrans eval` of the run, with its warnings)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from gantrans.eval_table import direction_rows, metric_table
from gantrans.report_charts import PALETTE, Line, loss_chart, score_chart, smoothed, value_text
from gantrans.report_data import RunFolder
from gantrans.report_html import Html, card, join, table, tag, void, warning_list

NOT_TERMS = ("step", "lr", "images_per_second")
GENERATOR_COLOUR, DISCRIMINATOR_COLOUR, SCHEDULE_COLOUR = "#3b5bdb", "#e8590c", "#687082"
WORDS = {
    "adv": "adversarial",
    "d": "D",
    "cls": "domain class",
    "rec": "reconstruction",
    "nce": "PatchNCE",
    "gp": "gradient penalty",
    "r1": "R1 penalty",
    "kl": "KL",
    "fm": "feature matching",
}


def term_label(name: str, domains: Sequence[str]) -> str:
    """A loss term's key in words, with x and y named after the domains: cycle_x -> "cycle photo",
    adv_xy -> "adversarial photo → vintage", d_y -> "D vintage"."""
    words = [WORDS.get(word, word) for word in name.split("_")]
    if len(domains) == 2 and len(words) > 1:
        last = name.split("_")[-1]
        if last in ("x", "y"):
            words[-1] = domains["xy".index(last)]
        elif last in ("xy", "yx"):
            words[-1] = f"{domains['xy'.index(last[0])]} → {domains['xy'.index(last[1])]}"
    return " ".join(words)


def losses_card(run: RunFolder) -> Html:
    """One chart per loss term (generator terms, then the discriminators'), then the learning rate and
    speed; toggles for the moving average and a log scale (CSS only)."""
    if not run.logged:
        return card("Losses", tag("p", "No log line yet.", class_="muted"), "losses")
    terms = list(dict.fromkeys(key for record in run.logged for key in record if key not in NOT_TERMS))
    groups = [
        ("generator", [term for term in terms if not term.startswith("d_")], GENERATOR_COLOUR),
        ("discriminator", [term for term in terms if term.startswith("d_")], DISCRIMINATOR_COLOUR),
    ]
    parts: list[Html] = [
        void("input", type="checkbox", id="opt-smooth", class_="opt", checked=True),
        void("input", type="checkbox", id="opt-log", class_="opt"),
        _losses_head(len(run.logged)),
    ]
    for title, names, colour in groups:
        if names:
            charts = [_chart(run, name, term_label(name, run.domains), colour) for name in names]
            parts += [tag("h3", title), tag("div", join(charts), class_="charts")]
    schedule = [
        _chart(run, "lr", "learning rate", SCHEDULE_COLOUR, smooth=False),
        _chart(run, "images_per_second", "images/s", SCHEDULE_COLOUR),
    ]
    parts += [tag("h3", "schedule and speed"), tag("div", join(schedule), class_="charts")]
    return tag("section", join(parts), class_="card", id="losses")


def _losses_head(lines: int) -> Html:
    toggles = tag("div", join(tag("label", name, for_=target) for name, target in (("smoothed", "opt-smooth"), ("log scale", "opt-log"))))
    note = tag("span", f"{lines:,} log line{'s' * (lines != 1)} · ", class_="note")
    return tag("div", join([tag("h2", "Losses"), tag("div", join([note, toggles]), class_="toggles")]), class_="head")


def _chart(run: RunFolder, key: str, label: str, colour: str, smooth: bool = True) -> Html:
    """A figure: the term's name, its latest (smoothed) value, and its chart."""
    points = [(record["step"], float(record[key])) for record in run.logged if _is_number(record.get(key))]
    finite = [value for _, value in points if math.isfinite(value)]
    latest = value_text((smoothed(finite) if smooth else finite)[-1]) if finite else "-"
    dropped = len(points) - len(finite)
    caption = join(
        [
            tag("span", label, title=key),
            tag("span", latest + (f" · {dropped} not finite" if dropped else ""), class_="value", title="latest (smoothed)"),
        ]
    )
    return tag("figure", join([tag("figcaption", caption), Html(loss_chart(points, colour, label, smooth))]), data_term=key)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def scores_card(run: RunFolder) -> Html:
    """FID and KID of every direction at each --eval-every step, the kept best marked; then the latest
    full `gantrans eval` of the run. Nothing when there is neither."""
    if not run.scored and not run.evaluations:
        return Html("")
    parts: list[Html] = []
    best_step = next((record["step"] for record in reversed(run.scored) if record.get("best")), None)
    if run.scored:
        directions = list(dict.fromkeys(name for record in run.scored for name in record["eval"]))
        colours = {name: PALETTE[index % len(PALETTE)] for index, name in enumerate(directions)}
        legend = tag("div", join(_swatch(_direction(name), colours[name]) for name in directions), class_="legend")
        charts = [
            _score_figure(run, directions, colours, "fid", "FID ↓", 1.0, best_step),
            _score_figure(run, directions, colours, "kid", "KID × 1000 ↓", 1000.0, best_step),
        ]
        parts += [legend, tag("div", join(charts), class_="charts wide"), _score_table(run, directions, best_step)]
    if run.evaluations:
        parts.append(_evaluation(run.evaluations[-1], len(run.evaluations)))
    warned = sum(len(direction.get("warnings") or ()) for direction in (run.evaluations[-1]["directions"] if run.evaluations else ()))
    note = Html("") if not warned else tag("span", f"⚠ {warned} warning{'s' * (warned > 1)}", class_="badge")
    kept = f"best: step {best_step:,}, kept in best/" if best_step is not None else ""
    return card("Evaluation", join(parts), "evaluation", join([kept, Html(" ") if kept and warned else "", note]))


def _direction(name: str) -> str:
    return name.replace("->", " → ")


def _swatch(label: str, colour: str) -> Html:
    return tag("span", join([tag("span", "", class_="swatch", style=f"background:{colour}"), label]))


def _score_figure(run: RunFolder, directions: list[str], colours: dict[str, str], key: str, title: str, scale: float, best: Any) -> Html:
    lines = [
        Line(
            _direction(name),
            tuple((r["step"], scale * r["eval"][name][key]) for r in run.scored if _is_number(r["eval"].get(name, {}).get(key))),
            colours[name],
        )
        for name in directions
    ]
    return tag("figure", join([tag("figcaption", tag("span", title)), Html(score_chart(lines, title, best))]), data_score=key)


def _score_table(run: RunFolder, directions: list[str], best_step: int | None) -> Html:
    """Every evaluation, the latest first; the kept best's row highlighted."""
    header = ["step", *(f"FID {_direction(name)}" for name in directions), *(f"KID×1000 {_direction(name)}" for name in directions)]
    rows = []
    for record in reversed(run.scored):
        scores = record["eval"]
        cells = [f"{record['step']:,}" + (" ★ best" if record["step"] == best_step else "")]
        cells += [_score(scores.get(name, {}).get("fid"), 1) for name in directions]
        cells += [_score(scores.get(name, {}).get("kid"), 1000) for name in directions]
        rows.append(cells)
    return table(header, rows)


def _score(value: object, scale: float) -> str:
    return f"{scale * value:.2f}" if _is_number(value) else "-"


def _evaluation(record: dict[str, Any], count: int) -> Html:
    """The latest `gantrans eval` of the run: its table, and each direction's warnings beside it."""
    directions = [d for d in record["directions"] if isinstance(d, dict)]
    columns = {f"{d.get('source', '?')} → {d.get('target', '?')}": direction_rows(d) for d in directions if "images" in d}
    header, rows = metric_table(columns)
    step = record.get("step")
    where = f"the {record.get('split', '?')} split of {record.get('data', '?')}"
    title = f"gantrans eval of the model at step {step:,} on {where}" if isinstance(step, int) else f"gantrans eval on {where}"
    parts = [tag("p", tag("strong", title), class_="eval-title"), table(header, rows)]
    warnings = [message for d in directions for message in d.get("warnings") or ()]
    if warnings:
        parts.append(warning_list([str(message) for message in warnings]))
    if count > 1:
        parts.append(tag("p", f"{count - 1} earlier evaluation(s) in evaluations/.", class_="muted"))
    return join(parts)
