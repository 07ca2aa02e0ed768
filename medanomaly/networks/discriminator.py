"""DCGAN-style discriminator shared by Skip-GANomaly++, Skip-GANomaly and GANomaly.

Layout (DCGAN, as used by Akcay et al. in GANomaly and Skip-GANomaly): 4x4
stride-2 convolutions with LeakyReLU(0.2) and batch norm on all but the first, the
width doubling at each step from 64 (up to 512). A final convolution whose kernel
covers the whole remaining map gives a 100-channel feature vector, and a LeakyReLU
plus a linear layer on it give one logit.

Size rule: height and width divisible by 8 and at least 16. The stride-2 steps
continue while both sides are even and the larger side exceeds 4. A power-of-two
image ends at 4x4 as in DCGAN, and other sizes end on a small map
(40x24 ends at 5x3) that the final convolution covers. The network is built
for one input size.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from torch import nn

from medanomaly.networks.blocks import (
    ActNorm,
    check_image_tensor,
    check_positive,
    check_spatial_dims,
    divisible_size_error,
    format_size,
    image_shape,
    init_weights,
)

logger = logging.getLogger(__name__)

SIZE_DIVISOR = 8
MIN_SIZE = 16
SIZE_RULE = (
    f"height and width divisible by {SIZE_DIVISOR}, at least {MIN_SIZE} "
    "(the discriminator is built for one size)"
)

LEAKY_RELU = ("leakyrelu", {"negative_slope": 0.2})


def downsampling_plan(shape: tuple[int, int]) -> tuple[int, tuple[int, int]]:
    """Return the number of stride-2 convolutions and the (H, W) map they leave."""
    height, width = shape
    steps = 0
    while height % 2 == 0 and width % 2 == 0 and max(height, width) > 4:
        height, width = height // 2, width // 2
        steps += 1
    return steps, (height, width)


class Discriminator(nn.Module):
    """DCGAN-style discriminator returning a logit and a feature vector.

    Args:
        spatial_dims: number of spatial dimensions, only 2.
        in_channels: image channels.
        image_size: side of a square image, or (height, width).
        base_channels: width of the first convolution, doubled at each step.
        max_channels: cap on the width. The default 512 leaves 16 to 64 pixel
            images as in DCGAN and keeps larger images from growing to thousands
            of channels.
        feature_channels: length of the feature vector.
        act: activation after every convolution.
        norm: normalisation on every convolution except the first.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        image_size: int | Sequence[int] = 32,
        base_channels: int = 64,
        max_channels: int = 512,
        feature_channels: int = 100,
        act: ActNorm = LEAKY_RELU,
        norm: ActNorm = "batch",
    ) -> None:
        super().__init__()
        owner = "discriminator"
        check_spatial_dims(owner, spatial_dims)
        for name, value in (
            ("in_channels", in_channels),
            ("base_channels", base_channels),
            ("max_channels", max_channels),
            ("feature_channels", feature_channels),
        ):
            check_positive(owner, name, value)
        shape = image_shape(image_size)
        problem = divisible_size_error(shape, SIZE_DIVISOR, MIN_SIZE)
        if problem:
            raise ValueError(
                f"{owner}: image size {format_size(shape)} is invalid ({problem}). "
                f"The discriminator takes {SIZE_RULE}."
            )
        self.in_channels = in_channels
        self.image_shape = shape
        self.feature_channels = feature_channels

        steps, final_map = downsampling_plan(shape)
        layers = []
        width_in, width_out = in_channels, base_channels
        for step in range(steps):
            layers.append(
                Convolution(
                    spatial_dims,
                    width_in,
                    width_out,
                    strides=2,
                    kernel_size=4,
                    padding=1,
                    act=act,
                    norm=norm if step > 0 else None,
                    bias=False,
                )
            )
            width_in, width_out = width_out, min(width_out * 2, max_channels)
        self.features = nn.Sequential(*layers)

        # A kernel as large as the remaining map turns it into one feature vector.
        self.to_features = Convolution(
            spatial_dims,
            width_in,
            feature_channels,
            kernel_size=final_map,
            padding=0,
            conv_only=True,
            bias=False,
        )
        self.classifier = nn.Sequential(nn.LeakyReLU(0.2), nn.Linear(feature_channels, 1))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Score a batch.

        Args:
            x: (B, in_channels, H, W) at the size the network was built for.

        Returns:
            ``(logit, features)``: logit (B,) before the sigmoid (use
            ``BCEWithLogitsLoss``) and features (B, feature_channels).
        """
        check_image_tensor("discriminator", x, self.in_channels, expected_shape=self.image_shape)
        # (B, feature_channels, 1, 1) -> (B, feature_channels).
        # Unlike view, flatten accepts channels_last tensors.
        features = torch.flatten(self.to_features(self.features(x)), 1)
        logit = self.classifier(features).squeeze(1)
        return logit, features
