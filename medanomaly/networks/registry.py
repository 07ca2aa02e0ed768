"""Model registry: build any model by name from a config section.

>>> model = create_model("skipganomaly_pp", in_channels=1, image_size=64)
>>> model.generator, model.discriminator

``generator`` and ``discriminator`` take extra constructor keyword arguments, as the
``model.generator`` and ``model.discriminator`` mappings of a config file give them.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from medanomaly.networks.blocks import (
    MAX_IMAGE_SIZE,
    divisible_size_error,
    format_size,
    image_shape,
    power_of_two_size_error,
)
from medanomaly.networks.discriminator import Discriminator
from medanomaly.networks.ganomaly import GANomalyGenerator
from medanomaly.networks.skip_ganomaly import UNetGenerator
from medanomaly.networks.skipganomaly_pp import SkipGANomalyPPGenerator

logger = logging.getLogger(__name__)

SUPPORTED_CHANNELS = (1, 3)

# The registry sets these from create_model's own arguments.
RESERVED_KWARGS = ("spatial_dims", "in_channels", "out_channels", "image_size")


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its networks, its source and the image sizes it takes."""

    name: str
    description: str
    paper: str
    size_rule: str
    generator_class: type[nn.Module]
    # Returns why an (H, W) size is not accepted, or None.
    size_error: Callable[[tuple[int, int]], str | None]
    # Whether the generator is built for one size (it then takes image_size).
    generator_takes_image_size: bool


_POWER_OF_TWO_RULE = f"square images whose side is a power of two from 16 to {MAX_IMAGE_SIZE}"

_SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="skipganomaly_pp",
            description=(
                "Skip-GANomaly++: residual U-Net generator with squeeze-and-excitation, "
                "attention gates and ASPP, with a DCGAN discriminator"
            ),
            paper="Skip-GANomaly++ (authors' code: github.com/crinex/SkipGANomalyPP)",
            size_rule=(
                f"images whose height and width are multiples of 8 from 16 to {MAX_IMAGE_SIZE}"
            ),
            generator_class=SkipGANomalyPPGenerator,
            size_error=lambda shape: divisible_size_error(shape, 8, 16),
            generator_takes_image_size=False,
        ),
        ModelSpec(
            name="skip_ganomaly",
            description="Skip-GANomaly: DCGAN-style U-Net generator with skip connections",
            paper="Akcay et al., Skip-GANomaly, IJCNN 2019",
            size_rule=_POWER_OF_TWO_RULE,
            generator_class=UNetGenerator,
            size_error=power_of_two_size_error,
            generator_takes_image_size=True,
        ),
        ModelSpec(
            name="ganomaly",
            description="GANomaly: encoder-decoder-encoder generator, latent size 100",
            paper="Akcay et al., GANomaly, ACCV 2018",
            size_rule=_POWER_OF_TWO_RULE,
            generator_class=GANomalyGenerator,
            size_error=power_of_two_size_error,
            generator_takes_image_size=True,
        ),
    )
}

MODEL_NAMES: tuple[str, ...] = tuple(_SPECS)


class AnomalyGAN(nn.Module):
    """A generator and a discriminator built for one image size and channel count.

    Attributes:
        name: registry name.
        in_channels: image channels (1 or 3).
        image_size: side of a square image, or (height, width), as given.
        image_shape: (height, width).
        generator: reconstruction network. GANomaly's returns
            ``(reconstruction, z, z_hat)``, the others return the reconstruction.
        discriminator: returns ``(logit (B,), features (B, 100))``.
    """

    def __init__(
        self,
        name: str,
        in_channels: int,
        image_size: int | Sequence[int],
        generator: nn.Module,
        discriminator: nn.Module,
    ) -> None:
        super().__init__()
        self.name = name
        self.in_channels = in_channels
        # A list from YAML becomes a tuple so the attribute compares and hashes reliably.
        self.image_size = image_size if isinstance(image_size, int) else tuple(image_size)
        self.image_shape = image_shape(image_size)
        self.generator = generator
        self.discriminator = discriminator

    def forward(self, x: torch.Tensor) -> Any:
        """Run the generator on (B, C, H, W) images and return its output (see ``generator``)."""
        return self.generator(x)

    def extra_repr(self) -> str:
        return (
            f"name={self.name!r}, in_channels={self.in_channels}, "
            f"image_size={format_size(self.image_shape)}"
        )


