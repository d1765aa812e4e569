"""Image files -> training samples: decoded, resized, cropped and flipped.

Sampling is a pure function of (seed, sample number): every crop, flip and draw of a sample
comes from a generator seeded with its number, so results do not depend on the number of
worker processes and a resumed run sees exactly the batches an uninterrupted one would have.
Paired data (pix2pix): the two halves of a pair are resized, cropped and flipped alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset

from gantrans.config import DataConfig
from gantrans.errors import DataError
from gantrans.folders import held_out_files, held_out_pairs
from gantrans.images import ImageDecodeError, image_to_uint8, load_rgb

SAMPLE_IMAGES = 4  # images per domain in every sample grid


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
            raise DataError(
                "no readable image for the sample grids in domain " + ", ".join(d for d, c in zip(self.domains, images) if not c)
            )
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
            image = image.resize(
                (max(config.size, round(image.width * scale)), max(config.size, round(image.height * scale))), Image.BICUBIC
            )
        return image


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
