"""pix2pix (Isola et al. 2017, "Image-to-Image Translation with Conditional Adversarial Networks").

Paired translation, the lectures' conditional GAN: each training input x comes with its true
translation y. One generator G: X -> Y (a U-Net) and one discriminator D that judges pairs: it
sees the input concatenated with an output on the channels, so it asks "is this y a plausible
translation of this x?", not merely "is this a plausible y?" (eq. 1). Objective (eq. 4):

    G* = arg min_G max_D  L_cGAN(G, D) + lambda L1(G),   L1(G) = E ||y - G(x)||_1,  lambda = 100

L1 carries the low frequencies, the 70x70 PatchGAN the high ones (sec. 3.2.2). Noise comes from
dropout in the decoder, on in training (sec. 3.1). On data whose truth is known, pix2pix trained
on the true pairs is the upper bound that frames how far the unpaired methods get.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn

from gantrans import losses
from gantrans.config import check_settings, setting
from gantrans.errors import UsageError
from gantrans.methods.base import AdversarialConfig, Batch, Losses, OneWayMethod, discriminator_penalties
from gantrans.methods.cyclegan import GENERATORS
from gantrans.nn import DISCRIMINATORS, NORMS, UPSAMPLE_MODES, EncoderDecoderGenerator, PatchDiscriminator, ResnetGenerator, init_weights


@dataclass(frozen=True)
class Pix2PixConfig:
    """pix2pix's networks and loss weights; defaults are the paper's and the reference code's
    (junyanz/pytorch-CycleGAN-and-pix2pix: --netG unet_256 --norm batch --gan_mode vanilla --lambda_L1 100)."""

    generator: str = setting(
        "unet", network=True, choices=GENERATORS, help="Generator architecture: resnet, unet (skip connections) or encoder-decoder."
    )
    discriminator: str = setting(
        "patch", network=True, choices=DISCRIMINATORS, help="Discriminator: patch (PatchGAN) or dcgan (strided to a single score at 64 px)."
    )
    norm: str = setting(
        "batch", network=True, choices=NORMS, help="Normalisation in both networks: instance, instance-affine, batch or none."
    )
    ngf: int = setting(64, network=True, low=1, high=1024, help="Generator width.")
    adversarial: AdversarialConfig = field(
        default_factory=lambda: AdversarialConfig(gan_loss="nonsaturating")
    )  # the discriminator, its objective and penalties
    depth: int = setting(
        8,
        network=True,
        low=1,
        high=10,
        help="U-Net and encoder-decoder generators: stride-2 levels (8 for 256 px); --size must be a multiple of 2**depth.",
    )
    dropout: float = setting(
        0.5, network=True, low=0.0, help="U-Net and encoder-decoder generators: dropout near the bottleneck, in training only."
    )
    n_blocks: int = setting(9, network=True, low=0, high=64, help="Generator residual blocks (9 for 256 px, 6 for 128 px).")
    upsample: str = setting(
        "transpose",
        network=True,
        choices=UPSAMPLE_MODES,
        help="Upsampling: transposed convolutions, or resize (nearest + conv: no checkerboard artifacts).",
    )
    lambda_l1: float = setting(100.0, low=0.0, help="Weight of L1 to the true translation.")
    init_gain: float = setting(0.02, low=0.0, help="Std of the normal weight initialisation.")

    def __post_init__(self) -> None:
        check_settings(self)
        if not self.dropout < 1:
            raise UsageError(f"--dropout must be in [0, 1) (got {self.dropout})")


def build_generator(config: Pix2PixConfig) -> nn.Module:
    """One untrained generator of `config`'s architecture."""
    if config.generator == "resnet":
        return ResnetGenerator(config.ngf, config.n_blocks, config.upsample, norm=config.norm)
    return EncoderDecoderGenerator(config.ngf, config.depth, config.generator == "unet", config.norm, config.dropout)


class Pix2Pix(OneWayMethod):
    """G: X -> Y held to the true y by L1 and judged, with its input, by a conditional PatchGAN."""

    config_class = Pix2PixConfig
    label = "pix2pix"
    needs_pairs: ClassVar[bool] = True  # trains on pairs (--paired folders or aligned); the trainer checks the data

    def __init__(self, config: Pix2PixConfig, domains: Sequence[str], training: bool = True) -> None:
        super().__init__(config, domains, training)
        generator = init_weights(build_generator(config), config.init_gain)
        self.generators["generator_xy"] = generator
        if training:
            # D(x, y): input and output concatenated on the channels, 3 + 3 (sec. 2.1, eq. 1).
            discriminator = PatchDiscriminator(
                config.adversarial.ndf,
                config.adversarial.n_layers_d,
                in_channels=6,
                norm=config.norm,
                dcgan=config.discriminator == "dcgan",
            )
            discriminator = init_weights(discriminator, config.init_gain)
            self.discriminators["discriminator_pair"] = (
                discriminator.use_spectral_norm() if config.adversarial.spectral_norm else discriminator
            )

    def _judge(self, inputs: Tensor, outputs: Tensor) -> Tensor:
        """The conditional discriminator's score map for (input, output) pairs."""
        return self.discriminators["discriminator_pair"](torch.cat([inputs, outputs], dim=1))

    def generator_loss(self, batch: Batch, step: int) -> Losses:
        real_x, real_y = batch
        fake_y = self.generators["generator_xy"](real_x)
        terms = {
            "adv": losses.generator_adversarial_loss(self.config.adversarial.gan_loss, self._judge(real_x, fake_y)),
            "l1": self.config.lambda_l1 * (fake_y.float() - real_y.float()).abs().mean(),  # eq. 3
        }
        return Losses.of(terms, fakes={"fake_y": fake_y.detach()})

    def discriminator_loss(self, batch: Batch, fakes: Mapping[str, Tensor]) -> Losses:
        real_x, real_y = batch
        fake_y = fakes["fake_y"]
        real_pair, fake_pair = torch.cat([real_x, real_y], dim=1), torch.cat([real_x, fake_y], dim=1)
        discriminator = self.discriminators["discriminator_pair"]
        adversarial = losses.discriminator_adversarial_loss(
            self.config.adversarial.gan_loss, discriminator(real_pair), discriminator(fake_pair)
        )
        # Halved "while optimizing D, to slow down the rate at which D learns relative to G" (sec. 3.3).
        terms = {
            "d_pair": 0.5 * adversarial,
            **discriminator_penalties(self.config.adversarial, discriminator, real_pair, fake_pair, self.rng),
        }
        return Losses.of(terms)

    def samples(self, batch: Batch) -> dict[str, Tensor]:
        real_x, real_y = batch
        return {"input_x": real_x, "output_y": self.generators["generator_xy"](real_x), "truth_y": real_y}
