"""The contract between a method and the one training loop: a method computes, the trainer updates.

A method owns its networks (`generators`, `discriminators`) and returns losses; it never calls
`backward()`, steps optimizers or keeps results between calls. State that must survive a
resume (an image pool, its random generator) is returned by `training_state()` and restored by
`load_training_state()`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from gantrans import losses
from gantrans.config import check_settings, setting
from gantrans.errors import UsageError

Batch = Sequence[Tensor]  # one image batch per domain, in the order of `Method.domains`

# How a network shared by several domains (StarGAN's generator, shared-latent's --fully-shared encoder and
# decoder) sees the domain: "norm", as a per-domain scale and shift after its instance norms (Dumoulin et
# al. 2017); "input", as one-hot label maps beside the image, which the first instance norm cancels (a
# constant map is a constant per-channel shift after a convolution): kept so that model files before
# format 3 still load.
LABEL_CONDITIONING = ("norm", "input")


@dataclass(frozen=True)
class AdversarialConfig:
    """What every method's discriminators share: their size, the GAN objective and its penalties."""

    ndf: int = setting(64, network=True, low=1, high=1024, help="Discriminator width.")
    n_layers_d: int = setting(
        3, network=True, low=1, high=8, help="Discriminator depth: PatchGAN layers (3 = 70x70 patches); StarGAN's stride-2 layers."
    )
    spectral_norm: bool = setting(False, network=True, help="Spectral normalisation in the discriminators (Miyato et al. 2018).")
    gan_loss: str = setting(
        "lsgan",
        choices=losses.GAN_LOSSES,
        help="The GAN objective (wgan needs --clip); kl, reverse-kl, pearson, squared-hellinger and js are f-GAN divergences (Nowozin et al. 2016).",
    )
    lambda_gp: float = setting(10.0, low=0.0, help="Gradient penalty weight (objectives with a gradient penalty: wgan-gp).")
    lambda_r1: float = setting(0.0, low=0.0, help="R1 penalty gamma on real images (Mescheder et al. 2018; 0: off).")

    def __post_init__(self) -> None:
        check_settings(self)


@dataclass
class Losses:
    """What one loss computation hands to the trainer."""

    total: Tensor  # the scalar the trainer backpropagates
    terms: dict[str, Tensor]  # detached components, for logging
    fakes: dict[str, Tensor] = field(default_factory=dict)  # detached generated images, reused by the D step

    @classmethod
    def of(cls, terms: Mapping[str, Tensor], fakes: Mapping[str, Tensor] | None = None) -> Losses:
        """The sum of `terms` to backpropagate, with the terms and `fakes` detached."""
        detached = {name: value.detach() for name, value in (fakes or {}).items()}
        return cls(total=sum(terms.values()), terms={name: value.detach() for name, value in terms.items()}, fakes=detached)  # type: ignore[arg-type]


