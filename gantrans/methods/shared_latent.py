"""Shared latent space: per-domain encoders and decoders meeting in one code (the lectures' "Approach 2:
projection to a common space"; UNIT, Liu et al. 2017; XGAN, Royer et al. 2017).

Each domain d has an encoder E_d (image -> code) and a decoder De_d (code -> image), so translating
x from domain i into domain j is De_j(E_i(x)). Two auto-encoders trained on their own would not agree
on what a code means; four remedies make them agree, each one switchable:
  1. shared layers: the last residual blocks of every encoder and the first of every decoder are one
     set of weights (--shared-layers N), or one encoder and one decoder serve every domain, told
     which by a per-domain scale and shift after each instance norm (--fully-shared; conditional
     instance normalisation, Dumoulin et al. 2017). Model files before format 3 told them by label
     maps at the input, which the first instance norm cancels (--label-conditioning input);
  2. a latent domain discriminator guesses which domain a code came from, and the encoders learn to
     confuse it (--latent-adversary confusion|reversal|off);
  3. cycle consistency: x -> E_i -> De_j -> E_j -> De_i ~ x (--lambda-cycle);
  4. semantic consistency (XGAN; Taigman et al.'s DTN): E_j(De_j(E_i(x))) ~ E_i(x) (--lambda-semantic).
Each domain is also an auto-encoder with a reconstruction loss (a VAE by default, as UNIT: the code is
the mean of a unit-variance Gaussian), and an image discriminator per domain keeps decoded images
sharp (VAE-GAN, Larsen et al. 2016).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gantrans import losses
from gantrans.config import check_settings, setting
from gantrans.errors import UsageError
from gantrans.methods.base import LABEL_CONDITIONING, AdversarialConfig, Batch, Losses, Method, discriminator_penalties, with_cycle_noise
from gantrans.nn import (
    UPSAMPLE_MODES,
    ConditionalImageDecoder,
    ConditionalImageEncoder,
    ImageDecoder,
    ImageEncoder,
    LatentDiscriminator,
    PatchDiscriminator,
    ResidualBlock,
    init_weights,
)

LATENT_ADVERSARIES = (*losses.LATENT_OBJECTIVES, "off")


@dataclass(frozen=True)
class SharedLatentConfig:
    """Encoders, decoders and the four remedies; defaults follow UNIT where it has one."""

    ngf: int = setting(64, network=True, low=1, high=1024, help="Generator width.")
    adversarial: AdversarialConfig = field(default_factory=AdversarialConfig)  # the discriminator, its objective and penalties
    n_downsampling: int = setting(2, network=True, low=1, high=6, help="Stride-2 levels of each encoder (the code is 1/2**N of the image).")
    n_blocks: int = setting(4, network=True, low=0, high=64, help="Generator residual blocks (9 for 256 px, 6 for 128 px).")
    shared_layers: int = setting(
        1, network=True, low=0, help="shared-latent remedy 1: residual blocks shared by all encoders' ends and decoders' starts (0: off)."
    )
    fully_shared: bool = setting(
        False,
        network=True,
        help="shared-latent remedy 1, extreme: one encoder and one decoder for every domain, told which (--label-conditioning).",
    )
    label_conditioning: str = setting(
        "norm",
        network=True,
        choices=LABEL_CONDITIONING,
        help="With --fully-shared, how the encoder and decoder see the domain: norm (a per-domain scale and shift after "
        "every instance norm) or input (one-hot label maps beside the image; the first instance norm removes them, so "
        "every target gives the same image: for model files before format 3).",
    )
    upsample: str = setting(
        "resize",
        network=True,
        choices=UPSAMPLE_MODES,
        help="Upsampling: transposed convolutions, or resize (nearest + conv: no checkerboard artifacts).",
    )
    vae: bool = setting(True, help="Variational auto-encoders (Gaussian codes, KL term) or plain ones.")
    latent_adversary: str = setting(
        "confusion",
        network=True,
        choices=LATENT_ADVERSARIES,
        help="shared-latent remedy 2: a domain discriminator on the codes, which the encoders fool by confusion (aiming at uniform guesses) or reversal (maximising its loss, as gradient reversal); off.",
    )
    lambda_adversarial: float = setting(1.0, low=0.0, help="Image discriminators' weight.")
    lambda_rec: float = setting(10.0, low=0.0, help="Auto-encoder reconstruction ||De_i(E_i(x)) - x||_1 weight.")
    lambda_kl: float = setting(0.01, low=0.0, help="KL weight of the codes (with --vae).")
    lambda_cycle: float = setting(10.0, low=0.0, help="Cycle-consistency weight (shared-latent remedy 3; 0: off there).")
    cycle_noise: float = setting(
        0.0,
        low=0.0,
        help="Std of Gaussian noise added to a translation before it is translated back in the cycle loss, so no invisible code can carry the input (0: off).",
    )
    lambda_semantic: float = setting(
        1.0,
        low=0.0,
        help="shared-latent remedy 4: semantic consistency ||E_y(G(x)) - E_x(x)||_1 weight (0: off; remedy 3 is --lambda-cycle).",
    )
    lambda_latent: float = setting(1.0, low=0.0, help="Weight of the encoders' loss against the latent discriminator.")
    init_gain: float = setting(0.02, low=0.0, help="Std of the normal weight initialisation.")

    def __post_init__(self) -> None:
        check_settings(self)
        if not 0 <= self.shared_layers <= self.n_blocks:
            raise UsageError(f"--shared-layers must be between 0 and --n-blocks ({self.n_blocks}) (got {self.shared_layers})")


class SharedLatent(Method):
    """One encoder and one decoder per domain (or one of each for all), an image discriminator per
    domain, and a latent domain discriminator."""

    config_class = SharedLatentConfig

    def __init__(self, config: SharedLatentConfig, domains: Sequence[str], training: bool = True) -> None:
        super().__init__(config, domains, training)
        n = len(self.domains)
        if n < 2:
            raise UsageError(f"shared-latent needs at least 2 domains, got {n}: {', '.join(self.domains)}")
        self.generators.update({name: init_weights(network, config.init_gain) for name, network in _autoencoders(config, n).items()})
        if not training:
            return
        for index in range(n):  # discriminator_i judges images of domain i
            self.discriminators[f"discriminator_{index}"] = init_weights(
                PatchDiscriminator(config.adversarial.ndf, config.adversarial.n_layers_d), config.init_gain
            )
        if config.latent_adversary != "off":
            latent = LatentDiscriminator(config.ngf * 2**config.n_downsampling, n, config.adversarial.ndf)
            self.discriminators["latent_discriminator"] = init_weights(latent, config.init_gain)
        if config.adversarial.spectral_norm:
            for discriminator in self.discriminators.values():
                discriminator.use_spectral_norm()

    def cautions(self) -> list[str]:
        if self.config.fully_shared and self.config.label_conditioning == "input":
            return [
                "--fully-shared --label-conditioning input: the first instance norms of the encoder and decoder remove the label "
                "maps, so every target gives the same image; it is kept for old model files (new runs: --label-conditioning norm)"
            ]
        return []

    # --- the two halves -------------------------------------------------------------------------

    def encode(self, images: Tensor, domain: int) -> Tensor:
        """E_domain(images): the code (the Gaussian's mean, for a VAE)."""
        if self.config.fully_shared:
            return self._fully_shared("encoder", images, domain)
        codes = self.generators[f"encoder_{domain}"](images)
        return self.generators["shared_encoder"](codes) if "shared_encoder" in self.generators else codes

    def decode(self, codes: Tensor, domain: int) -> Tensor:
        """De_domain(codes): images of `domain`."""
        if self.config.fully_shared:
            return self._fully_shared("decoder", codes, domain)
        if "shared_decoder" in self.generators:
            codes = self.generators["shared_decoder"](codes)
        return self.generators[f"decoder_{domain}"](codes)

    def _fully_shared(self, name: str, features: Tensor, domain: int) -> Tensor:
        """The one `name` network ("encoder", "decoder") of --fully-shared on `features` of (or into)
        `domain`: told it by one-hot rows that select its norms' scale and shift, or (label_conditioning
        "input", model files before format 3) by one-hot label maps beside the features."""
        n_domains = len(self.domains)
        if self.config.label_conditioning == "input":
            return self.generators[name](_with_labels(features, domain, n_domains))
        row = F.one_hot(torch.tensor([domain], device=features.device), n_domains).to(features.dtype)
        return self.generators[name](features, row.expand(features.shape[0], -1))

    def _sample(self, codes: Tensor) -> Tensor:
        # The VAE's reparameterisation with UNIT's fixed unit variance; the mean at translation time.
        return codes + torch.randn_like(codes) if self.config.vae and self.training else codes

    def _targets(self) -> list[int]:
        """The domain each source domain is translated into this step: the other one of two, else
        uniform among the others."""
        n = len(self.domains)
        offsets = torch.randint(1, n, (n,), generator=self.rng) if n > 2 else torch.ones(n, dtype=torch.long)
        return [(source + int(offset)) % n for source, offset in enumerate(offsets)]

    # --- losses ---------------------------------------------------------------------------------

    def generator_loss(self, batch: Batch, step: int) -> Losses:
        config, terms, fakes = self.config, {}, {}
        for source, (real, target) in enumerate(zip(batch, self._targets())):
            code = self.encode(real, source)
            sampled = self._sample(code)
            translated = self.decode(sampled, target)
            source_terms = {
                "rec": config.lambda_rec * losses.cycle_loss(self.decode(sampled, source), real),
                "adv": config.lambda_adversarial
                * losses.generator_adversarial_loss(
                    config.adversarial.gan_loss, self.discriminators[f"discriminator_{target}"](translated)
                ),
            }
            codes = [code]
            if config.lambda_cycle > 0 or config.lambda_semantic > 0:
                code_back = self.encode(translated, target)  # the translation's code, back in the shared space
                codes.append(code_back)
                if config.lambda_cycle > 0:
                    # --cycle-noise: the cycle re-encodes a noisy translation (semantic consistency keeps the clean one).
                    cycled = code_back if config.cycle_noise == 0 else self.encode(with_cycle_noise(translated, config.cycle_noise), target)
                    source_terms["cycle"] = config.lambda_cycle * losses.cycle_loss(self.decode(self._sample(cycled), source), real)
                if config.lambda_semantic > 0:
                    source_terms["semantic"] = config.lambda_semantic * losses.cycle_loss(code_back, code)
            if config.vae:
                source_terms["kl"] = config.lambda_kl * sum(losses.gaussian_kl_loss(c) for c in codes)
            if "latent_discriminator" in self.discriminators:
                logits = self.discriminators["latent_discriminator"](code)
                source_terms["latent"] = config.lambda_latent * losses.latent_confusion_loss(config.latent_adversary, logits, source)
            for name, value in source_terms.items():
                terms[name] = terms.get(name, 0) + value
            _keep(fakes, source, code.detach(), target, translated.detach())
        return Losses.of(terms, fakes=fakes)

    def discriminator_loss(self, batch: Batch, fakes: Mapping[str, Tensor]) -> Losses:
        terms: dict[str, Tensor] = {}
        for domain, real in enumerate(batch):
            fake = fakes.get(f"fake_{domain}")
            if fake is None:  # with 3+ domains, no source picked this target this step
                continue
            discriminator = self.discriminators[f"discriminator_{domain}"]
            image_terms = {
                "d_image": losses.discriminator_adversarial_loss(
                    self.config.adversarial.gan_loss, discriminator(real), discriminator(fake)
                ),
                # With 3+ domains several sources may target this one; the penalty pairs reals with as many fakes.
                **discriminator_penalties(self.config.adversarial, discriminator, real, fake[: real.shape[0]], self.rng),
            }
            for name, value in image_terms.items():
                terms[name] = terms.get(name, 0) + value
        if "latent_discriminator" in self.discriminators:
            latent = self.discriminators["latent_discriminator"]
            terms["d_latent"] = sum(losses.domain_classification_loss(latent(fakes[f"code_{d}"]), d) for d in range(len(batch)))
        return Losses.of(terms)

    @torch.no_grad()
    def fresh_fakes(self, batch: Batch) -> dict[str, Tensor]:
        """Codes and translations for a discriminator step that follows no generator step."""
        fakes: dict[str, Tensor] = {}
        for source, (real, target) in enumerate(zip(batch, self._targets())):
            code = self.encode(real, source)
            translated = self.decode(self._sample(code), target)
            _keep(fakes, source, code, target, translated)
        return fakes

    # --- translation ----------------------------------------------------------------------------

    def samples(self, batch: Batch) -> dict[str, Tensor]:
        """One input per domain (rows): itself, its reconstruction, its translation into the next
        domain, and that translation cycled back."""
        columns: dict[str, list[Tensor]] = {"real": [], "reconstructed": [], "translated": [], "cycled": []}
        for source, images in enumerate(batch):
            target = (source + 1) % len(self.domains)
            real = images[:1]
            code = self.encode(real, source)
            translated = self.decode(code, target)
            for name, image in zip(
                columns, (real, self.decode(code, source), translated, self.decode(self.encode(translated, target), source))
            ):
                columns[name].append(image)
        return {name: torch.cat(images) for name, images in columns.items()}

    def translate(self, images: Tensor, target: str, source: str | None = None) -> Tensor:
        self.generators_for(target)
        source = self.source_domain(target, source)
        return self.decode(self.encode(images, self.domains.index(source)), self.domains.index(target))

    def source_domain(self, target: str, source: str | None) -> str:
        """`source`, checked; by default the other domain of a two-domain model."""
        if source is None:
            if len(self.domains) > 2:
                raise UsageError(f"this model has {len(self.domains)} domains ({', '.join(self.domains)}): name the input's with --from")
            return self.domains[1 - self.domains.index(target)]
        if source not in self.domains:
            raise UsageError(f"unknown source domain {source!r}; this model knows: {', '.join(self.domains)}")
        return source

    def generators_for(self, target: str) -> tuple[str, ...]:
        self.check_domain(target)
        return tuple(self.generators)


def _autoencoders(config: SharedLatentConfig, n_domains: int) -> dict[str, nn.Module]:
    """The generator modules: encoder_i and decoder_i per domain with the shared blocks between them,
    or one encoder and one decoder conditioned on the domain (in their norms, or by label maps)."""
    ngf, levels, upsample = config.ngf, config.n_downsampling, config.upsample
    if config.fully_shared and config.label_conditioning == "norm":
        return {
            "encoder": ConditionalImageEncoder(n_domains, ngf, levels, config.n_blocks),
            "decoder": ConditionalImageDecoder(n_domains, ngf, levels, config.n_blocks, upsample=upsample),
        }
    if config.fully_shared:
        return {
            "encoder": ImageEncoder(ngf, levels, config.n_blocks, in_channels=3 + n_domains),
            "decoder": ImageDecoder(ngf, levels, config.n_blocks, upsample=upsample, label_channels=n_domains),
        }
    private = config.n_blocks - config.shared_layers
    networks: dict[str, nn.Module] = {}
    for index in range(n_domains):
        networks[f"encoder_{index}"] = ImageEncoder(ngf, levels, private)
        networks[f"decoder_{index}"] = ImageDecoder(ngf, levels, private, upsample=upsample)
    if config.shared_layers:
        code_channels = ngf * 2**levels
        networks["shared_encoder"] = nn.Sequential(*[ResidualBlock(code_channels) for _ in range(config.shared_layers)])
        networks["shared_decoder"] = nn.Sequential(*[ResidualBlock(code_channels) for _ in range(config.shared_layers)])
    return networks


def _with_labels(images: Tensor, domain: int, n_domains: int) -> Tensor:
    """`images` with n_domains one-hot label maps appended as channels (`domain`'s map is ones): how
    --fully-shared networks saw the domain before model format 3."""
    maps = images.new_zeros(images.shape[0], n_domains, *images.shape[2:])
    maps[:, domain] = 1
    return torch.cat([images, maps], dim=1)


def _keep(fakes: dict[str, Tensor], source: int, code: Tensor, target: int, translated: Tensor) -> None:
    """Record a source domain's code and its translation, which joins the other fakes of `target`."""
    fakes[f"code_{source}"] = code
    key = f"fake_{target}"
    fakes[key] = torch.cat([fakes[key], translated]) if key in fakes else translated
