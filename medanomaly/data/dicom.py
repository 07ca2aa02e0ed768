"""Read DICOM files, folders and nested folders into 2-D slices in [0, 1].

Each file is read once with ``pydicom.dcmread`` and decoded once, with the
pylibjpeg plugins for JPEG, JPEG-LS, JPEG 2000 and RLE; deflated and big
endian files need no plugin. Per slice the steps are:

1. Modality rescale to the modality's unit (HU for CT): Rescale Slope and
   Rescale Intercept, from the top level or from the Pixel Value
   Transformation of enhanced multi-frame files, or a Modality LUT Sequence
   through ``pydicom.pixels.apply_modality_lut``.
2. MONOCHROME1 is inverted into the MONOCHROME2 sense (higher is brighter)
   within the rescaled range of Bits Stored, so the same image stored either
   way gives the same values. YBR data is converted to RGB by pydicom and
   PALETTE COLOR through its colour LUT.
3. The intensity preset (:mod:`medanomaly.data.intensity`). Gray images with
   no preset named use ``percentile``; RGB images with no preset named are
   divided by the largest stored value (255 for 8 bits) so their colours stay.

A multi-frame file gives one slice per frame, with the frame number as index.
Slices are grouped by SeriesInstanceUID (a file without one is a series of
its own) and ordered within each series along the slice normal, the cross
product of the two ImageOrientationPatient vectors dotted with
ImagePositionPatient. When a file in the series lacks those, or the
orientations differ, the order falls back to InstanceNumber and then to the
file name. Series follow each other in the order of their first file path.
NOTE: the frames of a multi-frame file keep their stored order, and per-frame
positions in enhanced multi-frame functional groups are not used for ordering.

Files without pixel data (SR, RTSTRUCT, RTPLAN and the like), unreadable or
truncated files and non-DICOM files become :class:`SkippedFile` entries with
the path and the reason. No patient identifier reaches the result or the log:
series keys are hashes of SeriesInstanceUID, and values of identifying
elements are removed from error text.

MONAI's ``PydicomReader`` is not used, because it reads a whole series into
one volume and stops at the first bad file. MONAI 1.6.1 with it also failed on
22 of the 79 DICOM test files in the pydicom 3.0.2 wheel, among them 1-bit
segmentations, which this module decodes.
"""

from __future__ import annotations

import logging
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_color_lut, apply_modality_lut
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from medanomaly.data.intensity import Preset, apply_preset, resolve_preset
from medanomaly.data.readers import (
    LoadResult,
    SkippedFile,
    SliceImage,
    describe_error,
    is_dicom_file,
    list_files,
    log_skipped,
    series_key,
)

__all__ = ["LoadResult", "SkippedFile", "SliceImage", "is_dicom_file", "load_dicom"]

logger = logging.getLogger(__name__)

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")

# Elements whose values identify a patient, a study or an institution. Their
# values are cut out of any error text that might quote them.
_IDENTIFYING_KEYWORDS = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "OtherPatientIDs",
    "OtherPatientNames",
    "PatientBirthDate",
    "PatientBirthName",
    "PatientMotherBirthName",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "AccessionNumber",
    "StudyID",
    "StudyDescription",
    "SeriesDescription",
    "PerformedProcedureStepDescription",
    "RequestedProcedureDescription",
    "ImageComments",
    "InstitutionName",
    "InstitutionAddress",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "OperatorsName",
    "StudyDate",
    "SeriesDate",
    "AcquisitionDate",
    "ContentDate",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
)
_IDENTIFYING_TAGS = tuple(tag_for_keyword(keyword) for keyword in _IDENTIFYING_KEYWORDS)

# Name components shorter than this are not cut out on their own: they would
# also match ordinary words in technical messages.
_MIN_REDACTED_PART = 4

# Two ImageOrientationPatient values closer than this count as the same plane.
_ORIENTATION_TOLERANCE = 1e-4

# Constant frames listed by index in one warning before the rest are counted.
_CONSTANT_LOG_LIMIT = 10


class _SkipFile(Exception):
    """A file that contains no usable image; the message is the reason."""


