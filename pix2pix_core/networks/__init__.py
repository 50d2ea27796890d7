"""Generator, discriminators, norms and initialisation."""

from pix2pix_core.networks.discriminator import (
    PATCH_SIZES,
    DiscriminatorConfig,
    NLayerDiscriminator,
    PixelDiscriminator,
    build_discriminator,
)
from pix2pix_core.networks.generator import (
    GENERATORS,
    GeneratorConfig,
    UnetGenerator,
    build_generator,
)
from pix2pix_core.networks.init import init_weights
from pix2pix_core.networks.norm import NORMS, get_norm_layer

__all__ = [
    "GENERATORS",
    "NORMS",
    "PATCH_SIZES",
    "DiscriminatorConfig",
    "GeneratorConfig",
    "NLayerDiscriminator",
    "PixelDiscriminator",
    "UnetGenerator",
    "build_discriminator",
    "build_generator",
    "get_norm_layer",
    "init_weights",
]
