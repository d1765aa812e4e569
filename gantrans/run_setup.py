"""Everything a training run sets up before its first step: the checked config and files, the
method on its device, the data, the run folder (checked and locked), optimizers, the generators'
average, the restored state of a resumed run, and what rank 0 writes and evaluates. `Run` holds it
for the loop in `gantrans/training.py`."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from gantrans import checkpoint, inception
from gantrans.batches import TrainingData
from gantrans.config import TrainConfig
from gantrans.data import PairedDataset, UnpairedDataset
from gantrans.device import uses_bf16
from gantrans.distributed import World
from gantrans.errors import UsageError
from gantrans.evaluate import TrainingEvaluation
from gantrans.folders import training_files
from gantrans.images import to_model_range
from gantrans.methods import METHODS, Method
from gantrans.presets import default_run_dir
from gantrans.run_folder import check_run_dir, truncate_log
from gantrans.step import GeneratorEMA, compile_networks, make_optimizer
from gantrans.storage import BackgroundWriter, exclusive_folder, remove_stale_temporaries
from gantrans.training_state import load_training_state

Scores = dict[str, dict[str, float]]  # direction ("x->y") -> {"fid": ..., "kid": ...}
Evaluation = Callable[[Method, TrainConfig, int], Scores]  # (translation model, config, step) -> scores


@dataclass
class Run:
    """What every step of one run works with (set up once by `set_up_run`)."""

    config: TrainConfig
    run_dir: Path
    method: Method
    optimizers: dict[str, torch.optim.Optimizer]
    world: World
    device: torch.device
    bf16: bool
    start: int  # the first step (> 0 when resuming)
    total: int  # steps of the whole run
    decay_start: int  # the step from which the learning rate decays
    domain_sizes: dict[str, int]  # images per domain, saved with each checkpoint (a resume checks them)
    evaluation: Evaluation | None  # --eval-every's FID/KID, on rank 0
    ema: GeneratorEMA | None  # the generators' moving average (--ema > 0)
    sample_batch: tuple[Tensor, ...]  # the fixed inputs of every sample grid (rank 0; empty elsewhere)
    writer: BackgroundWriter = dataclasses.field(default_factory=BackgroundWriter)  # checkpoints are written while training goes on

    def translation_model(self) -> Method:
        """What translates, and so what samples, evaluations and model files show: the EMA copy
        when there is one, else the live method."""
        return self.ema.method if self.ema is not None else self.method

    def average_buffers(self) -> None:
        """Batch norm's running statistics averaged over the processes, as the saved model will have them."""
        self.world.average_buffers(self.method)
        if self.ema is not None:
            self.world.average_buffers(self.ema.method)


def check_batch_split(batch_size: int, processes: int) -> None:
    if batch_size % processes:
        raise UsageError(f"--batch-size {batch_size} is the batch of all {processes} processes together: make it a multiple of {processes}")


def method_files(config: TrainConfig) -> dict[str, list[Path]]:
    """Each domain's training images: unpaired folders, or pairs (pair i is file i of both domains)
    for a method that trains on pairs (pix2pix), which the other methods do not take."""
    needs_pairs = METHODS[config.method].needs_pairs
    if needs_pairs and config.data.paired == "none":
        raise UsageError(
            f"--method {config.preset or config.method} trains on pairs: --paired folders (DATA/A/x.png <-> DATA/B/x.png) or aligned (A|B images)"
        )
    if not needs_pairs and config.data.paired != "none":
        raise UsageError(
            f"--paired {config.data.paired} is for pix2pix: --method {config.preset or config.method} draws its domains' images independently (leave --paired out)"
        )
    if config.eval_every and config.data.paired.startswith("aligned"):
        raise UsageError(
            f"--eval-every reads domain folders (DATA/A, DATA/B), which --paired {config.data.paired} has not: split the A|B images into them, or leave --eval-every out"
        )
    return training_files(config.data)


def resolved_config(config: TrainConfig, files: dict[str, list[Path]]) -> TrainConfig:
    """`config` as the run saves it: the domains found, the run folder named, and the data folder as
    an absolute path, so `--resume` works from any directory."""
    data = dataclasses.replace(config.data, root=os.path.abspath(config.data.root), domains=tuple(files))
    return dataclasses.replace(config, data=data, out=config.out or str(default_run_dir(config)))


