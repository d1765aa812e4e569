"""CUT and FastCUT (Park et al. 2020, "Contrastive Learning for Unpaired Image-to-Image Translation").

One generator G: X -> Y (ResNet) and a PatchGAN of Y, as `direct`; what keeps x's content in G(x) is
PatchNCE. The generator's own encoder embeds x and G(x) at several layers; at each of `num_patches`
random locations, the output's patch (projected by a small MLP head) must be nearer to the input's
patch at the same place than to the input's patches elsewhere in the image (eq. 2, summed over layers
and locations as eq. 5). This is the lectures' "keep the embeddings of input and output close", with
the generator itself as the encoder and the other patches as negatives, so that closeness alone (a
constant embedding) does not satisfy it.

    L = lambda_gan GAN(G, D_Y) + lambda_nce NCE(X)          (FastCUT)
    L = lambda_gan GAN(G, D_Y) + lambda_nce (NCE(X) + NCE(Y)) / 2   (CUT: NCE(Y) on G(y), an identity term)

FastCUT instead regularises with flip equivariance: with probability 1/2 the inputs are flipped, and
the output's features, flipped back, are compared with the unflipped input's (the authors' code).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from gantrans import losses
from gantrans.config import check_settings, setting
from gantrans.errors import UsageError
from gantrans.methods.base import AdversarialConfig, Batch, Losses, OneWayMethod, discriminator_penalties
from gantrans.nn import NORMS, UPSAMPLE_MODES, PatchDiscriminator, PatchProjection, ResnetGenerator, init_weights

# Index of the ResNet generator's first residual block in its `model` (pad, conv, norm, relu, then two
# conv-norm-relu downsamplings): layers up to ENCODER_END + n_blocks - 1 belong to the encoder.
ENCODER_END = 10


@dataclass(frozen=True)
class CUTConfig:
    """CUT's networks and loss weights; defaults are the paper's CUT (the fastcut preset changes four)."""

    ngf: int = setting(64, network=True, low=1, high=1024, help="Generator width.")
    adversarial: AdversarialConfig = field(default_factory=AdversarialConfig)  # the discriminator, its objective and penalties
    n_blocks: int = setting(9, network=True, low=0, high=64, help="Generator residual blocks (9 for 256 px, 6 for 128 px).")
    upsample: str = setting(
        "transpose",
        network=True,
        choices=UPSAMPLE_MODES,
        help="Upsampling: transposed convolutions, or resize (nearest + conv: no checkerboard artifacts).",
    )
    norm: str = setting(
        "instance", network=True, choices=NORMS, help="Normalisation in both networks: instance, instance-affine, batch or none."
    )
    colour_skip: bool = setting(
        False,
        network=True,
        help="ResNet generators: a 1x1 convolution from input to output colour that bypasses the normalisations, so a tone change stays a per-pixel map.",
    )
    lambda_gan: float = setting(1.0, low=0.0, help="Adversarial weight.")
    lambda_nce: float = setting(1.0, low=0.0, help="PatchNCE weight (content kept: each output patch nearest its input patch).")
    nce_identity: bool = setting(True, help="Also PatchNCE between y and G(y).")
    # Generator layers whose outputs are compared: the padded input, both downsampling convolutions,
    # the first and the fifth residual block (the authors' 0,4,8,12,16 in their antialiased network).
    nce_layers: tuple[int, ...] = setting(
        (0, 4, 7, 10, 14), network=True, help="Generator layers compared, comma-separated indices into its encoder."
    )
    num_patches: int = setting(256, low=1, high=4096, help="Patch locations per layer and image (one positive, the rest negatives).")
    nce_temperature: float = setting(0.07, help="Temperature of the contrastive softmax.")
    projection_width: int = setting(256, network=True, low=1, high=4096, help="Width of the MLP projection heads (training only).")
    flip_equivariance: bool = setting(False, help="Flip half of the inputs and compare in their own orientation.")
    init_gain: float = setting(0.02, low=0.0, help="Std of the normal weight initialisation.")

    def __post_init__(self) -> None:
        check_settings(self)
        last_encoder_layer = ENCODER_END + self.n_blocks - 1
        layers = self.nce_layers
        if not layers or list(layers) != sorted(set(layers)) or layers[0] < 0 or layers[-1] > last_encoder_layer:
            raise UsageError(
                f"--nce-layers must be distinct ascending generator layers from 0 to {last_encoder_layer} "
                f"(the encoder with --n-blocks {self.n_blocks}), got {','.join(map(str, layers)) or 'none'}"
            )
        if self.nce_temperature <= 0:
            raise UsageError(f"--nce-temperature must be positive (got {self.nce_temperature})")


class CUT(OneWayMethod):
    """G: X -> Y judged by D_Y and held to x by PatchNCE in G's own encoder."""

    config_class = CUTConfig
    label = "cut"

    def __init__(self, config: CUTConfig, domains: Sequence[str], training: bool = True) -> None:
        super().__init__(config, domains, training)
        generator = init_weights(
            ResnetGenerator(config.ngf, config.n_blocks, config.upsample, norm=config.norm, colour_skip=config.colour_skip),
            config.init_gain,
        )
        self.generators["generator_xy"] = generator
        if training:
            discriminator = init_weights(
                PatchDiscriminator(config.adversarial.ndf, config.adversarial.n_layers_d, norm=config.norm), config.init_gain
            )
            self.discriminators["discriminator_y"] = (
                discriminator.use_spectral_norm() if config.adversarial.spectral_norm else discriminator
            )
            channels = [generator.layer_channels(layer) for layer in config.nce_layers]
            self.auxiliary["projection"] = init_weights(PatchProjection(channels, config.projection_width), config.init_gain)

    def generator_loss(self, batch: Batch, step: int) -> Losses:
        real_x, real_y = batch
        config = self.config
        # FastCUT: half of the steps see mirrored inputs (drawn from the checkpointed generator).
        flipped = config.flip_equivariance and bool(torch.rand((), generator=self.rng) < 0.5)
        # x and y go through G together, as in the authors' code (one pass, instance norm per image).
        inputs = torch.cat([real_x, real_y]) if config.nce_identity else real_x
        outputs = self.generators["generator_xy"](inputs.flip(3) if flipped else inputs)
        fake_y = outputs[: len(real_x)]
        scores = self.discriminators["discriminator_y"](fake_y)
        terms = {"adv": config.lambda_gan * losses.generator_adversarial_loss(config.adversarial.gan_loss, scores)}
        if config.nce_identity:
            terms["nce"] = 0.5 * config.lambda_nce * self.patch_nce(real_x, fake_y, flipped)
            terms["nce_identity"] = 0.5 * config.lambda_nce * self.patch_nce(real_y, outputs[len(real_x) :], flipped)
        else:
            terms["nce"] = config.lambda_nce * self.patch_nce(real_x, fake_y, flipped)
        return Losses.of(terms, fakes={"fake_y": fake_y.detach()})

    def patch_nce(self, source: Tensor, output: Tensor, flipped: bool = False) -> Tensor:
        """PatchNCE between `source` images and the generator's `output` for them (made from the
        mirrored sources when `flipped`), averaged over the layers of `nce_layers`."""
        generator, projection, layers = self.generators["generator_xy"], self.auxiliary["projection"], self.config.nce_layers
        output_features = generator.encode(output, layers)
        if flipped:  # back into the source's orientation: G must commute with mirroring
            output_features = [features.flip(3) for features in output_features]
        with torch.no_grad():  # the keys take no gradient (the loss detaches them): no graph to keep
            source_features = generator.encode(source, layers)
        locations = [self._locations(features) for features in source_features]
        with torch.no_grad():
            keys = projection(source_features, locations)
        queries = projection(output_features, locations)
        return sum(losses.patch_nce_loss(query, key, self.config.nce_temperature) for query, key in zip(queries, keys)) / len(layers)

    def _locations(self, features: Tensor) -> Tensor:
        """`num_patches` distinct random positions of a feature map (all of them when it has fewer)."""
        positions = features.shape[2] * features.shape[3]
        return torch.randperm(positions, generator=self.rng)[: self.config.num_patches].to(features.device)

    def discriminator_loss(self, batch: Batch, fakes: Mapping[str, Tensor]) -> Losses:
        real_x, real_y = batch
        fake_y = fakes["fake_y"]
        discriminator = self.discriminators["discriminator_y"]
        adversarial = losses.discriminator_adversarial_loss(self.config.adversarial.gan_loss, discriminator(real_y), discriminator(fake_y))
        # Halved, as CUT's code does (CycleGAN's reason: D learns no faster than G).
        terms = {"d_y": 0.5 * adversarial, **discriminator_penalties(self.config.adversarial, discriminator, real_y, fake_y, self.rng)}
        return Losses.of(terms)

    def samples(self, batch: Batch) -> dict[str, Tensor]:
        real_x, real_y = batch
        generator = self.generators["generator_xy"]
        return {"real_x": real_x, "fake_y": generator(real_x), "real_y": real_y, "identity_y": generator(real_y)}