@dataclass
class _DecodedFile:
    """Slices of one file with what is needed to order them in their series."""

    path: Path
    series: str
    slices: list[SliceImage]
    orientation: tuple[float, ...] | None
    position: tuple[float, float, float] | None
    instance: int | None


def load_dicom(path: str | os.PathLike, preset: str | Preset | None = None) -> LoadResult:
    """Read a DICOM file, or every file under a folder, into ordered 2-D slices.

    Args:
        path: a DICOM file, or a folder searched recursively. Files that are
            not DICOM are reported in ``LoadResult.skipped``.
        preset: intensity preset name (see :mod:`medanomaly.data.intensity`);
            None means ``percentile`` for gray images and the full stored
            range for RGB.

    Returns:
        The slices grouped by series and ordered along the slice normal, the
        skipped files with reasons, and the number of files read.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: for an unknown preset name.
    """
    if preset is not None:
        resolve_preset(preset)
    root = Path(path)
    files = list_files(root)

    decoded: list[_DecodedFile] = []
    skipped: list[SkippedFile] = []
    for file in files:
        result = _read_file(file, preset)
        if isinstance(result, SkippedFile):
            skipped.append(result)
        else:
            decoded.append(result)

    slices, series_count = _order_slices(decoded)
    log_skipped(logger, skipped)
    logger.info(
        "Read %d of %d DICOM candidate files under %s: %d slices in %d series, %d files skipped.",
        len(decoded),
        len(files),
        root,
        len(slices),
        series_count,
        len(skipped),
    )
    return LoadResult(slices=slices, skipped=skipped, files_read=len(decoded))


def _read_file(path: Path, preset: str | Preset | None) -> _DecodedFile | SkippedFile:
    """Read and decode one file, or return why it was skipped."""
    if not is_dicom_file(path):
        return SkippedFile(
            str(path),
            "not a DICOM file: no 'DICM' prefix at byte 128 and no DICOM data element at byte 0",
        )

    # Any exception from a malformed file is caught so that one bad file does
    # not stop the batch. The reason names the exception type.
    try:
        dataset = pydicom.dcmread(path, force=True)
    except Exception as error:  # noqa: BLE001
        return SkippedFile(str(path), f"unreadable DICOM file: {describe_error(error)}")

    try:
        return _decode(path, dataset, preset)
    except _SkipFile as reason:
        return SkippedFile(str(path), str(reason))
    except Exception as error:  # noqa: BLE001
        syntax = _transfer_syntax_name(dataset)
        message = _redact(describe_error(error), dataset)
        return SkippedFile(str(path), f"pixel data could not be decoded ({syntax}): {message}")


def _decode(path: Path, dataset: Dataset, preset: str | Preset | None) -> _DecodedFile:
    """Decode every frame of a dataset into slices in [0, 1]."""
    if not any(keyword in dataset for keyword in _PIXEL_KEYWORDS):
        raise _SkipFile(f"no pixel data ({_sop_class_name(dataset)})")
    _check_frame_count(dataset)
    _set_missing_transfer_syntax(dataset)

    pixels = dataset.pixel_array
    photometric = str(dataset.get("PhotometricInterpretation", "")).strip().upper()
    modality = str(dataset.get("Modality", "") or "").strip().upper() or None
    if photometric == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, dataset)

    samples = 3 if photometric == "PALETTE COLOR" else int(dataset.get("SamplesPerPixel", 1) or 1)
    if samples not in (1, 3):
        raise _SkipFile(f"unsupported Samples per Pixel {samples}; expected 1 (gray) or 3 (colour)")
    # pydicom returns (rows, columns), (frames, rows, columns) or either with a
    # trailing samples axis; this makes it (frames, rows, columns, samples).
    frames = pixels.reshape(-1, int(dataset.Rows), int(dataset.Columns), samples)

    if photometric == "PALETTE COLOR":
        # The colour LUT gives 8 or 16-bit RGB, as its LUT Descriptor specifies.
        full_range = (0.0, float(np.iinfo(frames.dtype).max))
        arrays = _colour_frames(frames, full_range, preset, modality, path)
    elif samples == 3:
        arrays = _colour_frames(frames, _stored_range(dataset, frames), preset, modality, path)
    else:
        arrays = _gray_frames(frames[..., 0], dataset, photometric, preset, modality, path)

    series_uid = dataset.get("SeriesInstanceUID")
    series = series_key(str(series_uid)) if series_uid else series_key(str(path.resolve()))
    slices = [
        SliceImage(array=array, path=str(path), index=index, series=series, constant=constant)
        for index, (array, constant) in enumerate(arrays)
    ]
    _warn_constant(path, slices)

    orientation, position = _geometry(dataset)
    return _DecodedFile(
        path=path,
        series=series,
        slices=slices,
        orientation=orientation,
        position=position,
        instance=_instance_number(dataset),
    )


