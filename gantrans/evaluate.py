"""Evaluation: metrics as pure functions, and the reports `gantrans eval` prints.

FID and KID follow the standard convention (see `gantrans/inception.py`): TF Inception-v3 pool3
features of 8-bit images resized to 299x299 with TF1's bilinear resize; statistics in float64.
Features of a folder of real images are cached per folder (keyed by its files' names, sizes and
modification times), so evaluating several models against the same data decodes it once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import torch
from PIL import Image
from safetensors.torch import load_file
from torch import Tensor, nn

from gantrans.checkpoint import MODEL_FILE, STATE_FILE, ModelInfo, build_method, read_model_info
from gantrans.config import TrainConfig

from gantrans.errors import GantransError, UsageError
from gantrans.features import LPIPS
from gantrans.folders import discover_domains, held_out_files
from gantrans.images import IMAGE_EXTENSIONS, ImageDecodeError, find_images, image_to_uint8, load_rgb, to_model_range
from gantrans.inception import INPUT_SIDE, FIDInceptionV3, tf1_bilinear_resize
from gantrans.methods import Method
from gantrans.metrics import copy_fraction, feature_statistics, frechet_distance, kernel_inception_distance, nearest_distances, psnr, ssim
from gantrans.storage import atomic_save
from gantrans.training_state import load_discriminators
from gantrans.translate import Translator
from gantrans.weights import cache_home

FEATURE_CACHE_VERSION = "1"  # bump when the feature convention changes: old cached features are then ignored


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
    cached = cache_home() / "features" / f"{_files_key(paths)}.safetensors"
    if cached.is_file():
        return load_file(str(cached))["features"], []
    skipped: list[str] = []
    features = image_features(_decoded(paths, skipped), network, batch_size)
    if not skipped:  # a set with unreadable files is recomputed, so its warnings are repeated
        atomic_save({"features": features.contiguous()}, cached, {"files": str(len(paths)), "convention": FEATURE_CACHE_VERSION})
    return features, skipped


def _decoded(paths: Sequence[Path], skipped: list[str]) -> Iterator[Tensor]:
    return (image_to_uint8(image) for _, image in _readable(paths, skipped))


def _readable(paths: Sequence[Path], skipped: list[str]) -> Iterator[tuple[Path, Image.Image]]:
    """The decodable images among `paths` with their paths, one at a time; the others' messages go to `skipped`."""
    for path in paths:
        try:
            yield path, load_rgb(path)
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
    images = [folder_images(folder) for folder in (folder1, folder2)]
    features, skipped = [], []
    for folder, paths in zip((folder1, folder2), images):
        folder_features, folder_skipped = file_features(paths, network, batch_size)
        _check_count(str(folder), len(folder_features), len(paths), folder_skipped)
        features.append(folder_features)
        skipped += folder_skipped
    kid, kid_std = kernel_inception_distance(*features)
    return FolderComparison(
        folders=(str(folder1), str(folder2)), images=(len(features[0]), len(features[1])),
        fid=frechet_distance(*feature_statistics(features[0]), *feature_statistics(features[1])), kid=kid, kid_std=kid_std,
        skipped=tuple(skipped),
    )  # fmt: skip


def folder_images(folder: Path) -> list[Path]:
    """The image files of one side of `--fid`, at least 2 of them (checked before any network is loaded)."""
    if not Path(folder).is_dir():
        raise UsageError(f"{folder} is not a folder")
    paths = find_images(Path(folder))
    if not paths and any(path.is_file() for path in Path(folder).rglob("*")):
        raise GantransError(f"{folder}: no images (looked for {' '.join(IMAGE_EXTENSIONS)}); FID and KID need at least 2")
    _check_count(str(folder), len(paths), len(paths), [])
    return paths


def evaluation_files(data: Path, domains: Sequence[str], split: str = "test", limit: int | None = None) -> dict[str, list[Path]]:
    """The image files `evaluate_model` uses per domain; at least 2 in each (checked before any
    network is loaded or anything translated)."""
    files = {domain: paths[:limit] for domain, paths in discover_domains(data, domains, split).items()}
    for domain, paths in files.items():
        _check_count(_domain_place(domain, paths), len(paths), len(paths), [])
    return files


