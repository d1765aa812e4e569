"""Make a before/after picture: each input image next to its translation (and its truth, if known).

    python examples/before_after.py INPUT_DIR OUTPUT_DIR --to vintage --truth TRUTH_DIR --out before_after.png

Pairs INPUT_DIR/<stem>.<ext> with OUTPUT_DIR/<stem>.<to>.png (as `gantrans translate` names them) and,
with --truth, TRUTH_DIR/<stem>.<ext>; the columns are labelled in the picture.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from gantrans.images import find_images, load_rgb


def before_after(rows: list[list[Path]], labels: list[str], height: int = 120, per_row: int = 2, gap: int = 8) -> Image.Image:
    """Each row's images side by side (input, output, truth...), `per_row` rows to a line, scaled to
    `height` pixels (nearest: keep the pixels honest), under a header naming the columns."""
    scaled = []
    for paths in rows:
        images = [load_rgb(path) for path in paths]
        scale = height / images[0].height
        scaled.append([image.resize((round(image.width * scale), height), Image.NEAREST) for image in images])
    cell = max(image.width for row in scaled for image in row)  # every column as wide as the widest image
    group = len(labels) * (cell + gap) + 2 * gap
    header = 18
    lines = -(-len(scaled) // per_row)
    canvas = Image.new("RGB", (per_row * group, header + lines * (height + gap) + gap), (255, 255, 255))
    draw, font = ImageDraw.Draw(canvas), ImageFont.load_default()
    for index, row in enumerate(scaled):
        left, top = (index % per_row) * group + gap, header + (index // per_row) * (height + gap) + gap
        for column, image in enumerate(row):
            if index < per_row:
                draw.text((left + column * (cell + gap), 3), labels[column], fill=(0, 0, 0), font=font)
            canvas.paste(image, (left + column * (cell + gap), top))
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", type=Path)
    parser.add_argument("outputs", type=Path)
    parser.add_argument("--to", required=True, help="target domain of the translations")
    parser.add_argument("--truth", type=Path, help="a folder of the true translations, by the inputs' file names: shown in a third column")
    parser.add_argument("--out", type=Path, default=Path("before_after.png"))
    args = parser.parse_args()
    rows = []
    for path in find_images(args.inputs):
        row = [path, args.outputs / f"{path.stem}.{args.to}.png"]
        if args.truth is not None:
            row.append(args.truth / path.name)
        if all(part.exists() for part in row) and not path.stem.endswith(f".{args.to}"):
            rows.append(row)
    if not rows:
        sys.exit(f"before_after: no translations of {args.inputs} found in {args.outputs}")
    labels = ["input", f"output ({args.to})"] + (["truth"] if args.truth is not None else [])
    before_after(rows, labels).save(args.out)
    print(args.out)


if __name__ == "__main__":
    main()
