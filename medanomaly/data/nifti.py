"""Read NIfTI volumes (``.nii``, ``.nii.gz``) into 2-D slices in [0, 1].

Per file the steps are:

1. nibabel reads the data of one volume (``volume_index`` for 4-D files) and
   applies ``scl_slope`` and ``scl_inter`` once. A slope of 0 or NaN means no
   scaling, as the NIfTI-1 standard defines. 2-D files are read as one slice.
2. The volume is reoriented to RAS+ with the axis flips and swaps of
   ``nibabel.as_closest_canonical`` (closest to the affine's axes): array
   axes 0, 1, 2 then run towards the patient's Right, Anterior and Superior,
   whatever the file's own axis order. ``slice_axis`` and slice indices
   refer to this canonical volume.
3. Optionally, near-empty background slices are skipped (``foreground_threshold``).
4. Each slice is turned into an image with the first remaining axis left to
   right and the second bottom to top: an axial slice (axis 2) has the
   patient's left on the image's left and anterior at the top.
5. The intensity preset (:mod:`medanomaly.data.intensity`) maps it to [0, 1];
   with no preset named, ``percentile``.

Foreground: a voxel is foreground when it exceeds the volume's background
level, defined as its minimum plus 1% of its intensity range (maximum minus
minimum, finite values only). A slice whose foreground fraction is below
``foreground_threshold`` is skipped. The level comes from the whole volume,
not from each slice. An empty slice contains only noise around the air value,
so a level from its own minimum and range would count most of that noise as
foreground.

The series key of every slice is a hash of the file's absolute path.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from medanomaly.data.intensity import Preset, apply_preset, resolve_preset
from medanomaly.data.readers import (
    LoadResult,
    SkippedFile,
    SliceImage,
    describe_error,
    is_nifti_path,
    list_files,
    log_skipped,
    series_key,
)

__all__ = ["LoadResult", "SkippedFile", "SliceImage", "is_nifti_path", "load_nifti"]

logger = logging.getLogger(__name__)

# Fraction of the volume's intensity range above its minimum that still counts as background.
BACKGROUND_FRACTION = 0.01

# Constant slices listed by index in one warning before the rest are counted.
_CONSTANT_LOG_LIMIT = 10

class _SkipFile(Exception):
    """A file that gives no slice; the message is the reason."""


def load_nifti(
    path: str | os.PathLike,
    preset: str | Preset | None = None,
    slice_axis: int = 2,
    slice_range: slice | tuple | Sequence[int] | str | None = None,
    volume_index: int = 0,
    foreground_threshold: float | None = None,
) -> LoadResult:
    """Read a NIfTI file, or every ``.nii``/``.nii.gz`` file under a folder, into slices.

    Args:
        path: a NIfTI file, or a folder searched recursively; files without a
            NIfTI suffix in a folder are counted in the log and ignored.
        preset: intensity preset name (see :mod:`medanomaly.data.intensity`);
            None means ``percentile``.
        slice_axis: axis of the RAS+ volume to slice along: 0 sagittal,
            1 coronal, 2 axial.
        slice_range: indices along ``slice_axis`` to keep, None for all. A
            ``slice`` or a ``(start, stop)`` tuple follows Python slicing
            (stop excluded). A list gives the indices themselves. The manifest
            forms ``"start:stop"`` and ``"3;4;5"`` are accepted too.
        volume_index: volume of a 4-D file to read (0-based); 2-D and 3-D
            files hold volume 0 only.
        foreground_threshold: if set, slices whose fraction of foreground
            voxels (see the module docstring) is below it are skipped.

    Returns:
        The slices of each file in index order, files in path order, and the
        skipped files with reasons.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: for an invalid argument; the message names it and the rule.
    """
    selection = _parse_slice_range(slice_range)
    _check_arguments(preset, slice_axis, volume_index, foreground_threshold)
    root = Path(path)
    files = list_files(root)
    candidates = [file for file in files if is_nifti_path(file)] if root.is_dir() else files
    if len(candidates) < len(files):
        logger.info(
            "Ignored %d files without a .nii or .nii.gz suffix under %s.",
            len(files) - len(candidates),
            root,
        )

    slices: list[SliceImage] = []
    skipped: list[SkippedFile] = []
    files_read = 0
    background_slices = 0
    for file in candidates:
        try:
            file_slices, background = _read_file(
                file, preset, slice_axis, selection, volume_index, foreground_threshold
            )
        except _SkipFile as reason:
            skipped.append(SkippedFile(str(file), str(reason)))
            continue
        slices.extend(file_slices)
        background_slices += background
        files_read += 1

    log_skipped(logger, skipped)
    logger.info(
        "Read %d of %d NIfTI files under %s: %d slices along RAS+ axis %d, "
        "%d background slices skipped, %d files skipped.",
        files_read,
        len(candidates),
        root,
        len(slices),
        slice_axis,
        background_slices,
        len(skipped),
    )
    return LoadResult(slices=slices, skipped=skipped, files_read=files_read)


def _check_arguments(
    preset: str | Preset | None,
    slice_axis: int,
    volume_index: int,
    foreground_threshold: float | None,
) -> None:
    if preset is not None:
        resolve_preset(preset)
    if slice_axis not in (0, 1, 2):
        raise ValueError(f"Invalid slice_axis {slice_axis!r}: expected 0, 1 or 2.")
    if not isinstance(volume_index, (int, np.integer)) or volume_index < 0:
        raise ValueError(f"Invalid volume_index {volume_index!r}: expected an integer >= 0.")
    if foreground_threshold is not None and not 0.0 <= foreground_threshold <= 1.0:
        raise ValueError(
            f"Invalid foreground_threshold {foreground_threshold!r}: expected a fraction "
            "in [0, 1], or None to keep every slice."
        )


def _parse_slice_range(slice_range: object) -> slice | list[int]:
    """Normalise ``slice_range`` to a slice or a list of indices.

    Raises:
        ValueError: for a malformed value.
    """
    usage = (
        "expected None, a slice, a (start, stop) tuple, a list of indices, "
        "'start:stop' or '3;4;5'"
    )
    if slice_range is None:
        return slice(None)
    if isinstance(slice_range, slice):
        return slice_range
    if isinstance(slice_range, str):
        return _parse_slice_text(slice_range, usage)
    if isinstance(slice_range, tuple):
        if len(slice_range) != 2 or not all(
            part is None or isinstance(part, (int, np.integer)) for part in slice_range
        ):
            raise ValueError(f"Invalid slice_range {slice_range!r}: {usage}.")
        return slice(slice_range[0], slice_range[1])
    if isinstance(slice_range, (Sequence, range, np.ndarray)):
        indices = list(slice_range)
        if not all(isinstance(index, (int, np.integer)) and index >= 0 for index in indices):
            raise ValueError(
                f"Invalid slice_range {slice_range!r}: indices must be integers >= 0."
            )
        return [int(index) for index in indices]
    raise ValueError(f"Invalid slice_range {slice_range!r}: {usage}.")


def _parse_slice_text(text: str, usage: str) -> slice | list[int]:
    stripped = text.strip()
    match = re.fullmatch(r"(-?\d*)\s*:\s*(-?\d*)", stripped)
    if match:
        start, stop = (int(part) if part else None for part in match.groups())
        return slice(start, stop)
    parts = [part.strip() for part in stripped.split(";") if part.strip()]
    if parts and all(part.isdigit() for part in parts):
        return [int(part) for part in parts]
    raise ValueError(f"Invalid slice_range {text!r}: {usage}.")


def _read_file(
    path: Path,
    preset: str | Preset | None,
    slice_axis: int,
    selection: slice | list[int],
    volume_index: int,
    foreground_threshold: float | None,
) -> tuple[list[SliceImage], int]:
    """Read one file into slices and count the background slices skipped.

    Raises:
        _SkipFile: with the reason when the file gives no slice.
    """
    volume = _read_canonical_volume(path, volume_index)
    count = volume.shape[slice_axis]
    indices = _selected_indices(selection, count, slice_axis)

    background_skipped = 0
    if foreground_threshold is not None:
        foreground = _foreground_indices(volume, slice_axis, indices, foreground_threshold)
        background_skipped = len(indices) - len(foreground)
        indices = foreground

    key = series_key(str(path.resolve()), prefix="volume")
    slices = []
    for index in indices:
        plane = _slice_image(volume, slice_axis, index)
        constant = bool(plane.min() == plane.max())
        array = apply_preset(plane, preset)[np.newaxis]
        slices.append(
            SliceImage(array=array, path=str(path), index=index, series=key, constant=constant)
        )

    _warn_constant(path, slices)
    if foreground_threshold is not None:
        logger.info(
            "%s: kept %d slices, skipped %d background slices with a foreground "
            "fraction below %g.",
            path,
            len(slices),
            background_skipped,
            foreground_threshold,
        )
    return slices, background_skipped


def _read_canonical_volume(path: Path, volume_index: int) -> np.ndarray:
    """Return one scaled volume of a file as a 3-D array in RAS+ axis order.

    Integer data without scaling stays integer (native byte order) so that
    percentiles can use a histogram; everything else becomes float32.
    """
    # Any exception from a malformed file is caught so that the batch goes on.
    # The reason names the exception type.
    try:
        image = nib.load(path)
    except Exception as error:  # noqa: BLE001
        raise _SkipFile(f"unreadable NIfTI file: {describe_error(error)}") from None
    if not isinstance(image, nib.Nifti1Pair):
        raise _SkipFile(
            f"not a NIfTI-1 or NIfTI-2 image: nibabel read it as {type(image).__name__}"
        )

    shape = tuple(image.shape)
    while len(shape) > 4 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) < 2 or len(shape) > 4:
        raise _SkipFile(f"unsupported data shape {tuple(image.shape)}; expected 2-D, 3-D or 4-D")
    volumes = shape[3] if len(shape) == 4 else 1
    if volume_index >= volumes:
        raise _SkipFile(
            f"volume_index {volume_index} out of range: the file contains {volumes} "
            f"volume(s) of shape {shape[:3]}"
        )

    try:
        data = _read_volume_data(image, shape, volume_index)
    except Exception as error:  # noqa: BLE001
        raise _SkipFile(f"data could not be read: {describe_error(error)}") from None

    # The same flips and axis swaps as nibabel.as_closest_canonical, applied to
    # the data read above so that it is not read or scaled a second time.
    orientation = nib.orientations.io_orientation(image.affine)
    return nib.orientations.apply_orientation(data, orientation)


def _read_volume_data(
    image: nib.Nifti1Pair, shape: tuple[int, ...], volume_index: int
) -> np.ndarray:
    """Read one volume through nibabel's array proxy, which applies scl_slope and scl_inter."""
    # Index the proxy so that only one volume of a 4-D file is read.
    extra = (0,) * (len(image.shape) - len(shape))
    if len(shape) == 4:
        data = image.dataobj[(slice(None),) * 3 + (volume_index,) + extra]
    else:
        data = image.dataobj[(slice(None),) * len(shape) + extra]
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[:, :, np.newaxis]

    if data.dtype.kind in "iu":
        return data.astype(data.dtype.newbyteorder("="), copy=False)
    return data.astype(np.float32)