def _check_count(where: str, readable: int, found: int, skipped: Sequence[str]) -> None:
    """FID and KID need two images a side: a clear error naming the place, the count and the first unreadable file."""
    if readable >= 2:
        return
    if readable < found:
        reason = f"; {skipped[0]}" if skipped else ""
        raise GantransError(f"{where}: only {readable} of its {found} image files can be read{reason}; FID and KID need at least 2")
    raise GantransError(f"{where}: {readable} image{'' if readable == 1 else 's'}, but FID and KID need at least 2")


def _domain_place(domain: str, paths: Sequence[Path]) -> str:
    """A domain and the folder that holds all its images, for messages."""
    return f"domain {domain!r} ({os.path.commonpath(paths) if len(paths) > 1 else paths[0].parent})"


@dataclass(frozen=True)
class DirectionReport:
    """How well a model translates `source` images into `target`, and what the lectures warn about."""

    source: str
    target: str
    images: int
    fid: float  # translated images vs. real images of the target domain
    kid: float
    kid_std: float
    content_lpips: float  # mean LPIPS(x, G(x)): how much of the input changed (lower keeps more)
    diversity: float  # mean LPIPS between pairs of translations
    real_diversity: float  # the same between real images of the target domain
    copied: float | None  # share of translations closer to a training image than any held-out real image is (test split only)
    cycle_l1: float | None  # mean |x - F(G(x))| in [0, 1] pixel units; None without an inverse
    cycle_psnr: float | None
    hidden_information: float | None  # growth of the cycle error per unit of invisible noise added to G(x) (Chu et al. 2017)
    hidden_information_jpeg: float | None  # the same for JPEG re-encoding of G(x) (quality 95)
    reference_l1: float | None  # against paired ground truth (--reference-dir), [0, 1] pixel units
    reference_psnr: float | None
    reference_ssim: float | None
    domain_accuracy: float | None  # share of translations a domain classifier assigns to the target (--classifier; StarGAN's own)
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class ModelReport:
    model: str
    data: str
    split: str  # "test", or "train" when the data has no test split
    directions: tuple[DirectionReport, ...]
    skipped: tuple[str, ...]  # unreadable files, named

    def to_dict(self) -> dict:
        """Plain JSON values; a non-finite number (the PSNR of identical images) becomes null, as strict JSON has no Infinity."""
        def finite(value: object) -> object:
            return None if isinstance(value, float) and not math.isfinite(value) else value

        directions = [{name: finite(value) for name, value in vars(direction).items()} for direction in self.directions]
        return {"model": self.model, "data": self.data, "split": self.split, "directions": directions}


# Thresholds of the warnings (heuristics, documented in the README).
COLLAPSE_RATIO = 0.5  # translations less than half as diverse as real images
COPIED_SHARE = 0.1  # more than a tenth of translations closer to training images than held-out images come
HIDDEN_GAIN = 5.0  # the cycle error grows by more than 5x the size of an invisible change to G(x)


@dataclass(frozen=True)
class DomainClassifier:
    """A StarGAN discriminator's domain head: does a translation land in its target domain?"""

    network: nn.Module  # a ClassifyingDiscriminator
    domains: tuple[str, ...]
    image_size: int  # what it was trained on; translations are resized to it

    def accuracy(self, images: Sequence[Image.Image], target: str) -> float | None:
        """Share of `images` classified as `target` (None when the classifier does not know it)."""
        if target not in self.domains:
            return None
        device = next(self.network.parameters()).device
        batch = torch.cat([_tensor(image.resize((self.image_size, self.image_size), Image.BICUBIC)) for image in images]).to(device)
        with torch.inference_mode():
            predicted = self.network(batch)[1].argmax(1)
        return float((predicted == self.domains.index(target)).double().mean())


