"""One training step, the same for every method: optimizers, the update order, the learning-rate
schedule, skipped non-finite updates and the generators' moving average.

Update order of step s, one batch each:
  1. if (s + 1) % n_critic == 0: generator step, discriminators frozen; its fakes are kept; then
     the generators' moving average (--ema) takes a step towards the new weights
  2. if (s + 1) % n_generator == 0: discriminator step, on the fakes of step 1 (or fresh ones when
     no generator step ran)
This is the reference CycleGAN order for n_critic = n_generator = 1; one G step per n_critic D
steps (WGAN, StarGAN, DualGAN) or one D step per n_generator G steps (DiscoGAN) otherwise.
Randomness inside a step (dropout, noise drawn on the device) comes from torch's generator, which
the loop seeds with `step_seed(seed, s, rank)` before step s.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from gantrans import checkpoint
from gantrans.config import TrainConfig
from gantrans.distributed import World
from gantrans.errors import DivergedError
from gantrans.losses import gan_objective
from gantrans.methods import Losses, Method


def make_optimizer(parameters: Iterator[torch.nn.Parameter], config: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """The optimizer of `config` (Adam or RMSProp) over `parameters`."""
    # On the GPU, fused kernels update all parameters in a few launches (same arithmetic as the loop).
    fused = device.type == "cuda" or None
    if config.optimizer == "rmsprop":
        # RMSProp as in WGAN (Arjovsky et al. 2017, sec. 3): no momentum, which misleads a clipped critic.
        return torch.optim.RMSprop(
            parameters, lr=config.lr, alpha=config.beta2, weight_decay=config.weight_decay, foreach=device.type == "cuda"
        )
    return torch.optim.Adam(parameters, lr=config.lr, betas=(config.beta1, config.beta2), weight_decay=config.weight_decay, fused=fused)


def learning_rate_factor(step: int, decay_start: int, total: int) -> float:
    """1 until `decay_start`, then linearly down towards 0 at `total` (CycleGAN's schedule)."""
    if step < decay_start or total <= decay_start:
        return 1.0
    return max(0.0, (total - step) / (total - decay_start))


def batch_scaled_lr(lr: float, batch_size: int) -> float:
    """The learning rate for a batch of `batch_size`, from the one tuned for batch 1: times its
    square root (square-root scaling for Adam, Malladi et al. 2022)."""
    return lr * batch_size**0.5


def set_learning_rate(optimizers: dict[str, torch.optim.Optimizer], lr: float) -> None:
    for optimizer in optimizers.values():
        for group in optimizer.param_groups:
            group["lr"] = lr


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    """The seed of torch's generator for `step` on `rank` (rank 0's equals a single process's)."""
    return (seed * 2**32 + step + rank * 2**62) % 2**63


def train_step(
    method: Method,
    optimizers: dict[str, torch.optim.Optimizer],
    batch: tuple[Tensor, ...],
    step: int,
    config: TrainConfig,
    bf16: bool = False,
    world: World = World(),
    ema: GeneratorEMA | None = None,
) -> tuple[Losses | None, Losses | None, Tensor]:
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
        skipped = torch.maximum(skipped, step_if_finite(optimizers["optimizer_g"], method.generator_side(), world))
        if ema is not None:
            ema.update()
        method.discriminators.requires_grad_(True)
    if (step + 1) % config.n_generator == 0:
        optimizers["optimizer_d"].zero_grad(set_to_none=True)
        with autocast:
            if g_losses is None:  # an extra critic step: the method translates the batch afresh
                with torch.no_grad():
                    fakes = method.fresh_fakes(batch)
            d_losses = method.discriminator_loss(batch, g_losses.fakes if g_losses is not None else fakes)
        d_losses.total.backward()
        skipped = torch.maximum(skipped, step_if_finite(optimizers["optimizer_d"], method.discriminators, world))
        if config.clip > 0:
            # WGAN's weight clipping keeps the critic (roughly) K-Lipschitz (Arjovsky et al. 2017, algorithm 1).
            with torch.no_grad():
                for parameter in method.discriminators.parameters():
                    parameter.clamp_(-config.clip, config.clip)
    return g_losses, d_losses, skipped


def step_if_finite(optimizer: torch.optim.Optimizer, networks: nn.Module, world: World) -> Tensor:
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


class LossMeter:
    """Sums of loss terms since the last log line, kept on the device: reading them is the loop's only host sync."""

    def __init__(self) -> None:
        self.sums: dict[str, tuple[Tensor, int]] = {}

    def add(self, losses: Losses | None) -> None:
        for name, value in losses.terms.items() if losses is not None else ():
            total, count = self.sums.get(name, (0.0, 0))
            self.sums[name] = (total + value, count + 1)

    def means(self) -> dict[str, float]:
        """Mean of each term since the last call (D and G terms may have different counts: n_critic)."""
        means = {name: float(total) / count for name, (total, count) in self.sums.items()}
        self.sums = {}
        return means


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
            raise DivergedError(
                f"training diverged: {longest} steps in a row up to step {step} had NaN or infinite gradients{which}; they were skipped and the run stopped"
            )


def compile_networks(method: Method, config: TrainConfig) -> None:
    """torch.compile every network in place (state-dict names are kept). Discriminators stay eager
    under a gradient penalty: compiled graphs do not support its double backward."""
    for network in method.generators.values():
        network.compile()
    if not needs_double_backward(config):
        for network in method.discriminators.values():
            network.compile()


def needs_double_backward(config: TrainConfig) -> bool:
    """A gradient penalty (asked of the GAN objective) or R1 differentiates a gradient."""
    adversarial = config.model.adversarial
    return gan_objective(adversarial.gan_loss).needs_double_backward or adversarial.lambda_r1 > 0
