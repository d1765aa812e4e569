"""The one training loop for every method.

Update order of step s, one batch each (the same for all methods):
  1. if (s + 1) % n_critic == 0: generator step, discriminators frozen; its fakes are kept
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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Union

import torch
import torch.distributed as dist
from torch import Tensor, nn

from gantrans import checkpoint
from gantrans.config import DataConfig, TrainConfig
from gantrans.data import Batches, DeviceImages, UnpairedDataset, batches, default_workers, discover_domains
from gantrans.distributed import World, join_from_environment, process_device
from gantrans.errors import GantransError, UsageError
from gantrans.images import image_grid, save_image, to_model_range
from gantrans.methods import METHODS, PRESETS, Losses, Method
from gantrans.storage import BackgroundWriter


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
class SamplesWritten:
    step: int
    path: Path


@dataclass(frozen=True)
class CheckpointWritten:
    """A checkpoint of `step`: a snapshot is on disk; the latest checkpoint's state is copied and its
    files are being written in the background (whole by the next checkpoint, and by `Finished`)."""

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


Event = Union[Started, StepDone, FileSkipped, SamplesWritten, CheckpointWritten, Evaluated, Finished]


def resolve_device(name: str) -> torch.device:
    """`auto` -> CUDA when present, else CPU; a requested but absent CUDA device is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device {name!r} is not a device (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available here (torch {torch.__version__}); use --device cpu")
    return device


def default_run_dir(config: TrainConfig) -> Path:
    return Path("runs") / f"{Path(config.data.root).resolve().name}-{config.preset or config.method}"


def learning_rate_factor(step: int, decay_start: int, total: int) -> float:
    """1 until `decay_start`, then linearly down towards 0 at `total` (CycleGAN's schedule)."""
    if step < decay_start or total <= decay_start:
        return 1.0
    return max(0.0, (total - step) / (total - decay_start))


# Settings that may change when a run is resumed; everything else must stay as saved.
RESUMABLE_SETTINGS = (
    "steps", "epochs", "decay_epochs", "device", "log_every", "sample_every", "checkpoint_every", "snapshot_every", "workers", "eval_every",
    "precision", "compile", "channels_last", "on_device",
)  # fmt: skip


def make_train_config(method: str, overrides: dict[str, Any], config_file: dict[str, Any] | None = None) -> TrainConfig:
    """The preset of `method`, then a `--config` file's values, then `overrides` (flag name -> value).

    Each override goes to the dataclass that has a field of its name: TrainConfig, DataConfig or
    the method's own config; a setting the method does not have is an error.
    """
    if method not in PRESETS:
        raise UsageError(f"unknown method {method!r}; choose one of: {', '.join(PRESETS)}")
    values = PRESETS[method].to_dict()
    for key, value in (config_file or {}).items():
        values[key] = {**values[key], **value} if isinstance(values.get(key), dict) and isinstance(value, dict) else value
    model_fields = {f.name for f in dataclasses.fields(METHODS[values["method"]].config_class)}
    data_fields = {f.name for f in dataclasses.fields(DataConfig)}
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"model", "data", "method"}
    for name, value in overrides.items():
        if name in train_fields:
            values[name] = value
        elif name in data_fields:
            values["data"][name] = value
        elif name in model_fields:
            values["model"][name] = value
        else:
            raise UsageError(f"--{name.replace('_', '-')} does not apply to --method {method}")
    return TrainConfig.from_dict(values)


def resume_config(run_dir: Path, overrides: dict[str, Any]) -> TrainConfig:
    """The saved config of the run in `run_dir`, with the few settings that may change on resume."""
    config = saved_config(run_dir)
    fixed = [name for name in overrides if name not in RESUMABLE_SETTINGS]
    if fixed:
        flags = ", ".join(f"--{name.replace('_', '-')}" for name in fixed)
        raise UsageError(f"{flags}: cannot change when resuming (the run keeps its saved config); start a new run with --out DIR")
    data_changes = {name: value for name, value in overrides.items() if name in ("workers", "on_device")}
    train_changes = {name: value for name, value in overrides.items() if name not in data_changes}
    if "epochs" in train_changes or "decay_epochs" in train_changes:
        train_changes.setdefault("steps", None)  # epochs given: they replace a step count
    return dataclasses.replace(config, data=dataclasses.replace(config.data, **data_changes), out=str(run_dir), **train_changes)


