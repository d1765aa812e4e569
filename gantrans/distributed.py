"""Data-parallel training over processes: torchrun's environment, gradient averaging, rank 0 writes.

`torchrun --nproc-per-node N -m gantrans train ...` (or `gantrans train --gpus N`, which sets up the
same environment for N local processes itself) starts N copies of the trainer. Each copy takes its share of every global batch (`--batch-size` is the global batch,
so a config means the same run on any number of GPUs), computes its losses, and the gradients
are averaged over all processes before every optimizer step, so all ranks keep identical weights.

Why averaged gradients and not `DistributedDataParallel`: the methods call one generator several
times per loss (translation, cycle, identity), freeze the discriminators during the generator
step and backpropagate twice for gradient penalties; DDP's hooks handle none of these cleanly.
One flattened all-reduce per optimizer step (as StyleGAN2-ADA does) does, and costs one
collective of the parameters' size per step, without overlapping it with the backward pass.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from gantrans.errors import UsageError


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (rank 0 of 1 when not distributed)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes checkpoints, samples and logs."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def average_gradients(self, parameters: Iterable[nn.Parameter]) -> None:
        """Replace each gradient by its mean over the processes, in one flattened all-reduce."""
        if self.size == 1:
            return
        gradients = [p.grad for p in parameters if p.grad is not None]
        if gradients:
            flat = torch.cat([g.reshape(-1) for g in gradients])
            dist.all_reduce(flat)
            flat /= self.size
            for gradient, averaged in zip(gradients, flat.split([g.numel() for g in gradients])):
                gradient.copy_(averaged.view_as(gradient))

    def average_buffers(self, module: nn.Module) -> None:
        """Average floating buffers (batch norm's running statistics) so every rank translates alike."""
        if self.size == 1:
            return
        for buffer in module.buffers():
            if buffer.is_floating_point():
                dist.all_reduce(buffer)
                buffer /= self.size

    def broadcast_module(self, module: nn.Module) -> None:
        """Rank 0's parameters and buffers to every rank (a guard: they start equal by seeding)."""
        if self.size == 1:
            return
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)

    def mean(self, values: dict[str, float], device: torch.device) -> dict[str, float]:
        """The mean of each value over the processes (logged losses)."""
        if self.size == 1 or not values:
            return values
        names = list(values)  # the same order on every rank: the methods build their terms alike
        tensor = torch.tensor([values[name] for name in names], dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return dict(zip(names, (tensor / self.size).tolist()))

    def any(self, flag: bool, device: torch.device) -> bool:
        """Whether `flag` is set on any process (a stop request reaches the ranks at different times)."""
        if self.size == 1:
            return flag
        tensor = torch.tensor([int(flag)], device=device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return bool(tensor.item())

    def gather(self, state: dict[str, Tensor]) -> list[dict[str, Tensor]]:
        """Every rank's `state` (on the CPU, when there are several), in rank order, on every rank."""
        if self.size == 1:
            return [state]
        state = {name: tensor.detach().cpu() for name, tensor in state.items()}
        states: list[Any] = [None] * self.size
        dist.all_gather_object(states, state)
        return states


def join_from_environment(device_name: str) -> tuple[World, bool]:
    """Join the process group that torchrun describes in the environment (WORLD_SIZE, RANK, ...).

    Returns the world and whether this call created the group (then the caller destroys it).
    Outside torchrun, or with one process, it is rank 0 of 1 and nothing is initialised.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World(), False
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_initialized():
        return World(rank, size, local_rank), False
    use_cuda = device_name != "cpu" and torch.cuda.is_available()
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise UsageError(
                f"local rank {local_rank} has no GPU: this machine has {torch.cuda.device_count()}; start fewer processes per node"
            )
        torch.cuda.set_device(local_rank)  # NCCL and all_gather_object use the current device
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return World(rank, size, local_rank), True


def process_device(world: World, device: torch.device) -> torch.device:
    """The device of this rank: its own GPU (cuda:LOCAL_RANK) when training on CUDA with several processes."""
    if world.size > 1 and device.type == "cuda":
        return torch.device("cuda", world.local_rank)
    return device


def launch(processes: int, arguments: list[str]) -> int:
    """Run `gantrans <arguments>` as `processes` workers on this machine, with the environment torchrun
    would give them (a local rendezvous on a free port); returns the exit code.

    The workers are in this process's group, so a terminal's Ctrl-C reaches each of them once, and
    they agree on the step to stop at; this process only waits. A worker that fails takes the others
    down (they would wait for it in a collective forever), and its exit code is returned.
    """
    with socket.socket() as probe:  # a free port for the rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    workers = []
    for rank in range(processes):
        environment = {
            **os.environ,
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "WORLD_SIZE": str(processes),
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "LOCAL_WORLD_SIZE": str(processes),
        }
        workers.append(subprocess.Popen([sys.executable, "-m", "gantrans", *arguments], env=environment))
    forward = lambda signum, frame: [worker.send_signal(signum) for worker in workers if worker.poll() is None]  # noqa: E731
    previous = {sig: signal.signal(sig, handler) for sig, handler in ((signal.SIGINT, signal.SIG_IGN), (signal.SIGTERM, forward))}
    try:
        while True:
            codes = [worker.poll() for worker in workers]
            # 130: stopped by Ctrl-C, as the others will be once they reach the agreed step.
            failed = [code for code in codes if code not in (None, 0, 130)]
            if failed:
                for worker in workers:
                    if worker.poll() is None:
                        worker.kill()  # it waits in a collective for the failed one: nothing left to save
                for worker in workers:
                    worker.wait()
                return failed[0]
            if None not in codes:
                return max(codes)
            time.sleep(0.2)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
