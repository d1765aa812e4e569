"""Evaluation: metrics as pure functions, and the reports `gantrans eval` prints.

FID and KID follow the standard convention (see `gantrans/inception.py`): TF Inception-v3 pool3
features of 8-bit images resized to 299x299 with TF1's bilinear resize; statistics in float64.
Features of a folder of real images are cached per folder (keyed by its files' names, sizes and
modification times), so evaluating several models against the same data decodes it once.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import torch
from PIL import Image
from safetensors.torch import load_file
from torch import Tensor

from gantrans.data import discover_domains
from gantrans.errors import GantransError, UsageError
from gantrans.features import cache_dir
from gantrans.images import ImageDecodeError, find_images, image_to_uint8, load_rgb, to_model_range
from gantrans.inception import INPUT_SIDE, FIDInceptionV3, tf1_bilinear_resize
from gantrans.storage import atomic_save
from gantrans.translate import Translator

FEATURE_CACHE_VERSION = "1"  # bump when the feature convention changes: old cached features are then ignored


# --- metrics (pure functions) -------------------------------------------------------------------


def feature_statistics(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and covariance (unbiased, as numpy.cov) of features [N, D], in float64."""
    features = features.double()
    if features.shape[0] < 2:
        raise GantransError(f"statistics need at least 2 images, got {features.shape[0]}")
    return features.mean(0), torch.cov(features.T)


def frechet_distance(mean1: Tensor, cov1: Tensor, mean2: Tensor, cov2: Tensor) -> float:
    """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)), the Fréchet distance between two
    Gaussians (Dowson & Landau 1982) that FID applies to Inception features (Heusel et al. 2017).

    tr((S1 S2)^(1/2)) is the sum of the square roots of the eigenvalues of S1^(1/2) S2 S1^(1/2),
    which shares its eigenvalues with S1 S2 and is symmetric: no general matrix square root (and no
    scipy) is needed, and it stays finite when few images make S1 singular.
    """
    mean1, cov1, mean2, cov2 = (t.double() for t in (mean1, cov1, mean2, cov2))
    values, vectors = torch.linalg.eigh(cov1)
    root1 = (vectors * values.clamp(min=0).sqrt()) @ vectors.T
    middle = root1 @ cov2 @ root1
    trace_root = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    difference = mean1 - mean2
    return float(difference @ difference + cov1.trace() + cov2.trace() - 2 * trace_root)


