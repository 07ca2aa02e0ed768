"""Building blocks shared by the generators and the discriminator.

Layers come from MONAI (``Convolution``, ``ResidualUnit``, ``ChannelSELayer``) and
take MONAI's argument names. ``act`` and ``norm`` are a layer name or a
``(name, kwargs)`` pair, for example ``"batch"`` or ``("leakyrelu", {"negative_slope": 0.2})``.
Only 2-D images are supported (``spatial_dims=2``).

The module also contains the input checks that every network runs at the top of
``__init__`` and ``forward``. A wrong size then fails with a ``ValueError`` that
names the model and the value, not with a shape error from inside a layer.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import ChannelSELayer, Convolution, ResidualUnit
from monai.networks.layers.utils import get_act_layer
from torch import nn

logger = logging.getLogger(__name__)

# Largest image side any model accepts. Beyond it the DCGAN-style networks would
# allocate tens of millions of parameters per layer.
MAX_IMAGE_SIZE = 1024

ActNorm = str | tuple | None


# --------------------------------------------------------------------------
# Argument and input checks
# --------------------------------------------------------------------------


def check_spatial_dims(owner: str, spatial_dims: int) -> None:
    """Raise ValueError unless ``spatial_dims`` is 2."""
    if spatial_dims != 2:
        raise ValueError(
            f"{owner}: spatial_dims={spatial_dims} is not supported. Only 2-D images "
            "(spatial_dims=2) are implemented, so set spatial_dims=2."
        )


def check_positive(owner: str, name: str, value: int) -> None:
    """Raise ValueError unless ``value`` is a positive int."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}.")


def image_shape(image_size: int | Sequence[int]) -> tuple[int, int]:
    """Return ``(height, width)`` for an int side or an (H, W) pair.

    Raises:
        ValueError: when the value is not a positive int or a pair of them.
    """
    if isinstance(image_size, bool):
        raise ValueError(f"image size must be an int or (height, width), got {image_size!r}.")
    if isinstance(image_size, int):
        values: tuple = (image_size, image_size)
    elif isinstance(image_size, Sequence) and not isinstance(image_size, str):
        values = tuple(image_size)
    else:
        raise ValueError(f"image size must be an int or (height, width), got {image_size!r}.")
    valid = len(values) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values
    )
    if not valid:
        raise ValueError(
            f"image size must be a positive int or a pair (height, width) of them, "
            f"got {image_size!r}."
        )
    return int(values[0]), int(values[1])


def format_size(shape: tuple[int, int]) -> str:
    """Return ``"32"`` for a square size and ``"40x24"`` (height x width) otherwise."""
    height, width = shape
    return str(height) if height == width else f"{height}x{width}"


def divisible_size_error(shape: tuple[int, int], divisor: int, minimum: int) -> str | None:
    """Return why ``shape`` breaks the rule "both sides divisible by ``divisor``, at
    least ``minimum`` and at most MAX_IMAGE_SIZE", or None when it follows it."""
    for side_name, side in zip(("height", "width"), shape):
        if side % divisor != 0:
            return f"{side_name} {side} is not divisible by {divisor}"
        if side < minimum:
            return f"{side_name} {side} is below the minimum {minimum}"
        if side > MAX_IMAGE_SIZE:
            return f"{side_name} {side} is above the maximum {MAX_IMAGE_SIZE}"
    return None


def power_of_two_size_error(shape: tuple[int, int], minimum: int = 16) -> str | None:
    """Return why ``shape`` is not a square power of two in [minimum, MAX_IMAGE_SIZE],
    or None when it is."""
    height, width = shape
    if height != width:
        return f"{height}x{width} is not square"
    if height & (height - 1) != 0:
        return f"{height} is not a power of two"
    if height < minimum:
        return f"{height} is below the minimum {minimum}"
    if height > MAX_IMAGE_SIZE:
        return f"{height} is above the maximum {MAX_IMAGE_SIZE}"
    return None


