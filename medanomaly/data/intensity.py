"""Intensity presets that map decoded pixel values to [0, 1].

A preset is named in a config (``data.preset``) or in a manifest row:

- CT windows in Hounsfield units (HU): ``brain``, ``subdural``, ``stroke``,
  ``lung``, ``mediastinum``, ``abdomen``, ``liver``, ``bone``. Values below
  ``level - width / 2`` map to 0 and values above ``level + width / 2`` map to 1.
- ``percentile``: the 0.5th and 99.5th percentiles of each slice map to 0 and
  1, with values outside clipped. It suits MR, X-ray and CT alike because it
  needs no calibrated unit.
- ``minmax``: the minimum and maximum of each slice map to 0 and 1.
- ``window:WIDTH:LEVEL`` and ``percentile:LOWER:UPPER`` give other windows
  and percentiles, for example ``window:350:40`` or ``percentile:1:99``.

The default when no preset is named (``None``) is ``percentile`` for every
modality. A fixed CT window is the better choice when the anatomy is known,
because it keeps the same HU at the same grey level across patients, so name one.

Window widths (W) and levels (L) in HU are the common settings tabulated in
Radiopaedia's "Windowing (CT)" article (radiopaedia.org/articles/windowing-ct):
brain W80/L40, subdural W130-300/L50-100 (W200/L80 is used here), stroke
W40/L40, lungs W1500/L-600, mediastinum W350/L50, abdominal soft tissue
W400/L50, liver W150/L30, bone W1800/L400.
NOTE: these numbers come from a restatement of that table in public code, not
from the article itself. Check them against it before relying on them.

The mapping is the one MONAI's ``ScaleIntensityRange(a_min, a_max, 0, 1,
clip=True)`` and ``ScaleIntensityRangePercentiles(lower, upper, 0, 1,
clip=True)`` compute; the tests compare the two. It is written in NumPy
because MONAI 1.6.1 took about 0.7 ms and 48 ms for those transforms on one
512x512 slice, against 0.1 ms and 1 ms here (measured on a 2-core x86 CPU).
"""

from __future__ import annotations

import logging
import os
import math
from dataclasses import dataclass
from typing import Union

import numpy as np

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Window:
    """Fixed window in the array's unit (HU for CT): ``level`` maps to 0.5."""

    width: float
    level: float

    def bounds(self, values: np.ndarray) -> tuple[float, float]:
        """Return the values that map to 0 and 1."""
        return self.level - self.width / 2.0, self.level + self.width / 2.0


@dataclass(frozen=True)
class Percentile:
    """Per-image percentile range; ``lower`` and ``upper`` are in percent."""

    lower: float = 0.5
    upper: float = 99.5

    def bounds(self, values: np.ndarray) -> tuple[float, float]:
        """Return the values that map to 0 and 1."""
        return percentile_pair(values, self.lower, self.upper)


@dataclass(frozen=True)
class MinMax:
    """Per-image minimum and maximum."""

    def bounds(self, values: np.ndarray) -> tuple[float, float]:
        """Return the values that map to 0 and 1."""
        return float(values.min()), float(values.max())


Preset = Union[Window, Percentile, MinMax]

PRESETS: dict[str, Preset] = {
    "brain": Window(width=80, level=40),
    "subdural": Window(width=200, level=80),
    "stroke": Window(width=40, level=40),
    "lung": Window(width=1500, level=-600),
    "mediastinum": Window(width=350, level=50),
    "abdomen": Window(width=400, level=50),
    "liver": Window(width=150, level=30),
    "bone": Window(width=1800, level=400),
    "percentile": Percentile(0.5, 99.5),
    "minmax": MinMax(),
}

DEFAULT_PRESET = "percentile"

# Window presets already warned about for a non-CT modality, so each pair is logged once.
_warned_window_modality: set[tuple[str, str]] = set()


def resolve_preset(preset: str | Preset | None) -> Preset:
    """Turn a preset name, ``window:W:L``, ``percentile:LO:HI`` or ``None`` into a preset.

    Raises:
        ValueError: for an unknown name or invalid numbers; the message lists
            the valid names.
    """
    if preset is None:
        return PRESETS[DEFAULT_PRESET]
    if isinstance(preset, (Window, Percentile, MinMax)):
        return preset
    if not isinstance(preset, str):
        raise ValueError(f"Invalid intensity preset {preset!r}: expected a name. {_valid_names()}")

    name = preset.strip().lower()
    if name in PRESETS:
        return PRESETS[name]
    if name.startswith("window:"):
        return _parse_window(preset)
    if name.startswith("percentile:"):
        return _parse_percentile(preset)
    raise ValueError(f"Unknown intensity preset {preset!r}. {_valid_names()}")