def _gray_frames(
    stored: np.ndarray,
    dataset: Dataset,
    photometric: str,
    preset: str | Preset | None,
    modality: str | None,
    source: Path,
) -> list[tuple[np.ndarray, bool]]:
    """Rescale, invert MONOCHROME1 and apply the preset to (frames, rows, columns) data."""
    values, low, high = _modality_rescale(stored, dataset)
    if photometric == "MONOCHROME1":
        # Mirror within the rescaled stored range: stored value v becomes
        # (max - v) in MONOCHROME2 terms, for any slope and intercept.
        values = (low + high).astype(values.dtype)[:, None, None] - values
    constant = _constant_flags(values[..., np.newaxis])
    return [
        (apply_preset(frame, preset, modality, source)[np.newaxis], bool(flag))
        for frame, flag in zip(values, constant)
    ]


def _colour_frames(
    frames: np.ndarray,
    value_range: tuple[float, float],
    preset: str | Preset | None,
    modality: str | None,
    source: Path,
) -> list[tuple[np.ndarray, bool]]:
    """Scale (frames, rows, columns, 3) RGB data and move channels first."""
    constant = _constant_flags(frames)
    low, high = value_range
    arrays = []
    for frame in frames:
        if preset is None:
            scaled = (frame.astype(np.float32) - np.float32(low)) / np.float32(high - low)
            np.clip(scaled, 0.0, 1.0, out=scaled)
        else:
            scaled = apply_preset(frame, preset, modality, source)
        arrays.append(np.ascontiguousarray(scaled.transpose(2, 0, 1)))
    return list(zip(arrays, (bool(flag) for flag in constant)))


