"""Started by torchrun from test_distributed.py (not a test module): each rank trains a tiny CycleGAN
for a few steps on its half of fixed batches, through the trainer's step, and saves its weights."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import save_file

from gantrans.checkpoint import build_method
from gantrans.distributed import join_from_environment
from gantrans.step import make_optimizer, train_step

sys.path.insert(0, str(Path(__file__).parent))
from test_distributed import STEPS, fixed_batches, worker_config  # noqa: E402


def main(out: Path) -> None:
    world, _ = join_from_environment("cpu")
    config = worker_config()
    method = build_method(config, ("x", "y"), training=True, seed=config.seed)
    device = torch.device("cpu")
    optimizers = {
        "optimizer_g": make_optimizer(method.generators.parameters(), config, device),
        "optimizer_d": make_optimizer(method.discriminators.parameters(), config, device),
    }
    for step, batch in enumerate(fixed_batches()[:STEPS]):
        half = batch[0].shape[0] // world.size
        local = tuple(images[world.rank * half : (world.rank + 1) * half] for images in batch)
        train_step(method, optimizers, local, step, config, world=world)
    state = {f"{name}": value.contiguous() for name, value in method.state_dict().items()}
    save_file(state, str(out / f"rank{world.rank}.safetensors"))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