def apply_preset(
    array: np.ndarray,
    preset: str | Preset | None = None,
    modality: str | None = None,
    source: str | os.PathLike | None = None,
) -> np.ndarray:
    """Map an image to float32 values in [0, 1] with an intensity preset.

    Percentile and min-max bounds are computed over the whole array, so the
    three channels of an RGB image share one range and keep their colour.
    Non-finite values are left out of the bounds and map to 0 (NaN, -inf) or
    1 (+inf). When the two bounds are equal (a constant image), values above
    them map to 1 and the rest to 0.

    Args:
        array: image in any shape: HU for CT after the modality rescale, or
            raw values for other modalities.
        preset: a name from :data:`PRESETS`, ``window:W:L``,
            ``percentile:LO:HI``, a preset object, or None for ``percentile``.
        modality: DICOM Modality such as ``CT`` or ``MR``, if known; a CT
            window applied to another modality is logged once at WARNING.
        source: the file the image came from, named in that warning.

    Returns:
        A new float32 array of the same shape with values in [0, 1].

    Raises:
        ValueError: for an unknown preset name.
    """
    spec = resolve_preset(preset)
    if isinstance(spec, Window) and modality and modality.upper() != "CT":
        _warn_window_on_modality(preset, modality, source)

    values = np.asarray(array)
    if values.dtype.kind in "biu":
        # Integers are always finite, and their percentiles come from a histogram.
        if values.dtype.kind == "b":
            values = values.astype(np.uint8)
        low, high = spec.bounds(values)
        return scale_to_unit(values, low, high)

    values = values.astype(np.float32, copy=False)
    finite = np.isfinite(values)
    if finite.all():
        low, high = spec.bounds(values)
        return scale_to_unit(values, low, high)

    # Bounds from the finite values only; NaN and -inf become 0, +inf becomes 1.
    if finite.any():
        low, high = spec.bounds(values[finite])
    else:
        low, high = 0.0, 0.0
    scaled = scale_to_unit(np.where(finite, values, 0.0).astype(np.float32), low, high)
    scaled[~finite] = 0.0
    scaled[np.isposinf(values)] = 1.0
    return scaled


def scale_to_unit(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map ``low`` to 0 and ``high`` to 1 linearly and clip to [0, 1], as float32.

    When ``high <= low``, values above ``low`` map to 1 and the rest to 0.
    """
    if high <= low:
        return (values > low).astype(np.float32)
    scaled = np.subtract(values, np.float32(low), dtype=np.float32)
    np.divide(scaled, np.float32(high - low), out=scaled)
    np.clip(scaled, 0.0, 1.0, out=scaled)
    return scaled


def percentile_pair(values: np.ndarray, lower: float, upper: float) -> tuple[float, float]:
    """Return two percentiles of an array, with NumPy's default linear interpolation.

    Integer images with a value range no wider than the pixel count (or 65536)
    are ranked with a histogram, and other arrays with one ``np.partition``
    call. On a 512x512 CT slice that takes about 0.4 ms and 1-4 ms, against
    2-8 ms for ``np.percentile`` (2-core x86 CPU).
    """
    flat = np.ravel(values)
    count = flat.size
    if count == 0:
        raise ValueError("Cannot compute percentiles of an empty image.")

    positions = [q / 100.0 * (count - 1) for q in (lower, upper)]
    ranks = sorted({min(math.floor(p) + step, count - 1) for p in positions for step in (0, 1)})
    ranked = _values_at_ranks(flat, ranks)

    result = []
    for position in positions:
        below = math.floor(position)
        above = min(below + 1, count - 1)
        low_value, high_value = ranked[below], ranked[above]
        result.append(low_value + (high_value - low_value) * (position - below))
    return result[0], result[1]


def _values_at_ranks(flat: np.ndarray, ranks: list[int]) -> dict[int, float]:
    """Return the values at the given 0-based ranks of the sorted array."""
    if flat.dtype.kind in "iu":
        low, high = int(flat.min()), int(flat.max())
        if high - low <= max(flat.size, 65536):
            shifted = np.subtract(flat, flat.dtype.type(low)).astype(np.intp, copy=False)
            cumulative = np.cumsum(np.bincount(shifted, minlength=high - low + 1))
            # The value at rank r is the first bin whose running count exceeds r.
            bins = np.searchsorted(cumulative, ranks, side="right")
            return {rank: float(low + int(b)) for rank, b in zip(ranks, bins)}

    ordered = np.partition(flat, ranks)
    return {rank: float(ordered[rank]) for rank in ranks}


def _parse_window(text: str) -> Window:
    usage = "window:WIDTH:LEVEL in the image unit, e.g. window:350:40"
    width, level = _parse_two_numbers(text, usage)
    if width <= 0:
        raise ValueError(f"Invalid intensity preset {text!r}: the window width must be > 0.")
    return Window(width=width, level=level)


def _parse_percentile(text: str) -> Percentile:
    usage = "percentile:LOWER:UPPER in percent, e.g. percentile:1:99"
    lower, upper = _parse_two_numbers(text, usage)
    if not 0.0 <= lower < upper <= 100.0:
        raise ValueError(
            f"Invalid intensity preset {text!r}: percentiles must satisfy "
            "0 <= LOWER < UPPER <= 100."
        )
    return Percentile(lower=lower, upper=upper)


def _parse_two_numbers(text: str, usage: str) -> tuple[float, float]:
    parts = text.split(":")
    numbers = []
    for part in parts[1:]:
        try:
            numbers.append(float(part))
        except ValueError:
            break
    if len(parts) != 3 or len(numbers) != 2 or not all(map(math.isfinite, numbers)):
        raise ValueError(f"Invalid intensity preset {text!r}: expected {usage}.")
    return numbers[0], numbers[1]


def _valid_names() -> str:
    return (
        f"Valid presets: {', '.join(sorted(PRESETS))}, window:WIDTH:LEVEL, "
        "percentile:LOWER:UPPER, or leave it empty for the default (percentile)."
    )


def _warn_window_on_modality(preset: object, modality: str, source: str | os.PathLike | None) -> None:
    key = (str(preset), modality.upper())
    if key in _warned_window_modality:
        return
    _warned_window_modality.add(key)
    logger.warning(
        "Intensity preset %r is a CT window in HU but the modality of %s is %s, whose pixel "
        "values are not HU. Use 'percentile' or 'minmax' for this modality. This warning is "
        "given once per preset and modality.",
        preset,
        source if source is not None else "this image",
        modality,
    )
