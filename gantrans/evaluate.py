"""The reports `gantrans eval` prints (a model's directions, or two folders compared), and the
FID/KID of `--eval-every` during training.

FID and KID follow the standard convention (see `gantrans/fid.py` and `gantrans/inception.py`);
the other measurements are in `gantrans/probes.py`, the metrics themselves (pure functions) in
`gantrans/metrics.py`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor, nn

from gantrans.checkpoint import MODEL_FILE, STATE_FILE, ModelInfo, build_method, read_model_info
from gantrans.config import TrainConfig
from gantrans.errors import GantransError, UsageError
from gantrans.features import LPIPS
from gantrans.fid import file_features, image_features, readable
from gantrans.folders import discover_domains, held_out_files
from gantrans.images import IMAGE_EXTENSIONS, find_images, image_to_uint8
from gantrans.inception import FIDInceptionV3
from gantrans.methods import Method
from gantrans.metrics import copy_fraction, feature_statistics, frechet_distance, kernel_inception_distance, nearest_distances
from gantrans.probes import cycle_checks, mean_lpips, pairwise_lpips, pixels, reference_images, reference_scores
from gantrans.training_state import load_discriminators
from gantrans.translate import Translator


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
        folders=(str(folder1), str(folder2)),
        images=(len(features[0]), len(features[1])),
        fid=frechet_distance(*feature_statistics(features[0]), *feature_statistics(features[1])),
        kid=kid,
        kid_std=kid_std,
        skipped=tuple(skipped),
    )


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


def _check_count(where: str, decodable: int, found: int, skipped: Sequence[str]) -> None:
    """FID and KID need two images a side: a clear error naming the place, the count and the first unreadable file."""
    if decodable >= 2:
        return
    if decodable < found:
        reason = f"; {skipped[0]}" if skipped else ""
        raise GantransError(f"{where}: only {decodable} of its {found} image files can be read{reason}; FID and KID need at least 2")
    raise GantransError(f"{where}: {decodable} image{'' if decodable == 1 else 's'}, but FID and KID need at least 2")


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
        batch = torch.cat([pixels(image.resize((self.image_size, self.image_size), Image.BICUBIC)) for image in images]).to(device)
        with torch.inference_mode():
            predicted = self.network(batch)[1].argmax(1)
        return float((predicted == self.domains.index(target)).double().mean())


def load_domain_classifier(run: Path, device: torch.device | str = "cpu") -> DomainClassifier:
    """The domain classifier of a StarGAN run (from its training state, which holds the discriminator)."""
    state = Path(run) / STATE_FILE if Path(run).is_dir() else Path(run)
    info = read_model_info(state)
    if info.config.method != "stargan":
        raise UsageError(
            f"{run}: a domain classifier comes from a stargan run, whose discriminator classifies domains; this is {info.method}"
        )
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
    translator: Translator,
    data: Path,
    judges: Judges,
    split: str = "test",
    limit: int | None = None,
    reference_dir: Path | None = None,
    batch_size: int = 32,
) -> ModelReport:
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
        images[domain] = list(readable(paths, unreadable))
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
        real = Measured(pairwise_lpips(judges.lpips, [image for _, image in images[target]]), real_features)
        for source in (domain for domain in translator.domains if domain != target and images[domain]):
            references = reference_images(reference_dir, target, images[source]) if reference_dir else None
            directions.append(_direction(translator, images[source], source, target, real, train_features, references, judges, batch_size))
    unique = tuple(dict.fromkeys(skipped))  # a target's unreadable files were met twice: decoded, then measured
    return ModelReport(str(translator.info.path.parent), str(data), split if has_split else "train", tuple(directions), unique)


@dataclass(frozen=True)
class Measured:
    """What the real images of a target domain score: their pairwise LPIPS diversity and Inception features."""

    diversity: float
    features: Tensor


def _direction(
    translator: Translator,
    sources: list[tuple[Path, Image.Image]],
    source: str,
    target: str,
    real: Measured,
    train_features: Tensor | None,
    references: list[Image.Image | None] | None,
    judges: Judges,
    batch_size: int,
) -> DirectionReport:
    inputs, lpips = [image for _, image in sources], judges.lpips
    translated, features, fid, kid, kid_std = _translate_and_score(
        translator, inputs, source, target, real.features, judges.inception, batch_size
    )
    copied = None
    if train_features is not None:
        copied = copy_fraction(nearest_distances(features, train_features), nearest_distances(real.features, train_features))
    cycle = cycle_checks(translator, inputs, translated, source, target) if source in translator.targets else {}
    report = DirectionReport(
        source=source,
        target=target,
        images=len(inputs),
        fid=fid,
        kid=kid,
        kid_std=kid_std,
        content_lpips=mean_lpips(lpips, zip(inputs, translated)),
        diversity=pairwise_lpips(lpips, translated),
        real_diversity=real.diversity,
        copied=copied,
        cycle_l1=cycle.get("clean"),
        cycle_psnr=cycle.get("psnr"),
        hidden_information=cycle.get("noise"),
        hidden_information_jpeg=cycle.get("jpeg"),
        **reference_scores(translated, references),
        domain_accuracy=judges.classifier.accuracy(translated, target) if judges.classifier else None,
        warnings=(),
    )
    return dataclasses.replace(report, warnings=_warnings(report))


def _translate_and_score(
    translator: Translator,
    inputs: list[Image.Image],
    source: str,
    target: str,
    real_features: Tensor,
    inception: FIDInceptionV3,
    batch_size: int,
) -> tuple[list[Image.Image], Tensor, float, float, float]:
    """Translations of `inputs`, their Inception features, and their FID and KID (mean, std) against the real images."""
    translated = translator.translate_images(inputs, target, source)
    features = image_features((image_to_uint8(image) for image in translated), inception, batch_size)
    kid, kid_std = kernel_inception_distance(features, real_features)
    return translated, features, frechet_distance(*feature_statistics(features), *feature_statistics(real_features)), kid, kid_std


def _warnings(report: DirectionReport) -> tuple[str, ...]:
    name, found = f"{report.source} → {report.target}", []
    if report.real_diversity > 0 and report.diversity < COLLAPSE_RATIO * report.real_diversity:
        found.append(
            f"{name}: translations are {report.diversity / report.real_diversity:.0%} as diverse as real {report.target} images (mode collapse?)"
        )
    if report.copied is not None and report.copied > COPIED_SHARE:
        found.append(f"{name}: {report.copied:.0%} of translations are closer to a training image than any held-out image (memorised?)")
    if report.hidden_information is not None and max(report.hidden_information, report.hidden_information_jpeg or 0) > HIDDEN_GAIN:
        found.append(
            f"{name}: an invisible change of the translation grows the cycle error {report.hidden_information:.1f}x (noise), "
            f"{report.hidden_information_jpeg:.1f}x (JPEG) its size: is x hidden in the translation's fine detail?"
        )
    return tuple(found)


# --- during training ------------------------------------------------------------------------------


class TrainingEvaluation:
    """FID and KID of every direction on a fixed set of held-out images, for `--eval-every` (the
    training loop decides what to keep: see `gantrans/training.py`)."""

    def __init__(
        self, run_dir: Path, data: Path, domains: Sequence[str], limit: int, inception: FIDInceptionV3, batch_size: int = 32
    ) -> None:
        self.model_path = Path(run_dir) / MODEL_FILE  # what the scored generators are called in messages
        self.inception, self.batch_size = inception, batch_size
        self.files = {domain: paths[:limit] for domain, paths in held_out_files(data, domains).items()}
        skipped: list[str] = []
        self.images = {domain: [image for _, image in readable(paths, skipped)] for domain, paths in self.files.items()}
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
                _, _, fid, kid, _ = _translate_and_score(
                    translator, self.images[source], source, target, self.real[target], self.inception, self.batch_size
                )
                scores[f"{source}->{target}"] = {"fid": fid, "kid": kid}
        method.train(was_training)
        return scores
