"""Score the demo's translations against their known truth (the vintage look of each test image).

    python examples/score_demo.py examples/data examples/out --to vintage

Prints the mean PSNR over the held-out test images of three answers: the input itself (the identity),
the mean of the training vintage patches (resized to each image), and the model's translation
(OUTPUT_DIR/<stem>.<to>.png, as `gantrans translate` names it). A model that re-tones the photo beats
both; one that paints something else falls below them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255


def psnr(image: np.ndarray, truth: np.ndarray) -> float:
    return float(10 * np.log10(1 / max(np.mean((image - truth) ** 2), 1e-12)))


def mean_image(folder: Path) -> Image.Image:
    """The pixel-wise mean of the training images of one domain (all of one size)."""
    images = [read(path) for path in sorted(folder.glob("*.png"))]
    return Image.fromarray(np.clip(np.rint(np.mean(images, axis=0) * 255), 0, 255).astype(np.uint8))


def scores(data: Path, outputs: Path, target: str) -> dict[str, list[float]]:
    """PSNR of each answer for each test image with a truth."""
    mean = mean_image(data / "photo2vintage" / target)
    results: dict[str, list[float]] = {"identity": [], f"mean {target} image": [], "model": []}
    for truth_path in sorted((data / "truth" / target).glob("*.png")):
        truth, source = read(truth_path), read(data / "test" / truth_path.name)
        output_path = outputs / f"{truth_path.stem}.{target}.png"
        if not output_path.is_file():
            sys.exit(f"score_demo: no translation {output_path} of {truth_path.name}")
        height, width = truth.shape[:2]
        results["identity"].append(psnr(source, truth))
        results[f"mean {target} image"].append(psnr(np.asarray(mean.resize((width, height), Image.BICUBIC), dtype=np.float64) / 255, truth))
        results["model"].append(psnr(read(output_path), truth))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="the demo data folder (photo2vintage/, test/, truth/)")
    parser.add_argument("outputs", type=Path, help="the folder of translations")
    parser.add_argument("--to", default="vintage")
    args = parser.parse_args()
    results = scores(args.data, args.outputs, args.to)
    count = len(results["model"])
    if not count:
        sys.exit(f"score_demo: no truth images in {args.data / 'truth' / args.to}")
    print(f"mean PSNR against the true {args.to} look over {count} held-out test images:")
    for name, values in results.items():
        print(f"  {name:<22} {np.mean(values):6.2f} dB   (min {min(values):5.2f}, max {max(values):5.2f})")


if __name__ == "__main__":
    main()
