"""StarGAN (Choi et al. 2018, "StarGAN: Unified Generative Adversarial Networks for Multi-Domain
Image-to-Image Translation").

One generator G(x, c) for any number of domains, conditioned on the target domain c, and one
discriminator with two heads: real/fake and "which domain". The paper concatenates c to the image
as one-hot label maps; the generator's first instance norm removes such constant channels (after
the 7x7 convolution each is a constant per-channel shift), so G would ignore c. Here c selects a
scale and shift after the instance norms of the residual blocks and the decoder instead
(conditional instance normalisation, Dumoulin et al. 2017). Model files before format 3 hold the
label-map generator (`label_conditioning` "input") and still load and translate as they did.

Objectives (eq. 5 and 6):
  L_D = L_adv + lambda_cls * L_cls(real)           (classify real images into their domain)
  L_G = L_adv + lambda_cls * L_cls(fake) + lambda_rec * ||G(G(x, c), c') - x||_1
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from gantrans import losses
from gantrans.config import check_settings, setting
from gantrans.errors import UsageError
from gantrans.methods.base import LABEL_CONDITIONING, AdversarialConfig, Batch, Losses, Method, discriminator_penalties
from gantrans.nn import UPSAMPLE_MODES, ClassifyingDiscriminator, ConditionalResnetGenerator, ResnetGenerator, init_weights


@dataclass(frozen=True)
class StarGANConfig:
    """StarGAN's networks and loss weights; defaults are the paper's."""

    ngf: int = setting(64, network=True, low=1, high=1024, help="Generator width.")
    adversarial: AdversarialConfig = field(
        default_factory=lambda: AdversarialConfig(n_layers_d=6, gan_loss="wgan-gp")
    )  # the discriminator, its objective and penalties
    n_blocks: int = setting(6, network=True, low=0, high=64, help="Generator residual blocks (9 for 256 px, 6 for 128 px).")
    upsample: str = setting(
        "transpose",
        network=True,
        choices=UPSAMPLE_MODES,
        help="Upsampling: transposed convolutions, or resize (nearest + conv: no checkerboard artifacts).",
    )
    label_conditioning: str = setting(
        "norm",
        network=True,
        choices=LABEL_CONDITIONING,
        help="How the generator sees the target domain: norm (a per-domain scale and shift after the instance norms of its "
        "residual blocks and decoder) or input (one-hot label maps beside the image, as in the paper; the first instance "
        "norm removes them, so every target gives the same image: for model files before format 3).",
    )
    lambda_cls: float = setting(1.0, low=0.0, help="Domain classification weight.")
    lambda_rec: float = setting(10.0, low=0.0, help="Reconstruction (cycle back to the source domain) weight.")
    init_gain: float = setting(0.02, low=0.0, help="Std of the normal weight initialisation.")

    def __post_init__(self) -> None:
        check_settings(self)


class StarGAN(Method):
    """One ResNet generator conditioned on the target domain, one discriminator with a domain classifier."""

    config_class = StarGANConfig

    def __init__(self, config: StarGANConfig, domains: Sequence[str], training: bool = True) -> None:
        super().__init__(config, domains, training)
        if len(self.domains) < 2:
            raise UsageError(f"stargan needs at least 2 domains, got {len(self.domains)}: {', '.join(self.domains)}")
        n = len(self.domains)
        if config.label_conditioning == "norm":
            generator = ConditionalResnetGenerator(n, config.ngf, config.n_blocks, config.upsample)
        else:
            generator = ResnetGenerator(config.ngf, config.n_blocks, config.upsample, in_channels=3 + n, norm="instance-affine")
        self.generators["generator"] = init_weights(generator, config.init_gain)
        if training:
            discriminator = init_weights(
                ClassifyingDiscriminator(n, config.adversarial.ndf, config.adversarial.n_layers_d), config.init_gain
            )
            self.discriminators["discriminator"] = discriminator.use_spectral_norm() if config.adversarial.spectral_norm else discriminator

    def cautions(self) -> list[str]:
        if self.config.label_conditioning == "input":
            return [
                "--label-conditioning input: the generator's first instance norm removes the label maps, so every target "
                "gives the same image; it is kept for old model files (new runs: --label-conditioning norm)"
            ]
        return []

    def _generate(self, images: Tensor, domains: Tensor) -> Tensor:
        """G(x, c) for target domain indices `domains`: c as one-hot rows that select each conditional
        norm's scale and shift, or (label_conditioning "input") as one-hot maps concatenated to the
        image channels (paper fig. 3)."""
        labels = F.one_hot(domains, len(self.domains)).to(images.dtype)
        if self.config.label_conditioning == "norm":
            return self.generators["generator"](images, labels)
        maps = labels[:, :, None, None].expand(-1, -1, *images.shape[-2:])
        return self.generators["generator"](torch.cat([images, maps], dim=1))

    def _real_and_targets(self, batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
        """All domains' images in one batch, their domain indices, and random other domains as targets."""
        real = torch.cat(list(batch))
        source = torch.arange(len(batch)).repeat_interleave(batch[0].shape[0])
        # Uniform over the other domains: shift by 1 .. n-1 (mod n).
        offset = torch.randint(1, len(self.domains), source.shape, generator=self.rng)
        target = (source + offset) % len(self.domains)
        return real, source.to(real.device), target.to(real.device)

    def generator_loss(self, batch: Batch, step: int) -> Losses:
        real, source, target = self._real_and_targets(batch)
        fake = self._generate(real, target)
        fake_scores, fake_logits = self.discriminators["discriminator"](fake)
        reconstructed = self._generate(fake, source)  # back to where each image came from
        terms = {
            "adv": losses.generator_adversarial_loss(self.config.adversarial.gan_loss, fake_scores),
            "cls_fake": self.config.lambda_cls * F.cross_entropy(fake_logits.float(), target),
            "rec": self.config.lambda_rec * losses.cycle_loss(reconstructed, real),
        }
        return Losses.of(terms, fakes={"fake": fake.detach()})

    def fresh_fakes(self, batch: Batch) -> dict[str, Tensor]:
        real, _, target = self._real_and_targets(batch)
        return {"fake": self._generate(real, target)}

    def discriminator_loss(self, batch: Batch, fakes: Mapping[str, Tensor]) -> Losses:
        real, source, _ = self._real_and_targets(batch)
        discriminator = self.discriminators["discriminator"]
        real_scores, real_logits = discriminator(real)
        fake_scores, _ = discriminator(fakes["fake"])
        terms = {
            "d_adv": losses.discriminator_adversarial_loss(self.config.adversarial.gan_loss, real_scores, fake_scores),
            "d_cls_real": self.config.lambda_cls * F.cross_entropy(real_logits.float(), source),
        }
        scores_only = lambda images: discriminator(images)[0]  # noqa: E731  the penalties concern the real/fake head
        terms.update(discriminator_penalties(self.config.adversarial, scores_only, real, fakes["fake"], self.rng))
        return Losses.of(terms)

    def samples(self, batch: Batch) -> dict[str, Tensor]:
        """One input per domain (rows), translated into every domain (columns)."""
        real = torch.cat([images[:1] for images in batch])
        columns = {"real": real}
        for index, name in enumerate(self.domains):
            columns[f"to_{name}"] = self._generate(real, torch.full((real.shape[0],), index, device=real.device))
        return columns

    def translate(self, images: Tensor, target: str, source: str | None = None) -> Tensor:
        self.generators_for(target)
        index = self.domains.index(target)
        return self._generate(images, torch.full((images.shape[0],), index, device=images.device))

    def generators_for(self, target: str) -> tuple[str, ...]:
        self.check_domain(target)
        return ("generator",)