def get_spec(name: str) -> ModelSpec:
    """Return the registered model called ``name``.

    Raises:
        ValueError: for an unknown name. The message lists the known ones.
    """
    spec = _SPECS.get(name)
    if spec is None:
        raise ValueError(f"Unknown model {name!r}. Known models: {', '.join(MODEL_NAMES)}.")
    return spec


def model_info(name: str) -> dict[str, str]:
    """Return the name, description, paper and size rule of a registered model."""
    spec = get_spec(name)
    return {
        "name": spec.name,
        "description": spec.description,
        "paper": spec.paper,
        "size_rule": spec.size_rule,
    }


def check_input(name: str, in_channels: int, image_size: int | Sequence[int]) -> None:
    """Raise ValueError unless model ``name`` takes images of this channel count and size.

    Args:
        name: registry name.
        in_channels: image channels, 1 or 3.
        image_size: side of a square image, or (height, width).
    """
    spec = get_spec(name)
    if isinstance(in_channels, bool) or in_channels not in SUPPORTED_CHANNELS:
        raise ValueError(
            f"{name}: in_channels={in_channels!r} is not supported. Models take 1 (grayscale) "
            "or 3 (RGB) channels. Set model.in_channels to 1 or 3."
        )
    try:
        shape = image_shape(image_size)
    except ValueError as err:
        raise ValueError(f"{name}: {err} Set model.image_size.") from None
    problem = spec.size_error(shape)
    if problem:
        raise ValueError(
            f"{name}: image size {format_size(shape)} is invalid ({problem}). {name} takes "
            f"{spec.size_rule}. Set model.image_size to a size that follows this rule."
        )


def _constructor_kwargs(
    name: str, role: str, cls: type[nn.Module], values: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Return ``values`` as keyword arguments for ``cls``, rejecting unknown or reserved keys."""
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise ValueError(
            f"{name}: the {role} options must be a mapping of keyword arguments, "
            f"got {type(values).__name__}."
        )
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    reserved = sorted(set(values) & set(RESERVED_KWARGS))
    if reserved:
        raise ValueError(
            f"{name}: {role} option(s) {reserved} are set from model.in_channels and "
            "model.image_size, so remove them from the model section."
        )
    unknown = sorted(set(values) - accepted)
    if unknown:
        valid = sorted(accepted - set(RESERVED_KWARGS))
        raise ValueError(
            f"{name}: unknown {role} option(s) {unknown}. Valid options are {valid}."
        )
    return dict(values)


def create_model(
    name: str,
    in_channels: int = 3,
    image_size: int | Sequence[int] = 32,
    generator: Mapping[str, Any] | None = None,
    discriminator: Mapping[str, Any] | None = None,
) -> AnomalyGAN:
    """Build model ``name`` for images of ``in_channels`` channels and ``image_size``.

    Args:
        name: one of :data:`MODEL_NAMES`.
        in_channels: 1 or 3.
        image_size: side of a square image, or (height, width) where the model
            takes non-square images.
        generator: extra keyword arguments for the generator constructor.
        discriminator: extra keyword arguments for the discriminator constructor.

    Raises:
        ValueError: for an unknown name, an unsupported size or channel count, or an
            unknown option.
    """
    spec = get_spec(name)
    check_input(name, in_channels, image_size)
    generator_kwargs = _constructor_kwargs(name, "generator", spec.generator_class, generator)
    discriminator_kwargs = _constructor_kwargs(name, "discriminator", Discriminator, discriminator)

    if spec.generator_takes_image_size:
        generator_kwargs["image_size"] = image_size
    generator_net = spec.generator_class(in_channels=in_channels, **generator_kwargs)
    discriminator_net = Discriminator(
        in_channels=in_channels, image_size=image_size, **discriminator_kwargs
    )
    logger.debug(
        "Built %s for %d-channel images of size %s",
        name,
        in_channels,
        format_size(image_shape(image_size)),
    )
    return AnomalyGAN(name, in_channels, image_size, generator_net, discriminator_net)
