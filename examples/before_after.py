"""Make a before/after picture: each input image next to its translation.

    python examples/before_after.py INPUT_DIR OUTPUT_DIR --to vintage --out before_after.png

Pairs INPUT_DIR/<stem>.<ext> with OUTPUT_DIR/<stem>.<to>.png (as `gantrans translate` names them).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

from gantrans.images import find_images, load_rgb


def before_after(pairs: list[tuple[Path, Path]], height: int = 192, gap: int = 8) -> Image.Image:
    """Rows of [before | after], each scaled to `height` pixels (nearest: keep the pixels honest)."""
    rows = []
    for before, after in pairs:
        images = [load_rgb(before), load_rgb(after)]
        scale = height / images[0].height
        rows.append([image.resize((round(image.width * scale), height), Image.NEAREST) for image in images])
    width = max(sum(image.width for image in row) + 3 * gap for row in rows)
    canvas = Image.new("RGB", (width, len(rows) * (height + gap) + gap), (255, 255, 255))
    for index, row in enumerate(rows):
        x = gap
        for image in row:
            canvas.paste(image, (x, gap + index * (height + gap)))
            x += image.width + gap
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", type=Path)
    parser.add_argument("outputs", type=Path)
    parser.add_argument("--to", required=True, help="target domain of the translations")
    parser.add_argument("--out", type=Path, default=Path("before_after.png"))
    args = parser.parse_args()
    pairs = [(path, args.outputs / f"{path.stem}.{args.to}.png") for path in find_images(args.inputs) if not path.stem.endswith(f".{args.to}")]
    pairs = [(before, after) for before, after in pairs if after.exists()]
    if not pairs:
        sys.exit(f"before_after: no translations of {args.inputs} found in {args.outputs}")
    before_after(pairs).save(args.out)
    print(args.out)


if __name__ == "__main__":
    main()