def saved_config(run_dir: Path) -> TrainConfig:
    """The config of the run in `run_dir` (for `--resume`)."""
    path = Path(run_dir) / checkpoint.STATE_FILE
    if not path.is_file():
        raise GantransError(f"nothing to resume in {run_dir}: no {checkpoint.STATE_FILE}")
    return checkpoint.read_model_info(path).config


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
        with torch.random.fork_rng(devices=cuda_devices):
            yield from _train(config, resume, overwrite, should_stop, world)
    finally:
        if created_group:
            dist.destroy_process_group()


def check_launch(config: TrainConfig, resume: bool, overwrite: bool, processes: int) -> None:
    """The checks a run would fail at once, made before starting `processes` workers (which would
    each report them)."""
    _check_batch_split(config.batch_size, processes)
    discover_domains(config.data.root, config.data.domains)
    _check_run_dir(Path(config.out or default_run_dir(config)), resume, overwrite)


def _check_batch_split(batch_size: int, processes: int) -> None:
    if batch_size % processes:
        raise UsageError(f"--batch-size {batch_size} is the batch of all {processes} processes together: make it a multiple of {processes}")


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    """The seed of torch's generator for `step` on `rank` (rank 0's equals a single process's)."""
    return (seed * 2**32 + step + rank * 2**62) % 2**63


