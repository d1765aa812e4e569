"""Direct transformation (the lectures' "Approach 1"): one generator G: X -> Y and a discriminator of Y.

Nothing but the adversarial loss ties G(x) to x, so G could ignore its input. Two remedies:
(a) a shallow generator (few residual blocks) that cannot stray far from its input; and
(b) feature consistency in a frozen pretrained encoder, ||phi(G(x)) - phi(x)||^2 with phi = VGG16
    features (as in the perceptual loss of Johnson et al. 2016; the DTN/"content" losses of
    Taigman et al. 2017), enabled with --lambda-feature > 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch.nn.functional as F
from torch import Tensor

from gantrans import losses
from gantrans.errors import UsageError
from gantrans.features import VGG16_LAYERS, load_vgg16
from gantrans.methods.base import Batch, Losses, OneWayMethod, check_common_settings, discriminator_penalties
from gantrans.nn import PatchDiscriminator, ResnetGenerator, init_weights


@dataclass(frozen=True)
class DirectConfig:
    """A one-way generator and a PatchGAN of the target domain."""

    ngf: int = 64  # generator width
    ndf: int = 64  # discriminator width
    n_blocks: int = 2  # residual blocks: few, so that G(x) stays close to x
    n_layers_d: int = 3  # PatchGAN depth (3: 70x70 patches)
    upsample: str = "transpose"  # transpose, or resize (nearest resize + conv)
    spectral_norm: bool = False  # spectral normalisation in the discriminator
    gan_loss: str = "lsgan"  # one of gantrans.losses.GAN_LOSSES
    lambda_feature: float = 0.0  # weight of the VGG16 feature-consistency loss; 0: plain direct transformation
    feature_layers: tuple[str, ...] = ("relu2_2", "relu3_3")  # VGG16 layers compared (relu1_2 ... relu5_3)
    lambda_gp: float = 10.0  # gradient penalty weight (wgan-gp only)
    lambda_r1: float = 0.0  # R1 penalty gamma on real images; 0: off
    init_gain: float = 0.02  # std of the normal weight initialisation

    def __post_init__(self) -> None:
        check_common_settings(self, ("lambda_feature", "lambda_gp", "lambda_r1"))
        unknown = [layer for layer in self.feature_layers if layer not in VGG16_LAYERS]
        if unknown or not self.feature_layers:
            raise UsageError(f"--feature-layers must name VGG16 layers among {', '.join(VGG16_LAYERS)} (got {', '.join(self.feature_layers)})")

class Direct(OneWayMethod):
    """G: X -> Y judged by D_Y, optionally held to x by VGG16 features."""

    config_class = DirectConfig
    label = "direct"

    def __init__(self, config: DirectConfig, domains: Sequence[str], training: bool = True) -> None:
        super().__init__(config, domains, training)
        self.generators["generator_xy"] = init_weights(ResnetGenerator(config.ngf, config.n_blocks, config.upsample), config.init_gain)
        self.stride, self.min_side = ResnetGenerator.stride, ResnetGenerator.min_side
        if training:
            discriminator = init_weights(PatchDiscriminator(config.ndf, config.n_layers_d), config.init_gain)
            self.discriminators["discriminator_y"] = discriminator.use_spectral_norm() if config.spectral_norm else discriminator
        # Frozen and not checkpointed: rebuilt from the cached ImageNet weights.
        self.feature_network = load_vgg16(config.feature_layers) if training and config.lambda_feature > 0 else None

    def generator_loss(self, batch: Batch, step: int) -> Losses:
        real_x, _ = batch
        fake_y = self.generators["generator_xy"](real_x)
        terms = {"adv": losses.generator_adversarial_loss(self.config.gan_loss, self.discriminators["discriminator_y"](fake_y))}
        if self.feature_network is not None:
            fake_features, real_features = self.feature_network(fake_y), self.feature_network(real_x)
            feature_distance = sum(F.mse_loss(fake_features[n].float(), real_features[n].float()) for n in self.config.feature_layers)
            terms["feature"] = self.config.lambda_feature * feature_distance
        return Losses(total=sum(terms.values()), terms={k: v.detach() for k, v in terms.items()}, fakes={"fake_y": fake_y.detach()})

    def discriminator_loss(self, batch: Batch, fakes: Mapping[str, Tensor] | None) -> Losses:
        real_x, real_y = batch
        fake_y = self.fake_y(real_x, fakes)
        discriminator = self.discriminators["discriminator_y"]
        terms = {"d_y": losses.discriminator_adversarial_loss(self.config.gan_loss, discriminator(real_y), discriminator(fake_y))}
        terms.update(discriminator_penalties(self.config, discriminator, real_y, fake_y, self.rng))
        return Losses(total=sum(terms.values()), terms={k: v.detach() for k, v in terms.items()})

    def samples(self, batch: Batch) -> dict[str, Tensor]:
        real_x, real_y = batch
        return {"real_x": real_x, "fake_y": self.generators["generator_xy"](real_x), "real_y": real_y}

