"""Skip-GANomaly generator: a DCGAN-style U-Net with skip connections.

Akcay, Atapour-Abarghouei and Breckon, "Skip-GANomaly: Skip Connected and
Adversarially Trained Encoder-Decoder Anomaly Detection", IJCNN 2019.

The encoder halves the image with 4x4 stride-2 convolutions down to 1x1, the
width doubling from 64 up to 512 (the U-Net of pix2pix). The decoder
mirrors it with 4x4 stride-2 transposed convolutions, and each decoder step takes
the concatenation of the previous step and the encoder output at the same scale.
The output passes a sigmoid because images are in [0, 1], in place of the tanh
that DCGAN-style generators use for [-1, 1] images.

Each layer is a MONAI ``Convolution`` in conv-norm-act order, so the skip features
are taken after the LeakyReLU. pix2pix applies the activations at the start of the
next layer instead. Parameter counts are the same either way.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from torch import nn

from medanomaly.networks.blocks import (
    ActNorm,
    check_image_tensor,
    check_positive,
    check_spatial_dims,
    format_size,
    image_shape,
    init_weights,
    power_of_two_size_error,
)

logger = logging.getLogger(__name__)

NAME = "skip_ganomaly"
MIN_SIZE = 16
LEAKY_RELU = ("leakyrelu", {"negative_slope": 0.2})


def check_power_of_two_size(owner: str, image_size: int | Sequence[int]) -> tuple[int, int]:
    """Return (H, W) or raise ValueError unless the image is a square power of two >= 16."""
    shape = image_shape(image_size)
    problem = power_of_two_size_error(shape, MIN_SIZE)
    if problem:
        raise ValueError(
            f"{owner}: image size {format_size(shape)} is invalid ({problem}). It takes "
            f"square images whose side is a power of two, at least {MIN_SIZE}. "
            "Resize the images, for example to 32 or 64."
        )
    return shape


class UNetGenerator(nn.Module):
    """Skip-GANomaly U-Net generator (Akcay et al., IJCNN 2019).

    Args:
        spatial_dims: number of spatial dimensions, only 2.
        in_channels: image channels.
        out_channels: reconstruction channels, by default ``in_channels``.
        image_size: side of the square image, a power of two >= 16.
        base_channels: width of the first encoder layer.
        max_channels: cap on the width.
        act: encoder activation.
        up_act: decoder activation.
        norm: normalisation on every layer except the first, the innermost
            encoder layer (a 1x1 map) and the output.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int | None = None,
        image_size: int | Sequence[int] = 32,
        base_channels: int = 64,
        max_channels: int = 512,
        act: ActNorm = LEAKY_RELU,
        up_act: ActNorm = "relu",
        norm: ActNorm = "batch",
    ) -> None:
        super().__init__()
        owner = f"{NAME} generator"
        check_spatial_dims(owner, spatial_dims)
        out_channels = in_channels if out_channels is None else out_channels
        check_positive(owner, "in_channels", in_channels)
        check_positive(owner, "out_channels", out_channels)
        check_positive(owner, "base_channels", base_channels)
        check_positive(owner, "max_channels", max_channels)
        self.image_shape = check_power_of_two_size(owner, image_size)
        self.in_channels = in_channels
        self.out_channels = out_channels

        depth = int(math.log2(self.image_shape[0]))  # stride-2 steps down to 1x1
        widths = [min(base_channels * 2**i, max_channels) for i in range(depth)]

        self.down = nn.ModuleList()
        for i in range(depth):
            innermost = i == depth - 1
            self.down.append(
                Convolution(
                    spatial_dims,
                    in_channels if i == 0 else widths[i - 1],
                    widths[i],
                    strides=2,
                    kernel_size=4,
                    padding=1,
                    act=up_act if innermost else act,
                    # No norm on the RGB input or on the 1x1 bottleneck, which batch
                    # norm cannot normalise for a batch of one.
                    norm=None if i == 0 or innermost else norm,
                    bias=False,
                )
            )

        # up[j] produces the map of encoder level depth - 2 - j. Every step but the
        # first reads [previous output, encoder output] concatenated.
        self.up = nn.ModuleList()
        for level in range(depth - 1, 0, -1):
            in_width = widths[level] if level == depth - 1 else 2 * widths[level]
            self.up.append(
                Convolution(
                    spatial_dims,
                    in_width,
                    widths[level - 1],
                    strides=2,
                    kernel_size=4,
                    padding=1,
                    output_padding=0,
                    is_transposed=True,
                    act=up_act,
                    norm=norm,
                    bias=False,
                )
            )
        self.output = Convolution(
            spatial_dims,
            2 * widths[0] if depth > 1 else widths[0],
            out_channels,
            strides=2,
            kernel_size=4,
            padding=1,
            output_padding=0,
            is_transposed=True,
            conv_only=True,
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruct a batch.

        Args:
            x: (B, in_channels, S, S) at the size the network was built for.

        Returns:
            (B, out_channels, S, S) with values in [0, 1].
        """
        check_image_tensor(
            f"{NAME} generator", x, self.in_channels, expected_shape=self.image_shape
        )

        skips = []
        out = x
        for layer in self.down:
            out = layer(out)
            skips.append(out)

        out = skips.pop()  # the 1x1 bottleneck has no skip of its own
        for i, layer in enumerate(self.up):
            if i > 0:
                out = torch.cat([out, skips.pop()], dim=1)
            out = layer(out)
        if self.up:
            out = torch.cat([out, skips.pop()], dim=1)
        return torch.sigmoid(self.output(out))
