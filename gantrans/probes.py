"""Measurements of translations, image by image: the cycle error and the steganography probe
(how much an invisible change of G(x) grows it), the distance to paired ground truth, and LPIPS
content change and diversity. Pixel distances are in [0, 1] pixel units."""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from gantrans.features import LPIPS
from gantrans.images import find_images, image_to_uint8, load_rgb, to_model_range
from gantrans.metrics import psnr, ssim
from gantrans.translate import Translator


def cycle_checks(
    translator: Translator, inputs: list[Image.Image], translated: list[Image.Image], source: str, target: str
) -> dict[str, float]:
    """Cycle error of F(G(x)), and how much an invisible change of G(x) (Gaussian noise of 2 grey
    levels, or JPEG at quality 95) grows it, per unit of change. An honest inverse passes a small
    change on at about its own size; a model that hides x in imperceptible detail of G(x) amplifies
    it many times (Chu et al. 2017, "CycleGAN, a master of steganography")."""
    generator = torch.Generator().manual_seed(0)
    perturbed = {"noise": [_add_noise(image, 2.0, generator) for image in translated], "jpeg": [_jpeg(image, 95) for image in translated]}
    back = translator.translate_images(translated, source, target)
    clean = mean_l1(inputs, back)
    checks = {"clean": clean, "psnr": psnr(flat_pixels(back), flat_pixels(inputs))}
    for name, images in perturbed.items():
        change = mean_l1(images, translated)
        growth = mean_l1(inputs, translator.translate_images(images, source, target)) - clean
        checks[name] = growth / max(change, 1e-8)
    return checks


def reference_images(reference_dir: Path, target: str, sources: list[tuple[Path, Image.Image]]) -> list[Image.Image | None]:
    """The ground truth of each source image, <reference_dir>/<target>/<its file name, any image
    extension>; None where there is none."""
    folder = Path(reference_dir) / target
    if not folder.is_dir():
        return [None] * len(sources)  # no truth for this direction
    by_stem = {path.stem: path for path in find_images(folder)}
    return [load_rgb(by_stem[path.stem]) if path.stem in by_stem else None for path, _ in sources]


def reference_scores(translated: list[Image.Image], references: list[Image.Image | None] | None) -> dict[str, float | None]:
    """L1, PSNR and SSIM of the translations that have a ground truth of their size (None without any)."""
    pairs = [
        (image, reference)
        for image, reference in zip(translated, references or [])
        if reference is not None and reference.size == image.size
    ]
    if not pairs:
        return {"reference_l1": None, "reference_psnr": None, "reference_ssim": None}
    outputs, truths = zip(*pairs)
    return {
        "reference_l1": mean_l1(outputs, truths),
        "reference_psnr": psnr(flat_pixels(outputs), flat_pixels(truths)),
        "reference_ssim": sum(ssim(pixels(a), pixels(b)) for a, b in pairs) / len(pairs),
    }


def pixels(image: Image.Image) -> Tensor:
    """An image as a batch of one in the model range [-1, 1], [1, 3, H, W]."""
    return to_model_range(image_to_uint8(image))[None]


def flat_pixels(images: Sequence[Image.Image]) -> Tensor:
    """All pixel values of `images`, one after another (for a PSNR over the whole set)."""
    return torch.cat([pixels(image).flatten() for image in images])


def _l1(image: Image.Image, other: Image.Image) -> float:
    """Mean absolute difference in [0, 1] pixel units."""
    return float((pixels(image) - pixels(other)).abs().mean()) / 2


def mean_l1(images: Sequence[Image.Image], others: Sequence[Image.Image]) -> float:
    """Mean of `_l1` over the pairs of `images` and `others`."""
    return sum(_l1(a, b) for a, b in zip(images, others)) / len(images)


def _add_noise(image: Image.Image, grey_levels: float, generator: torch.Generator) -> Image.Image:
    values = image_to_uint8(image).float()
    noisy = (values + grey_levels * torch.randn(values.shape, generator=generator)).round().clamp(0, 255).to(torch.uint8)
    return Image.fromarray(noisy.permute(1, 2, 0).numpy())


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return load_rgb(buffer.getvalue())


def mean_lpips(lpips: LPIPS, pairs: Iterable[tuple[Image.Image, Image.Image]]) -> float:
    """Mean LPIPS distance of `pairs` (0 for none)."""
    device = next(lpips.buffers()).device
    with torch.inference_mode():
        values = [float(lpips(pixels(a).to(device), pixels(b).to(device))) for a, b in pairs]
    return sum(values) / max(len(values), 1)


def pairwise_lpips(lpips: LPIPS, images: Sequence[Image.Image], pairs: int = 50, side: int = 128) -> float:
    """Mean LPIPS over up to `pairs` random pairs of the images, each resized to side x side."""
    if len(images) < 2:
        return 0.0
    resized = [image.resize((side, side), Image.BICUBIC) for image in images]
    generator = torch.Generator().manual_seed(0)
    chosen = {tuple(sorted(torch.randperm(len(images), generator=generator)[:2].tolist())) for _ in range(pairs)}
    return mean_lpips(lpips, ((resized[i], resized[j]) for i, j in sorted(chosen)))