def _train(config: TrainConfig, resume: bool, overwrite: bool, should_stop: Callable[[], bool], world: World) -> Iterator[Event]:
    started_at = time.perf_counter()
    device = process_device(world, resolve_device(config.device))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed image sizes: let cuDNN pick the fastest kernels
    _check_batch_split(config.batch_size, world.size)
    files = discover_domains(config.data.root, config.data.domains)
    config = dataclasses.replace(
        config, data=dataclasses.replace(config.data, domains=tuple(files)), out=config.out or str(default_run_dir(config))
    )
    method = checkpoint.build_method(config, tuple(files), training=True, seed=config.seed)
    if config.data.preprocess != "none":  # every other mode makes images --size wide
        method.check_training_size(config.data.size)
    if world.size > 1 and device.type == "cuda":
        method = nn.SyncBatchNorm.convert_sync_batchnorm(method)  # batch norm over the global batch, as one process would
    method = method.to(device, memory_format=torch.channels_last if config.channels_last else torch.contiguous_format)
    method.rng.manual_seed(config.seed + world.rank * 2**32)  # image pools and penalties draw per rank
    dataset, workers, device_images = _prepare_data(files, config, method.stride, device)
    run_dir = Path(config.out)
    _check_run_dir(run_dir, resume, overwrite)
    world.barrier()  # every rank has seen the run folder as it was before rank 0 writes to it
    steps_per_epoch = max(1, len(dataset) // config.batch_size)
    total = config.total_steps(steps_per_epoch)
    decay_start = config.decay_start(steps_per_epoch)
    optimizers = {
        "optimizer_g": make_optimizer(method.generators.parameters(), config, device),
        "optimizer_d": make_optimizer(method.discriminators.parameters(), config, device),
    }
    start = checkpoint.load_training_state(run_dir / checkpoint.STATE_FILE, method, optimizers, world.rank) if resume else 0
    world.broadcast_module(method)
    if config.compile:
        _compile_networks(method, config)
    bf16 = uses_bf16(config.precision, device)
    log_path = run_dir / "log.jsonl"
    evaluation = None
    if world.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(config.to_json() + "\n")
        _truncate_log(log_path, start)
        evaluation = _training_evaluation(config, run_dir, tuple(files), device) if config.eval_every else None
    yield Started(
        run_dir, start, total, steps_per_epoch, {d: len(f) for d, f in files.items()}, str(device), workers,
        dataset.cache_enabled or device_images is not None, device_images is not None, "bf16" if bf16 else "fp32", world.size,
    )  # fmt: skip

    step, interrupted, skipped = start, False, 0
    meter, last_log_step, last_log_time = LossMeter(), start, time.perf_counter()
    writer = BackgroundWriter()  # checkpoints are written while training goes on
    for message in device_images.skipped if device_images is not None else ():
        skipped += 1
        yield FileSkipped(message)
    if device_images is not None:
        stream: Batches = device_images.batches(config.batch_size, start, total, world.rank, world.size)
    else:
        stream = batches(dataset, config.batch_size, start, total, workers, device.type == "cuda", world.rank, world.size)
    try:
        for step in range(start, total):
            # Several processes must stop at the same step: they agree at log steps (a host sync anyway).
            if (world.size == 1 or step % config.log_every == 0) and world.any(should_stop(), device):
                interrupted = True
                break
            uint8_batch, skipped_messages = next(stream)
            for message in skipped_messages:
                skipped += 1
                yield FileSkipped(message)
            batch = tuple(_model_input(images, device, config.channels_last) for images in uint8_batch)
            lr = config.lr * learning_rate_factor(step, decay_start, total)
            _set_learning_rate(optimizers, lr)
            torch.manual_seed(step_seed(config.seed, step, world.rank))  # see the module docstring
            g_losses, d_losses = _train_step(method, optimizers, batch, step, config, bf16, world)
            meter.add(g_losses)
            meter.add(d_losses)
            done = step + 1
            losses_logged, speed = None, None
            if done % config.log_every == 0 or done == total:
                losses_logged = world.mean(meter.means(), device)
                now = time.perf_counter()
                speed = (done - last_log_step) * config.batch_size * len(files) / max(now - last_log_time, 1e-9)
                if world.is_main:
                    _append_log(log_path, {"step": done, "lr": lr, "images_per_second": round(speed, 3), **losses_logged})
                last_log_step, last_log_time = done, now
            yield StepDone(done, total, losses_logged, speed, lr)
            yield from _periodic_outputs(run_dir, method, optimizers, config, done, total, batch, world, writer)
            if config.eval_every and done % config.eval_every == 0:
                world.average_buffers(method)
                if evaluation is not None:
                    scores, best = evaluation(method, config, done)
                    _append_log(log_path, {"step": done, "eval": scores, "best": best})
                    yield Evaluated(done, scores, best)
        else:
            step = total
    except GantransError:
        # A data problem surfaces while fetching a batch, before the step changes anything:
        # keep the work done so far, then report. (With several processes the others wait in a
        # collective for the failed one; the launcher stops them, and the last checkpoint stands.)
        if step > start and world.size == 1:
            list(_save(run_dir, method, optimizers, config, step, world, writer))
        writer.wait()
        raise
    yield from _save(run_dir, method, optimizers, config, step, world, writer)
    writer.wait()
    yield Finished(step, run_dir, time.perf_counter() - started_at, interrupted, skipped)


def batch_scaled_lr(lr: float, batch_size: int) -> float:
    """The learning rate for a batch of `batch_size`, from the one tuned for batch 1: times its
    square root (square-root scaling for Adam, Malladi et al. 2022)."""
    return lr * batch_size**0.5


def uses_bf16(precision: str, device: torch.device) -> bool:
    """Whether forward passes run under bf16 autocast: `precision` bf16, or auto on a CUDA GPU that has bf16."""
    if precision == "auto":
        return device.type == "cuda" and torch.cuda.is_bf16_supported()
    return precision == "bf16"


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
    """The FID/KID evaluation of --eval-every (loaded once; needs `gantrans fetch-weights`)."""
    from gantrans.evaluate import TrainingEvaluation
    from gantrans.inception import load_inception

    return TrainingEvaluation(run_dir, Path(config.data.root), domains, config.eval_images, load_inception(device))


def _prepare_data(
    files: dict[str, list[Path]], config: TrainConfig, stride: int, device: torch.device
) -> tuple[UnpairedDataset, int, DeviceImages | None]:
    """The data set, and where samples are made: decoded once onto the device (cropped there), decoded
    once into memory (small data), or decoded by worker processes."""
    dataset = UnpairedDataset(files, config.data, config.seed, multiple=stride)
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
    bf16: bool = False, world: World = World(),
) -> tuple[Losses | None, Losses | None]:  # fmt: skip
    """One generator and/or discriminator update (see the module docstring for the order).

    Forward passes run under bf16 autocast when `bf16`: convolutions in bf16, the losses in fp32
    (they cast their inputs), the backward pass and the fp32 weights' updates outside it.
    """
    autocast = torch.autocast(batch[0].device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    g_losses = d_losses = None
    if (step + 1) % config.n_critic == 0:
        # Frozen discriminators: the generator loss backpropagates through them without
        # computing gradients for their weights.
        method.discriminators.requires_grad_(False)
        optimizers["optimizer_g"].zero_grad(set_to_none=True)
        with autocast:
            g_losses = method.generator_loss(batch, step)
        g_losses.total.backward()
        world.average_gradients(method.generators.parameters())
        optimizers["optimizer_g"].step()
        method.discriminators.requires_grad_(True)
    if (step + 1) % config.n_generator == 0:
        optimizers["optimizer_d"].zero_grad(set_to_none=True)
        with autocast:
            d_losses = method.discriminator_loss(batch, g_losses.fakes if g_losses is not None else None)
        d_losses.total.backward()
        world.average_gradients(method.discriminators.parameters())
        optimizers["optimizer_d"].step()
        if config.clip > 0:
            # WGAN's weight clipping keeps the critic (roughly) K-Lipschitz (Arjovsky et al. 2017, algorithm 1).
            with torch.no_grad():
                for parameter in method.discriminators.parameters():
                    parameter.clamp_(-config.clip, config.clip)
    return g_losses, d_losses


def make_optimizer(parameters: Iterator[torch.nn.Parameter], config: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """The optimizer of `config` (Adam or RMSProp) over `parameters`."""
    # On the GPU, fused kernels update all parameters in a few launches (same arithmetic as the loop).
    fused = device.type == "cuda" or None
    if config.optimizer == "rmsprop":
        # RMSProp as in WGAN (Arjovsky et al. 2017, sec. 3): no momentum, which misleads a clipped critic.
        return torch.optim.RMSprop(parameters, lr=config.lr, alpha=config.beta2, weight_decay=config.weight_decay, foreach=device.type == "cuda")
    return torch.optim.Adam(parameters, lr=config.lr, betas=(config.beta1, config.beta2), weight_decay=config.weight_decay, fused=fused)


def _check_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> None:
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


def _periodic_outputs(
    run_dir: Path, method: Method, optimizers: dict[str, torch.optim.Optimizer], config: TrainConfig, done: int, total: int,
    batch: tuple[Tensor, ...], world: World, writer: BackgroundWriter,
) -> Iterator[Event]:  # fmt: skip
    """Sample grids, the latest checkpoint and kept snapshots, each on its own schedule (files from rank 0)."""
    sample_due = done % config.sample_every == 0
    snapshot_due = bool(config.snapshot_every) and done % config.snapshot_every == 0
    if sample_due or snapshot_due:
        world.average_buffers(method)  # batch norm's running statistics, as the saved model will have them
    if sample_due and world.is_main:
        path = run_dir / "samples" / f"step_{done:07d}.png"
        path.parent.mkdir(exist_ok=True)
        # Evaluation mode, as `translate` runs the generators: no dropout, batch norm's running
        # statistics (which sampling then leaves untouched).
        method.eval()
        with torch.no_grad():
            columns = method.samples(batch)
        method.train()
        save_image(image_grid(list(columns.values())), path)
        yield SamplesWritten(done, path)
    if done % config.checkpoint_every == 0 and done < total:  # the final checkpoint is written after the loop
        yield from _save(run_dir, method, optimizers, config, done, world, writer)
    if snapshot_due and world.is_main:
        path = run_dir / "snapshots" / f"generators_step{done:07d}.safetensors"
        checkpoint.save_model(path, method, config, done)
        yield CheckpointWritten(done, path, snapshot=True)


def _save(
    run_dir: Path, method: Method, optimizers: dict[str, torch.optim.Optimizer], config: TrainConfig, step: int, world: World,
    writer: BackgroundWriter,
) -> Iterator[Event]:  # fmt: skip
    """The latest checkpoint: copied now, written by `writer` in the background (a collective: every
    rank calls it; rank 0 writes, with every rank's pools and generators)."""
    rank_states = world.gather(method.training_state())
    world.average_buffers(method)
    if not world.is_main:
        return
    state = checkpoint.training_state_contents(run_dir / checkpoint.STATE_FILE, method, optimizers, config, step, rank_states[1:])
    model = checkpoint.model_contents(run_dir / checkpoint.MODEL_FILE, method, config, step)
    # Training state first: if we die between the two writes, resume still finds a consistent state.
    writer.submit(state.write, model.write)
    yield CheckpointWritten(step, run_dir / checkpoint.MODEL_FILE, snapshot=False)
