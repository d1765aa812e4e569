"""The one training loop for every method.

Update order of step s, one batch each (the same for all methods):
  1. if (s + 1) % n_critic == 0: generator step, discriminators frozen; its fakes are kept; then
     the generators' moving average (--ema) takes a step towards the new weights
  2. if (s + 1) % n_generator == 0: discriminator step, on the fakes of step 1 (or fresh ones when
     no generator step ran)
This is the reference CycleGAN order for n_critic = n_generator = 1; one G step per n_critic D
steps (WGAN, StarGAN, DualGAN) or one D step per n_generator G steps (DiscoGAN) otherwise.
Randomness inside a step (dropout, noise drawn on the device) comes from torch's generator,
seeded from (seed, s, rank) at each step, so a resumed run draws what an uninterrupted one would.
Forward passes may run under bf16 autocast, and several processes (torchrun) may share each step.

`train()` yields events (progress, samples, checkpoints); the CLI renders them, tests and
notebooks iterate them. Stopping early (Ctrl-C) is a `should_stop` callable checked between
steps, so a checkpoint is only ever written from a consistent state.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Union

import torch
import torch.distributed as dist
from safetensors import safe_open
from torch import Tensor, nn

from gantrans import checkpoint
from gantrans.batches import Batches, DeviceImages, batches, default_workers
from gantrans.config import TrainConfig
from gantrans.data import PairedDataset, UnpairedDataset
from gantrans.device import resolve_device, uses_bf16
from gantrans.distributed import World, join_from_environment, process_device
from gantrans.errors import DivergedError, GantransError, OutOfMemoryError, UsageError, is_out_of_memory
from gantrans.folders import training_files
from gantrans.images import image_grid, save_image, to_model_range
from gantrans.methods import METHODS, Losses, Method
from gantrans.presets import default_run_dir
from gantrans.storage import BackgroundWriter, exclusive_folder, remove_stale_temporaries
from gantrans.training_state import load_training_state, saved_domain_sizes, training_state_contents


@dataclass(frozen=True)
class Started:
    run_dir: Path
    start_step: int  # > 0 when resuming
    total_steps: int
    steps_per_epoch: int
    domain_sizes: dict[str, int]
    device: str
    workers: int
    cached: bool  # decoded images kept in memory
    data_on_device: bool  # decoded images kept on the training device, cropped there
    precision: str  # fp32 or bf16
    processes: int  # training processes (ranks); this event comes from each
    ema: float = 0.0  # decay of the generators' moving average, which translates (0: none)


@dataclass(frozen=True)
class StepDone:
    step: int  # steps completed
    total_steps: int
    losses: dict[str, float] | None  # means since the last log line, on log steps only
    images_per_second: float | None  # on log steps only
    lr: float


@dataclass(frozen=True)
class FileSkipped:
    message: str  # names the file and why it could not be decoded


@dataclass(frozen=True)
class Warned:
    message: str  # something the user should know that does not stop the run (resumed on changed data)


@dataclass(frozen=True)
class SamplesWritten:
    step: int
    path: Path


@dataclass(frozen=True)
class CheckpointWritten:
    """A checkpoint of `step` is on disk (the latest one is written in the background and
    announced once its files are whole)."""

    step: int
    path: Path
    snapshot: bool  # a kept copy rather than the latest


@dataclass(frozen=True)
class Evaluated:
    step: int
    scores: dict[str, dict[str, float]]  # direction ("x->y") -> {"fid": ..., "kid": ...}
    best: bool  # the best mean FID so far: the generators were kept in <out>/best


@dataclass(frozen=True)
class Finished:
    step: int
    run_dir: Path
    seconds: float
    interrupted: bool
    skipped_files: int


Event = Union[Started, StepDone, FileSkipped, Warned, SamplesWritten, CheckpointWritten, Evaluated, Finished]


def learning_rate_factor(step: int, decay_start: int, total: int) -> float:
    """1 until `decay_start`, then linearly down towards 0 at `total` (CycleGAN's schedule)."""
    if step < decay_start or total <= decay_start:
        return 1.0
    return max(0.0, (total - step) / (total - decay_start))


def train(
    config: TrainConfig, resume: bool = False, overwrite: bool = False, should_stop: Callable[[], bool] = lambda: False
) -> Iterator[Event]:
    """Train `config`, yielding events. With `resume`, continue the run in `config.out` exactly.

    Started by torchrun (WORLD_SIZE in the environment), each process trains its share of every
    batch and only rank 0 writes files (see `gantrans/distributed.py`).
    """
    world, created_group = join_from_environment(config.device)
    # The loop reseeds torch's generators at every step; the caller gets its own states back.
    cuda_devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    try:
        with torch.random.fork_rng(devices=cuda_devices), contextlib.ExitStack() as held:
            yield from _train(config, resume, overwrite, should_stop, world, held)
    finally:
        if created_group:
            dist.destroy_process_group()


def check_launch(config: TrainConfig, resume: bool, overwrite: bool, processes: int) -> None:
    """The checks a run would fail at once, made before starting `processes` workers (which would
    each report them)."""
    _check_batch_split(config.batch_size, processes)
    _training_files(config)
    _check_run_dir(Path(config.out or default_run_dir(config)), resume, overwrite)


def _restore(run_dir: Path, method: Method, optimizers: dict[str, torch.optim.Optimizer], ema: GeneratorEMA | None, world: World) -> int:
    """Load the saved state of the run in `run_dir` into this rank (the generators' average too,
    or a fresh one from the live weights when the run had none); returns its step."""
    ema_generators = ema.method.generators if ema is not None else None
    return load_training_state(run_dir / checkpoint.STATE_FILE, method, optimizers, world.rank, ema_generators)


def _check_batch_split(batch_size: int, processes: int) -> None:
    if batch_size % processes:
        raise UsageError(f"--batch-size {batch_size} is the batch of all {processes} processes together: make it a multiple of {processes}")


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    """The seed of torch's generator for `step` on `rank` (rank 0's equals a single process's)."""
    return (seed * 2**32 + step + rank * 2**62) % 2**63


def _train(
    config: TrainConfig, resume: bool, overwrite: bool, should_stop: Callable[[], bool], world: World, held: contextlib.ExitStack
) -> Iterator[Event]:  # fmt: skip
    """The run itself (see `train`); the run folder's lock, once taken, stays in `held` until the run ends."""
    started_at = time.perf_counter()
    device = process_device(world, resolve_device(config.device))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed image sizes: let cuDNN pick the fastest kernels
    _check_batch_split(config.batch_size, world.size)
    files = _training_files(config)
    # The data folder is kept as an absolute path, so `--resume` works from any directory.
    data = dataclasses.replace(config.data, root=os.path.abspath(config.data.root), domains=tuple(files))
    config = dataclasses.replace(config, data=data, out=config.out or str(default_run_dir(config)))
    method = checkpoint.build_method(config, tuple(files), training=True, seed=config.seed)
    if config.data.preprocess != "none":  # every other mode makes images --size wide
        method.check_training_size(config.data.size)
    if world.size > 1 and device.type == "cuda":
        method = nn.SyncBatchNorm.convert_sync_batchnorm(method)  # batch norm over the global batch, as one process would
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    method = method.to(device, memory_format=memory_format)
    method.rng.manual_seed(config.seed + world.rank * 2**32)  # image pools and penalties draw per rank
    dataset, workers, device_images = _prepare_data(files, config, method, device)
    run_dir = Path(config.out)
    _check_run_dir(run_dir, resume, overwrite)  # before anything is created
    if world.is_main:
        held.enter_context(exclusive_folder(run_dir))  # one writer per run folder
        remove_stale_temporaries(run_dir)  # left by writers killed mid-write
        _check_run_dir(run_dir, resume, overwrite)  # again under the lock: another run may just have written there
    world.barrier()  # every rank has seen the run folder as it was before rank 0 writes to it
    steps_per_epoch = max(1, len(dataset) // config.batch_size)
    total = config.total_steps(steps_per_epoch)
    optimizers = {
        "optimizer_g": make_optimizer(method.generator_side().parameters(), config, device),
        "optimizer_d": make_optimizer(method.discriminators.parameters(), config, device),
    }
    ema = GeneratorEMA(method, config, device, memory_format) if config.ema > 0 else None
    start = _restore(run_dir, method, optimizers, ema, world) if resume else 0
    world.broadcast_module(method)
    if ema is not None:
        world.broadcast_module(ema.method)  # a guard, as for the method: every rank built or loaded it alike
    if config.compile:
        _compile_networks(method, config)
    bf16 = uses_bf16(config.precision, device)
    domain_sizes = {domain: len(paths) for domain, paths in files.items()}
    evaluation, sample_batch = None, ()
    if world.is_main:
        (run_dir / "config.json").write_text(config.to_json() + "\n")
        _truncate_log(run_dir / "log.jsonl", start)
        evaluation = _training_evaluation(config, run_dir, tuple(files), device) if config.eval_every else None
        sample_batch = _sample_batch(dataset, config, device)
    yield Started(
        run_dir, start, total, steps_per_epoch, domain_sizes, str(device), workers,
        dataset.cache_enabled or device_images is not None, device_images is not None, "bf16" if bf16 else "fp32", world.size, config.ema,
    )  # fmt: skip
    if resume:
        yield from _data_changes(run_dir, domain_sizes)
    for message in device_images.skipped if device_images is not None else ():
        yield FileSkipped(message)
    if device_images is not None:
        stream: Batches = device_images.batches(config.batch_size, start, total, world.rank, world.size)
    else:
        stream = batches(dataset, config.batch_size, start, total, workers, device.type == "cuda", world.rank, world.size)
    run = _Run(
        config, run_dir, method, optimizers, world, device, bf16, start, total, config.decay_start(steps_per_epoch), domain_sizes,
        evaluation, ema, sample_batch,
    )  # fmt: skip
    yield from _loop(run, stream, should_stop, started_at, len(device_images.skipped) if device_images is not None else 0)


@dataclass
class _Run:
    """What every step of one run works with (set up once by `_train`)."""

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
    evaluation: Callable[[Method, TrainConfig, int], dict[str, dict[str, float]]] | None  # --eval-every's FID/KID, on rank 0
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


def _loop(run: _Run, stream: Batches, should_stop: Callable[[], bool], started_at: float, skipped: int) -> Iterator[Event]:
    """Steps run.start .. run.total-1, then the final checkpoint. A data error keeps the work done so
    far; divergence and running out of memory keep the last checkpoint as it is."""
    config, world, start, total = run.config, run.world, run.start, run.total
    step, interrupted = start, False
    meter, watch, last_log_step, last_log_time = LossMeter(), DivergenceWatch(run.device), start, time.perf_counter()
    try:
        for step in range(start, total):
            # Several processes must stop at the same step: they agree at log steps (a host sync anyway).
            if (world.size == 1 or step % config.log_every == 0) and world.any(should_stop(), run.device):
                interrupted = True
                break
            uint8_batch, skipped_messages = next(stream)
            for message in skipped_messages:
                skipped += 1
                yield FileSkipped(message)
            batch = tuple(_model_input(images, run.device, config.channels_last) for images in uint8_batch)
            lr = config.lr * learning_rate_factor(step, run.decay_start, total)
            _set_learning_rate(run.optimizers, lr)
            torch.manual_seed(step_seed(config.seed, step, world.rank))  # see the module docstring
            g_losses, d_losses, step_skipped = _train_step(run.method, run.optimizers, batch, step, config, run.bf16, world, run.ema)
            watch.add(step_skipped)
            meter.add(g_losses)
            meter.add(d_losses)
            done = step + 1
            losses_logged, speed = None, None
            if done % config.log_every == 0 or done == total:
                losses_logged = world.mean(meter.means(), run.device)
                watch.check(config.max_bad_steps, losses_logged, done)
                now = time.perf_counter()
                speed = (done - last_log_step) * config.batch_size * len(run.domain_sizes) / max(now - last_log_time, 1e-9)
                if world.is_main:
                    _append_log(run.run_dir / "log.jsonl", {"step": done, "lr": lr, "images_per_second": round(speed, 3), **losses_logged})
                last_log_step, last_log_time = done, now
            yield StepDone(done, total, losses_logged, speed, lr)
            yield from run.writer.poll()
            yield from _periodic_outputs(run, done)
        else:
            step = total
        yield from _save(run, step)
        yield from run.writer.wait()
    except (DivergedError, checkpoint.NonFiniteWeightsError) as error:
        _finish_writes(run)
        kept = _last_checkpoint(run.run_dir)
        advice = "resume it with a lower --lr" if kept.startswith("The last") else "start again with a lower --lr"
        raise DivergedError(f"{error}. {kept}: {advice}, or check the loss weights") from None
    except GantransError:
        # A data problem surfaces while fetching a batch, before the step changes anything:
        # keep the work done so far, then report. (With several processes the others wait in a
        # collective for the failed one; the launcher stops them, and the last checkpoint stands.)
        if step > start and world.size == 1:
            list(_save(run, step))
        _finish_writes(run)
        raise
    except (RuntimeError, MemoryError) as error:
        if not is_out_of_memory(error):
            raise
        _finish_writes(run)
        raise OutOfMemoryError(
            f"out of memory on {run.device} at step {step + 1}: try a smaller --batch-size or --size. {_last_checkpoint(run.run_dir)}"
        ) from None
    yield Finished(step, run.run_dir, time.perf_counter() - started_at, interrupted, skipped)


def _finish_writes(run: _Run) -> None:
    """Let the checkpoint being written finish (it is whole and good) before the run ends on an error."""
    with contextlib.suppress(GantransError):
        run.writer.wait()


def _last_checkpoint(run_dir: Path) -> str:
    """Which checkpoint a run that stopped on an error leaves, in words."""
    path = run_dir / checkpoint.STATE_FILE
    if not path.is_file():
        return f"No checkpoint had been written to {run_dir} yet"
    try:
        return f"The last good checkpoint (step {checkpoint.read_model_info(path).step}) is kept in {run_dir}"
    except GantransError:
        return f"The last checkpoint in {run_dir} is unchanged"


def _data_changes(run_dir: Path, domain_sizes: dict[str, int]) -> Iterator[Event]:
    """A warning when a resumed run finds other image counts than it saved (moved or edited data)."""
    saved = saved_domain_sizes(run_dir / checkpoint.STATE_FILE)
    if saved is not None and saved != domain_sizes:
        changes = ", ".join(f"{domain} {saved.get(domain, 0)} -> {count}" for domain, count in domain_sizes.items() if saved.get(domain) != count)
        yield Warned(f"the data changed since the run was saved (images: {changes}); it goes on with the data as it is, so the batches differ from an uninterrupted run's")


class DivergenceWatch:
    """Counts consecutive steps skipped for NaN or infinite gradients on the device (no host sync in
    the step); `check` reads the count at log steps and stops a run that diverged."""

    def __init__(self, device: torch.device) -> None:
        self.streak = torch.zeros((), device=device)  # skipped steps in a row, up to now
        self.longest = torch.zeros((), device=device)  # the longest such run since the last check

    def add(self, skipped: Tensor) -> None:
        self.streak = (self.streak + 1) * skipped
        self.longest = torch.maximum(self.longest, self.streak)

    def check(self, limit: int, losses: dict[str, float], step: int) -> None:
        """A DivergedError when `limit` steps in a row were skipped since the last check."""
        longest = int(self.longest.item())
        self.longest = self.streak.clone()
        if longest >= limit:
            broken = [name for name, value in losses.items() if not torch.isfinite(torch.tensor(value))]
            which = f"; non-finite losses: {', '.join(broken)}" if broken else ""
            raise DivergedError(f"training diverged: {longest} steps in a row up to step {step} had NaN or infinite gradients{which}; they were skipped and the run stopped")


def batch_scaled_lr(lr: float, batch_size: int) -> float:
    """The learning rate for a batch of `batch_size`, from the one tuned for batch 1: times its
    square root (square-root scaling for Adam, Malladi et al. 2022)."""
    return lr * batch_size**0.5


def _model_input(images: Tensor, device: torch.device, channels_last: bool) -> Tensor:
    """A uint8 batch -> model range on `device` (the conversion runs there: 4x less to copy)."""
    images = to_model_range(images.to(device, non_blocking=True))
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images


def _compile_networks(method: Method, config: TrainConfig) -> None:
    """torch.compile every network in place (state-dict names are kept). Discriminators stay eager
    under a gradient penalty: compiled graphs do not support its double backward."""
    for network in method.generators.values():
        network.compile()
    if not _needs_double_backward(config):
        for network in method.discriminators.values():
            network.compile()


def _needs_double_backward(config: TrainConfig) -> bool:
    return getattr(config.model, "gan_loss", "") == "wgan-gp" or getattr(config.model, "lambda_r1", 0) > 0


def _training_evaluation(config: TrainConfig, run_dir: Path, domains: tuple[str, ...], device: torch.device) -> Callable:
    """The FID/KID evaluation of --eval-every (loaded once; the Inception weights download on first use)."""
    from gantrans.evaluate import TrainingEvaluation
    from gantrans.inception import load_inception

    return TrainingEvaluation(run_dir, Path(config.data.root), domains, config.eval_images, load_inception(device))


def _training_files(config: TrainConfig) -> dict[str, list[Path]]:
    """Each domain's training images: unpaired folders, or pairs (pair i is file i of both domains)
    for a method that trains on pairs (pix2pix), which the other methods do not take."""
    needs_pairs = METHODS[config.method].needs_pairs
    if needs_pairs and config.data.paired == "none":
        raise UsageError(f"--method {config.preset or config.method} trains on pairs: --paired folders (DATA/A/x.png <-> DATA/B/x.png) or aligned (A|B images)")
    if not needs_pairs and config.data.paired != "none":
        raise UsageError(f"--paired {config.data.paired} is for pix2pix: --method {config.preset or config.method} draws its domains' images independently (leave --paired out)")
    if config.eval_every and config.data.paired.startswith("aligned"):
        raise UsageError(f"--eval-every reads domain folders (DATA/A, DATA/B), which --paired {config.data.paired} has not: split the A|B images into them, or leave --eval-every out")
    return training_files(config.data)


def _prepare_data(
    files: dict[str, list[Path]], config: TrainConfig, method: Method, device: torch.device
) -> tuple[UnpairedDataset, int, DeviceImages | None]:
    """The data set (pairs cropped and flipped alike for --paired), and where samples are made: decoded
    once onto the device (cropped there), decoded once into memory (small data), or decoded by workers."""
    kind = UnpairedDataset if config.data.paired == "none" else PairedDataset
    dataset = kind(files, config.data, config.seed, multiple=method.stride, min_side=method.training_min_side())
    fits = dataset.estimated_bytes() <= config.data.cache_mb * 2**20
    on_device = config.data.on_device if config.data.on_device is not None else device.type == "cuda" and fits
    if on_device:
        device_images = DeviceImages.build(dataset, device)
        if device_images is not None:
            return dataset, 0, device_images
        if config.data.on_device:
            raise UsageError("--on-device needs images of one size per domain: use a cropping --preprocess (resize-crop, crop, scale-width-crop)")
    workers = default_workers(dataset, config.data)
    if workers == 0 and fits:
        dataset.enable_cache()
    return dataset, workers, None


def _train_step(
    method: Method, optimizers: dict[str, torch.optim.Optimizer], batch: tuple[Tensor, ...], step: int, config: TrainConfig,
    bf16: bool = False, world: World = World(), ema: GeneratorEMA | None = None,
) -> tuple[Losses | None, Losses | None, Tensor]:  # fmt: skip
    """One generator and/or discriminator update (see the module docstring for the order), with
    `ema` following the generators; returns their losses and, on the device, 1.0 when an update
    was skipped for non-finite gradients.

    Forward passes run under bf16 autocast when `bf16`: convolutions in bf16, the losses in fp32
    (they cast their inputs), the backward pass and the fp32 weights' updates outside it.
    """
    autocast = torch.autocast(batch[0].device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    g_losses = d_losses = None
    skipped = torch.zeros((), device=batch[0].device)
    if (step + 1) % config.n_critic == 0:
        # Frozen discriminators: the generator loss backpropagates through them without
        # computing gradients for their weights.
        method.discriminators.requires_grad_(False)
        optimizers["optimizer_g"].zero_grad(set_to_none=True)
        with autocast:
            g_losses = method.generator_loss(batch, step)
        g_losses.total.backward()
        skipped = torch.maximum(skipped, _step_if_finite(optimizers["optimizer_g"], method.generator_side(), world))
        if ema is not None:
            ema.update()
        method.discriminators.requires_grad_(True)
    if (step + 1) % config.n_generator == 0:
        optimizers["optimizer_d"].zero_grad(set_to_none=True)
        with autocast:
            d_losses = method.discriminator_loss(batch, g_losses.fakes if g_losses is not None else None)
        d_losses.total.backward()
        skipped = torch.maximum(skipped, _step_if_finite(optimizers["optimizer_d"], method.discriminators, world))
        if config.clip > 0:
            # WGAN's weight clipping keeps the critic (roughly) K-Lipschitz (Arjovsky et al. 2017, algorithm 1).
            with torch.no_grad():
                for parameter in method.discriminators.parameters():
                    parameter.clamp_(-config.clip, config.clip)
    return g_losses, d_losses, skipped


def _step_if_finite(optimizer: torch.optim.Optimizer, networks: nn.Module, world: World) -> Tensor:
    """Average the gradients of `networks` over the processes, then step `optimizer` unless one of
    them is NaN or infinite (such a step is skipped, as AMP's gradient scaler skips it); returns 1.0
    for a skipped step, else 0.0, on the device. Fused optimizers (Adam on CUDA) skip on the device
    without a host sync; others read the flag on the host, which costs nothing on a CPU, whose
    kernels have already run (RMSProp on a GPU pays one sync per step)."""
    parameters = [parameter for parameter in networks.parameters() if parameter.grad is not None]
    world.average_gradients(parameters)
    if not parameters:
        optimizer.step()
        return torch.zeros(())
    # One norm per gradient; their sum is finite exactly when every gradient entry is.
    found_inf = (~torch.stack(torch._foreach_norm([parameter.grad for parameter in parameters])).sum().isfinite()).float()
    if getattr(optimizer, "_step_supports_amp_scaling", False):
        optimizer.found_inf = found_inf  # type: ignore[attr-defined]  (the protocol torch's GradScaler uses)
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf  # type: ignore[attr-defined]
    elif found_inf.is_meta or not found_inf.item():  # meta tensors have no values (bench counts FLOPs on them)
        optimizer.step()
    return found_inf


def make_optimizer(parameters: Iterator[torch.nn.Parameter], config: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """The optimizer of `config` (Adam or RMSProp) over `parameters`."""
    # On the GPU, fused kernels update all parameters in a few launches (same arithmetic as the loop).
    fused = device.type == "cuda" or None
    if config.optimizer == "rmsprop":
        # RMSProp as in WGAN (Arjovsky et al. 2017, sec. 3): no momentum, which misleads a clipped critic.
        return torch.optim.RMSprop(parameters, lr=config.lr, alpha=config.beta2, weight_decay=config.weight_decay, foreach=device.type == "cuda")
    return torch.optim.Adam(parameters, lr=config.lr, betas=(config.beta1, config.beta2), weight_decay=config.weight_decay, fused=fused)


def _check_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> None:
    if run_dir.exists() and not run_dir.is_dir():
        raise GantransError(f"--out {run_dir} is a file, not a folder: name a folder for the run")
    has_model = (run_dir / checkpoint.STATE_FILE).exists() or (run_dir / checkpoint.MODEL_FILE).exists()
    if resume and not (run_dir / checkpoint.STATE_FILE).exists():
        raise GantransError(f"nothing to resume in {run_dir}: no {checkpoint.STATE_FILE}")
    if has_model and not resume and not overwrite:
        step = checkpoint.read_model_info(run_dir).step if (run_dir / checkpoint.MODEL_FILE).exists() else "?"
        raise GantransError(f"{run_dir} already holds a model (step {step}): pass --resume to continue it, --out DIR for a new run, or --overwrite")


def _truncate_log(log_path: Path, step: int) -> None:
    """Keep log lines up to `step` (a resumed run rewrites what came after its checkpoint)."""
    if not log_path.exists():
        return
    kept = [line for line in log_path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    log_path.write_text("".join(line + "\n" for line in kept))


class LossMeter:
    """Sums of loss terms since the last log line, kept on the device: reading them is the loop's only host sync."""

    def __init__(self) -> None:
        self.sums: dict[str, tuple[Tensor, int]] = {}

    def add(self, losses: Losses | None) -> None:
        for name, value in (losses.terms.items() if losses is not None else ()):
            total, count = self.sums.get(name, (0.0, 0))
            self.sums[name] = (total + value, count + 1)

    def means(self) -> dict[str, float]:
        """Mean of each term since the last call (D and G terms may have different counts: n_critic)."""
        means = {name: float(total) / count for name, (total, count) in self.sums.items()}
        self.sums = {}
        return means


def _set_learning_rate(optimizers: dict[str, torch.optim.Optimizer], lr: float) -> None:
    for optimizer in optimizers.values():
        for group in optimizer.param_groups:
            group["lr"] = lr


def _append_log(path: Path, record: dict[str, float]) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")


def _periodic_outputs(run: _Run, done: int) -> Iterator[Event]:
    """Sample grids, the latest checkpoint, kept snapshots and evaluations, each on its own schedule
    (files from rank 0), all of the translation model (the EMA generators when --ema > 0)."""
    config, world = run.config, run.world
    sample_due = done % config.sample_every == 0
    snapshot_due = bool(config.snapshot_every) and done % config.snapshot_every == 0
    if sample_due or snapshot_due:
        run.average_buffers()
    if sample_due and world.is_main:
        yield SamplesWritten(done, _write_samples(run, done))
    if done % config.checkpoint_every == 0 and done < run.total:  # the final checkpoint is written after the loop
        yield from _save(run, done)
    if snapshot_due and world.is_main:
        path = run.run_dir / "snapshots" / f"generators_step{done:07d}.safetensors"
        checkpoint.save_model(path, run.translation_model(), config, done)
        yield CheckpointWritten(done, path, snapshot=True)
    if config.eval_every and done % config.eval_every == 0:
        run.average_buffers()
        if run.evaluation is not None:
            scores = run.evaluation(run.translation_model(), config, done)
            best = _keep_if_best(run, scores, done)
            _append_log(run.run_dir / "log.jsonl", {"step": done, "eval": scores, "best": best})
            yield Evaluated(done, scores, best)


def _keep_if_best(run: _Run, scores: dict[str, dict[str, float]], done: int) -> bool:
    """Keep the translation model in <run>/best/ when its mean FID beats the kept one's (the score
    goes into the file's metadata, so a resumed run knows what it has to beat); whether it did."""
    mean_fid = sum(score["fid"] for score in scores.values()) / len(scores)
    path = run.run_dir / "best" / checkpoint.MODEL_FILE
    best = mean_fid < _best_fid(path)
    if best:
        checkpoint.save_model(path, run.translation_model(), run.config, done, {"eval_fid": repr(mean_fid)})
    return best


def _best_fid(path: Path) -> float:
    """The mean FID of the kept best model at `path`, from its metadata (infinity before there is one)."""
    if not path.is_file():
        return math.inf
    with safe_open(str(path), framework="pt") as handle:
        return float((handle.metadata() or {}).get("eval_fid", math.inf))


def _write_samples(run: _Run, done: int) -> Path:
    """The sample grid of step `done`: the method's columns for the fixed sample images, labelled."""
    path = run.run_dir / "samples" / f"step_{done:07d}.png"
    path.parent.mkdir(exist_ok=True)
    model = run.translation_model()
    was_training = model.training
    # Evaluation mode, as `translate` runs the generators: no dropout, batch norm's running
    # statistics (which sampling then leaves untouched).
    model.eval()
    with torch.no_grad():
        columns = model.samples(run.sample_batch)
    model.train(was_training)
    save_image(image_grid({column_label(name, model.domains): images for name, images in columns.items()}), path)
    return path


def column_label(name: str, domains: tuple[str, ...]) -> str:
    """A sample column's label from a method's key: words apart, and the x / y of two-domain methods
    named ("fake_y" -> "fake zebra"): the grid is read by people who know their domains' names."""
    words = name.split("_")
    if len(domains) == 2 and len(words) > 1 and words[-1] in ("x", "y"):
        words[-1] = domains["xy".index(words[-1])]
    return " ".join(words)


def _sample_batch(dataset: UnpairedDataset, config: TrainConfig, device: torch.device) -> tuple[Tensor, ...]:
    """The fixed inputs of every sample grid (see `UnpairedDataset.sample_batch`), decoded once onto the device."""
    # Square crops of --size, rounded up to sides the networks take (--preprocess none promises no such size).
    side = max(dataset.min_side, -(-config.data.size // dataset.multiple) * dataset.multiple)
    return tuple(_model_input(images, device, config.channels_last) for images in dataset.sample_batch(side))


def _save(run: _Run, step: int) -> Iterator[Event]:
    """The latest checkpoint: copied now, written in the background and announced once it is on disk
    (a collective: every rank calls it; rank 0 writes, with every rank's pools and generators)."""
    rank_states = run.world.gather(run.method.training_state())
    run.average_buffers()
    if not run.world.is_main:
        return
    ema_generators = run.ema.method.generators if run.ema is not None else None
    state = training_state_contents(
        run.run_dir / checkpoint.STATE_FILE, run.method, run.optimizers, run.config, step, rank_states[1:], run.domain_sizes, ema_generators
    )  # fmt: skip
    # The model file holds only what translates: the EMA generators when there are some.
    model = checkpoint.model_contents(run.run_dir / checkpoint.MODEL_FILE, run.translation_model(), run.config, step)
    # Training state first: if we die between the two writes, resume still finds a consistent state.
    yield from run.writer.submit(CheckpointWritten(step, run.run_dir / checkpoint.MODEL_FILE, snapshot=False), state.write, model.write)


class GeneratorEMA:
    """An exponential moving average of the generators' weights, which translates instead of the
    live generators (Karras et al. 2018; StarGAN v2): it evens out the step-to-step jitter of
    adversarial training. After each generator step, ema = decay * ema + (1 - decay) * live for
    every floating parameter; buffers (batch norm's running statistics) are copied.

    `method` is an inference-only build of the run's method holding the averaged generators, so
    samples, evaluations and model files use it as they would the live method. It averages the
    networks' own tensors, so a compiled network is followed as it is. Ranks hold the same weights
    after each all-reduced step, so each updates its own copy alike.
    """

    def __init__(self, live: Method, config: TrainConfig, device: torch.device, memory_format: torch.memory_format) -> None:
        self.decay = config.ema
        self.method = checkpoint.build_method(config, live.domains, training=False).to(device, memory_format=memory_format)
        self.method.eval().requires_grad_(False)
        self.method.generators.load_state_dict(live.generators.state_dict())  # the average starts at the live weights
        averaged, copies = dict(self.method.generators.named_parameters()), dict(self.method.generators.named_buffers())
        pairs = [(averaged[name], tensor) for name, tensor in live.generators.named_parameters() if tensor.is_floating_point()]
        self._averaged, self._live = [a for a, _ in pairs], [t for _, t in pairs]
        buffers = [(copies[name], tensor) for name, tensor in live.generators.named_buffers()]
        self._buffer_copies, self._live_buffers = [c for c, _ in buffers], [t for _, t in buffers]

    @torch.no_grad()
    def update(self) -> None:
        """One step of the average, after a generator step (queued on the device: no host sync).
        A step skipped for non-finite gradients left the live weights as they were; the average
        then moves towards those, as it would had they stayed still."""
        if self._averaged:
            torch._foreach_lerp_(self._averaged, self._live, 1.0 - self.decay)  # ema + (1 - decay) (live - ema)
        if self._buffer_copies:
            torch._foreach_copy_(self._buffer_copies, self._live_buffers)