def load_domain_classifier(run: Path, device: torch.device | str = "cpu") -> DomainClassifier:
    """The domain classifier of a StarGAN run (from its training state, which holds the discriminator)."""
    state = Path(run) / STATE_FILE if Path(run).is_dir() else Path(run)
    info = read_model_info(state)
    if info.config.method != "stargan":
        raise UsageError(f"{run}: a domain classifier comes from a stargan run, whose discriminator classifies domains; this is {info.method}")
    method = build_method(info.config, info.domains, training=True)
    load_discriminators(state, method)
    return DomainClassifier(method.discriminators["discriminator"].eval().to(device), info.domains, info.image_size)


@dataclass(frozen=True)
class Judges:
    """The networks that score translations."""

    inception: FIDInceptionV3
    lpips: LPIPS
    classifier: DomainClassifier | None = None


def evaluate_model(
    translator: Translator, data: Path, judges: Judges, split: str = "test", limit: int | None = None, reference_dir: Path | None = None,
    batch_size: int = 32,
) -> ModelReport:  # fmt: skip
    """Translate the evaluation images of every direction the model has and measure the results."""
    inception = judges.inception
    if reference_dir is not None and not Path(reference_dir).is_dir():
        raise UsageError(f"--reference-dir {reference_dir} is not a folder (expected REF/<target domain>/<input file names>)")
    has_split = any((Path(data) / name).is_dir() for name in (split, f"{split}A", f"{split}B"))
    files = evaluation_files(data, translator.domains, split, limit)
    skipped: list[str] = []
    images = {}
    for domain, paths in files.items():  # all decoded and counted before anything is translated or measured
        unreadable: list[str] = []
        images[domain] = list(_readable(paths, unreadable))
        _check_count(_domain_place(domain, paths), len(images[domain]), len(paths), unreadable)
        skipped += unreadable
    directions = []
    for target in translator.targets:
        real_features, real_skipped = file_features(files[target], inception, batch_size)
        skipped += real_skipped
        train_features = None
        if has_split and split != "train":  # memorisation is judged against the training images
            train_files = discover_domains(data, (target,), "train")[target][:limit]
            train_features, train_skipped = file_features(train_files, inception, batch_size)
            skipped += train_skipped
        # Computed once per target, not once per source translating into it.
        real = Measured(_pairwise_lpips(judges.lpips, [image for _, image in images[target]]), real_features)
        for source in (domain for domain in translator.domains if domain != target and images[domain]):
            references = _references(reference_dir, target, images[source]) if reference_dir else None
            directions.append(_direction(translator, images[source], source, target, real, train_features, references, judges, batch_size))
    unique = tuple(dict.fromkeys(skipped))  # a target's unreadable files were met twice: decoded, then measured
    return ModelReport(str(translator.info.path.parent), str(data), split if has_split else "train", tuple(directions), unique)


@dataclass(frozen=True)
class Measured:
    """What the real images of a target domain score: their pairwise LPIPS diversity and Inception features."""

    diversity: float
    features: Tensor


def _direction(
    translator: Translator, sources: list[tuple[Path, Image.Image]], source: str, target: str, real: Measured, train_features: Tensor | None,
    references: list[Image.Image | None] | None, judges: Judges, batch_size: int,
) -> DirectionReport:  # fmt: skip
    inputs, lpips = [image for _, image in sources], judges.lpips
    translated, features, fid, kid, kid_std = _translate_and_score(translator, inputs, source, target, real.features, judges.inception, batch_size)
    copied = None
    if train_features is not None:
        copied = copy_fraction(nearest_distances(features, train_features), nearest_distances(real.features, train_features))
    cycle = _cycle_checks(translator, inputs, translated, source, target) if source in translator.targets else {}
    report = DirectionReport(
        source=source, target=target, images=len(inputs),
        fid=fid, kid=kid, kid_std=kid_std,
        content_lpips=_mean_lpips(lpips, zip(inputs, translated)), diversity=_pairwise_lpips(lpips, translated),
        real_diversity=real.diversity, copied=copied,
        cycle_l1=cycle.get("clean"), cycle_psnr=cycle.get("psnr"), hidden_information=cycle.get("noise"), hidden_information_jpeg=cycle.get("jpeg"),
        **_reference_scores(translated, references), domain_accuracy=judges.classifier.accuracy(translated, target) if judges.classifier else None,
        warnings=(),
    )  # fmt: skip
    return dataclasses.replace(report, warnings=_warnings(report))