class Method(nn.Module):
    """Base class of every method. Subclasses set `config_class` and fill the two module dicts."""

    config_class: ClassVar[type]
    needs_pairs: ClassVar[bool] = False  # trains on paired data (pix2pix), not on unpaired domains

    def __init__(self, config: Any, domains: Sequence[str], training: bool = True) -> None:
        super().__init__()
        self.config = config
        self.domains = tuple(domains)
        self.generators = nn.ModuleDict()
        self.discriminators = nn.ModuleDict()  # left empty when built for inference only
        # Trained with the generators but not used to translate (CUT's projection heads): kept in the
        # training state, never in the model file. Left empty when built for inference only.
        self.auxiliary = nn.ModuleDict()
        self.rng = torch.Generator().manual_seed(0)  # reseeded by the trainer; checkpointed

    @property
    def stride(self) -> int:
        """Image sides must be multiples of this for every generator (each declares its own)."""
        return max((getattr(network, "stride", 1) for network in self.generators.values()), default=1)

    @property
    def min_side(self) -> int:
        """The shortest image side every generator accepts."""
        return max((getattr(network, "min_side", 1) for network in self.generators.values()), default=1)

    def generator_side(self) -> nn.ModuleList:
        """The networks the generator step trains: the generators and the auxiliary networks."""
        return nn.ModuleList([self.generators, self.auxiliary])

    def generator_loss(self, batch: Batch, step: int) -> Losses:
        """Losses of the generators for one batch at training step `step` (0-based), for weights
        that follow a schedule. The trainer freezes the discriminators meanwhile."""
        raise NotImplementedError

    def discriminator_loss(self, batch: Batch, fakes: Mapping[str, Tensor]) -> Losses:
        """Losses of the discriminators; `fakes` are the detached images of the preceding generator
        step, or `fresh_fakes(batch)` when no generator step ran (extra critic steps)."""
        raise NotImplementedError

    def fresh_fakes(self, batch: Batch) -> dict[str, Tensor]:
        """Translations of `batch` for a discriminator step that follows no generator step; the
        trainer calls it without gradients. Keys as in `generator_loss(...).fakes`."""
        raise NotImplementedError

    def check_domain(self, name: str) -> None:
        """A clear error when `name` is none of the model's domains."""
        if name not in self.domains:
            raise UsageError(f"unknown domain {name!r}; this model knows: {', '.join(self.domains)}")

    def samples(self, batch: Batch) -> dict[str, Tensor]:
        """Images for a sample grid, one column each (called without gradients, at sample steps only)."""
        raise NotImplementedError

    def translate(self, images: Tensor, target: str, source: str | None = None) -> Tensor:
        """Map images in [-1, 1] (NCHW, sides multiples of `stride`) to domain `target`."""
        raise NotImplementedError

    def generators_for(self, target: str) -> tuple[str, ...]:
        """Names of the generator modules that translating into `target` uses (empty: the method cannot)."""
        raise NotImplementedError

    def source_domain(self, target: str, source: str | None) -> str | None:
        """The input's domain that translating into `target` will assume: `source` checked, or the
        method's default when it is None. None for methods that don't need it."""
        return None

    def training_min_side(self) -> int:
        """The shortest image side that every network of the method (discriminators too) accepts."""
        return max([self.min_side, *(getattr(network, "min_side", 1) for network in self.discriminators.values())])

    def cautions(self) -> list[str]:
        """What a user training this method with these settings should be told (one line each)."""
        return []

    def check_training_size(self, size: int) -> None:
        """A clear error when square training crops of `size` pixels do not fit the networks."""
        if size % self.stride:
            raise UsageError(
                f"--size {size} must be a multiple of {self.stride} for this generator (e.g. {max(self.stride, size // self.stride * self.stride)})"
            )
        needed = self.training_min_side()
        if size < needed:
            raise UsageError(
                f"--size {size} is too small for these networks: they need at least {needed} pixels (use a larger --size, or a smaller --n-layers-d or --depth)"
            )

    def training_state(self) -> dict[str, Tensor]:
        """Tensors beyond the weights that a resume needs (the method's random state, pools...)."""
        return {"rng": self.rng.get_state()}

    def load_training_state(self, state: Mapping[str, Tensor]) -> None:
        self.rng.set_state(state["rng"])


class OneWayMethod(Method):
    """A method with one generator, `generator_xy`, from the first domain into the second (direct,
    cut, pix2pix): asking for the other direction is one clear error."""

    label: ClassVar[str]  # the method's name in errors

    def __init__(self, config: Any, domains: Sequence[str], training: bool = True) -> None:
        super().__init__(config, domains, training)
        if len(self.domains) != 2:
            raise UsageError(
                f"{self.label} maps one domain to another: exactly 2 domains, got {len(self.domains)} ({', '.join(self.domains)})"
            )

    def fresh_fakes(self, batch: Batch) -> dict[str, Tensor]:
        return {"fake_y": self.generators["generator_xy"](batch[0])}

    def translate(self, images: Tensor, target: str, source: str | None = None) -> Tensor:
        if not self.generators_for(target):
            raise UsageError(f"{self.label} translates {self.domains[0]} -> {self.domains[1]} only")
        return self.generators["generator_xy"](images)

    def generators_for(self, target: str) -> tuple[str, ...]:
        if target not in self.domains:
            raise UsageError(f"unknown domain {target!r}; this model knows: {', '.join(self.domains)}")
        return ("generator_xy",) if target == self.domains[1] else ()


def discriminator_penalties(
    config: Any, scores: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor, rng: torch.Generator
) -> dict[str, Tensor]:
    """The optional regularisers of a discriminator's real/fake scores: the gradient penalty of an
    objective that has one (--gan-loss wgan-gp) and the R1 penalty (with --lambda-r1 > 0)."""
    terms = {}
    if losses.gan_objective(config.gan_loss).gradient_penalty:
        terms["d_gp"] = config.lambda_gp * losses.gradient_penalty(scores, real, fake, rng)
    if config.lambda_r1 > 0:
        terms["d_r1"] = 0.5 * config.lambda_r1 * losses.r1_penalty(scores, real)
    return terms


def with_cycle_noise(images: Tensor, sigma: float) -> Tensor:
    """`images` + N(0, sigma^2) noise: what a cycle translates back under --cycle-noise. A generator
    pair can satisfy the cycle loss by hiding the input in invisible detail of the translation
    (Chu et al. 2017, "CycleGAN, a Master of Steganography"); noise of a visible size wipes such a
    code out, so the content must be kept visibly. Drawn from torch's generator, which the trainer
    reseeds at every step (resume stays exact)."""
    return images if sigma == 0 else images + sigma * torch.randn_like(images)