def _modality_rescale(
    stored: np.ndarray, dataset: Dataset
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apply the modality LUT or rescale to (frames, rows, columns) stored values.

    Returns:
        The values (int32 or int64 when the rescale keeps whole numbers,
        float32 otherwise), and per frame the lowest and highest value that
        the stored range (from Bits Stored and Pixel Representation) maps to.
    """
    count = stored.shape[0]
    stored_low, stored_high = _stored_range(dataset, stored)

    if dataset.get("ModalityLUTSequence"):
        values = apply_modality_lut(stored, dataset).astype(np.float32)
        if stored_high - stored_low <= 2**16:
            every_value = np.arange(int(stored_low), int(stored_high) + 1)
            mapped = apply_modality_lut(every_value, dataset)
        else:
            mapped = values
        low, high = float(mapped.min()), float(mapped.max())
        return values, np.full(count, low), np.full(count, high)

    slopes, intercepts = _rescale_parameters(dataset, count)
    ends = np.stack([stored_low * slopes + intercepts, stored_high * slopes + intercepts])
    low, high = ends.min(axis=0), ends.max(axis=0)

    integral = np.all(slopes == 1.0) and np.all(intercepts == np.round(intercepts))
    if stored.dtype.kind in "iu" and integral:
        # CT's usual slope 1 and whole-number intercept keep integers, which
        # the percentile preset ranks with a fast histogram.
        wide = stored.dtype.itemsize >= 4 or bool(np.any(np.abs(ends) >= 2**31))
        values = stored.astype(np.int64 if wide else np.int32)
        if np.any(intercepts != 0.0):
            values += intercepts.astype(values.dtype)[:, None, None]
        return values, low, high

    values = stored.astype(np.float32)
    if np.any(slopes != 1.0):
        values *= slopes.astype(np.float32)[:, None, None]
    if np.any(intercepts != 0.0):
        values += intercepts.astype(np.float32)[:, None, None]
    return values, low, high


def _rescale_parameters(dataset: Dataset, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Return Rescale Slope and Intercept per frame (1 and 0 where absent).

    Enhanced multi-frame files keep them in the Pixel Value Transformation
    Sequence of the shared or the per-frame functional groups.
    """
    slope, intercept = _slope_intercept(dataset, (1.0, 0.0))
    shared = _first_item(dataset, "SharedFunctionalGroupsSequence")
    transformation = _first_item(shared, "PixelValueTransformationSequence")
    slope, intercept = _slope_intercept(transformation, (slope, intercept))

    slopes = np.full(count, slope, dtype=np.float64)
    intercepts = np.full(count, intercept, dtype=np.float64)
    per_frame = dataset.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and len(per_frame) == count:
        for index, item in enumerate(per_frame):
            transformation = _first_item(item, "PixelValueTransformationSequence")
            slopes[index], intercepts[index] = _slope_intercept(
                transformation, (slopes[index], intercepts[index])
            )
    return slopes, intercepts


def _slope_intercept(
    item: Dataset | None, default: tuple[float, float]
) -> tuple[float, float]:
    if item is None:
        return default
    slope = item.get("RescaleSlope")
    intercept = item.get("RescaleIntercept")
    slope = float(slope) if slope not in (None, "") else default[0]
    intercept = float(intercept) if intercept not in (None, "") else default[1]
    return slope, intercept


def _first_item(dataset: Dataset | None, keyword: str) -> Dataset | None:
    if dataset is None:
        return None
    sequence = dataset.get(keyword)
    return sequence[0] if sequence else None


def _stored_range(dataset: Dataset, stored: np.ndarray) -> tuple[float, float]:
    """Return the smallest and largest value the stored pixels can take."""
    if stored.dtype.kind == "f":
        finite = stored[np.isfinite(stored)]
        return (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    bits = int(dataset.get("BitsStored") or stored.dtype.itemsize * 8)
    if int(dataset.get("PixelRepresentation") or 0) == 1:
        return float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    return 0.0, float(2**bits - 1)


def _constant_flags(frames: np.ndarray) -> np.ndarray:
    """Return, per frame of (frames, rows, columns, channels), whether all pixels are equal."""
    flat = frames.reshape(frames.shape[0], -1, frames.shape[-1])
    return np.all(flat.min(axis=1) == flat.max(axis=1), axis=1)


def _warn_constant(path: Path, slices: list[SliceImage]) -> None:
    indices = [item.index for item in slices if item.constant]
    if not indices:
        return
    listed = ", ".join(str(index) for index in indices[:_CONSTANT_LOG_LIMIT])
    if len(indices) > _CONSTANT_LOG_LIMIT:
        listed += f" and {len(indices) - _CONSTANT_LOG_LIMIT} more"
    logger.warning(
        "%s: index %s of %d decoded to a constant image (every pixel equal); "
        "kept with constant=True.",
        path,
        listed,
        len(slices),
    )


def _geometry(dataset: Dataset) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    """Return ImageOrientationPatient (6 values) and ImagePositionPatient (3), or None."""
    try:
        orientation = tuple(float(value) for value in dataset.ImageOrientationPatient)
        position = tuple(float(value) for value in dataset.ImagePositionPatient)
    except (AttributeError, TypeError, ValueError):
        return None, None
    if len(orientation) != 6 or len(position) != 3:
        return None, None
    if not np.all(np.isfinite(orientation + position)):
        return None, None
    return orientation, position


def _instance_number(dataset: Dataset) -> int | None:
    try:
        return int(dataset.InstanceNumber)
    except (AttributeError, TypeError, ValueError):
        return None


def _order_slices(decoded: list[_DecodedFile]) -> tuple[list[SliceImage], int]:
    """Group files by series, order each series, and return all slices and the series count."""
    groups: dict[str, list[_DecodedFile]] = defaultdict(list)
    for item in decoded:
        groups[item.series].append(item)
    ordered_groups = sorted(groups.values(), key=lambda files: min(str(f.path) for f in files))

    slices: list[SliceImage] = []
    for files in ordered_groups:
        for item in _order_files(files):
            slices.extend(item.slices)
    return slices, len(groups)


def _order_files(files: list[_DecodedFile]) -> list[_DecodedFile]:
    """Order the files of one series along the slice normal, by InstanceNumber, or by name."""
    files = sorted(files, key=lambda item: str(item.path))
    reference = files[0].orientation
    same_plane = reference is not None and all(
        item.position is not None
        and np.allclose(item.orientation, reference, atol=_ORIENTATION_TOLERANCE)
        for item in files
    )

    if same_plane:
        normal = np.cross(reference[:3], reference[3:])

        def along_normal(item: _DecodedFile) -> tuple:
            # Rounded to 0.1 micrometre so equal positions tie and fall back to InstanceNumber.
            distance = round(float(np.dot(normal, item.position)), 4)
            instance = item.instance if item.instance is not None else 0
            return distance, instance, item.path.name, str(item.path)

        return sorted(files, key=along_normal)

    series = files[0].series
    if all(item.instance is not None for item in files):
        if len(files) > 1:
            logger.info(
                "%s: ordered by InstanceNumber because ImagePositionPatient or "
                "ImageOrientationPatient is missing or differs between files.",
                series,
            )
        return sorted(files, key=lambda item: (item.instance, item.path.name, str(item.path)))

    if len(files) > 1:
        logger.warning(
            "%s: ordered by file name because neither the slice position nor "
            "InstanceNumber is present in all %d files.",
            series,
            len(files),
        )
    return sorted(files, key=lambda item: (item.path.name, str(item.path)))


def _check_frame_count(dataset: Dataset) -> None:
    element = dataset.get_item("NumberOfFrames")
    if element is None:
        return
    try:
        count = int(dataset.NumberOfFrames)
    except (TypeError, ValueError):
        count = 0
    if count < 1:
        raise _SkipFile(
            f"invalid Number of Frames {str(dataset.NumberOfFrames)!r}; expected an integer >= 1"
        )


def _set_missing_transfer_syntax(dataset: Dataset) -> None:
    """Give a dataset without a Transfer Syntax UID the encoding it was read with.

    Files saved without the Part 10 header can only hold native (uncompressed)
    pixel data, whose decoding depends only on the VR and byte order.
    """
    meta = getattr(dataset, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return
    implicit, little = dataset.original_encoding
    if implicit is None:
        return
    if meta is None:
        meta = FileMetaDataset()
        dataset.file_meta = meta
    if implicit:
        meta.TransferSyntaxUID = ImplicitVRLittleEndian
    elif little:
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
    else:
        meta.TransferSyntaxUID = ExplicitVRBigEndian


def _transfer_syntax_name(dataset: Dataset) -> str:
    meta = getattr(dataset, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    return f"transfer syntax {uid.name}" if uid else "no transfer syntax"


def _sop_class_name(dataset: Dataset) -> str:
    uid = dataset.get("SOPClassUID")
    if not uid:
        meta = getattr(dataset, "file_meta", None)
        uid = meta.get("MediaStorageSOPClassUID") if meta is not None else None
    return f"SOP class {uid.name}" if uid else "no SOP Class UID"


def _redact(text: str, dataset: Dataset) -> str:
    """Cut the values of identifying elements out of a message quoted from pydicom."""
    for value in _identifying_values(dataset):
        text = text.replace(value, "<removed>")
    return text


def _identifying_values(dataset: Dataset) -> list[str]:
    """Return the values of identifying elements and their name parts, longest first.

    Raw bytes are read without converting the element, so pydicom does not
    validate, and possibly log, the value on the way.
    """
    values: set[str] = set()
    for tag in _IDENTIFYING_TAGS:
        try:
            element = dataset.get_item(tag)
        except (KeyError, ValueError, TypeError):
            continue
        if element is None or element.value is None:
            continue
        raw = element.value
        if isinstance(raw, bytes):
            texts = {raw.decode("latin-1"), raw.decode("utf-8", errors="ignore")}
        else:
            texts = {str(raw)}
        for text in texts:
            text = text.strip(" \x00")
            if len(text) >= 2:
                values.add(text)
            for part in re.split(r"[\\^=]", text):
                part = part.strip(" \x00")
                if len(part) >= _MIN_REDACTED_PART:
                    values.add(part)
    return sorted(values, key=len, reverse=True)
