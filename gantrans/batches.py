"""Training samples -> batches for each step and process: decoded by worker processes, in the
main process, or gathered from a copy of the data set on the training device.

The global batch of a step is the same whatever the number of processes or workers (see
`batch_samples`), so a run is reproducible and a resumed run sees the batches it would have seen.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from gantrans.config import DataConfig
from gantrans.data import Sample, UnpairedDataset
from gantrans.errors import DataError, UsageError


def collate(samples: Sequence[Sample]) -> tuple[tuple[torch.Tensor, ...], list[str]]:
    """Stack samples into one uint8 batch per domain; gather the skipped-file messages."""
    domains = len(samples[0].images)
    shapes = {tuple(sample.images[d].shape[1:]) for sample in samples for d in range(domains)}
    if len(shapes) > 1:
        sizes = ", ".join(sorted(f"{width}x{height}" for height, width in shapes))
        raise DataError(
            f"images of different sizes in one step ({sizes}): --preprocess scale-width and none keep each image's "
            "aspect ratio, and one step needs one size; use --preprocess scale-width-crop, resize-crop or crop"
        )
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
    dataset: UnpairedDataset,
    batch_size: int,
    start_step: int,
    stop_step: int,
    workers: int,
    pin_memory: bool,
    rank: int = 0,
    ranks: int = 1,
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


@dataclass(frozen=True)
class TrainingData:
    """A run's data set and where its samples are made: decoded once onto the training device
    (`device_images`, cropped there), decoded once into memory (small data), or decoded by
    `workers` processes."""

    dataset: UnpairedDataset
    workers: int
    device_images: DeviceImages | None

    @classmethod
    def prepare(cls, dataset: UnpairedDataset, config: DataConfig, device: torch.device) -> TrainingData:
        """Where `dataset`'s samples are made for training on `device`, as `config` asks or, by
        default, on a GPU when the decoded data fits the cache budget, else in memory or by workers."""
        fits = dataset.estimated_bytes() <= config.cache_mb * 2**20
        on_device = config.on_device if config.on_device is not None else device.type == "cuda" and fits
        if on_device:
            device_images = DeviceImages.build(dataset, device)
            if device_images is not None:
                return cls(dataset, 0, device_images)
            if config.on_device:
                raise UsageError(
                    "--on-device needs images of one size per domain: use a cropping --preprocess (resize-crop, crop, scale-width-crop)"
                )
        workers = default_workers(dataset, config)
        if workers == 0 and fits:
            dataset.enable_cache()
        return cls(dataset, workers, None)

    @property
    def cached(self) -> bool:
        """Whether decoded images are kept (in memory or on the device), so each file is decoded once."""
        return self.dataset.cache_enabled or self.device_images is not None

    @property
    def skipped(self) -> list[str]:
        """The messages of files skipped while decoding the data set onto the device (none otherwise, yet)."""
        return self.device_images.skipped if self.device_images is not None else []

    def stream(self, batch_size: int, start_step: int, stop_step: int, pin_memory: bool, rank: int = 0, ranks: int = 1) -> Batches:
        """uint8 batches for steps start_step .. stop_step-1 (see `batches`)."""
        if self.device_images is not None:
            return self.device_images.batches(batch_size, start_step, stop_step, rank, ranks)
        return batches(self.dataset, batch_size, start_step, stop_step, self.workers, pin_memory, rank, ranks)
