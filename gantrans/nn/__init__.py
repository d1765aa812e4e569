"""Building blocks: generators, encoders and decoders, discriminators, normalisation and
initialisation. No method logic here."""

from gantrans.nn.autoencoders import ConditionalImageDecoder, ConditionalImageEncoder, ImageDecoder, ImageEncoder
from gantrans.nn.discriminators import DISCRIMINATORS, ClassifyingDiscriminator, LatentDiscriminator, PatchDiscriminator
from gantrans.nn.generators import UPSAMPLE_MODES, ConditionalResnetGenerator, EncoderDecoderGenerator, ResidualBlock, ResnetGenerator
from gantrans.nn.init import init_weights
from gantrans.nn.norm import NORMS, ConditionalInstanceNorm2d, norm_layer
from gantrans.nn.projection import PatchProjection

__all__ = [
    "DISCRIMINATORS",
    "NORMS",
    "UPSAMPLE_MODES",
    "ClassifyingDiscriminator",
    "ConditionalImageDecoder",
    "ConditionalImageEncoder",
    "ConditionalInstanceNorm2d",
    "ConditionalResnetGenerator",
    "EncoderDecoderGenerator",
    "ImageDecoder",
    "ImageEncoder",
    "LatentDiscriminator",
    "PatchDiscriminator",
    "PatchProjection",
    "ResidualBlock",
    "ResnetGenerator",
    "init_weights",
    "norm_layer",
]