def _selected_indices(selection: slice | list[int], count: int, slice_axis: int) -> list[int]:
    if isinstance(selection, slice):
        return list(range(count)[selection])
    outside = [index for index in selection if index >= count]
    if outside:
        raise _SkipFile(
            f"slice index {outside[0]} out of range: axis {slice_axis} of the RAS+ volume "
            f"has {count} slices (0 to {count - 1})"
        )
    return list(selection)


def _foreground_indices(
    volume: np.ndarray, slice_axis: int, indices: list[int], threshold: float
) -> list[int]:
    """Keep the slices whose foreground fraction reaches ``threshold``."""
    finite = volume[np.isfinite(volume)] if volume.dtype.kind == "f" else volume
    if finite.size == 0:
        return [] if threshold > 0 else list(indices)
    low, high = float(finite.min()), float(finite.max())
    background = low + BACKGROUND_FRACTION * (high - low)

    selected = []
    for index in indices:
        plane = np.take(volume, index, axis=slice_axis)
        fraction = float(np.count_nonzero(plane > background)) / plane.size
        if fraction >= threshold:
            selected.append(index)
    return selected


def _slice_image(volume: np.ndarray, slice_axis: int, index: int) -> np.ndarray:
    """Return slice ``index`` as (rows, columns): first remaining axis left to right,
    second bottom to top."""
    plane = np.take(volume, index, axis=slice_axis)
    # (first, second) -> (second, first) with the second axis reversed, so it runs up.
    return np.ascontiguousarray(plane.T[::-1])


def _warn_constant(path: Path, slices: list[SliceImage]) -> None:
    indices = [item.index for item in slices if item.constant]
    if not indices:
        return
    listed = ", ".join(str(index) for index in indices[:_CONSTANT_LOG_LIMIT])
    if len(indices) > _CONSTANT_LOG_LIMIT:
        listed += f" and {len(indices) - _CONSTANT_LOG_LIMIT} more"
    logger.warning(
        "%s: slice index %s of %d selected are constant images (every voxel equal); "
        "kept with constant=True. Set foreground_threshold to skip empty slices.",
        path,
        listed,
        len(slices),
    )