def _translate_and_score(
    translator: Translator, inputs: list[Image.Image], source: str, target: str, real_features: Tensor, inception: FIDInceptionV3, batch_size: int
) -> tuple[list[Image.Image], Tensor, float, float, float]:
    """Translations of `inputs`, their Inception features, and their FID and KID (mean, std) against the real images."""
    translated = translator.translate_images(inputs, target, source)
    features = image_features((image_to_uint8(image) for image in translated), inception, batch_size)
    kid, kid_std = kernel_inception_distance(features, real_features)
    return translated, features, frechet_distance(*feature_statistics(features), *feature_statistics(real_features)), kid, kid_std


def _cycle_checks(translator: Translator, inputs: list[Image.Image], translated: list[Image.Image], source: str, target: str) -> dict[str, float]:
    """Cycle error of F(G(x)), and how much an invisible change of G(x) (Gaussian noise of 2 grey
    levels, or JPEG at quality 95) grows it, per unit of change. An honest inverse passes a small
    change on at about its own size; a model that hides x in imperceptible detail of G(x) amplifies
    it many times (Chu et al. 2017, "CycleGAN, a master of steganography")."""
    generator = torch.Generator().manual_seed(0)
    perturbed = {"noise": [_add_noise(image, 2.0, generator) for image in translated], "jpeg": [_jpeg(image, 95) for image in translated]}
    back = translator.translate_images(translated, source, target)
    clean = _mean_l1(inputs, back)
    checks = {"clean": clean, "psnr": psnr(_flat(back), _flat(inputs))}
    for name, images in perturbed.items():
        change = _mean_l1(images, translated)
        growth = _mean_l1(inputs, translator.translate_images(images, source, target)) - clean
        checks[name] = growth / max(change, 1e-8)
    return checks


def _warnings(report: DirectionReport) -> tuple[str, ...]:
    name, found = f"{report.source} → {report.target}", []
    if report.real_diversity > 0 and report.diversity < COLLAPSE_RATIO * report.real_diversity:
        found.append(f"{name}: translations are {report.diversity / report.real_diversity:.0%} as diverse as real {report.target} images (mode collapse?)")
    if report.copied is not None and report.copied > COPIED_SHARE:
        found.append(f"{name}: {report.copied:.0%} of translations are closer to a training image than any held-out image (memorised?)")
    if report.hidden_information is not None and max(report.hidden_information, report.hidden_information_jpeg or 0) > HIDDEN_GAIN:
        found.append(
            f"{name}: an invisible change of the translation grows the cycle error {report.hidden_information:.1f}x (noise), "
            f"{report.hidden_information_jpeg:.1f}x (JPEG) its size: is x hidden in the translation's fine detail?"
        )
    return tuple(found)


def _references(reference_dir: Path, target: str, sources: list[tuple[Path, Image.Image]]) -> list[Image.Image | None]:
    """The ground truth of each source image, <reference_dir>/<target>/<its file name, any image
    extension>; None where there is none."""
    folder = Path(reference_dir) / target
    if not folder.is_dir():
        return [None] * len(sources)  # no truth for this direction
    by_stem = {path.stem: path for path in find_images(folder)}
    return [load_rgb(by_stem[path.stem]) if path.stem in by_stem else None for path, _ in sources]


def _reference_scores(translated: list[Image.Image], references: list[Image.Image | None] | None) -> dict[str, float | None]:
    pairs = [(image, reference) for image, reference in zip(translated, references or []) if reference is not None and reference.size == image.size]
    if not pairs:
        return {"reference_l1": None, "reference_psnr": None, "reference_ssim": None}
    outputs, truths = zip(*pairs)
    return {
        "reference_l1": _mean_l1(outputs, truths),
        "reference_psnr": psnr(_flat(outputs), _flat(truths)),
        "reference_ssim": sum(ssim(_tensor(a), _tensor(b)) for a, b in pairs) / len(pairs),
    }


