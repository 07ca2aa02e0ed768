"""GANomaly generator: encoder, decoder and a second encoder.

Akcay, Atapour-Abarghouei and Breckon, "GANomaly: Semi-Supervised Anomaly
Detection via Adversarial Training", ACCV 2018.

The first encoder maps the image to a latent vector z (100 values), the decoder
reconstructs the image from z, and the second encoder maps the reconstruction to
z_hat. The anomaly score is the distance between z and z_hat. Encoders and decoder
are DCGAN networks: 4x4 stride-2 (transposed) convolutions
down to and up from 4x4, the width doubling from 64 (capped at 512), and a 4x4
convolution between the 4x4 map and z. The decoder ends in a sigmoid because
images are in [0, 1], in place of the tanh that DCGAN uses for [-1, 1] images.
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
    init_weights,
)
from medanomaly.networks.skip_ganomaly import check_power_of_two_size

logger = logging.getLogger(__name__)

NAME = "ganomaly"
LEAKY_RELU = ("leakyrelu", {"negative_slope": 0.2})


def _pyramid_widths(image_side: int, base_channels: int, max_channels: int) -> list[int]:
    """Return the widths of the stride-2 layers between the image and the 4x4 map."""
    steps = int(math.log2(image_side)) - 2
    return [min(base_channels * 2**i, max_channels) for i in range(steps)]


class DCGANEncoder(nn.Module):
    """DCGAN encoder from a (B, C, S, S) image to a (B, latent_channels) vector.

    Args:
        spatial_dims: number of spatial dimensions, only 2.
        in_channels: image channels.
        image_side: S, a power of two >= 16.
        latent_channels: length of the latent vector.
        base_channels: width of the first convolution.
        max_channels: cap on the width.
        act: activation.
        norm: normalisation on every convolution except the first and the last.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        image_side: int,
        latent_channels: int = 100,
        base_channels: int = 64,
        max_channels: int = 512,
        act: ActNorm = LEAKY_RELU,
        norm: ActNorm = "batch",
    ) -> None:
        super().__init__()
        widths = _pyramid_widths(image_side, base_channels, max_channels)
        layers = []
        for i, width in enumerate(widths):
            layers.append(
                Convolution(
                    spatial_dims,
                    in_channels if i == 0 else widths[i - 1],
                    width,
                    strides=2,
                    kernel_size=4,
                    padding=1,
                    act=act,
                    norm=None if i == 0 else norm,
                    bias=False,
                )
            )
        layers.append(
            Convolution(
                spatial_dims, widths[-1], latent_channels, kernel_size=4, padding=0,
                conv_only=True, bias=False,
            )
        )
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (B, in_channels, S, S) to (B, latent_channels)."""
        # (B, latent, 1, 1) -> (B, latent). Unlike view, flatten accepts channels_last.
        return torch.flatten(self.layers(x), 1)


class DCGANDecoder(nn.Module):
    """DCGAN decoder from a (B, latent_channels) vector to a (B, C, S, S) image in [0, 1].

    Args:
        spatial_dims: number of spatial dimensions, only 2.
        out_channels: image channels.
        image_side: S, a power of two >= 16.
        latent_channels: length of the latent vector.
        base_channels: width of the last hidden layer.
        max_channels: cap on the width.
        act: activation.
        norm: normalisation on every layer except the output.
    """

    def __init__(
        self,
        spatial_dims: int,
        out_channels: int,
        image_side: int,
        latent_channels: int = 100,
        base_channels: int = 64,
        max_channels: int = 512,
        act: ActNorm = "relu",
        norm: ActNorm = "batch",
    ) -> None:
        super().__init__()
        widths = _pyramid_widths(image_side, base_channels, max_channels)[::-1]
        layers = [
            Convolution(
                spatial_dims, latent_channels, widths[0], kernel_size=4, padding=0,
                output_padding=0, is_transposed=True, act=act, norm=norm, bias=False,
            )
        ]
        for i in range(1, len(widths)):
            layers.append(
                Convolution(
                    spatial_dims, widths[i - 1], widths[i], strides=2, kernel_size=4,
                    padding=1, output_padding=0, is_transposed=True, act=act, norm=norm,
                    bias=False,
                )
            )
        layers.append(
            Convolution(
                spatial_dims, widths[-1], out_channels, strides=2, kernel_size=4, padding=1,
                output_padding=0, is_transposed=True, conv_only=True, bias=False,
            )
        )
        self.layers = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Map (B, latent_channels) to (B, out_channels, S, S) in [0, 1]."""
        # (B, latent) -> (B, latent, 1, 1), the 1x1 map the first transposed convolution reads.
        return torch.sigmoid(self.layers(z[:, :, None, None]))


class GANomalyGenerator(nn.Module):
    """GANomaly encoder-decoder-encoder generator (Akcay et al., ACCV 2018).

    Args:
        spatial_dims: number of spatial dimensions, only 2.
        in_channels: channels of the image and of the reconstruction.
        image_size: side of the square image, a power of two >= 16.
        latent_channels: length of z and z_hat.
        base_channels: width of the first encoder layer.
        max_channels: cap on the width.
        act: encoder activation.
        up_act: decoder activation.
        norm: normalisation.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        image_size: int | Sequence[int] = 32,
        latent_channels: int = 100,
        base_channels: int = 64,
        max_channels: int = 512,
        act: ActNorm = LEAKY_RELU,
        up_act: ActNorm = "relu",
        norm: ActNorm = "batch",
    ) -> None:
        super().__init__()
        owner = f"{NAME} generator"
        check_spatial_dims(owner, spatial_dims)
        for name, value in (
            ("in_channels", in_channels),
            ("latent_channels", latent_channels),
            ("base_channels", base_channels),
            ("max_channels", max_channels),
        ):
            check_positive(owner, name, value)
        self.image_shape = check_power_of_two_size(owner, image_size)
        self.in_channels = in_channels
        self.out_channels = in_channels
        self.latent_channels = latent_channels

        side = self.image_shape[0]
        widths = dict(base_channels=base_channels, max_channels=max_channels)
        self.encoder = DCGANEncoder(
            spatial_dims, in_channels, side, latent_channels, act=act, norm=norm, **widths
        )
        self.decoder = DCGANDecoder(
            spatial_dims, in_channels, side, latent_channels, act=up_act, norm=norm, **widths
        )
        self.reconstruction_encoder = DCGANEncoder(
            spatial_dims, in_channels, side, latent_channels, act=act, norm=norm, **widths
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruct a batch and encode both the input and the reconstruction.

        Args:
            x: (B, in_channels, S, S) at the size the network was built for.

        Returns:
            ``(reconstruction, z, z_hat)``: reconstruction (B, in_channels, S, S) in
            [0, 1], and the latent codes of the input and of the reconstruction,
            each (B, latent_channels).
        """
        check_image_tensor(
            f"{NAME} generator", x, self.in_channels, expected_shape=self.image_shape
        )
        z = self.encoder(x)
        reconstruction = self.decoder(z)
        z_hat = self.reconstruction_encoder(reconstruction)
        return reconstruction, z, z_hat
