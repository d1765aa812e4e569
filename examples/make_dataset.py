"""Build the bundled demo data set: unpaired "photo" and "vintage" patches of real photos.

    python examples/make_dataset.py --out examples/data

The photos are scikit-image's sample images, read straight out of its wheel from PyPI (no other
download, and scikit-image itself is not installed). Each photo is cut into three disjoint
vertical regions, so nothing is paired: "photo" patches come from the left region, "vintage"
patches from the middle one, passed through a fixed old-photo look, and the right region gives
held-out test images at odd sizes (translation keeps the input size), with their true vintage look
in truth/vintage/ (the same file names), so a translation can be scored against what it should be.
Both domains show the same kind of content, so only the look tells them apart, as in real unpaired
sets (summer/winter).
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

WHEEL = "scikit-image==0.26.0"
PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "motorcycle_right.png", "rocket.jpg")
PHOTO_REGION, VINTAGE_REGION, TEST_REGION = (0.0, 0.375), (0.375, 0.75), (0.75, 1.0)  # fractions of the width
# (width, height) of the held-out test images, two per photo (upper and lower half of its held-out
# region): odd sizes on purpose, as translation keeps the input size.
TEST_SIZES = ((96, 72), (80, 80), (101, 67), (67, 101), (88, 59), (73, 91), (59, 77), (90, 90), (105, 63), (64, 99), (83, 61), (77, 85))


def fetch_wheel(cache: Path) -> Path:
    """The scikit-image wheel from PyPI, downloaded once into `cache`."""
    found = sorted(cache.glob("scikit_image-0.26.0-*.whl"))
    if found:
        return found[0]
    cache.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(cache), WHEEL]
    if subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE).returncode != 0:
        sys.exit(f"make_dataset: could not download {WHEEL} from PyPI into {cache}; check the connection and run again")
    return sorted(cache.glob("scikit_image-0.26.0-*.whl"))[0]


def read_photos(wheel: Path, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """RGB float arrays in [0, 1] of the named sample photos inside the wheel."""
    with zipfile.ZipFile(wheel) as archive:
        return {
            name: np.asarray(Image.open(io.BytesIO(archive.read(f"skimage/data/{name}"))).convert("RGB"), dtype=np.float64) / 255
            for name in names
        }


def vintage(rgb: np.ndarray) -> np.ndarray:
    """A fixed old-photo look: sepia toning, faded blacks and whites, warm cast, vignette."""
    sepia = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]])
    toned = 0.75 * np.clip(rgb @ sepia.T, 0, 1) + 0.25 * rgb  # keep a trace of the original colour
    faded = 0.12 + 0.76 * toned  # lifted blacks, dimmed whites
    faded = faded * np.array([1.04, 0.98, 0.86])  # warm, yellowed paper
    height, width = rgb.shape[:2]
    y, x = np.mgrid[0:height, 0:width]
    radius = np.hypot((y - height / 2) / (height / 2), (x - width / 2) / (width / 2))
    vignette = 1 - 0.35 * np.clip(radius - 0.45, 0, None) ** 1.5
    return np.clip(faded * vignette[..., None], 0, 1)


def region(photo: np.ndarray, fractions: tuple[float, float]) -> np.ndarray:
    width = photo.shape[1]
    return photo[:, int(width * fractions[0]) : int(width * fractions[1])]


def random_patches(
    photos: dict[str, np.ndarray], count: int, size: int, rng: np.random.Generator, fractions: tuple[float, float]
) -> list[np.ndarray]:
    """`count` square patches of random scale and place inside the `fractions` region, resized to `size`."""
    names = sorted(photos)
    patches = []
    for index in range(count):
        part = region(photos[names[index % len(names)]], fractions)
        height, width = part.shape[:2]
        side = int(min(height, width) * rng.uniform(0.35, 0.9))
        top, left = int(rng.integers(height - side + 1)), int(rng.integers(width - side + 1))
        patch = Image.fromarray(to_uint8(part[top : top + side, left : left + side]))
        patches.append(np.asarray(patch.resize((size, size), Image.LANCZOS), dtype=np.float64) / 255)
    return patches


def test_images(photos: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Two crops per photo from its held-out region (never seen in training), scaled to TEST_SIZES."""
    crops = []
    for index, (width, height) in enumerate(TEST_SIZES):
        held_out = region(photos[sorted(photos)[index // 2]], TEST_REGION)
        half = held_out[: held_out.shape[0] // 2] if index % 2 == 0 else held_out[held_out.shape[0] // 2 :]
        # The largest centred crop of the target's aspect ratio.
        crop_height = min(half.shape[0], int(half.shape[1] * height / width))
        crop_width = min(half.shape[1], int(crop_height * width / height))
        top, left = (half.shape[0] - crop_height) // 2, (half.shape[1] - crop_width) // 2
        crop = Image.fromarray(to_uint8(half[top : top + crop_height, left : left + crop_width]))
        crops.append(np.asarray(crop.resize((width, height), Image.LANCZOS), dtype=np.float64) / 255)
    return crops


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)


def write(images: list[np.ndarray], folder: Path, prefix: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(images):
        Image.fromarray(to_uint8(image)).save(folder / f"{prefix}_{index:04d}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("examples/data"))
    parser.add_argument("--per-domain", type=int, default=400, help="patches per domain")
    parser.add_argument("--size", type=int, default=64, help="patch side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--cache", type=Path, default=Path(os.environ.get("GANTRANS_CACHE", Path.home() / ".cache" / "gantrans")) / "registry"
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if the data set exists")
    args = parser.parse_args()

    train_dir = args.out / "photo2vintage"
    built = all(len(list((train_dir / d).glob("*.png"))) == args.per_domain for d in ("photo", "vintage"))
    if not args.force and built and len(list((args.out / "truth" / "vintage").glob("*.png"))) == len(TEST_SIZES):
        print(f"make_dataset: {train_dir} already built", file=sys.stderr)
        return
    wheel = fetch_wheel(args.cache)
    rng = np.random.default_rng(args.seed)
    photos = read_photos(wheel, PHOTOS)
    write(random_patches(photos, args.per_domain, args.size, rng, PHOTO_REGION), train_dir / "photo", "photo")
    write([vintage(p) for p in random_patches(photos, args.per_domain, args.size, rng, VINTAGE_REGION)], train_dir / "vintage", "vintage")
    for folder in (args.out / "test", args.out / "truth" / "vintage"):
        folder.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(test_images(photos)):
        image = to_uint8(image)
        Image.fromarray(image).save(args.out / "test" / f"test_{index:02d}.png")
        # The truth is the look applied to the very pixels the model sees (8-bit), as for the training patches.
        Image.fromarray(to_uint8(vintage(image / 255))).save(args.out / "truth" / "vintage" / f"test_{index:02d}.png")
    print(
        f"make_dataset: {args.per_domain} photo + {args.per_domain} vintage patches of {args.size} px in {train_dir}, {len(TEST_SIZES)} test images in {args.out / 'test'} (their truth in {args.out / 'truth' / 'vintage'})",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
