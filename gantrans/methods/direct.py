"""Direct transformation (the lectures' "Approach 1"): one generator G: X -> Y and a discriminator of Y.

Nothing but the adversarial loss ties G(x) to x, so G could ignore its input. Two remedies:
(a) a shallow generator (few residual blocks) that cannot stray far from its input; and
(b) feature consistency in a frozen pretrained encoder, ||phi(G(x)) - phi(x)||^2 with phi = VGG16
    features (as in the perceptual loss of Johnson et al. 2016; the DTN/"content" losses of
    Taigman et al. 2017), enabled with --lambda-feature > 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch.nn.functional as F
from torch import Tensor

from gantrans import losses
from gantrans.config import check_settings, setting
from gantrans.errors import UsageError
from gantrans.features import VGG16_LAYERS, load_vgg16
from gantrans.methods.base import AdversarialConfig, Batch, Losses, OneWayMethod, discriminator_penalties
from gantrans.nn import UPSAMPLE_MODES, PatchDiscriminator, ResnetGenerator, init_weights


@dataclass(frozen=True)
class DirectConfig:
    """A one-way generator and a PatchGAN of the target domain."""

    ngf: int = setting(64, network=True, low=1, high=1024, help="Generator width.")
    adversarial: AdversarialConfig = field(default_factory=AdversarialConfig)  # the discriminator, its objective and penalties
    n_blocks: int = setting(2, network=True, low=0, high=64, help="Generator residual blocks (9 for 256 px, 6 for 128 px).")
    upsample: str = setting(
        "transpose",
        network=True,
        choices=UPSAMPLE_MODES,
        help="Upsampling: transposed convolutions, or resize (nearest + conv: no checkerboard artifacts).",
    )
    lambda_feature: float = setting(
        0.0, low=0.0, help="VGG16 feature-consistency weight (0: plain; the pretrained VGG16 is downloaded on first use)."
    )
    feature_layers: tuple[str, ...] = setting(("relu2_2", "relu3_3"), help="VGG16 layers compared, comma-separated (relu1_2 ... relu5_3).")
    init_gain: float = setting(0.02, low=0.0, help="Std of the normal weight initialisation.")

    def __post_init__(self) -> None:
        check_settings(self)
        unknown = [layer for layer in self.feature_layers if layer not in VGG16_LAYERS]
        if unknown or not self.feature_layers:
            raise UsageError(
                f"--feature-layers must name VGG16 layers among {', '.join(VGG16_LAYERS)} (got {', '.join(self.feature_layers)})"
            )


class Direct(OneWayMethod):
    """G: X -> Y judged by D_Y, optionally held to x by VGG16 features."""

    config_class = DirectConfig
    label = "direct"

    def __init__(self, config: DirectConfig, domains: Sequence[str], training: bool = True) -> None:
        super().__init__(config, domains, training)
        self.generators["generator_xy"] = init_weights(ResnetGenerator(config.ngf, config.n_blocks, config.upsample), config.init_gain)
        if training:
            discriminator = init_weights(PatchDiscriminator(config.adversarial.ndf, config.adversarial.n_layers_d), config.init_gain)
            self.discriminators["discriminator_y"] = (
                discriminator.use_spectral_norm() if config.adversarial.spectral_norm else discriminator
            )
        # Frozen and not checkpointed: rebuilt from the cached ImageNet weights.
        self.feature_network = load_vgg16(config.feature_layers) if training and config.lambda_feature > 0 else None

    def generator_loss(self, batch: Batch, step: int) -> Losses:
        real_x, _ = batch
        fake_y = self.generators["generator_xy"](real_x)
        terms = {"adv": losses.generator_adversarial_loss(self.config.adversarial.gan_loss, self.discriminators["discriminator_y"](fake_y))}
        if self.feature_network is not None:
            fake_features, real_features = self.feature_network(fake_y), self.feature_network(real_x)
            feature_distance = sum(F.mse_loss(fake_features[n].float(), real_features[n].float()) for n in self.config.feature_layers)
            terms["feature"] = self.config.lambda_feature * feature_distance
        return Losses.of(terms, fakes={"fake_y": fake_y.detach()})

    def discriminator_loss(self, batch: Batch, fakes: Mapping[str, Tensor]) -> Losses:
        real_x, real_y = batch
        fake_y = fakes["fake_y"]
        discriminator = self.discriminators["discriminator_y"]
        terms = {
            "d_y": losses.discriminator_adversarial_loss(self.config.adversarial.gan_loss, discriminator(real_y), discriminator(fake_y))
        }
        terms.update(discriminator_penalties(self.config.adversarial, discriminator, real_y, fake_y, self.rng))
        return Losses.of(terms)

    def samples(self, batch: Batch) -> dict[str, Tensor]:
        real_x, real_y = batch
        return {"real_x": real_x, "fake_y": self.generators["generator_xy"](real_x), "real_y": real_y}