def kernel_inception_distance(
    features1: Tensor, features2: Tensor, subsets: int = 100, subset_size: int = 1000, generator: torch.Generator | None = None
) -> tuple[float, float]:
    """Mean and standard deviation over random subsets of the unbiased MMD^2 with the cubic kernel
    k(x, y) = (x.y / d + 1)^3 (Bińkowski et al. 2018), as the reference implementations compute KID."""
    features1, features2 = features1.double(), features2.double()
    size = min(subset_size, features1.shape[0], features2.shape[0])
    if size < 2:
        raise GantransError(f"KID needs at least 2 images on each side, got {features1.shape[0]} and {features2.shape[0]}")
    generator = generator or torch.Generator().manual_seed(0)
    dimension = features1.shape[1]
    values = []
    for _ in range(subsets):
        x = features1[torch.randperm(features1.shape[0], generator=generator)[:size]]
        y = features2[torch.randperm(features2.shape[0], generator=generator)[:size]]
        kxx, kyy, kxy = ((a @ b.T / dimension + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
        within = (kxx.sum() - kxx.diagonal().sum() + kyy.sum() - kyy.diagonal().sum()) / (size * (size - 1))
        values.append(float(within - 2 * kxy.mean()))
    result = torch.tensor(values, dtype=torch.float64)
    return float(result.mean()), float(result.std()) if subsets > 1 else 0.0


def psnr(images: Tensor, references: Tensor) -> float:
    """Peak signal-to-noise ratio in dB of images in [-1, 1] (peak-to-peak 2), over the whole batch."""
    mse = float((images.double() - references.double()).pow(2).mean())
    return math.inf if mse == 0 else 10 * math.log10(4 / mse)


# --- features of images and folders ---------------------------------------------------------------


def image_features(images: Iterable[Tensor], network: FIDInceptionV3, batch_size: int = 32) -> Tensor:
    """Inception features [N, 2048] of uint8 images [3, H, W] of any sizes."""
    device = next(network.buffers()).device
    features, pending = [], []
    with torch.inference_mode():
        for image in images:
            pending.append(tf1_bilinear_resize(image.to(device)[None].float(), INPUT_SIDE, INPUT_SIDE))
            if len(pending) == batch_size:
                features.append(network(torch.cat(pending)).cpu())
                pending = []
        if pending:
            features.append(network(torch.cat(pending)).cpu())
    return torch.cat(features) if features else torch.zeros(0, 2048)


def file_features(paths: Sequence[Path], network: FIDInceptionV3, batch_size: int = 32) -> tuple[Tensor, list[str]]:
    """Features of image files (cached by the files' identity), and the messages of files skipped as unreadable."""
    cached = cache_dir().parent / "features" / f"{_files_key(paths)}.safetensors"
    if cached.is_file():
        return load_file(str(cached))["features"], []
    skipped: list[str] = []
    features = image_features(_decoded(paths, skipped), network, batch_size)
    if not skipped:  # a set with unreadable files is recomputed, so its warnings are repeated
        atomic_save({"features": features.contiguous()}, cached, {"files": str(len(paths)), "convention": FEATURE_CACHE_VERSION})
    return features, skipped


def _decoded(paths: Sequence[Path], skipped: list[str]) -> Iterator[Tensor]:
    return (image_to_uint8(image) for image in _readable(paths, skipped))


def _readable(paths: Sequence[Path], skipped: list[str]) -> Iterator[Image.Image]:
    """The decodable images among `paths`, one at a time; the others' messages go to `skipped`."""
    for path in paths:
        try:
            yield load_rgb(path)
        except ImageDecodeError as error:
            skipped.append(str(error))


def _files_key(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256(FEATURE_CACHE_VERSION.encode())
    for path in sorted(paths):
        stat = path.stat()
        digest.update(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]


# --- reports --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FolderComparison:
    """FID and KID between two folders of images."""

    folders: tuple[str, str]
    images: tuple[int, int]
    fid: float
    kid: float
    kid_std: float
    skipped: tuple[str, ...]  # unreadable files, named


def compare_folders(folder1: Path, folder2: Path, network: FIDInceptionV3, batch_size: int = 32) -> FolderComparison:
    """FID and KID between the images of two folders (searched recursively), as pytorch-fid takes two folders."""
    images = []
    for folder in (folder1, folder2):
        if not Path(folder).is_dir():
            raise UsageError(f"{folder} is not a folder")
        images.append(find_images(Path(folder)))
        if len(images[-1]) < 2:
            raise GantransError(f"{folder}: FID needs at least 2 images, found {len(images[-1])}")
    features, skipped = [], []
    for paths in images:
        folder_features, folder_skipped = file_features(paths, network, batch_size)
        features.append(folder_features)
        skipped += folder_skipped
    kid, kid_std = kernel_inception_distance(*features)
    return FolderComparison(
        folders=(str(folder1), str(folder2)), images=(len(features[0]), len(features[1])),
        fid=frechet_distance(*feature_statistics(features[0]), *feature_statistics(features[1])), kid=kid, kid_std=kid_std,
        skipped=tuple(skipped),
    )  # fmt: skip


@dataclass(frozen=True)
class DirectionReport:
    """How well a model translates `source` images into `target`."""

    source: str
    target: str
    images: int
    fid: float  # translated images vs. real images of the target domain
    kid: float
    kid_std: float
    cycle_l1: float | None  # mean |x - F(G(x))| in [0, 1] pixel units; None without an inverse
    cycle_psnr: float | None


@dataclass(frozen=True)
class ModelReport:
    model: str
    data: str
    split: str  # "test", or "train" when the data has no test split
    directions: tuple[DirectionReport, ...]
    skipped: tuple[str, ...]  # unreadable files, named

    def to_dict(self) -> dict:
        return {"model": self.model, "data": self.data, "split": self.split, "directions": [vars(d) for d in self.directions]}


def evaluate_model(translator: Translator, data: Path, network: FIDInceptionV3, split: str = "test", limit: int | None = None, batch_size: int = 32) -> ModelReport:
    """Translate the evaluation images of every direction the model has and measure the results:
    FID and KID against the target domain's real images, and the cycle error where an inverse exists."""
    has_split = any((Path(data) / name).is_dir() for name in (split, f"{split}A", f"{split}B"))
    files = discover_domains(data, translator.domains, split)
    files = {domain: paths[:limit] for domain, paths in files.items()}
    skipped: list[str] = []
    images = {domain: list(_readable(paths, skipped)) for domain, paths in files.items()}
    directions = []
    for target in translator.targets:
        real_features, real_skipped = file_features(files[target], network, batch_size)
        skipped += real_skipped
        for source in (domain for domain in translator.domains if domain != target and images[domain]):
            directions.append(_direction(translator, images[source], source, target, real_features, network, batch_size))
    return ModelReport(str(translator.info.path.parent), str(data), split if has_split else "train", tuple(directions), tuple(skipped))


def _direction(
    translator: Translator, sources: list[Image.Image], source: str, target: str, real_features: Tensor, network: FIDInceptionV3, batch_size: int
) -> DirectionReport:
    translated = translator.translate_images(sources, target, source)
    fake_features = image_features((image_to_uint8(image) for image in translated), network, batch_size)
    kid, kid_std = kernel_inception_distance(fake_features, real_features)
    fid = frechet_distance(*feature_statistics(fake_features), *feature_statistics(real_features))
    cycle_l1 = cycle_psnr = None
    if source in translator.targets:
        back = translator.translate_images(translated, source, target)
        originals = [to_model_range(image_to_uint8(image)) for image in sources]
        reconstructed = [to_model_range(image_to_uint8(image)) for image in back]
        cycle_l1 = float(torch.stack([(a - b).abs().mean() for a, b in zip(originals, reconstructed)]).mean()) / 2
        cycle_psnr = psnr(torch.cat([a.flatten() for a in reconstructed]), torch.cat([a.flatten() for a in originals]))
    return DirectionReport(source, target, len(sources), fid, kid, kid_std, cycle_l1, cycle_psnr)

