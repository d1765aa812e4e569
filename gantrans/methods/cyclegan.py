"""CycleGAN (Zhu et al. 2017, "Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial Networks").

Two generators G: X -> Y (`generator_xy`) and F: Y -> X (`generator_yx`), and two discriminators:
`discriminator_y` judges images of Y (real y vs. G(x)), `discriminator_x` judges images of X.
Objective (eq. 3): L_GAN(G, D_Y) + L_GAN(F, D_X) + lambda_cycle * L_cyc(G, F) + identity loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from torch import Tensor

from gantrans import losses
from gantrans.errors import UsageError
from gantrans.methods.base import Batch, Losses, Method, check_common_settings, discriminator_penalties
from gantrans.nn import PatchDiscriminator, ResnetGenerator, init_weights


@dataclass(frozen=True)
class CycleGANConfig:
    """CycleGAN's networks and loss weights; defaults are the paper's."""

    ngf: int = 64  # generator width (filters of the first layer)
    ndf: int = 64  # discriminator width
    n_blocks: int = 9  # residual blocks: 9 for 256px images, 6 for 128px
    n_layers_d: int = 3  # PatchGAN depth: 3 gives 70x70 patches
    upsample: str = "transpose"  # transpose (paper) or resize (nearest resize + conv: no checkerboard artifacts)
    spectral_norm: bool = False  # spectral normalisation in the discriminators
    gan_loss: str = "lsgan"  # one of gantrans.losses.GAN_LOSSES; the paper uses least squares
    lambda_cycle: float = 10.0  # weight of each direction's cycle loss
    lambda_identity: float = 0.5  # identity loss weight, relative to lambda_cycle (0 disables it)
    lambda_gp: float = 10.0  # gradient penalty weight (wgan-gp only)
    lambda_r1: float = 0.0  # R1 penalty gamma on real images (Mescheder et al. 2018); 0: off
    pool_size: int = 50  # image history for the discriminators (0 disables it)
    init_gain: float = 0.02  # std of the normal weight initialisation

    def __post_init__(self) -> None:
        check_common_settings(self, ("lambda_cycle", "lambda_identity", "lambda_gp", "lambda_r1", "pool_size"))

class ImagePool:
    """A history of generated images (Shrivastava et al. 2017, used by CycleGAN sec. 4).

    Once full, each new image is, with probability 1/2, swapped for a random stored one, so the
    discriminator also sees older fakes; this damps the oscillation between G and D.
    """

    def __init__(self, size: int, generator: torch.Generator) -> None:
        self.size = size
        self.generator = generator
        self.images: list[Tensor] = []

    def query(self, images: Tensor) -> Tensor:
        if self.size == 0:
            return images
        returned = []
        for image in images.detach():
            if len(self.images) < self.size:
                self.images.append(image.clone())
                returned.append(image)
            elif torch.rand((), generator=self.generator).item() < 0.5:
                index = int(torch.randint(len(self.images), (), generator=self.generator))
                returned.append(self.images[index])
                self.images[index] = image.clone()
            else:
                returned.append(image)
        return torch.stack(returned)

    def state(self, prefix: str) -> dict[str, Tensor]:
        return {f"{prefix}.{index}": image for index, image in enumerate(self.images)}

    def load_state(self, state: Mapping[str, Tensor], prefix: str, device: torch.device) -> None:
        count = sum(1 for key in state if key.startswith(prefix + "."))
        self.images = [state[f"{prefix}.{index}"].to(device) for index in range(count)]


class CycleGAN(Method):
    """Two ResNet generators, two PatchGAN discriminators, cycle and identity losses."""

    config_class = CycleGANConfig
    stride = ResnetGenerator.stride
    min_side = ResnetGenerator.min_side

    def __init__(self, config: CycleGANConfig, domains: Sequence[str], training: bool = True) -> None:
        super().__init__(config, domains, training)
        if len(self.domains) != 2:
            raise UsageError(
                f"cyclegan translates between exactly 2 domains, got {len(self.domains)} ({', '.join(self.domains)}): "
                f"pick two with --domains {','.join(self.domains[:2])}"
            )
        for name in ("generator_xy", "generator_yx"):
            self.generators[name] = init_weights(ResnetGenerator(config.ngf, config.n_blocks, config.upsample), config.init_gain)
        if training:
            for name in ("discriminator_x", "discriminator_y"):
                discriminator = init_weights(PatchDiscriminator(config.ndf, config.n_layers_d), config.init_gain)
                self.discriminators[name] = discriminator.use_spectral_norm() if config.spectral_norm else discriminator
        self.pool_x = ImagePool(config.pool_size, self.rng)  # old fakes of X, shown to discriminator_x
        self.pool_y = ImagePool(config.pool_size, self.rng)

    def generator_loss(self, batch: Batch) -> Losses:
        real_x, real_y = batch
        generator_xy, generator_yx = self.generators["generator_xy"], self.generators["generator_yx"]
        fake_y = generator_xy(real_x)
        reconstructed_x = generator_yx(fake_y)  # forward cycle: x -> G(x) -> F(G(x)) ~ x
        fake_x = generator_yx(real_y)
        reconstructed_y = generator_xy(fake_x)  # backward cycle: y -> F(y) -> G(F(y)) ~ y
        kind = self.config.gan_loss
        terms = {
            "adv_xy": losses.generator_adversarial_loss(kind, self.discriminators["discriminator_y"](fake_y)),
            "adv_yx": losses.generator_adversarial_loss(kind, self.discriminators["discriminator_x"](fake_x)),
            "cycle_x": self.config.lambda_cycle * losses.cycle_loss(reconstructed_x, real_x),
            "cycle_y": self.config.lambda_cycle * losses.cycle_loss(reconstructed_y, real_y),
        }
        if self.config.lambda_identity > 0:
            # Identity loss keeps colour composition when the input already looks like the target (paper sec. 5.2).
            weight = self.config.lambda_cycle * self.config.lambda_identity
            terms["identity_x"] = weight * losses.identity_loss(generator_yx(real_x), real_x)
            terms["identity_y"] = weight * losses.identity_loss(generator_xy(real_y), real_y)
        return Losses(
            total=sum(terms.values()),
            terms={name: value.detach() for name, value in terms.items()},
            fakes={"fake_x": fake_x.detach(), "fake_y": fake_y.detach()},
        )

    def samples(self, batch: Batch) -> dict[str, Tensor]:
        real_x, real_y = batch
        fake_y, fake_x = self.generators["generator_xy"](real_x), self.generators["generator_yx"](real_y)
        return {
            "real_x": real_x, "fake_y": fake_y, "reconstructed_x": self.generators["generator_yx"](fake_y),
            "real_y": real_y, "fake_x": fake_x, "reconstructed_y": self.generators["generator_xy"](fake_x),
        }  # fmt: skip

    def discriminator_loss(self, batch: Batch, fakes: Mapping[str, Tensor] | None) -> Losses:
        real_x, real_y = batch
        if fakes is None:
            with torch.no_grad():
                fakes = {"fake_y": self.generators["generator_xy"](real_x), "fake_x": self.generators["generator_yx"](real_y)}
        terms = {
            "d_y": self._discriminator_term("discriminator_y", real_y, self.pool_y.query(fakes["fake_y"])),
            "d_x": self._discriminator_term("discriminator_x", real_x, self.pool_x.query(fakes["fake_x"])),
        }
        return Losses(total=sum(terms.values()), terms={name: value.detach() for name, value in terms.items()})

    def _discriminator_term(self, name: str, real: Tensor, fake: Tensor) -> Tensor:
        discriminator = self.discriminators[name]
        adversarial = losses.discriminator_adversarial_loss(self.config.gan_loss, discriminator(real), discriminator(fake))
        # Halved "to slow down the rate at which D learns relative to G" (paper sec. 7.1).
        return 0.5 * adversarial + sum(discriminator_penalties(self.config, discriminator, real, fake, self.rng).values())

    def translate(self, images: Tensor, target: str, source: str | None = None) -> Tensor:
        return self.generators[self.generators_for(target)[0]](images)

    def generators_for(self, target: str) -> tuple[str, ...]:
        if target not in self.domains:
            raise UsageError(f"unknown domain {target!r}; this model knows: {', '.join(self.domains)}")
        return ("generator_xy",) if target == self.domains[1] else ("generator_yx",)

    def training_state(self) -> dict[str, Tensor]:
        return {**super().training_state(), **self.pool_x.state("pool_x"), **self.pool_y.state("pool_y")}

    def load_training_state(self, state: Mapping[str, Tensor]) -> None:
        super().load_training_state(state)
        device = next(self.parameters()).device
        self.pool_x.load_state(state, "pool_x", device)
        self.pool_y.load_state(state, "pool_y", device)
