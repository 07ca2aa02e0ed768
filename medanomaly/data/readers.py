"""Result types and file checks shared by the DICOM and NIfTI readers.

Both readers work on batches: a file that cannot be used becomes a
:class:`SkippedFile` with its path and a technical reason, and the rest of the
batch goes on. Nothing in these types carries a patient identifier: files are
named by path and slices by index, and series by a hash (:func:`series_key`).
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

# DICOM Part 10 files have a 128-byte preamble followed by these 4 bytes.
_DICM_OFFSET = 128
_DICM_MAGIC = b"DICM"

# Groups that may start a dataset written without the Part 10 header:
# File Meta (0002), Directory (0004) and Identifying (0008).
_HEADERLESS_FIRST_GROUPS = {0x0002, 0x0004, 0x0008}

# How many skipped files are logged one by one before the rest are only counted.
_SKIPPED_LOG_LIMIT = 20


@dataclass
class SliceImage:
    """One 2-D image decoded from a DICOM frame or a volume slice.

    Attributes:
        array: (C, H, W) float32 in [0, 1] after the intensity preset, at the
            native resolution; C is 1 (gray) or 3 (RGB).
        path: source file.
        index: frame number in a multi-frame DICOM file (0-based), slice
            number in a volume, 0 for a single-frame file.
        series: short non-identifying series key, such as ``series-3f2a9c01``.
        constant: True when every pixel of the decoded image has the same value.
    """

    array: np.ndarray
    path: str
    index: int
    series: str
    constant: bool


@dataclass
class SkippedFile:
    """A file that gave no image, with the technical reason."""

    path: str
    reason: str


@dataclass
class LoadResult:
    """Slices decoded from a file or folder, and the files that were skipped.

    Attributes:
        slices: decoded slices, grouped by series and ordered within each series.
        skipped: files that gave no slice, each with the reason.
        files_read: number of files read without error; a NIfTI file whose
            slices were all skipped as background counts too.
    """

    slices: list[SliceImage]
    skipped: list[SkippedFile]
    files_read: int


def is_nifti_path(path: str | os.PathLike) -> bool:
    """Return True when the file name ends with ``.nii`` or ``.nii.gz`` (any case)."""
    name = Path(path).name.lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


def is_dicom_file(path: str | os.PathLike) -> bool:
    """Check the first bytes of a file for a DICOM dataset.

    A file is DICOM when it has the Part 10 header (``DICM`` at byte 128).
    A dataset saved without that header is recognised by its first data
    element, of group 0002, 0004 or 0008 in little or big endian byte order.

    Returns:
        True for a DICOM file; False for anything else, including folders and
        files that cannot be opened.
    """
    try:
        with open(path, "rb") as stream:
            head = stream.read(_DICM_OFFSET + len(_DICM_MAGIC))
    except OSError:
        return False

    if head[_DICM_OFFSET:] == _DICM_MAGIC:
        return True
    if len(head) < 8:
        return False
    little = int.from_bytes(head[0:2], "little")
    big = int.from_bytes(head[0:2], "big")
    return little in _HEADERLESS_FIRST_GROUPS or big in _HEADERLESS_FIRST_GROUPS


def series_key(text: str, prefix: str = "series") -> str:
    """Return a short key such as ``series-3f2a9c01`` from the first 8 hex digits of SHA-256.

    The input (a SeriesInstanceUID or a file path) cannot be read back from the key.
    """
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return f"{prefix}-{digest[:8]}"


def list_files(path: Path) -> list[Path]:
    """List the files under a folder, recursively, sorted by path.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
    """
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder.")
    if path.is_file():
        return [path]

    files = []
    for root, dirs, names in os.walk(path):
        dirs.sort()
        files.extend(Path(root) / name for name in sorted(names))
    return files


def log_skipped(log: logging.Logger, skipped: list[SkippedFile]) -> None:
    """Log each skipped file at DEBUG, the first ones by name and the rest as a count.

    DEBUG because the dataset layer above reports the same files once per data
    source at WARNING, and ``LoadResult.skipped`` lists them for direct callers.
    """
    for item in skipped[:_SKIPPED_LOG_LIMIT]:
        log.debug("Skipped %s: %s", item.path, item.reason)
    if len(skipped) > _SKIPPED_LOG_LIMIT:
        log.debug(
            "Skipped %d more files; LoadResult.skipped lists every path and reason.",
            len(skipped) - _SKIPPED_LOG_LIMIT,
        )


def describe_error(error: Exception) -> str:
    """Return an exception's type and message on one line, cut to about 300 characters."""
    message = " ".join(str(error).split())
    if len(message) > 300:
        message = message[:297] + "..."
    return f"{type(error).__name__}: {message}" if message else type(error).__name__
