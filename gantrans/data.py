"""Image folders -> training batches.

Layouts: DATA/<domain>/** (any number of domains), DATA/train/<domain>/** with DATA/test/<domain>,
and the CycleGAN layout DATA/trainA, trainB, testA, testB. Paired data (pix2pix): two such domain
folders whose files match by name, or the reference pix2pix's side-by-side A|B images in
DATA/train/ (or DATA/ itself); the two halves of a pair are resized, cropped and flipped alike.

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
from gantrans.images import IMAGE_EXTENSIONS, ImageDecodeError, find_images, image_to_uint8, is_image_path, load_rgb, no_images_message
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


def training_files(config: DataConfig) -> dict[str, list[Path]]:
    """The training images of each domain: `discover_domains`'s, or for a paired layout the pairs of
    `discover_pairs` (pair i is file i of both domains)."""
    if config.paired == "none":
        return discover_domains(config.root, config.domains)
    return discover_pairs(config.root, config.paired, config.domains)


def discover_pairs(root: Path | str, layout: str, domains: Sequence[str] = (), split: str = "train") -> dict[str, list[Path]]:
    """{input domain: files, target domain: files} of `split`, pair i being file i of both.

    folders: two domain folders as `discover_domains` finds them, matched by file name; a file
    without a partner is an error. aligned, aligned-btoa: the reference's A|B images, each file
    standing for both of its halves; domains named A, B (B, A for aligned-btoa: input first).
    """
    if layout == "folders":
        return match_pairs(discover_domains(root, domains, split))
    names = tuple(domains) or (("B", "A") if layout == "aligned-btoa" else ("A", "B"))
    if len(names) != 2:
        raise DataError(f"--paired {layout}: --domains names the input and the target half, 2 names, got {','.join(names)}")
    paths = _aligned_images(Path(root), split)
    return {names[0]: paths, names[1]: paths}


def held_out_pairs(root: Path | str, layout: str, domains: Sequence[str] = ()) -> dict[str, list[Path]]:
    """The pairs of the test split (aligned: test/, else val/), else the training pairs; files of an
    incomplete test split without a partner are left out (they only make sample grids)."""
    try:
        if layout == "folders":
            return match_pairs(held_out_files(root, domains), strict=False)
        split = next((name for name in ("test", "val") if (Path(root) / name).is_dir()), "train")
        return discover_pairs(root, layout, domains, split)
    except DataError:  # an empty or unmatched test split: the training pairs still make a preview
        return discover_pairs(root, layout, domains)


def match_pairs(files: dict[str, list[Path]], strict: bool = True) -> dict[str, list[Path]]:
    """Two domains' files paired by file name without extension (DATA/A/x.png <-> DATA/B/x.jpg),
    sorted by it. `strict`: a file without a partner is an error naming it."""
    if len(files) != 2:
        raise DataError(f"paired data has 2 domains, an input and a target; found {len(files)} ({', '.join(files)}): pick them with --domains")
    (source, source_files), (target, target_files) = files.items()
    source_names, target_names = _by_name(source, source_files), _by_name(target, target_files)
    unpaired = [(path, target) for name, path in source_names.items() if name not in target_names]
    unpaired += [(path, source) for name, path in target_names.items() if name not in source_names]
    if unpaired and strict:
        path, other = unpaired[0]
        total = len(source_files) + len(target_files)
        raise DataError(
            f"{path} has no partner in domain {other!r} (no file named {path.stem}.* there; pairs are matched by file name): "
            f"{len(unpaired)} of the {total} files have none"
        )  # fmt: skip
    names = sorted(set(source_names) & set(target_names))
    if not names:
        raise DataError(f"no file of domain {source!r} has a partner of the same name in domain {target!r}")
    return {source: [source_names[name] for name in names], target: [target_names[name] for name in names]}


def _by_name(domain: str, paths: Sequence[Path]) -> dict[str, Path]:
    """File name without extension -> path; two files of one name would make pairs ambiguous."""
    named: dict[str, Path] = {}
    for path in paths:
        if path.stem in named:
            raise DataError(f"domain {domain!r} has two files named {path.stem}: {named[path.stem]} and {path}; pairs are matched by name")
        named[path.stem] = path
    return named


def _aligned_images(root: Path, split: str) -> list[Path]:
    """The A|B images of `split`: DATA/<split>/**, or (for training) the images directly in DATA."""
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist" if not root.exists() else f"{root} is not a folder")
    folder = root / split
    if folder.is_dir():
        images = find_images(folder)
    elif split == "train":
        folder, images = root, sorted(path for path in root.iterdir() if path.is_file() and is_image_path(path))
    else:
        raise DataError(f"{root} has no {split}/ folder of A|B images")
    if not images:
        raise DataError(f"paired A|B images: {no_images_message(folder)}")
    return images


def load_pair(paths: tuple[Path, Path], layout: str) -> tuple[Image.Image, Image.Image]:
    """The (input, target) images of one pair, of one size. An aligned file is split down the middle
    (an odd last column dropped); a target of another size than its input is resized to the input's,
    so the two stay aligned through every crop."""
    if layout == "folders":
        source, target = load_rgb(paths[0]), load_rgb(paths[1])
        return source, target if target.size == source.size else target.resize(source.size, Image.BICUBIC)
    image = load_rgb(paths[0])
    half = image.width // 2
    if half == 0:
        raise ImageDecodeError(f"{paths[0]}: {image.width}x{image.height} pixels is too narrow to split into A|B halves")
    left, right = image.crop((0, 0, half, image.height)), image.crop((half, 0, 2 * half, image.height))
    return (right, left) if layout == "aligned-btoa" else (left, right)


class PairedDataset(UnpairedDataset):
    """Sample n -> one (input, target) pair (pix2pix), both halves cropped and flipped alike.

    `files` holds pair i at position i of both domains (the same A|B file twice for the aligned
    layouts). An epoch walks the pairs in a fresh random order. The crop and flip of a sample are
    drawn once and applied to both halves; `draw` gives every domain the same generator, so the
    on-device path (`DeviceImages`, which draws per domain) crops and flips both alike too.
    """

    def __init__(self, files: dict[str, list[Path]], config: DataConfig, seed: int, multiple: int = 4, min_side: int = 1) -> None:
        super().__init__(files, config, seed, multiple, min_side)
        if config.paired == "none" or len(self.files) != 2 or len(self.files[0]) != len(self.files[1]):
            raise ValueError("paired data: a paired layout, and two domains of equally many files, pair i at position i")
        self._pairs: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._bad_pairs: set[int] = set()

    def __getitem__(self, sample: int) -> Sample:
        index, rng = self.draw(sample, 0)
        pair, skipped = self.decoded_pair(index)
        top, left, height, width, flip = self.placement(pair[0].shape, rng)  # drawn once, for both halves
        crops = [array[top : top + height, left : left + width] for array in pair]
        return Sample(tuple(image_to_uint8(crop[:, ::-1] if flip else crop) for crop in crops), tuple(skipped))

    def draw(self, sample: int, domain: int) -> tuple[int, np.random.Generator]:
        """The pair of `sample` and its generator, the same for both domains (`domain` is ignored)."""
        epoch, position = divmod(sample, self.epoch_length)
        return int(self._permutation(0, epoch)[position]), np.random.default_rng([self.seed, sample])

    def decoded(self, domain: int, index: int) -> tuple[np.ndarray, list[str]]:
        pair, failed = self.decoded_pair(index)
        return pair[domain], failed

    def decoded_pair(self, index: int) -> tuple[tuple[np.ndarray, np.ndarray], list[str]]:
        """Both halves of pair `index`, resized alike; an undecodable pair is replaced by the next one."""
        count, failed = len(self.files[0]), []
        for attempt in range(count):
            key = (index + attempt) % count
            if key in self._bad_pairs:
                continue
            if key in self._pairs:
                return self._pairs[key], failed
            try:
                images = load_pair((self.files[0][key], self.files[1][key]), self.config.paired)
            except ImageDecodeError as error:
                self._bad_pairs.add(key)
                failed.append(str(error))
                continue
            if not self.cache_enabled:  # keep the last pair only: its two halves are asked for in turn
                self._pairs = {}
            self._pairs[key] = (np.asarray(self._resize(images[0])), np.asarray(self._resize(images[1])))
            return self._pairs[key], failed
        raise DataError(f"none of the {count} pairs of {', '.join(self.domains)} could be decoded")

    def sample_batch(self, side: int, count: int = SAMPLE_IMAGES) -> tuple[torch.Tensor, ...]:
        """The fixed pairs of every sample grid: the first `count` readable pairs of the test split,
        else of the training pairs, both halves resized and centre-cropped to `side` alike."""
        held_out = held_out_pairs(self.config.root, self.config.paired, self.domains)
        chosen = self._first_readable_pairs(list(zip(*held_out.values())), side, count)
        chosen = chosen or self._first_readable_pairs(list(zip(*self.files)), side, count)
        if not chosen:
            raise DataError(f"no readable pair of {', '.join(self.domains)} for the sample grids")
        return tuple(torch.stack([pair[half] for pair in chosen]) for half in (0, 1))

    def _first_readable_pairs(self, pairs: Sequence[tuple[Path, ...]], side: int, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        chosen = []
        for paths in pairs:
            if len(chosen) == count:
                break
            try:
                images = load_pair((paths[0], paths[1]), self.config.paired)
            except ImageDecodeError:
                continue
            source, target = (image_to_uint8(ImageOps.fit(image, (side, side), Image.BICUBIC)) for image in images)
            chosen.append((source, target))
        return chosen


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
        arrays: list[list[np.ndarray]] = [[] for _ in dataset.files]
        skipped: list[str] = []
        # Image i of every domain in turn: a pair's two halves are decoded together (PairedDataset).
        for index in range(max(len(paths) for paths in dataset.files)):
            for domain, paths in enumerate(dataset.files):
                if index < len(paths):
                    array, failed = dataset.decoded(domain, index)  # an undecodable file stands for the next one
                    skipped += failed
                    arrays[domain].append(array)
        if any(len({array.shape for array in domain_arrays}) > 1 for domain_arrays in arrays):
            return None
        images = [torch.from_numpy(np.stack(domain_arrays)).to(device) for domain_arrays in arrays]  # [N, H, W, 3] each
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
