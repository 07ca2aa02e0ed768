"""Transforms that bring any decoded image to the model's input shape.

Every source ends in the same contract: a float32 tensor (C, H, W) with values
in [0, 1], where C is the model's ``in_channels`` and H = W = ``image_size``.

Two resize modes exist:

- ``"resize"`` stretches the image to ``image_size`` x ``image_size``.
- ``"pad"`` keeps the aspect ratio: the longest side is scaled to
  ``image_size`` and the short side is padded with 0 on both sides.

Channel conversion repeats a gray channel three times for 3-channel models and
turns RGB into gray with the ITU-R BT.601 luma weights for 1-channel models.

2-D image files (PNG, JPEG, BMP, TIFF) are read with MONAI's ``LoadImage`` and
``PILReader``. Resizing calls ``torch.nn.functional.interpolate`` directly, once
per image or once per batch (CIFAR-10), because MONAI's ``Resize`` costs more per
call than a 32x32 image takes to process and its anti-aliasing is slow on CT
slices (see :func:`resize_batch`).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.data import PILReader
from monai.transforms import (
    Compose,
    EnsureChannelFirst,
    LoadImage,
    MapTransform,
    Transform,
)
from PIL import Image

logger = logging.getLogger(__name__)

RESIZE_MODES = ("resize", "pad")

# ITU-R BT.601 luma weights for R, G and B.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)

# Suffixes read by PIL through MONAI's PILReader.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

# Maximum of an unsigned 16-bit pixel. 16-bit PNG and TIFF files are divided by it.
_UINT16_MAX = 65535.0

# PIL modes that decode to 8-bit gray or RGB without losing information we use.
_GRAY_MODES = {"1", "L", "LA", "La"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}


def check_resize_mode(resize_mode: str) -> str:
    """Return ``resize_mode`` or raise ``ValueError`` when it is not a known mode."""
    if resize_mode not in RESIZE_MODES:
        raise ValueError(
            f"Invalid resize_mode {resize_mode!r}; use one of {list(RESIZE_MODES)} "
            "('resize' stretches to a square, 'pad' keeps the aspect ratio)."
        )
    return resize_mode


def check_model_shape(image_size: int, in_channels: int) -> None:
    """Raise ``ValueError`` unless the model input shape can be produced."""
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 1:
        raise ValueError(f"Invalid image_size {image_size!r}; expected a positive integer.")
    if in_channels not in (1, 3):
        raise ValueError(f"Invalid in_channels {in_channels!r}; expected 1 (gray) or 3 (RGB).")


def is_image_file(path: str | Path) -> bool:
    """Return True when the suffix is one that PIL reads here (PNG, JPEG, BMP, TIFF)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def convert_channels(image: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Convert the channel axis of ``image`` to ``in_channels``.

    Args:
        image: float tensor (C, H, W) or (B, C, H, W) with C = 1 or 3.
        in_channels: 1 or 3.

    Returns:
        The same layout with ``in_channels`` channels. Gray is repeated to RGB and
        RGB becomes gray with the ITU-R BT.601 luma weights.
    """
    channel_axis = image.dim() - 3
    channels = image.shape[channel_axis]
    if channels == in_channels:
        return image
    if channels == 1 and in_channels == 3:
        repeats = [1] * image.dim()
        repeats[channel_axis] = 3
        return image.repeat(*repeats)
    if channels == 3 and in_channels == 1:
        weights = torch.tensor(LUMA_WEIGHTS, dtype=image.dtype, device=image.device)
        weights = weights.view(3, 1, 1)
        return (image * weights).sum(dim=channel_axis, keepdim=True)
    raise ValueError(
        f"Cannot convert an image with {channels} channels to {in_channels}; "
        "expected 1 (gray) or 3 (RGB) channels."
    )


def fitted_size(height: int, width: int, image_size: int) -> tuple[int, int]:
    """Return (H, W) after scaling the longest side to ``image_size``, keeping the aspect ratio."""
    scale = image_size / max(height, width)
    # Rounding matches MONAI's Resize(size_mode="longest"), and max(1, ...) keeps very
    # thin images at least one pixel wide.
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


def resize_to_model(
    image: torch.Tensor | np.ndarray, image_size: int, resize_mode: str = "resize"
) -> torch.Tensor:
    """Resize one float image (C, H, W) to (C, image_size, image_size).

    Bilinear interpolation, with anti-aliasing when downsampling, keeps values inside
    the input range. In ``"pad"`` mode the image sits in the centre, padded with 0.
    """
    tensor = torch.as_tensor(image).as_subclass(torch.Tensor)
    return resize_batch(tensor.unsqueeze(0), image_size, resize_mode)[0]


def resize_batch(
    images: torch.Tensor, image_size: int, resize_mode: str = "resize"
) -> torch.Tensor:
    """Resize a float batch (B, C, H, W) to (B, C, image_size, image_size) in one call.

    The arithmetic is that of MONAI's ``Resize(mode="bilinear")`` followed by
    ``SpatialPad`` in ``"pad"`` mode. Downsampling uses torch's anti-aliasing
    (``antialias=True``) instead of MONAI's Gaussian smoothing, which took about
    50 ms per 512x512 slice against 0.4 ms here (MONAI 1.6.1, torch 2.13 CPU).
    """
    check_resize_mode(resize_mode)
    height, width = int(images.shape[-2]), int(images.shape[-1])
    if (height, width) == (image_size, image_size):
        return images
    target = (image_size, image_size)
    if resize_mode == "pad":
        target = fitted_size(height, width, image_size)
    antialias = target[0] < height or target[1] < width
    resized = F.interpolate(
        images, size=target, mode="bilinear", align_corners=False, antialias=antialias
    )
    if resize_mode == "pad" and target != (image_size, image_size):
        # F.pad takes (left, right, top, bottom). An odd remainder goes to the end, as
        # in SpatialPad.
        pad_h = image_size - target[0]
        pad_w = image_size - target[1]
        padding = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)
        resized = F.pad(resized, padding, value=0.0)
    return resized


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run torch operations on one intra-op thread inside the block, then restore the count.

    One call of the data path (a batch of CIFAR-10 images, one CT slice) is about a
    millisecond of work. Split over threads, each operation waits for every thread
    to finish, and on a busy CPU that wait costs more than the work. On 2 cores
    shared with other jobs, 64x64 CIFAR-10 batches ran at about 1,000 images/s on
    2 threads and 19,000 on 1 (torch 2.13, CPU).
    """
    # NOTE: torch's thread count is process-wide, so other Python threads running
    # torch operations at the same moment also run on one thread.
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def to_model_input(
    image: torch.Tensor | np.ndarray,
    image_size: int,
    in_channels: int,
    resize_mode: str = "resize",
) -> torch.Tensor:
    """Convert one image (C, H, W) in [0, 1] to the model input (in_channels, size, size).

    Channels are converted first, so a 3-to-1 conversion resizes a third of the data.
    The result is a plain float32 tensor (not a MONAI MetaTensor), clamped to [0, 1].
    """
    tensor = torch.as_tensor(image)
    if tensor.dim() != 3:
        raise ValueError(
            f"Expected an image of shape (C, H, W), got shape {tuple(tensor.shape)}."
        )
    with single_thread():
        tensor = convert_channels(tensor.float(), in_channels)
        tensor = resize_to_model(tensor, image_size, resize_mode)
        tensor = torch.as_tensor(tensor).as_subclass(torch.Tensor)
        return tensor.clamp_(0.0, 1.0).contiguous()


class ToModelInput(Transform):
    """MONAI transform form of :func:`to_model_input` for one (C, H, W) image."""

    def __init__(self, image_size: int, in_channels: int, resize_mode: str = "resize") -> None:
        check_model_shape(image_size, in_channels)
        self.image_size = image_size
        self.in_channels = in_channels
        self.resize_mode = check_resize_mode(resize_mode)

    def __call__(self, image: torch.Tensor | np.ndarray) -> torch.Tensor:
        return to_model_input(image, self.image_size, self.in_channels, self.resize_mode)


class ToModelInputd(MapTransform):
    """Dictionary version of :class:`ToModelInput`."""

    def __init__(
        self,
        keys: Any,
        image_size: int,
        in_channels: int,
        resize_mode: str = "resize",
    ) -> None:
        super().__init__(keys)
        self.converter = ToModelInput(image_size, in_channels, resize_mode)

    def __call__(self, data: dict) -> dict:
        result = dict(data)
        for key in self.key_iterator(result):
            result[key] = self.converter(result[key])
        return result


def normalise_pil_image(image: Image.Image) -> Image.Image:
    """Convert a PIL image to 8-bit gray ("L"), 8-bit RGB, or float ("F") in [0, 1].

    Alpha channels are dropped. 16-bit and 32-bit integer images are divided by
    65535. Float images already in [0, 1] are kept, and others are min-max scaled
    per image because a float file carries no intensity range.
    """
    mode = image.mode
    if mode in _GRAY_MODES:
        return image.convert("L")
    if mode in _SIXTEEN_BIT_MODES:
        # NOTE: 12-bit data stored in 16-bit files stays dark (maximum 4095 / 65535).
        # DICOM files carry their own intensity range and are the better input then.
        array = np.asarray(image, dtype=np.float32)
        return Image.fromarray(np.clip(array / _UINT16_MAX, 0.0, 1.0).astype(np.float32), "F")
    if mode == "F":
        array = np.asarray(image, dtype=np.float32)
        low, high = float(np.nanmin(array)), float(np.nanmax(array))
        if low >= 0.0 and high <= 1.0:
            return image
        logger.debug("Float image with range [%g, %g] min-max scaled to [0, 1].", low, high)
        scaled = (array - low) / (high - low) if high > low else np.zeros_like(array)
        return Image.fromarray(np.nan_to_num(scaled).astype(np.float32), "F")
    # Palette, RGBA, CMYK and the rest become RGB. A gray palette gives three equal
    # channels, and their luma is the gray value again for 1-channel models.
    return image.convert("RGB")


class ScaleToUnitRange(Transform):
    """Scale a decoded image to float32 in [0, 1]: uint8 is divided by 255, floats are kept."""

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if image.dtype == torch.uint8:
            return image.float() / 255.0
        return image.float()


def image_file_loader() -> Compose:
    """Return the MONAI chain that reads a 2-D image file as (C, H, W) float32 in [0, 1].

    ``PILReader(reverse_indexing=False)`` keeps rows first, so H is the image's height
    as in DICOM and NIfTI slices from this package.
    """
    reader = PILReader(converter=normalise_pil_image, reverse_indexing=False)
    with warnings.catch_warnings():
        # LoadImage also registers MONAI's optional readers. One of them warns that the
        # GPU codec package is absent, which does not matter for PIL files.
        warnings.filterwarnings("ignore", message="NvImgCodecPydicomReader")
        loader = LoadImage(reader=reader, image_only=True, dtype=None)
    return Compose([loader, EnsureChannelFirst(), ScaleToUnitRange()])


_LOADER: Compose | None = None


def _decode_error(path: str | Path, error: Exception) -> str:
    """Return the cause of a failed decode without MONAI's wrapper messages."""
    cause: BaseException = error
    while isinstance(cause, RuntimeError) and (cause.__cause__ or cause.__context__):
        cause = cause.__cause__ or cause.__context__
    if "suitable reader" in str(cause):
        # MONAI reports every PIL failure as a missing reader package, while PIL's
        # own message names the problem with the file.
        try:
            with Image.open(path) as image:
                image.load()
        except Exception as pil_error:  # noqa: BLE001 - PIL raises many types for bad files
            cause = pil_error
    return f"{type(cause).__name__}: {cause}"


def load_image_file(path: str | Path) -> np.ndarray:
    """Decode a PNG, JPEG, BMP or TIFF file to (C, H, W) float32 in [0, 1], C = 1 or 3.

    Raises:
        ValueError: the file cannot be decoded. The message gives PIL's reason.
    """
    global _LOADER
    if _LOADER is None:
        _LOADER = image_file_loader()
    try:
        with warnings.catch_warnings():
            # PIL hands MONAI a read-only buffer, and the copy below makes it writable.
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            image = _LOADER(str(path))
    except Exception as error:  # noqa: BLE001 - MONAI wraps every reader error
        raise ValueError(f"cannot decode image ({_decode_error(path, error)})") from error
    array = np.array(torch.as_tensor(image).as_subclass(torch.Tensor).numpy(), dtype=np.float32)
    if array.ndim != 3 or array.shape[0] not in (1, 3):
        raise ValueError(f"{path}: decoded to shape {array.shape}; expected 1 or 3 channels.")
    return array
