"""Sample tables and the dataset that serves them.

Image folders and manifests are first turned into a table of :class:`Sample`
rows, one per 2-D image: a PNG, JPEG, BMP or TIFF file, a DICOM frame or a
volume slice. Splits are drawn on that table, and :class:`SampleDataset` (a
``monai.data.Dataset``) serves each split as items of the data contract::

    {"image": float32 (C, H, W) in [0, 1], "label": int, "path": str, "index": int}

Every file is decoded once while the table is built, so that unreadable files
are found, reported and skipped up front. DICOM and NIfTI slices are always
kept in memory at the model size, because re-reading a single slice would
decode the whole file. 2-D image files are kept in memory too when ``cache`` is
True (the default) and are decoded again on every access otherwise.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import Dataset as MonaiDataset

from medanomaly.data.splits import label_counts, stratified_sample
from medanomaly.data.transforms import (
    check_model_shape,
    check_resize_mode,
    is_image_file,
    load_image_file,
    to_model_input,
)

logger = logging.getLogger(__name__)

# Number of skipped files logged one by one before only a count is logged.
_SKIPPED_LOG_LIMIT = 20

# Decoded images are cached as float16: below 5e-4 absolute error in [0, 1]
# at half the memory of float32.
CACHE_DTYPE = torch.float16

SUPPORTED_FILES = "PNG, JPEG, BMP, TIFF, DICOM or NIfTI (.nii, .nii.gz)"


@dataclass
class Sample:
    """One 2-D image of a sample table.

    Attributes:
        path: source file.
        index: frame or slice index inside the file, 0 for 2-D files.
        label: 0 normal, 1 abnormal, -1 unknown.
        group: key that keeps related images in one split (subject, series or file).
        series: non-identifying series key for DICOM and NIfTI, "" for 2-D files.
        shape: native (C, H, W) before resizing.
        value_range: minimum and maximum after the intensity preset.
        constant: True when every pixel has the same value.
        image: model input in :data:`CACHE_DTYPE`, or None when the file is
            decoded on access.
    """

    path: str
    index: int = 0
    label: int = -1
    group: str = ""
    series: str = ""
    shape: tuple[int, ...] = ()
    value_range: tuple[float, float] = (0.0, 0.0)
    constant: bool = False
    image: torch.Tensor | None = None


@dataclass
class ReadResult:
    """Samples read from files, with the files skipped and counts for reports."""

    samples: list[Sample] = field(default_factory=list)
    skipped: list[Any] = field(default_factory=list)
    files_read: int = 0

    def extend(self, other: ReadResult) -> None:
        """Append the samples, skipped files and counts of ``other``."""
        self.samples.extend(other.samples)
        self.skipped.extend(other.skipped)
        self.files_read += other.files_read


def skipped_file(path: str | Path, reason: str) -> Any:
    """Return a ``SkippedFile`` (shared with the DICOM and NIfTI readers)."""
    from medanomaly.data.readers import SkippedFile

    return SkippedFile(path=str(path), reason=reason)


def log_skipped(skipped: Sequence[Any], context: str) -> None:
    """Log skipped files at WARNING: the first ones by path, the rest as a count."""
    for item in skipped[:_SKIPPED_LOG_LIMIT]:
        logger.warning("%s: skipped %s: %s", context, item.path, item.reason)
    if len(skipped) > _SKIPPED_LOG_LIMIT:
        logger.warning(
            "%s: skipped %d more files; 'medanomaly inspect' with the same source lists each file and why.",
            context,
            len(skipped) - _SKIPPED_LOG_LIMIT,
        )


def list_files(root: Path) -> list[Path]:
    """List files under ``root`` recursively in sorted order, leaving out hidden names."""
    if root.is_file():
        return [root]
    files = []
    for folder, folders, names in os.walk(root):
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        files.extend(Path(folder) / name for name in sorted(names) if not name.startswith("."))
    return files


def parse_slice_selection(text: str | None) -> set[int] | range | None:
    """Parse a slice selection: "" (all), "start:stop" (stop excluded), or "3;4;5".

    Raises:
        ValueError: the text is neither form. The message shows both forms.
    """
    if text is None or not str(text).strip():
        return None
    text = str(text).strip()
    usage = "use 'start:stop' (stop excluded, e.g. 10:20) or a list such as '3;4;5'"
    try:
        if ":" in text:
            start_text, _, stop_text = text.partition(":")
            start = int(start_text) if start_text.strip() else 0
            stop = int(stop_text)
            if start < 0 or stop <= start:
                raise ValueError
            return range(start, stop)
        numbers = {int(part) for part in text.split(";") if part.strip()}
        if not numbers or min(numbers) < 0:
            raise ValueError
        return numbers
    except ValueError:
        raise ValueError(f"invalid slice selection {text!r}; {usage}.") from None


class SampleReader:
    """Decode files into :class:`Sample` rows at the model's size and channel count.

    Args:
        image_size: model input height and width.
        in_channels: model input channels, 1 or 3.
        resize_mode: ``resize`` or ``pad``.
        preset: intensity preset for DICOM and NIfTI (see ``medanomaly.data.intensity``).
        slice_axis: NIfTI axis to slice along.
        foreground_threshold: drop NIfTI slices whose foreground share is below it.
        cache: keep decoded 2-D images in memory.
    """

    def __init__(
        self,
        image_size: int,
        in_channels: int,
        resize_mode: str = "resize",
        preset: str | None = None,
        slice_axis: int = 2,
        foreground_threshold: float | None = None,
        cache: bool = True,
    ) -> None:
        check_model_shape(image_size, in_channels)
        self.image_size = image_size
        self.in_channels = in_channels
        self.resize_mode = check_resize_mode(resize_mode)
        self.preset = preset
        self.slice_axis = slice_axis
        self.foreground_threshold = foreground_threshold
        self.cache = cache

    def _model_input(self, array: np.ndarray) -> torch.Tensor:
        image = to_model_input(array, self.image_size, self.in_channels, self.resize_mode)
        return image.to(CACHE_DTYPE)

    def _sample(self, array: np.ndarray, path: str, index: int, keep: bool, **fields: Any) -> Sample:
        low, high = float(array.min()), float(array.max())
        return Sample(
            path=path,
            index=index,
            shape=tuple(int(n) for n in array.shape),
            value_range=(low, high),
            constant=fields.pop("constant", low == high),
            image=self._model_input(array) if keep else None,
            **fields,
        )

    def read_image_file(self, path: Path) -> ReadResult:
        """Decode one PNG, JPEG, BMP or TIFF file."""
        try:
            array = load_image_file(path)
        except ValueError as error:
            return ReadResult(skipped=[skipped_file(path, str(error))])
        sample = self._sample(array, str(path), 0, keep=self.cache, group=str(path))
        return ReadResult(samples=[sample], files_read=1)

    def _read_slices(self, load: Callable[[], Any], group: str | None) -> ReadResult:
        """Convert the ``LoadResult`` of a DICOM or NIfTI loader into samples."""
        loaded = load()
        samples = [
            self._sample(
                item.array,
                item.path,
                int(item.index),
                keep=True,
                group=group or item.series,
                series=item.series,
                constant=bool(item.constant),
            )
            for item in loaded.slices
        ]
        return ReadResult(samples=samples, skipped=list(loaded.skipped), files_read=loaded.files_read)

    def read_nifti(self, path: Path, preset: str | None = None) -> ReadResult:
        """Decode every slice of a NIfTI volume, grouped by the file path."""
        from medanomaly.data.nifti import load_nifti

        return self._read_slices(
            lambda: load_nifti(
                path,
                preset=preset or self.preset,
                slice_axis=self.slice_axis,
                foreground_threshold=self.foreground_threshold,
            ),
            group=str(path),
        )

    def read_dicom(self, path: Path, preset: str | None = None) -> ReadResult:
        """Decode every frame of a DICOM file or series folder, grouped by series key."""
        from medanomaly.data.dicom import load_dicom

        return self._read_slices(lambda: load_dicom(path, preset=preset or self.preset), group=None)

    def read(self, path: Path, preset: str | None = None) -> ReadResult:
        """Decode a file or every supported file under a folder.

        Files of other types are skipped with the reason. DICOM files are read one
        series folder at a time where possible (see :func:`dicom_roots`), so each
        series is ordered along its slice normal.
        """
        from medanomaly.data.readers import is_dicom_file, is_nifti_path

        result = ReadResult()
        files = list_files(path)
        dicom_files: set[Path] = set()
        for file in files:
            if is_image_file(file):
                result.extend(self.read_image_file(file))
            elif is_nifti_path(file):
                result.extend(self.read_nifti(file, preset))
            elif is_dicom_file(file):
                dicom_files.add(file)
            else:
                reason = f"unsupported file type; expected {SUPPORTED_FILES}"
                result.skipped.append(skipped_file(file, reason))
        for root in dicom_roots(path, files, dicom_files):
            result.extend(self.read_dicom(root, preset))
        return result


def dicom_roots(root: Path, files: list[Path], dicom_files: set[Path]) -> list[Path]:
    """Group DICOM files into the folders and files to pass to ``load_dicom``.

    ``load_dicom`` reads a folder recursively, reports every other file in it as
    "not a DICOM file" and returns all its slices at native resolution at once. So
    a folder is passed only when it directly contains nothing but DICOM files and
    has no files in subfolders, which is the usual one-folder-per-series layout.
    Memory then stays at one series. Other DICOM files are passed one by one.
    """
    if root.is_file():
        return [root] if root in dicom_files else []
    by_folder: dict[Path, list[Path]] = {}
    nested: set[Path] = set()
    for file in files:
        by_folder.setdefault(file.parent, []).append(file)
        nested.update(file.parents[1:])

    roots: list[Path] = []
    for folder, members in sorted(by_folder.items()):
        dicom_members = [file for file in members if file in dicom_files]
        if not dicom_members:
            continue
        if folder not in nested and len(dicom_members) == len(members):
            roots.append(folder)
        else:
            roots.extend(sorted(dicom_members))
    return roots


def read_dicom_tree(reader: SampleReader, path: Path) -> ReadResult:
    """Read every DICOM file under ``path``, one series folder at a time; skip other files."""
    from medanomaly.data.readers import is_dicom_file

    files = list_files(path)
    dicom_files = {file for file in files if is_dicom_file(file)}
    result = ReadResult()
    for file in files:
        if file not in dicom_files:
            result.skipped.append(skipped_file(file, "not a DICOM file"))
    for root in dicom_roots(path, files, dicom_files):
        result.extend(reader.read_dicom(root))
    return result


def slice_positions(samples: list[Sample]) -> list[int]:
    """Return each sample's slice number as a manifest's ``slices`` column counts it.

    Within one file (a volume or a multi-frame file) that is the frame or slice
    index. When the samples come from several files, as for a DICOM series
    folder, it is the position within the sample's series, in reader order.
    """
    if len({sample.path for sample in samples}) <= 1:
        return [sample.index for sample in samples]
    counts: dict[str, int] = {}
    positions = []
    for sample in samples:
        key = sample.series or sample.path
        positions.append(counts.get(key, 0))
        counts[key] = positions[-1] + 1
    return positions


def select_slices(result: ReadResult, selection: set[int] | range | None) -> ReadResult:
    """Keep only the samples whose :func:`slice_positions` value is in ``selection`` (all when None)."""
    if selection is None:
        return result
    positions = slice_positions(result.samples)
    selected = [s for s, position in zip(result.samples, positions) if position in selection]
    return ReadResult(samples=selected, skipped=result.skipped, files_read=result.files_read)


class _SampleTransform:
    """Turn a stored item into a contract item, decoding the file when it was not cached."""

    def __init__(self, image_size: int, in_channels: int, resize_mode: str) -> None:
        self.image_size = image_size
        self.in_channels = in_channels
        self.resize_mode = resize_mode

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        image = item["image"]
        if image is None:
            array = load_image_file(item["path"])
            image = to_model_input(array, self.image_size, self.in_channels, self.resize_mode)
        else:
            image = image.float()
        return {"image": image, "label": item["label"], "path": item["path"], "index": item["index"]}


class SampleDataset(MonaiDataset):
    """``monai.data.Dataset`` over a sample table, yielding data-contract items.

    Attributes:
        samples: the table rows, in item order.
        labels: int64 array of the labels, in item order.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        image_size: int,
        in_channels: int,
        resize_mode: str = "resize",
    ) -> None:
        check_model_shape(image_size, in_channels)
        self.samples = list(samples)
        self.labels = np.asarray([s.label for s in self.samples], dtype=np.int64)
        data = [
            {"image": s.image, "label": int(s.label), "path": s.path, "index": int(s.index)}
            for s in self.samples
        ]
        super().__init__(data, transform=_SampleTransform(image_size, in_channels, resize_mode))

    def identifiers(self) -> list[tuple[str, int]]:
        """Return (path, index) for every item without converting images."""
        return [(s.path, s.index) for s in self.samples]

    def label_counts(self) -> dict[str, int]:
        """Count items per label name (normal, abnormal, unknown)."""
        return label_counts(self.labels)


def subset(samples: Sequence[Sample], indices: Iterable[int]) -> list[Sample]:
    """Return the samples at ``indices``, in that order."""
    return [samples[int(i)] for i in indices]


def limit_samples(
    samples: list[Sample], limit: int | None, rng: np.random.Generator
) -> list[Sample]:
    """Keep ``limit`` samples (all when None), seeded, in proportion to their labels."""
    if limit is None or limit >= len(samples):
        return samples
    if limit < 1:
        raise ValueError(f"Invalid limit {limit!r}; expected a positive number or None.")
    chosen = stratified_sample([s.label for s in samples], limit, rng)
    return subset(samples, chosen)


def skipped_records(skipped: Iterable[Any]) -> list[dict[str, str]]:
    """Return skipped files as JSON-friendly ``{"path", "reason"}`` dictionaries."""
    return [{"path": str(item.path), "reason": str(item.reason)} for item in skipped]
