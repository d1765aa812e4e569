"""Image folders -> training batches.

Layouts: DATA/<domain>/** (any number of domains), DATA/train/<domain>/** with DATA/test/<domain>,
and the CycleGAN layout DATA/trainA, trainB, testA, testB.

Sampling is a pure function of (seed, sample number): every crop, flip and draw of a sample
comes from a generator seeded with its number, so results do not depend on the number of
worker processes and a resumed run sees exactly the batches an uninterrupted one would have.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset, IterableDataset

from gantrans.config import DataConfig
from gantrans.errors import GantransError
from gantrans.images import IMAGE_EXTENSIONS, ImageDecodeError, find_images, image_to_uint8, load_rgb, no_images_message
from gantrans.names import domain_name_problem

SAMPLE_IMAGES = 4  # images per domain in every sample grid


class DataError(GantransError):
    """Missing folders, empty domains, undecodable data sets."""


def discover_domains(root: Path | str, domains: Sequence[str] = (), split: str = "train") -> dict[str, list[Path]]:
    """Map each domain name to its image files for `split` ("train" or "test")."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist" if not root.exists() else f"{root} is not a folder")
    if (root / f"{split}A").is_dir() or (root / f"{split}B").is_dir():  # CycleGAN layout
        names = tuple(domains) or ("A", "B")
        if len(names) != 2:
            raise DataError(f"{root} has the {split}A/{split}B layout: --domains needs exactly 2 names, got {','.join(names)}")
        return {name: _domain_images(root / f"{split}{letter}", name) for name, letter in zip(names, "AB")}
    if (root / split).is_dir() and _subfolders(root / split):
        root = root / split
    present = _subfolders(root)
    names = tuple(domains) or tuple(present)
    if not names:
        loose = len([path for path in root.iterdir() if path.suffix.lower() in IMAGE_EXTENSIONS])
        found = f" (it holds {loose} images directly)" if loose else ""
        raise DataError(f"{root} has no domain folders{found}: expected {root}/<domain>/ for each domain, or trainA/trainB")
    missing = [name for name in names if name not in present]
    if missing:
        raise DataError(f"domain folder {root / missing[0]} not found; {root} has: {', '.join(present) or 'no sub-folders'}")
    for name in names:  # folder names become domain names, and those become parts of file names
        if problem := domain_name_problem(name):
            raise DataError(f"domain folder {root / name}: {problem}; rename the folder, or pick others with --domains")
    return {name: _domain_images(root / name, name) for name in names}


def held_out_files(root: Path | str, domains: Sequence[str] = ()) -> dict[str, list[Path]]:
    """Each domain's images of the test split when the data has one (test/, testA, testB), else
    the training images: what evaluations and sample grids show."""
    has_test = any((Path(root) / name).is_dir() for name in ("test", "testA", "testB"))
    return discover_domains(root, domains, "test" if has_test else "train")


def _subfolders(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.is_dir() and not path.name.startswith("."))


def _domain_images(folder: Path, name: str) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"domain {name!r}: folder {folder} not found")
    images = find_images(folder)
    if not images:
        raise DataError(f"domain {name!r}: {no_images_message(folder)}")
    return images


@dataclass(frozen=True)
class Sample:
    images: tuple[torch.Tensor, ...]  # uint8 [3, H, W], one per domain
    skipped: tuple[str, ...]  # files that failed to decode while making this sample


