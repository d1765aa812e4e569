"""`gantrans eval --html FILE`: the evaluation as one self-contained page, in the run report's style:
the metrics table, each direction's warnings, and a few input → output → truth (or a real image of
the target domain) examples per direction, embedded as small PNG thumbnails (data: URIs), so the
one file can be moved, mailed or opened from file:// on its own."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from gantrans.eval_table import direction_rows, metric_table
from gantrans.evaluate import ModelReport, evaluation_files
from gantrans.fid import readable
from gantrans.probes import reference_images
from gantrans.report_html import Html, card, facts, join, page, table, tag, void, warning_list
from gantrans.run_status import write_text_atomically
from gantrans.translate import Translator

EXAMPLES = 4  # per direction
THUMBNAIL = 192  # pixels on the longer side


@dataclass(frozen=True)
class Example:
    """One input, its translation, and what to compare it with."""

    name: str  # the input's file name
    images: tuple[tuple[str, Image.Image], ...]  # (caption, image): input, output, truth or a real target image


def direction_examples(
    translator: Translator, data: Path, split: str, source: str, target: str, reference_dir: Path | None, count: int = EXAMPLES
) -> list[Example]:
    """The first `count` readable inputs of `source` translated into `target`, each beside its truth
    (`reference_dir`) or else beside a real image of `target` for the look to aim at."""
    files = evaluation_files(data, translator.domains, split)
    inputs = [pair for pair, _ in zip(readable(files[source], []), range(count))]
    reals = [image for (_, image), _ in zip(readable(files[target], []), range(count))] if target in files else []
    outputs = translator.translate_images([image for _, image in inputs], target, source)
    truths = reference_images(reference_dir, target, inputs) if reference_dir else [None] * len(inputs)
    examples = []
    for index, ((path, image), output, truth) in enumerate(zip(inputs, outputs, truths)):
        third = ("truth", truth) if truth is not None else (f"a real {target}", reals[index % len(reals)]) if reals else None
        shown = [(f"input ({source})", image), ("output", output), *([third] if third else [])]
        examples.append(Example(path.name, tuple(shown)))
    return examples


def write_evaluation_page(
    path: Path, report: ModelReport, examples: dict[tuple[str, str], list[Example]], reference_dir: Path | None = None
) -> Path:
    """Write the page of `report` with its `examples` per (source, target) to `path`; its path."""
    columns = {f"{d.source} → {d.target}": direction_rows(vars(d)) for d in report.directions}
    header, rows = metric_table(columns)
    summary = [
        ("model", report.model),
        ("data", report.data),
        ("split", report.split),
        ("directions", str(len(report.directions))),
    ]
    if reference_dir is not None:
        summary.append(("truth", str(reference_dir)))
    if report.skipped:
        summary.append(("unreadable files", f"{len(report.skipped)} skipped"))
    sections = [
        tag(
            "header",
            join([tag("div", tag("h1", f"Evaluation of {Path(report.model).name}"), class_="top"), tag("div", report.model, class_="sub")]),
        ),
        card("Metrics", join([facts(summary), Html("<br>"), table(header, rows)]), "metrics", "↓ lower is better · ↑ higher is better"),
    ]
    for index, direction in enumerate(report.directions):
        shown = examples.get((direction.source, direction.target), [])
        sections.append(_direction_card(f"{direction.source} → {direction.target}", direction.warnings, shown, f"direction-{index}"))
    moment = time.strftime("%Y-%m-%d %H:%M", time.localtime())
    html = page(f"Evaluation of {Path(report.model).name} · gantrans", join(sections), f"written {moment} by gantrans eval --html")
    write_text_atomically(Path(path), html)
    return Path(path)


def _direction_card(name: str, warnings: Sequence[str], examples: list[Example], anchor: str) -> Html:
    badge = tag("span", f"⚠ {len(warnings)} warning{'s' * (len(warnings) > 1)}", class_="badge") if warnings else ""
    rows = [
        tag(
            "div",
            join(tag("figure", join([_thumbnail(image, f"{caption}: {ex.name}"), tag("div", caption)])) for caption, image in ex.images),
            class_="example",
        )
        for ex in examples
    ]
    body = [warning_list(list(warnings))] if warnings else []
    body.append(tag("div", join(rows), class_="examples") if rows else tag("p", "No examples.", class_="muted"))
    return card(name, join(body), anchor, badge)


def _thumbnail(image: Image.Image, alt: str) -> Html:
    """`image` at most THUMBNAIL pixels a side, inline as a PNG data: URI."""
    small = image.convert("RGB")
    small.thumbnail((THUMBNAIL, THUMBNAIL), Image.BICUBIC)
    buffer = io.BytesIO()
    small.save(buffer, format="PNG", optimize=True)
    return void("img", src="data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"), alt=alt)
