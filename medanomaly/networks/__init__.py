"""Generators and discriminators of the GAN anomaly detectors, built by name.

``create_model(name, in_channels, image_size)`` returns an :class:`AnomalyGAN`
containing both networks. ``MODEL_NAMES`` lists the names, and ``model_info`` gives
each model's paper and the image sizes it takes.
"""

from medanomaly.networks.blocks import ASPP, AttentionGate, SEResidualBlock, init_weights
from medanomaly.networks.discriminator import Discriminator
from medanomaly.networks.ganomaly import GANomalyGenerator
from medanomaly.networks.registry import (
    MODEL_NAMES,
    AnomalyGAN,
    check_input,
    create_model,
    model_info,
)
from medanomaly.networks.skip_ganomaly import UNetGenerator
from medanomaly.networks.skipganomaly_pp import SkipGANomalyPPGenerator

__all__ = [
    "ASPP",
    "AnomalyGAN",
    "AttentionGate",
    "Discriminator",
    "GANomalyGenerator",
    "MODEL_NAMES",
    "SEResidualBlock",
    "SkipGANomalyPPGenerator",
    "UNetGenerator",
    "check_input",
    "create_model",
    "init_weights",
    "model_info",
]