class UnpairedDataset(Dataset):
    """Sample n of the run -> one image of each domain, cropped and flipped.

    An epoch is max(|X|, |Y|) samples: the largest domain is walked in a fresh random order each
    epoch, the others are drawn at random (as in the CycleGAN paper's unaligned sampling).
    """

    def __init__(self, files: dict[str, list[Path]], config: DataConfig, seed: int, multiple: int = 4, min_side: int = 1) -> None:
        self.domains = tuple(files)
        self.files = [files[name] for name in self.domains]
        self.config = config
        self.seed = seed
        self.multiple = multiple  # side lengths the networks need when the preprocess does not crop
        # and the shortest side they take, as a multiple of `multiple` (a 1x1 image is enlarged to it)
        self.min_side = -(-max(min_side, multiple) // multiple) * multiple
        self.epoch_length = max(len(paths) for paths in self.files)
        self.cache_enabled = False
        self._cache: dict[tuple[int, int], np.ndarray] = {}
        self._permutations: dict[tuple[int, int], np.ndarray] = {}
        self._bad: set[tuple[int, int]] = set()

    def __len__(self) -> int:
        return self.epoch_length

    def enable_cache(self) -> None:
        """Keep decoded (resized, not yet cropped) images in memory: small data sets decode once."""
        self.cache_enabled = True

    def estimated_bytes(self) -> int:
        """Memory the cache would take, from the load size (exact for resize-crop, approximate otherwise)."""
        side = self.config.size if self.config.preprocess == "scale-width" else self.config.load_size
        return sum(len(paths) for paths in self.files) * side * side * 3

    def __getitem__(self, sample: int) -> Sample:
        images, skipped = [], []
        for domain in range(len(self.files)):
            index, rng = self.draw(sample, domain)
            array, failed = self.decoded(domain, index)
            skipped += failed
            top, left, height, width, flip = self.placement(array.shape, rng)
            part = array[top : top + height, left : left + width]
            images.append(image_to_uint8(part[:, ::-1] if flip else part))
        return Sample(tuple(images), tuple(skipped))

    def sample_batch(self, side: int, count: int = SAMPLE_IMAGES) -> tuple[torch.Tensor, ...]:
        """The fixed images of every sample grid: the first `count` readable images of each domain
        (sorted by path) of the test split, else of the training images; shorter side resized to
        `side`, centre-cropped square (no random crop or flip, so every grid shows the same inputs).
        uint8 [count, 3, side, side] per domain, the same count for each."""
        try:
            held_out = held_out_files(self.config.root, self.domains)
        except DataError:  # an incomplete test split: the training images still make a preview
            held_out = {}
        images = []
        for domain, training_files in zip(self.domains, self.files):
            # A domain without readable held-out images is shown from its training images.
            images.append(_first_readable(held_out.get(domain, []), side, count) or _first_readable(training_files, side, count))
        kept = min(len(chosen) for chosen in images)  # methods may pair rows across domains
        if kept == 0:
            raise DataError("no readable image for the sample grids in domain " + ", ".join(d for d, c in zip(self.domains, images) if not c))
        return tuple(torch.stack(chosen[:kept]) for chosen in images)

    def draw(self, sample: int, domain: int) -> tuple[int, np.random.Generator]:
        """The file of `domain` that `sample` uses, and the sample's generator for its crop and flip."""
        epoch, position = divmod(sample, self.epoch_length)
        rng = np.random.default_rng([self.seed, sample, domain])
        if len(self.files[domain]) == self.epoch_length:
            return int(self._permutation(domain, epoch)[position]), rng
        return int(rng.integers(len(self.files[domain]))), rng

    def placement(self, shape: tuple[int, ...], rng: np.random.Generator) -> tuple[int, int, int, int, bool]:
        """(top, left, height, width, flip) of the random crop of a decoded image of `shape`."""
        height, width = shape[0], shape[1]
        top = left = 0
        if self.config.preprocess in ("resize-crop", "crop", "scale-width-crop"):
            top = int(rng.integers(height - self.config.size + 1))
            left = int(rng.integers(width - self.config.size + 1))
            height = width = self.config.size
        flip = bool(self.config.flip and rng.random() < 0.5)
        return top, left, height, width, flip

    def _permutation(self, domain: int, epoch: int) -> np.ndarray:
        key = (domain, epoch)
        if key not in self._permutations:
            self._permutations = {k: v for k, v in self._permutations.items() if k[1] >= epoch - 1}
            rng = np.random.default_rng([self.seed, epoch, domain, 1])  # distinct stream from the samples'
            self._permutations[key] = rng.permutation(len(self.files[domain]))
        return self._permutations[key]

    def decoded(self, domain: int, index: int) -> tuple[np.ndarray, list[str]]:
        """The deterministic part of preprocessing; an undecodable file is replaced by the next one."""
        paths, failed = self.files[domain], []
        for attempt in range(len(paths)):
            key = (domain, (index + attempt) % len(paths))
            if key in self._bad:
                continue
            if key in self._cache:
                return self._cache[key], failed
            try:
                array = np.asarray(self._resize(load_rgb(paths[key[1]])))
            except ImageDecodeError as error:
                self._bad.add(key)
                failed.append(str(error))
                continue
            if self.cache_enabled:
                self._cache[key] = array
            return array, failed
        raise DataError(f"domain {self.domains[domain]!r}: none of its {len(paths)} images could be decoded")

    def _resize(self, image: Image.Image) -> Image.Image:
        config, (width, height) = self.config, image.size
        if config.preprocess == "resize-crop":
            return image.resize((config.load_size, config.load_size), Image.BICUBIC)
        if config.preprocess in ("scale-width", "scale-width-crop"):
            target = config.size if config.preprocess == "scale-width" else config.load_size
            new_height = max(1, round(height * target / width))
            if config.preprocess == "scale-width":  # no crop follows: make the height fit the networks
                new_height = max(self.min_side, round(new_height / self.multiple) * self.multiple)
            image = image.resize((target, new_height), Image.BICUBIC)
        elif config.preprocess == "none":
            multiple, shortest = self.multiple, self.min_side
            size = (max(shortest, round(width / multiple) * multiple), max(shortest, round(height / multiple) * multiple))
            image = image.resize(size, Image.BICUBIC) if size != image.size else image
        if config.preprocess in ("crop", "scale-width-crop") and min(image.size) < config.size:
            # Too small to crop from: enlarge so the shorter side equals the crop size.
            scale = config.size / min(image.size)
            image = image.resize((max(config.size, round(image.width * scale)), max(config.size, round(image.height * scale))), Image.BICUBIC)
        return image


def _first_readable(paths: Sequence[Path], side: int, count: int) -> list[torch.Tensor]:
    """Up to `count` of `paths`, in order, decoded as centre squares of `side` (unreadable ones skipped)."""
    chosen: list[torch.Tensor] = []
    for path in paths:
        if len(chosen) == count:
            break
        try:
            image = load_rgb(path)
        except ImageDecodeError:
            continue
        chosen.append(image_to_uint8(ImageOps.fit(image, (side, side), Image.BICUBIC)))
    return chosen


def collate(samples: Sequence[Sample]) -> tuple[tuple[torch.Tensor, ...], list[str]]:
    """Stack samples into one uint8 batch per domain; gather the skipped-file messages."""
    domains = len(samples[0].images)
    shapes = {tuple(sample.images[d].shape[1:]) for sample in samples for d in range(domains)}
    if len(shapes) > 1:
        sizes = ", ".join(sorted(f"{width}x{height}" for height, width in shapes))
        raise DataError(
            f"images of different sizes in one step ({sizes}): --preprocess scale-width and none keep each image's "
            "aspect ratio, and one step needs one size; use --preprocess scale-width-crop, resize-crop or crop"
        )  # fmt: skip
    batch = tuple(torch.stack([sample.images[d] for sample in samples]) for d in range(domains))
    return batch, [message for sample in samples for message in sample.skipped]


Batches = Iterator[tuple[tuple[torch.Tensor, ...], list[str]]]


def batch_samples(step: int, batch_size: int, rank: int = 0, ranks: int = 1) -> range:
    """The sample numbers of `step` that process `rank` of `ranks` trains on.

    The global batch of step k is samples k*B .. k*B+B-1 whatever the number of processes; each
    rank takes a contiguous B/ranks of them, so no sample is seen twice and the union is the
    batch a single process would have drawn.
    """
    local = batch_size // ranks
    first = step * batch_size + rank * local
    return range(first, first + local)


class _BatchStream(IterableDataset):
    """Batches of steps start .. stop-1 for one rank (see `batch_samples`).

    Worker w of W makes batches start+w, start+w+W, ...; the loader takes one batch from each
    worker in turn, so the step order is kept whatever the number of workers.
    """

    def __init__(self, dataset: UnpairedDataset, batch_size: int, start: int, stop: int, rank: int, ranks: int) -> None:
        self.dataset, self.batch_size, self.start, self.stop = dataset, batch_size, start, stop
        self.rank, self.ranks = rank, ranks

    def __iter__(self) -> Batches:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        for step in range(self.start + worker, self.stop, workers):
            yield collate([self.dataset[sample] for sample in batch_samples(step, self.batch_size, self.rank, self.ranks)])


def _ignore_sigint(worker_id: int) -> None:
    # Ctrl-C reaches every process of the terminal's group; the main process saves a checkpoint
    # and stops, so workers must not die first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def batches(
    dataset: UnpairedDataset, batch_size: int, start_step: int, stop_step: int, workers: int, pin_memory: bool, rank: int = 0, ranks: int = 1
) -> Batches:
    """uint8 batches (one tensor per domain) for steps start_step .. stop_step-1, with skipped-file messages."""
    stream = _BatchStream(dataset, batch_size, start_step, stop_step, rank, ranks)
    if workers == 0:
        return iter(stream)
    loader = DataLoader(
        stream, batch_size=None, num_workers=workers, pin_memory=pin_memory, worker_init_fn=_ignore_sigint, prefetch_factor=4
    )
    return iter(loader)


