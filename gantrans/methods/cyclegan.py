"""CycleGAN (Zhu et al. 2017, "Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial Networks").

Two generators G: X -> Y (`generator_xy`) and F: Y -> X (`generator_yx`), and two discriminators:
`discriminator_y` judges images of Y (real y vs. G(x)), `discriminator_x` judges images of X.
Objective (eq. 3): L_GAN(G, D_Y) + L_GAN(F, D_X) + lambda_cycle * L_cyc(G, F) + identity loss.

DiscoGAN (Kim et al. 2017) and DualGAN (Yi et al. 2017) are the same two-way objective with other
choices, so they are presets of this method (see `gantrans/methods/__init__.py`): an encoder-decoder
or U-Net generator, batch norm, a DCGAN discriminator, L2 cycles, feature matching in the
discriminator, a cycle-weight curriculum, WGAN with weight clipping.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from gantrans import losses
from gantrans.config import check_settings, setting
from gantrans.errors import UsageError
from gantrans.methods.base import AdversarialConfig, Batch, Losses, Method, discriminator_penalties, with_cycle_noise
from gantrans.nn import DISCRIMINATORS, NORMS, UPSAMPLE_MODES, EncoderDecoderGenerator, PatchDiscriminator, ResnetGenerator, init_weights

GENERATORS = ("resnet", "unet", "encoder-decoder")


@dataclass(frozen=True)
class CycleGANConfig:
    """CycleGAN's networks and loss weights; defaults are the paper's."""

    generator: str = setting(
        "resnet", network=True, choices=GENERATORS, help="Generator architecture: resnet, unet (skip connections) or encoder-decoder."
    )
    discriminator: str = setting(
        "patch", network=True, choices=DISCRIMINATORS, help="Discriminator: patch (PatchGAN) or dcgan (strided to a single score at 64 px)."
    )
    norm: str = setting(
        "instance", network=True, choices=NORMS, help="Normalisation in both networks: instance, instance-affine, batch or none."
    )
    ngf: int = setting(64, network=True, low=1, high=1024, help="Generator width.")
    adversarial: AdversarialConfig = field(default_factory=AdversarialConfig)  # the discriminator, its objective and penalties
    n_blocks: int = setting(9, network=True, low=0, high=64, help="Generator residual blocks (9 for 256 px, 6 for 128 px).")
    depth: int = setting(
        8,
        network=True,
        low=1,
        high=10,
        help="U-Net and encoder-decoder generators: stride-2 levels (8 for 256 px); --size must be a multiple of 2**depth.",
    )
    dropout: float = setting(
        0.0, network=True, low=0.0, help="U-Net and encoder-decoder generators: dropout near the bottleneck, in training only."
    )
    upsample: str = setting(
        "transpose",
        network=True,
        choices=UPSAMPLE_MODES,
        help="Upsampling: transposed convolutions, or resize (nearest + conv: no checkerboard artifacts).",
    )
    colour_skip: bool = setting(
        False,
        network=True,
        help="ResNet generators: a 1x1 convolution from input to output colour that bypasses the normalisations, so a tone change stays a per-pixel map.",
    )
    cycle_norm: str = setting("l1", choices=losses.CYCLE_NORMS, help="Cycle loss: l1, or l2 (mean squared error).")
    lambda_cycle: float = setting(10.0, low=0.0, help="Cycle-consistency weight (shared-latent remedy 3; 0: off there).")
    cycle_warmup_steps: int = setting(0, low=0, help="Steps at the start that weigh the cycle loss by lambda_cycle_warmup instead.")
    lambda_cycle_warmup: float = setting(0.0, low=0.0, help="The cycle weight during the warm-up (DiscoGAN's curriculum).")
    lambda_identity: float = setting(0.5, low=0.0, help="Identity loss weight, relative to --lambda-cycle (0: off).")
    cycle_noise: float = setting(
        0.0,
        low=0.0,
        help="Std of Gaussian noise added to a translation before it is translated back in the cycle loss, so no invisible code can carry the input (0: off).",
    )
    lambda_fm: float = setting(
        0.0, low=0.0, help="Feature matching weight: the discriminators' mean features of real and fake images (0: off)."
    )
    pool_size: int = setting(50, low=0, help="Image history shown to the discriminators (0: off).")
    init_gain: float = setting(0.02, low=0.0, help="Std of the normal weight initialisation.")

    def __post_init__(self) -> None:
        check_settings(self)
        if not self.dropout < 1:
            raise UsageError(f"--dropout must be in [0, 1) (got {self.dropout})")


def build_generator(config: CycleGANConfig) -> nn.Module:
    """One untrained generator of `config`'s architecture."""
    if config.generator == "resnet":
        return ResnetGenerator(config.ngf, config.n_blocks, config.upsample, norm=config.norm, colour_skip=config.colour_skip)
    return EncoderDecoderGenerator(config.ngf, config.depth, config.generator == "unet", config.norm, config.dropout)