def _tensor(image: Image.Image) -> Tensor:
    return to_model_range(image_to_uint8(image))[None]


def _flat(images: Sequence[Image.Image]) -> Tensor:
    return torch.cat([_tensor(image).flatten() for image in images])


def _l1(image: Image.Image, other: Image.Image) -> float:
    """Mean absolute difference in [0, 1] pixel units."""
    return float((_tensor(image) - _tensor(other)).abs().mean()) / 2


def _mean_l1(images: Sequence[Image.Image], others: Sequence[Image.Image]) -> float:
    return sum(_l1(a, b) for a, b in zip(images, others)) / len(images)


def _add_noise(image: Image.Image, grey_levels: float, generator: torch.Generator) -> Image.Image:
    pixels = image_to_uint8(image).float()
    noisy = (pixels + grey_levels * torch.randn(pixels.shape, generator=generator)).round().clamp(0, 255).to(torch.uint8)
    return Image.fromarray(noisy.permute(1, 2, 0).numpy())


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return load_rgb(buffer.getvalue())


def _mean_lpips(lpips: LPIPS, pairs: Iterable[tuple[Image.Image, Image.Image]]) -> float:
    device = next(lpips.buffers()).device
    with torch.inference_mode():
        values = [float(lpips(_tensor(a).to(device), _tensor(b).to(device))) for a, b in pairs]
    return sum(values) / max(len(values), 1)


def _pairwise_lpips(lpips: LPIPS, images: Sequence[Image.Image], pairs: int = 50, side: int = 128) -> float:
    """Mean LPIPS over up to `pairs` random pairs of the images, each resized to side x side."""
    if len(images) < 2:
        return 0.0
    resized = [image.resize((side, side), Image.BICUBIC) for image in images]
    generator = torch.Generator().manual_seed(0)
    chosen = {tuple(sorted(torch.randperm(len(images), generator=generator)[:2].tolist())) for _ in range(pairs)}
    return _mean_lpips(lpips, ((resized[i], resized[j]) for i, j in sorted(chosen)))


# --- during training ------------------------------------------------------------------------------


class TrainingEvaluation:
    """FID and KID of every direction on a fixed set of held-out images, for `--eval-every` (the
    training loop decides what to keep: see `gantrans/training.py`)."""

    def __init__(self, run_dir: Path, data: Path, domains: Sequence[str], limit: int, inception: FIDInceptionV3, batch_size: int = 32) -> None:
        self.model_path = Path(run_dir) / MODEL_FILE  # what the scored generators are called in messages
        self.inception, self.batch_size = inception, batch_size
        self.files = {domain: paths[:limit] for domain, paths in held_out_files(data, domains).items()}
        skipped: list[str] = []
        self.images = {domain: [image for _, image in _readable(paths, skipped)] for domain, paths in self.files.items()}
        self.real = {domain: file_features(paths, inception, batch_size)[0] for domain, paths in self.files.items()}

    def __call__(self, method: Method, config: TrainConfig, step: int) -> dict[str, dict[str, float]]:
        """The scores per direction ("x->y" -> {"fid": ..., "kid": ...}) of the generators of
        `method` as they are now (the EMA copy's, when training keeps one)."""
        info = ModelInfo(self.model_path, config, method.domains, config.data.size, step, tuple(method.generators))
        translator = Translator(method, info, next(method.parameters()).device)
        was_training = method.training
        method.eval()
        scores = {}
        for target in translator.targets:
            for source in (domain for domain in method.domains if domain != target and self.images[domain]):
                _, _, fid, kid, _ = _translate_and_score(translator, self.images[source], source, target, self.real[target], self.inception, self.batch_size)
                scores[f"{source}->{target}"] = {"fid": fid, "kid": kid}
        method.train(was_training)
        return scores