def check_image_tensor(
    owner: str,
    x: torch.Tensor,
    in_channels: int,
    expected_shape: tuple[int, int] | None = None,
    divisor: int = 1,
) -> None:
    """Raise ValueError unless ``x`` is (B, in_channels, H, W) with a size ``owner`` takes.

    Args:
        owner: network name used in the message.
        x: input batch.
        in_channels: channel count the network was built for.
        expected_shape: (H, W) the network was built for, or None for any size.
        divisor: H and W must be multiples of it when ``expected_shape`` is None.
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{owner}: expected a torch.Tensor, got {type(x).__name__}.")
    if x.dim() != 4:
        raise ValueError(
            f"{owner}: expected a (B, C, H, W) tensor, got shape {tuple(x.shape)}. "
            "Add a batch dimension with x.unsqueeze(0) for a single image."
        )
    batch, channels, height, width = x.shape
    if channels != in_channels:
        raise ValueError(
            f"{owner}: input has {channels} channels but the network was built for "
            f"{in_channels} (shape {tuple(x.shape)}). Convert the images to {in_channels} "
            "channels or build the model with a matching in_channels."
        )
    if expected_shape is not None and (height, width) != tuple(expected_shape):
        raise ValueError(
            f"{owner}: input size {height}x{width} differs from the size "
            f"{format_size(tuple(expected_shape))} the network was built for. Resize the images "
            "or build the model with a matching image_size."
        )
    if expected_shape is None and (height % divisor or width % divisor):
        raise ValueError(
            f"{owner}: input size {height}x{width} is invalid because height and "
            f"width must be divisible by {divisor}. Resize or pad the images."
        )


# --------------------------------------------------------------------------
# Initialisation
# --------------------------------------------------------------------------


def init_weights(module: nn.Module, std: float = 0.02) -> nn.Module:
    """Initialise weights the DCGAN way, as the Skip-GANomaly++ authors' code does.

    Convolution and linear weights are drawn from N(0, std), batch-norm scales from
    N(1, std), and all biases are set to zero. Batch-norm running statistics are
    reset, so calling it again re-initialises a discriminator whose loss has collapsed.

    Returns:
        ``module``, initialised in place.
    """
    for layer in module.modules():
        weight = getattr(layer, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.is_meta:
            # Meta tensors have shapes but no values to initialise.
            continue
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(layer.weight, 0.0, std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.modules.batchnorm._BatchNorm):
            if layer.affine:
                nn.init.normal_(layer.weight, 1.0, std)
                nn.init.zeros_(layer.bias)
            layer.reset_running_stats()
    return module


# --------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------


def fold_batch_norm(module: nn.Module) -> int:
    """Fold eval-mode batch norm into the convolution before it, in place, for inference.

    Applies to every MONAI ``Convolution`` whose ADN block starts with a
    batch norm that has running statistics. In eval mode that batch norm is
    a per-channel affine map, so scaling the convolution's weights and
    replacing its bias gives the same output up to float rounding, without
    one pass over each feature map. The batch norm becomes ``nn.Identity``.
    The activation in the same ADN block then runs in place, because its
    input is a fresh convolution output that nothing else reads.

    The folded module no longer has batch statistics, so it must not be
    trained or switched back to batch statistics. Fold a copy.

    Returns:
        The number of folded batch norms.
    """
    folded = 0
    for layer in module.modules():
        adn = getattr(layer, "adn", None) if isinstance(layer, Convolution) else None
        if adn is None or len(adn) == 0:
            continue
        norm_name, norm = next(iter(adn.named_children()))
        if not _fold_into_conv(layer.conv, norm):
            continue
        setattr(adn, norm_name, nn.Identity())
        for child in adn.children():
            if hasattr(child, "inplace"):
                child.inplace = True
        folded += 1
    return folded


def _fold_into_conv(conv: nn.Module, norm: nn.Module) -> bool:
    """Fold ``norm`` into ``conv``; return False when the pair cannot be folded."""
    if not isinstance(norm, nn.modules.batchnorm._BatchNorm) or norm.training:
        return False
    if norm.running_mean is None or norm.running_var is None:
        return False
    transposed = isinstance(conv, nn.modules.conv._ConvTransposeNd)
    if not isinstance(conv, nn.modules.conv._ConvNd) or (transposed and conv.groups != 1):
        return False

    # Fold in float64, so that rounding adds no more error than the float32 model has.
    weight = conv.weight.detach()
    scale = norm.running_var.double().add(norm.eps).rsqrt()
    shift = -norm.running_mean.double() * scale
    if norm.affine:
        scale = scale * norm.weight.detach().double()
        shift = shift * norm.weight.detach().double() + norm.bias.detach().double()
    if conv.bias is not None:
        shift = shift + conv.bias.detach().double() * scale

    # Output channels are dim 0 of a convolution weight and dim 1 of a transposed one.
    shape = [1] * weight.dim()
    shape[1 if transposed else 0] = -1
    with torch.no_grad():
        conv.weight.copy_(weight.double() * scale.reshape(shape))
        conv.bias = nn.Parameter(shift.to(weight.dtype), requires_grad=False)
    return True


# --------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------


class SEResidualBlock(nn.Module):
    """Residual unit followed by channel squeeze-and-excitation.

    The residual branch is MONAI's ``ResidualUnit``: two 3x3 convolutions, each
    followed by ``norm`` and ``act``. The first one carries the stride. When the
    shape changes, the shortcut is a 1x1 convolution with the same stride followed
    by ``norm``. MONAI's own shortcut would use a 3x3 kernel when strided, which
    adds parameters that the Skip-GANomaly++ authors' network does not have.
    The sum then passes through MONAI's ``ChannelSELayer`` (Hu et al.,
    Squeeze-and-Excitation Networks).

    Args:
        spatial_dims: number of spatial dimensions, only 2.
        in_channels: input channels.
        out_channels: output channels.
        strides: stride of the first convolution and of the shortcut (1 or 2).
        act: activation inside the residual branch.
        norm: normalisation after every convolution.
        se_reduction: squeeze-and-excitation reduction ratio.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        strides: int = 1,
        act: ActNorm = "relu",
        norm: ActNorm = "batch",
        se_reduction: int = 8,
    ) -> None:
        super().__init__()
        check_spatial_dims("SEResidualBlock", spatial_dims)
        check_positive("SEResidualBlock", "se_reduction", se_reduction)
        if out_channels < se_reduction:
            raise ValueError(
                f"SEResidualBlock: out_channels={out_channels} is smaller than "
                f"se_reduction={se_reduction}, so the squeeze layer would have no units. "
                "Use wider channels or a smaller se_reduction."
            )
        self.residual = ResidualUnit(
            spatial_dims,
            in_channels,
            out_channels,
            strides=strides,
            kernel_size=3,
            subunits=2,
            act=act,
            norm=norm,
        )
        if strides != 1 or in_channels != out_channels:
            self.residual.residual = Convolution(
                spatial_dims,
                in_channels,
                out_channels,
                strides=strides,
                kernel_size=1,
                act=None,
                norm=norm,
                padding=0,
            )
        self.se = ChannelSELayer(spatial_dims, out_channels, r=se_reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (B, in_channels, H, W) to (B, out_channels, H / strides, W / strides)."""
        return self.se(self.residual(x))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (ASPP, from DeepLab) as Skip-GANomaly++ uses it.

    Four parallel 3x3 convolutions with dilations 1, 6, 12 and 18, each followed by
    ``norm``, are summed and mixed by a 1x1 convolution. There is no image-level
    pooling branch.

    A 3x3 convolution with "same" padding and dilation d reads only its centre tap
    along an axis whose size is at most d, because the other taps land in the zero
    padding. ``forward`` then runs the centre weights alone. That gives the same
    output from the same parameters with a third (one axis) or a ninth (both axes)
    of the branch's multiply-adds. For example, the bridge of a 32x32 image is 4x4,
    so its dilation 6, 12 and 18 branches run as 1x1 convolutions. Set ``use_centre_tap = False`` to always run the full kernels.

    Args:
        spatial_dims: number of spatial dimensions, only 2.
        in_channels: input channels.
        out_channels: output channels of every branch and of the 1x1 convolution.
        dilations: one branch per dilation.
        norm: normalisation after each branch.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        dilations: Sequence[int] = (1, 6, 12, 18),
        norm: ActNorm = "batch",
    ) -> None:
        super().__init__()
        check_spatial_dims("ASPP", spatial_dims)
        if len(dilations) == 0:
            raise ValueError("ASPP: dilations must contain at least one value.")
        for dilation in dilations:
            check_positive("ASPP", "every dilation", dilation)
        self.dilations = tuple(int(d) for d in dilations)
        self.branches = nn.ModuleList(
            Convolution(
                spatial_dims,
                in_channels,
                out_channels,
                kernel_size=3,
                dilation=dilation,
                act=None,
                norm=norm,
            )
            for dilation in self.dilations
        )
        self.project = Convolution(
            spatial_dims, out_channels, out_channels, kernel_size=1, conv_only=True
        )
        self.use_centre_tap = True

    def _run_branch(self, branch: Convolution, dilation: int, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        centre_rows = dilation >= height
        centre_cols = dilation >= width
        if not self.use_centre_tap or not (centre_rows or centre_cols):
            return branch(x)

        # Keep only the taps that can touch the image: the centre row and/or column.
        conv = branch.conv
        rows = slice(1, 2) if centre_rows else slice(None)
        cols = slice(1, 2) if centre_cols else slice(None)
        weight = conv.weight[:, :, rows, cols]
        padding = (0 if centre_rows else dilation, 0 if centre_cols else dilation)
        dilation_pair = (1 if centre_rows else dilation, 1 if centre_cols else dilation)
        out = F.conv2d(x, weight, conv.bias, stride=1, padding=padding, dilation=dilation_pair)
        adn = getattr(branch, "adn", None)
        return adn(out) if adn is not None else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (B, in_channels, H, W) to (B, out_channels, H, W)."""
        total = None
        for branch, dilation in zip(self.branches, self.dilations):
            out = self._run_branch(branch, dilation, x)
            total = out if total is None else total + out
        return self.project(total)


class AttentionGate(nn.Module):
    """Attention gate of a Skip-GANomaly++ decoder block.

    The encoder feature ``skip`` has twice the resolution of the decoder feature
    ``x``. A stride-2 3x3 convolution brings ``skip`` to the resolution of ``x``, and
    ``x`` passes its own 3x3 convolution. Their sum passes ``act`` and a third 3x3
    convolution, which yields the gate, and ``x`` is multiplied by the gate.

    The authors' code reaches the lower resolution with a 3x3 convolution and 2x2
    max pooling. The stride-2 convolution has the same parameters and a quarter of
    the multiply-adds. Their gate is the raw convolution output, whereas the default
    ``gate_act="sigmoid"`` bounds it to (0, 1) as attention U-Net does.
    ``gate_act=None`` reproduces the unbounded product.

    Args:
        spatial_dims: number of spatial dimensions, only 2.
        skip_channels: channels of the encoder feature.
        in_channels: channels of the decoder feature and of the output.
        act: activation applied to the summed features.
        norm: normalisation after the first two convolutions.
        gate_act: activation of the gate, or None.
    """

    def __init__(
        self,
        spatial_dims: int,
        skip_channels: int,
        in_channels: int,
        act: ActNorm = "relu",
        norm: ActNorm = "batch",
        gate_act: ActNorm = "sigmoid",
    ) -> None:
        super().__init__()
        check_spatial_dims("AttentionGate", spatial_dims)
        self.skip_conv = Convolution(
            spatial_dims, skip_channels, in_channels, strides=2, kernel_size=3, act=None, norm=norm
        )
        self.input_conv = Convolution(
            spatial_dims, in_channels, in_channels, kernel_size=3, act=None, norm=norm
        )
        # With norm=None, the ADN after this convolution applies only gate_act.
        self.gate_conv = Convolution(
            spatial_dims,
            in_channels,
            in_channels,
            kernel_size=3,
            adn_ordering="AN",
            act=gate_act,
            norm=None,
        )
        self.sum_act = get_act_layer(act) if act is not None else nn.Identity()

    def forward(self, skip: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Gate ``x`` (B, in_channels, H, W) with ``skip`` (B, skip_channels, 2H, 2W).

        Returns:
            (B, in_channels, H, W).
        """
        summed = self.skip_conv(skip) + self.input_conv(x)
        gate = self.gate_conv(self.sum_act(summed))
        return x * gate

