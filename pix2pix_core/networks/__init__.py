"""Generators, discriminators, norms and initialisation."""

from pix2pix_core.networks.discriminator import (
    DISCRIMINATORS,
    PATCH_SIZES,
    DiscriminatorConfig,
    NLayerDiscriminator,
    PixelDiscriminator,
    build_discriminator,
)
from pix2pix_core.networks.generator import (
    GENERATORS,
    RESNET_BLOCKS,
    UNET_DEPTHS,
    GeneratorConfig,
    build_generator,
)
from pix2pix_core.networks.init import INIT_TYPES, init_weights
from pix2pix_core.networks.norm import NORMS, get_norm_layer
from pix2pix_core.networks.resnet import ResnetBlock, ResnetGenerator
from pix2pix_core.networks.unet import UnetGenerator, UnetSkipConnectionBlock

__all__ = [
    "DISCRIMINATORS",
    "GENERATORS",
    "INIT_TYPES",
    "NORMS",
    "PATCH_SIZES",
    "RESNET_BLOCKS",
    "UNET_DEPTHS",
    "DiscriminatorConfig",
    "GeneratorConfig",
    "NLayerDiscriminator",
    "PixelDiscriminator",
    "ResnetBlock",
    "ResnetGenerator",
    "UnetGenerator",
    "UnetSkipConnectionBlock",
    "build_discriminator",
    "build_generator",
    "get_norm_layer",
    "init_weights",
]