def build_discriminator(config: CycleGANConfig) -> PatchDiscriminator:
    """One untrained discriminator of `config`'s architecture."""
    return PatchDiscriminator(
        config.adversarial.ndf, config.adversarial.n_layers_d, norm=config.norm, dcgan=config.discriminator == "dcgan"
    )


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
    """Two generators, two discriminators; adversarial, cycle, identity and feature-matching losses."""

    config_class = CycleGANConfig

    def __init__(self, config: CycleGANConfig, domains: Sequence[str], training: bool = True) -> None:
        super().__init__(config, domains, training)
        if len(self.domains) != 2:
            raise UsageError(
                f"cyclegan translates between exactly 2 domains, got {len(self.domains)} ({', '.join(self.domains)}): "
                f"pick two with --domains {','.join(self.domains[:2])}"
            )
        for name in ("generator_xy", "generator_yx"):
            self.generators[name] = init_weights(build_generator(config), config.init_gain)
        if training:
            for name in ("discriminator_x", "discriminator_y"):
                discriminator = init_weights(build_discriminator(config), config.init_gain)
                self.discriminators[name] = discriminator.use_spectral_norm() if config.adversarial.spectral_norm else discriminator
        self.pool_x = ImagePool(config.pool_size, self.rng)  # old fakes of X, shown to discriminator_x
        self.pool_y = ImagePool(config.pool_size, self.rng)

    def generator_loss(self, batch: Batch, step: int) -> Losses:
        real_x, real_y = batch
        config = self.config
        generator_xy, generator_yx = self.generators["generator_xy"], self.generators["generator_yx"]
        fake_y = generator_xy(real_x)
        reconstructed_x = generator_yx(with_cycle_noise(fake_y, config.cycle_noise))  # forward cycle: x -> G(x) -> F(G(x)) ~ x
        fake_x = generator_yx(real_y)
        reconstructed_y = generator_xy(with_cycle_noise(fake_x, config.cycle_noise))  # backward cycle: y -> F(y) -> G(F(y)) ~ y
        # DiscoGAN's curriculum: a weak cycle loss lets the adversarial loss shape the outputs first.
        lambda_cycle = config.lambda_cycle_warmup if step < config.cycle_warmup_steps else config.lambda_cycle
        terms = {
            **self._adversarial_terms("xy", "discriminator_y", real_y, fake_y),
            **self._adversarial_terms("yx", "discriminator_x", real_x, fake_x),
            "cycle_x": lambda_cycle * losses.cycle_loss(reconstructed_x, real_x, config.cycle_norm),
            "cycle_y": lambda_cycle * losses.cycle_loss(reconstructed_y, real_y, config.cycle_norm),
        }
        if config.lambda_identity > 0:
            # Identity loss keeps colour composition when the input already looks like the target (paper sec. 5.2).
            weight = lambda_cycle * config.lambda_identity
            terms["identity_x"] = weight * losses.identity_loss(generator_yx(real_x), real_x)
            terms["identity_y"] = weight * losses.identity_loss(generator_xy(real_y), real_y)
        return Losses.of(terms, fakes={"fake_x": fake_x, "fake_y": fake_y})

    def _adversarial_terms(self, direction: str, name: str, real: Tensor, fake: Tensor) -> dict[str, Tensor]:
        """The generator's adversarial loss against discriminator `name`, and feature matching when enabled."""
        discriminator = self.discriminators[name]
        if self.config.lambda_fm == 0:
            return {f"adv_{direction}": losses.generator_adversarial_loss(self.config.adversarial.gan_loss, discriminator(fake))}
        fake_scores, fake_features = discriminator.scores_and_features(fake)
        with torch.no_grad():
            _, real_features = discriminator.scores_and_features(real)
        return {
            f"adv_{direction}": losses.generator_adversarial_loss(self.config.adversarial.gan_loss, fake_scores),
            f"fm_{direction}": self.config.lambda_fm * losses.feature_matching_loss(real_features, fake_features),
        }

    def samples(self, batch: Batch) -> dict[str, Tensor]:
        real_x, real_y = batch
        fake_y, fake_x = self.generators["generator_xy"](real_x), self.generators["generator_yx"](real_y)
        return {
            "real_x": real_x,
            "fake_y": fake_y,
            "reconstructed_x": self.generators["generator_yx"](fake_y),
            "real_y": real_y,
            "fake_x": fake_x,
            "reconstructed_y": self.generators["generator_xy"](fake_x),
        }

    def fresh_fakes(self, batch: Batch) -> dict[str, Tensor]:
        real_x, real_y = batch
        return {"fake_y": self.generators["generator_xy"](real_x), "fake_x": self.generators["generator_yx"](real_y)}

    def discriminator_loss(self, batch: Batch, fakes: Mapping[str, Tensor]) -> Losses:
        real_x, real_y = batch
        terms = {
            "d_y": self._discriminator_term("discriminator_y", real_y, self.pool_y.query(fakes["fake_y"])),
            "d_x": self._discriminator_term("discriminator_x", real_x, self.pool_x.query(fakes["fake_x"])),
        }
        return Losses.of(terms)

    def _discriminator_term(self, name: str, real: Tensor, fake: Tensor) -> Tensor:
        discriminator = self.discriminators[name]
        adversarial = losses.discriminator_adversarial_loss(self.config.adversarial.gan_loss, discriminator(real), discriminator(fake))
        # Halved "to slow down the rate at which D learns relative to G" (paper sec. 7.1).
        return 0.5 * adversarial + sum(discriminator_penalties(self.config.adversarial, discriminator, real, fake, self.rng).values())

    def translate(self, images: Tensor, target: str, source: str | None = None) -> Tensor:
        return self.generators[self.generators_for(target)[0]](images)

    def generators_for(self, target: str) -> tuple[str, ...]:
        self.check_domain(target)
        return ("generator_xy",) if target == self.domains[1] else ("generator_yx",)

    def training_state(self) -> dict[str, Tensor]:
        return {**super().training_state(), **self.pool_x.state("pool_x"), **self.pool_y.state("pool_y")}

    def load_training_state(self, state: Mapping[str, Tensor]) -> None:
        super().load_training_state(state)
        device = next(self.parameters()).device
        self.pool_x.load_state(state, "pool_x", device)
        self.pool_y.load_state(state, "pool_y", device)