class DeviceImages:
    """The decoded data set as one uint8 tensor per domain on the training device.

    Each image is decoded and resized once; a batch is then one gather on the device, with the
    same crops and flips (drawn on the CPU from each sample's generator) as the decoding path,
    so both give identical batches. Needs images of one size per domain (any cropping
    --preprocess gives that); `build` returns None otherwise.
    """

    def __init__(self, dataset: UnpairedDataset, images: list[torch.Tensor], skipped: list[str]) -> None:
        self.dataset, self.images, self.skipped = dataset, images, skipped

    @classmethod
    def build(cls, dataset: UnpairedDataset, device: torch.device) -> DeviceImages | None:
        images, skipped = [], []
        for domain, paths in enumerate(dataset.files):
            arrays = []
            for index in range(len(paths)):
                array, failed = dataset.decoded(domain, index)  # an undecodable file stands for the next one
                skipped += failed
                arrays.append(array)
            if len({array.shape for array in arrays}) > 1:
                return None
            images.append(torch.from_numpy(np.stack(arrays)).to(device))  # [N, H, W, 3]
        return cls(dataset, images, skipped)

    def batch(self, samples: Sequence[int]) -> tuple[torch.Tensor, ...]:
        """uint8 NCHW images of `samples`, one tensor per domain."""
        batch = []
        for domain, images in enumerate(self.images):
            plan = []
            for sample in samples:
                index, rng = self.dataset.draw(sample, domain)
                top, left, height, width, flip = self.dataset.placement(tuple(images.shape[1:]), rng)
                plan.append((index, top, left, int(flip)))
            # One small copy, queued without waiting for the device (no host sync in the step).
            index, top, left, flip = torch.tensor(plan).to(images.device, non_blocking=True).unbind(1)
            rows = top[:, None] + torch.arange(height, device=images.device)
            columns = left[:, None] + torch.arange(width, device=images.device)
            columns = torch.where(flip[:, None].bool(), columns.flip(1), columns)
            crops = images[index[:, None, None], rows[:, :, None], columns[:, None, :]]  # [B, height, width, 3]
            batch.append(crops.permute(0, 3, 1, 2).contiguous())
        return tuple(batch)

    def batches(self, batch_size: int, start_step: int, stop_step: int, rank: int = 0, ranks: int = 1) -> Batches:
        """As `batches`, from the device copy (no files are skipped any more: that happened in `build`)."""
        for step in range(start_step, stop_step):
            yield self.batch(batch_samples(step, batch_size, rank, ranks)), []


def default_workers(dataset: UnpairedDataset, config: DataConfig) -> int:
    """0 (decode in the main process, once, into memory) when the data set fits the cache budget."""
    if config.workers is not None:
        return config.workers
    if dataset.estimated_bytes() <= config.cache_mb * 2**20:
        return 0
    return min(8, os.cpu_count() or 1)
