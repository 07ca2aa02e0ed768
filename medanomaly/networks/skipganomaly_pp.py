"""Skip-GANomaly++ generator: a residual U-Net with squeeze-and-excitation,
attention gates and atrous spatial pyramid pooling.

The layout follows the authors' public code (repository crinex/SkipGANomalyPP),
which builds a ResUNet++ generator:

    stem block          (B, C, H, W)        -> (B, 16, H, W)
    encoder block 1     -> (B, 32, H/2, W/2)
    encoder block 2     -> (B, 64, H/4, W/4)
    encoder block 3     -> (B, 128, H/8, W/8)
    ASPP bridge         -> (B, 256, H/8, W/8)
    decoder block 1     -> (B, 128, H/4, W/4)   gated by encoder block 2
    decoder block 2     -> (B, 64, H/2, W/2)    gated by encoder block 1
    decoder block 3     -> (B, 32, H, W)        gated by the stem
    head: ASPP 32 -> 16, 1x1 convolution, sigmoid -> (B, C, H, W) in [0, 1]

Every block is an :class:`~medanomaly.networks.blocks.SEResidualBlock` built from
MONAI's ``ResidualUnit`` and ``ChannelSELayer`` (reduction 8).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from torch import nn

from medanomaly.networks.blocks import (
    ASPP,
    ActNorm,
    AttentionGate,
    SEResidualBlock,
    check_image_tensor,
    check_positive,
    check_spatial_dims,
    init_weights,
)

logger = logging.getLogger(__name__)

NAME = "skipganomaly_pp"

# The three encoder blocks each halve H and W.
SIZE_DIVISOR = 8


class DecoderBlock(nn.Module):
    """Attention gate, x2 nearest upsampling, concatenation with the encoder feature,
    then an SE residual block.

    Args:
        spatial_dims: number of spatial dimensions, only 2.
        skip_channels: channels of the encoder feature at the output resolution.
        in_channels: channels of the incoming decoder feature.
        out_channels: output channels.
        act: activation.
        norm: normalisation.
        se_reduction: squeeze-and-excitation reduction ratio.
        gate_act: activation of the attention gate, or None.
    """

    def __init__(
        self,
        spatial_dims: int,
        skip_channels: int,
        in_channels: int,
        out_channels: int,
        act: ActNorm = "relu",
        norm: ActNorm = "batch",
        se_reduction: int = 8,
        gate_act: ActNorm = "sigmoid",
    ) -> None:
        super().__init__()
        self.attention = AttentionGate(
            spatial_dims, skip_channels, in_channels, act=act, norm=norm, gate_act=gate_act
        )
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.block = SEResidualBlock(
            spatial_dims,
            in_channels + skip_channels,
            out_channels,
            act=act,
            norm=norm,
            se_reduction=se_reduction,
        )

    def forward(self, skip: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Decode ``x`` (B, in_channels, H, W) with ``skip`` (B, skip_channels, 2H, 2W).

        Returns:
            (B, out_channels, 2H, 2W).
        """
        gated = self.upsample(self.attention(skip, x))
        return self.block(torch.cat([gated, skip], dim=1))


class SkipGANomalyPPGenerator(nn.Module):
    """Skip-GANomaly++ generator (ResUNet++ layout, sigmoid output).

    Fully convolutional: any height and width divisible by 8 work.

    Args:
        spatial_dims: number of spatial dimensions, only 2.
        in_channels: image channels.
        out_channels: reconstruction channels, by default ``in_channels``.
        channels: widths of the stem and the three encoder blocks.
        bridge_channels: width of the ASPP bridge.
        decoder_channels: widths of the three decoder blocks.
        head_channels: width of the ASPP in the output head.
        dilations: ASPP dilations, used by the bridge and the head.
        act: activation, a MONAI name or (name, kwargs).
        norm: normalisation, a MONAI name or (name, kwargs).
        se_reduction: squeeze-and-excitation reduction ratio.
        gate_act: activation of the attention gates. None reproduces the
            authors' unbounded gate.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int | None = None,
        channels: Sequence[int] = (16, 32, 64, 128),
        bridge_channels: int = 256,
        decoder_channels: Sequence[int] = (128, 64, 32),
        head_channels: int = 16,
        dilations: Sequence[int] = (1, 6, 12, 18),
        act: ActNorm = "relu",
        norm: ActNorm = "batch",
        se_reduction: int = 8,
        gate_act: ActNorm = "sigmoid",
    ) -> None:
        super().__init__()
        owner = f"{NAME} generator"
        check_spatial_dims(owner, spatial_dims)
        out_channels = in_channels if out_channels is None else out_channels
        check_positive(owner, "in_channels", in_channels)
        check_positive(owner, "out_channels", out_channels)
        channels = tuple(channels)
        decoder_channels = tuple(decoder_channels)
        if len(channels) != 4:
            raise ValueError(
                f"{owner}: channels must give 4 widths (stem and three encoder blocks), "
                f"got {list(channels)}."
            )
        if len(decoder_channels) != 3:
            raise ValueError(
                f"{owner}: decoder_channels must give 3 widths, got {list(decoder_channels)}."
            )
        for width in (*channels, bridge_channels, *decoder_channels, head_channels):
            check_positive(owner, "every channel width", width)
        self.in_channels = in_channels
        self.out_channels = out_channels

        def block(in_width: int, out_width: int, strides: int = 1) -> SEResidualBlock:
            return SEResidualBlock(
                spatial_dims,
                in_width,
                out_width,
                strides=strides,
                act=act,
                norm=norm,
                se_reduction=se_reduction,
            )

        self.stem = block(in_channels, channels[0])
        self.encoders = nn.ModuleList(
            block(channels[i], channels[i + 1], strides=2) for i in range(3)
        )
        self.bridge = ASPP(
            spatial_dims, channels[3], bridge_channels, dilations=dilations, norm=norm
        )

        # Decoder i is gated by the encoder output one scale above its input.
        skip_widths = (channels[2], channels[1], channels[0])
        input_widths = (bridge_channels, *decoder_channels[:2])
        self.decoders = nn.ModuleList(
            DecoderBlock(
                spatial_dims,
                skip_widths[i],
                input_widths[i],
                decoder_channels[i],
                act=act,
                norm=norm,
                se_reduction=se_reduction,
                gate_act=gate_act,
            )
            for i in range(3)
        )
        self.head = nn.Sequential(
            ASPP(spatial_dims, decoder_channels[2], head_channels, dilations=dilations, norm=norm),
            Convolution(spatial_dims, head_channels, out_channels, kernel_size=1, conv_only=True),
            nn.Sigmoid(),
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruct a batch.

        Args:
            x: (B, in_channels, H, W) with H and W divisible by 8.

        Returns:
            (B, out_channels, H, W) with values in [0, 1].
        """
        check_image_tensor(f"{NAME} generator", x, self.in_channels, divisor=SIZE_DIVISOR)

        skips = [self.stem(x)]
        for encoder in self.encoders:
            skips.append(encoder(skips[-1]))
        out = self.bridge(skips.pop())

        # Deepest decoder first: it is gated by the second-deepest encoder output.
        for decoder in self.decoders:
            out = decoder(skips.pop(), out)
        return self.head(out)
