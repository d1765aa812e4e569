"""Building blocks: generators, discriminators, normalisation and initialisation. No method logic here."""

from gantrans.nn.discriminators import DISCRIMINATORS, ClassifyingDiscriminator, PatchDiscriminator
from gantrans.nn.generators import UPSAMPLE_MODES, EncoderDecoderGenerator, ResnetGenerator
from gantrans.nn.init import init_weights
from gantrans.nn.norm import NORMS, norm_layer

__all__ = [
    "DISCRIMINATORS", "NORMS", "UPSAMPLE_MODES", "ClassifyingDiscriminator", "EncoderDecoderGenerator", "PatchDiscriminator",
    "ResnetGenerator", "init_weights", "norm_layer",
]  # fmt: skip
