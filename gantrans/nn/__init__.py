"""Building blocks: generators, discriminators and initialisation. No method logic here."""

from gantrans.nn.discriminators import ClassifyingDiscriminator, PatchDiscriminator
from gantrans.nn.generators import ResnetGenerator
from gantrans.nn.init import init_weights

__all__ = ["ClassifyingDiscriminator", "PatchDiscriminator", "ResnetGenerator", "init_weights"]
