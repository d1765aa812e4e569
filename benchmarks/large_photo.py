"""A 48-megapixel photo through `gantrans translate` on this machine: wall time and peak memory.

    python benchmarks/large_photo.py                                 # 8000x6000, default tile settings, CPU
    python benchmarks/large_photo.py --record                        # ... and append the result to benchmarks/RESULTS.md
    python benchmarks/large_photo.py --width 640 --height 480        # a quick smoke test of the script

The model is a CycleGAN with the default settings (ResNet-9 generator, 64 filters: the size that
translates 256 px photos in the reference project), with random weights: speed and memory do not
depend on what the weights are. The photo is a synthetic JPEG (brightness ramps, colour waves and
noise). `gantrans translate` runs as a child process with the default tile settings, so the peak
resident memory measured is the translation's alone (getrusage of the children). The target: a 48 MP
photo under 4 GiB peak on a CPU.
"""

from __future__ import annotations

import argparse
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gantrans import checkpoint
from gantrans.presets import make_train_config

TARGET_PEAK_BYTES = 4 * 2**30
DOMAINS = ("photo", "painting")


def write_model(folder: Path, ngf: int, n_blocks: int) -> Path:
    """A CycleGAN model with default settings (but `ngf`, `n_blocks`) and random weights, in `folder`."""
    config = make_train_config("cyclegan", {"ngf": ngf, "n_blocks": n_blocks, "out": str(folder), "device": "cpu"})
    method = checkpoint.build_method(config, DOMAINS, training=False, seed=0)
    checkpoint.save_model(folder / checkpoint.MODEL_FILE, method, config, step=0)
    return folder


def write_photo(path: Path, width: int, height: int, seed: int = 0) -> Path:
    """A synthetic photo-like JPEG, made in bands of rows (a full-size float array would be 1 GB at 48 MP)."""
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    rng = np.random.default_rng(seed)
    columns = np.arange(width, dtype=np.float32)[None, :]
    for top in range(0, height, 512):
        rows = np.arange(top, min(top + 512, height), dtype=np.float32)[:, None]
        ramp = (columns / width + rows / height) * 120 - 60
        waves = [np.sin(columns / 97 + rows / 153), np.cos(rows / 71 + columns / 401), np.sin((columns - rows) / 113)]
        band = np.stack([128 + ramp + 50 * wave for wave in waves], axis=-1)
        band += rng.normal(0, 6, band.shape).astype(np.float32)
        pixels[top : top + rows.shape[0]] = np.clip(band, 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=92)
    return path


def translate(photo: Path, model: Path, out: Path, extra: list[str]) -> tuple[float, int, str]:
    """Run `gantrans translate` as a child: (wall seconds, peak resident bytes of the child, stderr)."""
    command = [
        sys.executable,
        "-m",
        "gantrans",
        "translate",
        str(photo),
        "--to",
        DOMAINS[1],
        "--model",
        str(model),
        "--out",
        str(out),
        *extra,
    ]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"gantrans translate failed ({result.returncode}):\n{result.stderr}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * (1 if sys.platform == "darwin" else 1024)  # KiB on Linux
    return seconds, peak, result.stderr


def machine() -> str:
    cpu = f"{platform.machine()}, {torch.get_num_threads()} CPU threads, torch {torch.__version__}"
    return cpu + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=8000, help="photo width in pixels")
    parser.add_argument("--height", type=int, default=6000, help="photo height in pixels")
    parser.add_argument("--ngf", type=int, default=64, help="generator width (64: CycleGAN's default)")
    parser.add_argument("--n-blocks", type=int, default=9, help="residual blocks (9: CycleGAN's default)")
    parser.add_argument("--device", default="cpu", help="device for `gantrans translate`")
    parser.add_argument("--work", type=Path, default=Path("benchmarks/work/large_photo"), help="folder for the model, photo and output")
    parser.add_argument("--record", action="store_true", help="append the result to benchmarks/RESULTS.md")
    args, extra = parser.parse_known_args()  # anything else goes to `gantrans translate` (--tile 512, --tile-norm exact ...)
    args.work.mkdir(parents=True, exist_ok=True)
    model = write_model(args.work / "model", args.ngf, args.n_blocks)
    photo = write_photo(args.work / f"photo_{args.width}x{args.height}.jpg", args.width, args.height)
    out = args.work / "translated.png"
    seconds, peak, log = translate(photo, model, out, ["--device", args.device, *extra])
    with Image.open(out) as translated:
        assert translated.size == (args.width, args.height), translated.size
    verdict = "under" if peak < TARGET_PEAK_BYTES else "OVER"
    text = (
        f"| photo | model | options | wall time | peak RSS |\n|---|---|---|---|---|\n"
        f"| {args.width}x{args.height} ({args.width * args.height / 1e6:.1f} MP) JPEG | cyclegan ngf {args.ngf}, {args.n_blocks} blocks "
        f"| {' '.join(['--device', args.device, *extra])} | {seconds:.1f} s | {peak / 2**30:.2f} GiB ({verdict} the 4 GiB target) |"
    )
    print(text + ("\n" + log.strip() if log.strip() else ""))
    if args.record:
        command = "python benchmarks/large_photo.py " + " ".join(sys.argv[1:])
        with open("benchmarks/RESULTS.md", "a") as results:
            results.write(
                f"\n## Large photo: {args.width}x{args.height} ({time.strftime('%Y-%m-%d')})\n\n`{command}` on {machine()}.\n\n{text}\n"
            )


if __name__ == "__main__":
    main()
