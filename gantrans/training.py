"""The one training loop for every method.

A run is set up by `gantrans/run_setup.py`; then each step draws one batch and makes one update
with `gantrans.step.train_step`, whose docstring gives the update order (the same for all methods). Randomness inside a step (dropout, noise drawn
on the device) comes from torch's generator, seeded from (seed, s, rank) at each step, so a
resumed run draws what an uninterrupted one would. Forward passes may run under bf16 autocast,
and several processes (torchrun) may share each step. Between steps the loop logs, writes sample
grids, checkpoints and snapshots, and evaluates, each on its own schedule; it alone decides what
is written.

`train()` yields events (`gantrans/events.py`); the CLI renders them, tests and notebooks iterate
them. Stopping early (Ctrl-C) is a `should_stop` callable checked between steps, so a checkpoint
is only ever written from a consistent state.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

from gantrans import checkpoint
from gantrans.batches import Batches
from gantrans.config import TrainConfig
from gantrans.device import resolve_device
from gantrans.distributed import World, join_from_environment, process_device
from gantrans.errors import DivergedError, GantransError, OutOfMemoryError, is_out_of_memory
from gantrans.events import CheckpointWritten, Evaluated, Event, FileSkipped, Finished, SamplesWritten, Started, StepDone, Warned
from gantrans.finetune import init_source, load_initial_weights, matched_domains
from gantrans.presets import default_run_dir
from gantrans.run_folder import append_log, best_fid, best_model_path, check_run_dir, data_changes, last_checkpoint, write_samples
from gantrans.run_setup import (
    Run,
    Scores,
    check_batch_split,
    claim_run_dir,
    method_files,
    model_input,
    resolved_config,
    set_up_run,
    training_data,
    training_method,
)
from gantrans.run_watch import check_outputs, watch_run
from gantrans.step import DivergenceWatch, LossMeter, learning_rate_factor, set_learning_rate, step_seed, train_step
from gantrans.training_state import training_state_contents


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
            # The status file, the run report and TensorBoard follow the events (main process only).
            yield from watch_run(_train(config, resume, overwrite, should_stop, world, held), config, world.is_main)
    finally:
        if created_group:
            dist.destroy_process_group()


def check_launch(config: TrainConfig, resume: bool, overwrite: bool, processes: int) -> None:
    """The checks a run would fail at once, made before starting `processes` workers (which would
    each report them)."""
    check_batch_split(config.batch_size, processes)
    check_outputs(config)
    method_files(config)
    check_run_dir(Path(config.out or default_run_dir(config)), resume, overwrite)


def _train(
    config: TrainConfig, resume: bool, overwrite: bool, should_stop: Callable[[], bool], world: World, held: contextlib.ExitStack
) -> Iterator[Event]:
    """The run itself (see `train`); the run folder's lock, once taken, stays in `held` until the run ends."""
    started_at = time.perf_counter()
    device = process_device(world, resolve_device(config.device))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed image sizes: let cuDNN pick the fastest kernels
    check_batch_split(config.batch_size, world.size)
    files = method_files(config)
    # A fine-tune's first start loads the model it starts from; a resumed one, its own checkpoint.
    source = init_source(config.init_from) if config.init_from and not resume else None
    files, notes = matched_domains(files, source) if source is not None else (files, [])
    config = resolved_config(config, files)
    method = training_method(config, world, device)
    if source is not None:
        notes += load_initial_weights(source, config, method)  # before the generators' average copies them
    data = training_data(files, config, method, device)
    claim_run_dir(Path(config.out), resume, overwrite, world, held)
    steps_per_epoch = max(1, len(data.dataset) // config.batch_size)
    domain_sizes = {domain: len(paths) for domain, paths in files.items()}
    run = set_up_run(config, method, world, device, resume, data, domain_sizes, steps_per_epoch)
    yield Started(
        run.run_dir,
        run.start,
        run.total,
        steps_per_epoch,
        domain_sizes,
        str(device),
        data.workers,
        data.cached,
        data.device_images is not None,
        "bf16" if run.bf16 else "fp32",
        world.size,
        config.ema,
        str(source.path) if source is not None else "",
    )
    for note in notes + method.cautions():
        yield Warned(note)
    if resume:
        yield from data_changes(run.run_dir, domain_sizes)
    for message in data.skipped:
        yield FileSkipped(message)
    stream = data.stream(config.batch_size, run.start, run.total, device.type == "cuda", world.rank, world.size)
    yield from _loop(run, stream, should_stop, started_at, len(data.skipped))


@dataclass
class _Progress:
    """How far the loop got (what an error saves and reports) and what it counts between log lines."""

    step: int  # the step being run; the run's total once all have run
    skipped: int  # files skipped as undecodable
    watch: DivergenceWatch
    last_log_step: int
    last_log_time: float = field(default_factory=time.perf_counter)
    meter: LossMeter = field(default_factory=LossMeter)
    interrupted: bool = False


def _loop(run: Run, stream: Batches, should_stop: Callable[[], bool], started_at: float, skipped: int) -> Iterator[Event]:
    """Steps run.start .. run.total-1, then the final checkpoint. A data error keeps the work done so
    far; divergence and running out of memory keep the last checkpoint as it is."""
    progress = _Progress(run.start, skipped, DivergenceWatch(run.device), run.start)
    try:
        yield from _steps(run, stream, should_stop, progress)
        yield from _save(run, progress.step)
        yield from run.writer.wait()
        if run.world.size > 1:
            # The ranks leave together: a worker that tears gloo down while rank 0 is still writing
            # and talking can die at exit ("terminate called without an active exception").
            dist.barrier()
    except (DivergedError, checkpoint.NonFiniteWeightsError) as error:
        _finish_writes(run)
        kept = last_checkpoint(run.run_dir)
        advice = "resume it with a lower --lr" if kept.startswith("The last") else "start again with a lower --lr"
        raise DivergedError(f"{error}. {kept}: {advice}, or check the loss weights") from None
    except GantransError:
        # A data problem surfaces while fetching a batch, before the step changes anything:
        # keep the work done so far, then report. (With several processes the others wait in a
        # collective for the failed one; the launcher stops them, and the last checkpoint stands.)
        if progress.step > run.start and run.world.size == 1:
            list(_save(run, progress.step))
        _finish_writes(run)
        raise
    except (RuntimeError, MemoryError) as error:
        if not is_out_of_memory(error):
            raise
        _finish_writes(run)
        raise OutOfMemoryError(
            f"out of memory on {run.device} at step {progress.step + 1}: try a smaller --batch-size or --size. {last_checkpoint(run.run_dir)}"
        ) from None
    yield Finished(progress.step, run.run_dir, time.perf_counter() - started_at, progress.interrupted, progress.skipped)


def _steps(run: Run, stream: Batches, should_stop: Callable[[], bool], progress: _Progress) -> Iterator[Event]:
    """The steps, each with its log line and periodic outputs, until the last or until `should_stop`."""
    config, world = run.config, run.world
    for step in range(run.start, run.total):
        progress.step = step
        # Several processes must stop at the same step: they agree at log steps (a host sync anyway).
        if (world.size == 1 or step % config.log_every == 0) and world.any(should_stop(), run.device):
            progress.interrupted = True
            return
        uint8_batch, skipped_messages = next(stream)
        for message in skipped_messages:
            progress.skipped += 1
            yield FileSkipped(message)
        batch = tuple(model_input(images, run.device, config.channels_last) for images in uint8_batch)
        lr = config.lr * learning_rate_factor(step, run.decay_start, run.total)
        set_learning_rate(run.optimizers, lr)
        torch.manual_seed(step_seed(config.seed, step, world.rank))  # see the module docstring
        g_losses, d_losses, step_skipped = train_step(run.method, run.optimizers, batch, step, config, run.bf16, world, run.ema)
        progress.watch.add(step_skipped)
        progress.meter.add(g_losses)
        progress.meter.add(d_losses)
        done = step + 1
        losses, speed = _log(run, done, lr, progress) if done % config.log_every == 0 or done == run.total else (None, None)
        yield StepDone(done, run.total, losses, speed, lr)
        yield from run.writer.poll()
        yield from _periodic_outputs(run, done)
    progress.step = run.total


def _log(run: Run, done: int, lr: float, progress: _Progress) -> tuple[dict[str, float], float]:
    """The losses since the last log line (averaged over the processes) and the speed, logged by rank 0;
    a DivergedError when too many steps in a row were skipped."""
    losses = run.world.mean(progress.meter.means(), run.device)
    progress.watch.check(run.config.max_bad_steps, losses, done)
    now = time.perf_counter()
    speed = (done - progress.last_log_step) * run.config.batch_size * len(run.domain_sizes) / max(now - progress.last_log_time, 1e-9)
    if run.world.is_main:
        append_log(run.run_dir / "log.jsonl", {"step": done, "lr": lr, "images_per_second": round(speed, 3), **losses})
    progress.last_log_step, progress.last_log_time = done, now
    return losses, speed


def _finish_writes(run: Run) -> None:
    """Let the checkpoint being written finish (it is whole and good) before the run ends on an error."""
    with contextlib.suppress(GantransError):
        run.writer.wait()


def _periodic_outputs(run: Run, done: int) -> Iterator[Event]:
    """Sample grids, the latest checkpoint, kept snapshots and evaluations, each on its own schedule
    (files from rank 0), all of the translation model (the EMA generators when --ema > 0)."""
    config, world = run.config, run.world
    sample_due = done % config.sample_every == 0
    snapshot_due = bool(config.snapshot_every) and done % config.snapshot_every == 0
    if sample_due or snapshot_due:
        run.average_buffers()
    if sample_due and world.is_main:
        yield SamplesWritten(done, write_samples(run.run_dir, run.translation_model(), run.sample_batch, done))
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
            append_log(run.run_dir / "log.jsonl", {"step": done, "eval": scores, "best": best})
            yield Evaluated(done, scores, best)


def _keep_if_best(run: Run, scores: Scores, done: int) -> bool:
    """Keep the translation model in <run>/best/ when its mean FID beats the kept one's (the score
    goes into the file's metadata, so a resumed run knows what it has to beat); whether it did."""
    mean_fid = sum(score["fid"] for score in scores.values()) / len(scores)
    best = mean_fid < best_fid(run.run_dir)
    if best:
        checkpoint.save_model(best_model_path(run.run_dir), run.translation_model(), run.config, done, {"eval_fid": repr(mean_fid)})
    return best


def _save(run: Run, step: int) -> Iterator[Event]:
    """The latest checkpoint: copied now, written in the background and announced once it is on disk
    (a collective: every rank calls it; rank 0 writes, with every rank's pools and generators)."""
    rank_states = run.world.gather(run.method.training_state())
    run.average_buffers()
    if not run.world.is_main:
        return
    ema_generators = run.ema.method.generators if run.ema is not None else None
    state = training_state_contents(
        run.run_dir / checkpoint.STATE_FILE, run.method, run.optimizers, run.config, step, rank_states[1:], run.domain_sizes, ema_generators
    )
    # The model file holds only what translates: the EMA generators when there are some.
    model = checkpoint.model_contents(run.run_dir / checkpoint.MODEL_FILE, run.translation_model(), run.config, step)
    # Training state first: if we die between the two writes, resume still finds a consistent state.
    yield from run.writer.submit(CheckpointWritten(step, run.run_dir / checkpoint.MODEL_FILE, snapshot=False), state.write, model.write)