def training_method(config: TrainConfig, world: World, device: torch.device) -> Method:
    """The method of `config`, seeded, for training on `device` (this rank's share of the batch)."""
    method = checkpoint.build_method(config, config.data.domains, training=True, seed=config.seed)
    if config.data.preprocess != "none":  # every other mode makes images --size wide
        method.check_training_size(config.data.size)
    if world.size > 1 and device.type == "cuda":
        method = nn.SyncBatchNorm.convert_sync_batchnorm(method)  # batch norm over the global batch, as one process would
    method = method.to(device, memory_format=_memory_format(config))
    method.rng.manual_seed(config.seed + world.rank * 2**32)  # image pools and penalties draw per rank
    return method


def _memory_format(config: TrainConfig) -> torch.memory_format:
    return torch.channels_last if config.channels_last else torch.contiguous_format


def training_data(files: dict[str, list[Path]], config: TrainConfig, method: Method, device: torch.device) -> TrainingData:
    """The data set, its images made of sides the networks take (pairs cropped and flipped alike for
    --paired), and where its samples are made (see `TrainingData.prepare`)."""
    kind = UnpairedDataset if config.data.paired == "none" else PairedDataset
    dataset = kind(files, config.data, config.seed, multiple=method.stride, min_side=method.training_min_side())
    return TrainingData.prepare(dataset, config.data, device)


def claim_run_dir(run_dir: Path, resume: bool, overwrite: bool, world: World, held: contextlib.ExitStack) -> None:
    """Check the run folder, then lock it (rank 0) until `held` closes, at the end of the run."""
    check_run_dir(run_dir, resume, overwrite)  # before anything is created
    if world.is_main:
        held.enter_context(exclusive_folder(run_dir))  # one writer per run folder
        remove_stale_temporaries(run_dir)  # left by writers killed mid-write
        check_run_dir(run_dir, resume, overwrite)  # again under the lock: another run may just have written there
    world.barrier()  # every rank has seen the run folder as it was before rank 0 writes to it


def set_up_run(
    config: TrainConfig,
    method: Method,
    world: World,
    device: torch.device,
    resume: bool,
    data: TrainingData,
    domain_sizes: dict[str, int],
    steps_per_epoch: int,
) -> Run:
    """Optimizers, the generators' average, the saved state when resuming (the same on every rank),
    and on rank 0 the run's config file, its log up to the start, the evaluation and the sample inputs."""
    run_dir = Path(config.out)
    optimizers = {
        "optimizer_g": make_optimizer(method.generator_side().parameters(), config, device),
        "optimizer_d": make_optimizer(method.discriminators.parameters(), config, device),
    }
    ema = GeneratorEMA(method, config, device, _memory_format(config)) if config.ema > 0 else None
    ema_generators = ema.method.generators if ema is not None else None  # restored too, or started from the live weights
    start = load_training_state(run_dir / checkpoint.STATE_FILE, method, optimizers, world.rank, ema_generators) if resume else 0
    world.broadcast_module(method)
    if ema is not None:
        world.broadcast_module(ema.method)  # a guard, as for the method: every rank built or loaded it alike
    if config.compile:
        compile_networks(method, config)
    evaluation, sample_batch = None, ()
    if world.is_main:
        (run_dir / "config.json").write_text(config.to_json() + "\n")
        truncate_log(run_dir / "log.jsonl", start)
        evaluation = training_evaluation(config, run_dir, device) if config.eval_every else None
        sample_batch = _sample_batch(data.dataset, config, device)
    return Run(
        config,
        run_dir,
        method,
        optimizers,
        world,
        device,
        uses_bf16(config.precision, device),
        start,
        config.total_steps(steps_per_epoch),
        config.decay_start(steps_per_epoch),
        domain_sizes,
        evaluation,
        ema,
        sample_batch,
    )


def model_input(images: Tensor, device: torch.device, channels_last: bool) -> Tensor:
    """A uint8 batch -> model range on `device` (the conversion runs there: 4x less to copy)."""
    images = to_model_range(images.to(device, non_blocking=True))
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images


def _sample_batch(dataset: UnpairedDataset, config: TrainConfig, device: torch.device) -> tuple[Tensor, ...]:
    """The fixed inputs of every sample grid (see `UnpairedDataset.sample_batch`), decoded once onto the device."""
    # Square crops of --size, rounded up to sides the networks take (--preprocess none promises no such size).
    side = max(dataset.min_side, -(-config.data.size // dataset.multiple) * dataset.multiple)
    return tuple(model_input(images, device, config.channels_last) for images in dataset.sample_batch(side))


def training_evaluation(config: TrainConfig, run_dir: Path, device: torch.device) -> Evaluation:
    """The FID/KID evaluation of --eval-every (loaded once; the Inception weights download on first use)."""
    return TrainingEvaluation(run_dir, Path(config.data.root), config.data.domains, config.eval_images, inception.load_inception(device))
