"""CSV manifests that list images, their labels and their subjects.

Columns (``data_manifests/README.md`` documents them with examples):

- ``path`` (required): a file or folder, relative to the manifest's folder or absolute.
- ``label``: ``normal``/``0`` or ``abnormal``/``1``. Empty means unknown.
- ``group``: pseudonymous subject id. One group never spans two splits.
- ``slices``: slice selection, ``start:stop`` (stop excluded) or ``3;4;5``: indices in a
  volume or multi-frame file, positions in series order for a DICOM series folder.
- ``preset``: intensity preset for DICOM and NIfTI rows.

Row numbers in messages count the header as row 1, as a spreadsheet does, so the
first data row is row 2.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medanomaly.data.datasets import (
    ReadResult,
    SampleDataset,
    SampleReader,
    limit_samples,
    log_skipped,
    parse_slice_selection,
    select_slices,
    slice_positions,
    subset,
)
from medanomaly.data.splits import DataSplits, check_fraction, group_holdout

logger = logging.getLogger(__name__)

MANIFEST_COLUMNS = ("path", "label", "group", "slices", "preset")

_LABELS = {"normal": 0, "0": 0, "abnormal": 1, "1": 1, "": -1}

# Errors listed one by one in a rejection message before the rest are counted.
_ERROR_LIST_LIMIT = 20

_ROW_NOTE = "Row numbers count the header as row 1, as in a spreadsheet."


class ManifestError(ValueError):
    """A manifest that cannot be used; the message lists each bad row and the fix."""


@dataclass
class ManifestRow:
    """One validated data row of a manifest.

    Attributes:
        row: spreadsheet row number (the header is row 1).
        path: absolute path of the file or folder.
        label: 0 normal, 1 abnormal, -1 unknown.
        group: subject id, or "" when the column is empty or absent.
        slices: selected slice indices, or None for all.
        preset: intensity preset name, or None for the default.
    """

    row: int
    path: Path
    label: int
    group: str
    slices: set[int] | range | None
    preset: str | None


def _check_preset(name: str) -> str | None:
    """Return an error text for an unknown preset, or None."""
    from medanomaly.data.intensity import resolve_preset

    try:
        resolve_preset(name)
    except ValueError as err:
        return str(err)
    return None


def _parse_row(values: dict[str, Any], number: int, folder: Path) -> tuple[ManifestRow | None, list[str]]:
    """Validate one row; return the row (None when invalid) and its error texts."""
    errors = []
    if values.get(None):
        errors.append(
            f"row {number}: {len(values[None])} more values than header columns; "
            "quote values that contain commas"
        )
    text = {key: (value or "").strip() for key, value in values.items() if key is not None}

    path_text = text.get("path", "")
    path = None
    if not path_text:
        errors.append(f"row {number}: empty path; give a file or folder relative to {folder}")
    else:
        path = Path(path_text).expanduser()
        path = path if path.is_absolute() else folder / path
        if not path.exists():
            errors.append(f"row {number}: file not found: {path}; fix the path or remove the row")

    label_text = text.get("label", "").lower()
    label = _LABELS.get(label_text)
    if label is None:
        errors.append(
            f"row {number}: invalid label {text.get('label')!r}; use normal, abnormal, 0, 1 "
            "or leave it empty for unknown"
        )

    try:
        slices = parse_slice_selection(text.get("slices"))
    except ValueError as err:
        slices = None
        errors.append(f"row {number}: {err}")

    preset = text.get("preset") or None
    if preset is not None:
        problem = _check_preset(preset)
        if problem:
            errors.append(f"row {number}: {problem}")

    if errors or path is None or label is None:
        return None, errors
    return ManifestRow(number, path, label, text.get("group", ""), slices, preset), []


def _reject(manifest: Path, errors: list[str]) -> None:
    listed = errors[:_ERROR_LIST_LIMIT]
    more = len(errors) - len(listed)
    lines = "\n  ".join(listed)
    suffix = f"\n  ... and {more} more rows." if more else ""
    raise ManifestError(
        f"Invalid manifest {manifest} ({len(errors)} {'problem' if len(errors) == 1 else 'problems'}):"
        f"\n  {lines}{suffix}\n"
        f"{_ROW_NOTE} Fix these rows and run again."
    )


def read_manifest(
    path: str | Path, training: bool = False, labelled: bool = False
) -> list[ManifestRow]:
    """Read and validate a manifest.

    Args:
        path: the CSV file.
        training: reject abnormal rows. Rows without a label count as normal.
        labelled: reject rows without a label (for evaluation).

    Raises:
        FileNotFoundError: the manifest does not exist.
        ManifestError: a missing ``path`` column or invalid rows. The message lists
            every bad row with its number and the reason.
    """
    manifest = Path(path).expanduser()
    if not manifest.is_file():
        raise FileNotFoundError(f"Manifest not found: {manifest}.")
    folder = manifest.resolve().parent

    with open(manifest, newline="", encoding="utf-8-sig") as stream:
        reader = csv.DictReader(stream)
        header = [name.strip().lower() for name in (reader.fieldnames or [])]
        if "path" not in header:
            raise ManifestError(
                f"Invalid manifest {manifest}: no 'path' column in the header row "
                f"(found {header}). The first row must name the columns, at least 'path'; "
                f"the others are {', '.join(MANIFEST_COLUMNS[1:])}."
            )
        unknown = [name for name in header if name not in MANIFEST_COLUMNS]
        if unknown:
            logger.warning("%s: ignoring unknown columns %s.", manifest, unknown)
        reader.fieldnames = header

        rows, errors = [], []
        # DictReader skips empty lines, so count physical rows by its line number.
        for values in reader:
            number = reader.line_num
            if not any((value or "").strip() for key, value in values.items() if key is not None):
                continue
            row, row_errors = _parse_row(values, number, folder)
            errors.extend(row_errors)
            if row is None:
                continue
            if training and row.label == 1:
                errors.append(
                    f"row {number}: abnormal image in a training manifest; training uses "
                    "normal images only, so move it to a test manifest"
                )
            if labelled and row.label == -1:
                errors.append(
                    f"row {number}: no label; evaluation needs normal or abnormal on every row"
                )
            rows.append(row)

    if errors:
        _reject(manifest, errors)
    if not rows:
        raise ManifestError(f"Manifest {manifest} has no data rows; add one row per image file or folder.")
    if training:
        for row in rows:
            row.label = 0
    return rows


def read_rows(
    manifest: Path, rows: list[ManifestRow], reader: SampleReader
) -> ReadResult:
    """Decode the files of every row and tag the samples with the row's label and group.

    Raises:
        ManifestError: a slice selection matches nothing in a readable file, or the
            same slice is listed by two rows.
    """
    result = ReadResult()
    errors = []
    seen: dict[tuple[str, int], int] = {}
    for row in rows:
        read = reader.read(row.path, preset=row.preset)
        selected = select_slices(read, row.slices)
        if read.samples and not selected.samples:
            available = sorted(set(slice_positions(read.samples)))
            errors.append(
                f"row {row.row}: slice selection matches no slice of {row.path}; "
                f"it has slices {available[0]} to {available[-1]}"
            )
        for sample in selected.samples:
            key = (sample.path, sample.index)
            if key in seen:
                errors.append(
                    f"row {row.row}: {sample.path} slice {sample.index} is also listed in "
                    f"row {seen[key]}; list each image once"
                )
                continue
            seen[key] = row.row
            sample.label = row.label
            if row.group:
                sample.group = row.group
        result.extend(selected)
    if errors:
        _reject(manifest, errors)
    log_skipped(result.skipped, str(manifest))
    return result


def manifest_splits(
    manifest: str | Path,
    image_size: int,
    in_channels: int,
    resize_mode: str = "resize",
    preset: str | None = None,
    val_fraction: float = 0.05,
    seed: int = 0,
    limit: int | None = None,
    slice_axis: int = 2,
    foreground_threshold: float | None = None,
    cache: bool = True,
) -> DataSplits:
    """Build train and validation datasets from a training manifest (normal rows only).

    The validation split is drawn by group: rows that share a ``group`` value, and
    the slices of one series or volume, stay in the same split. The test split is
    None because a training manifest has no abnormal rows.
    """
    from medanomaly.data.folder import folder_info

    check_fraction(val_fraction)
    manifest = Path(manifest).expanduser()
    rows = read_manifest(manifest, training=True)
    reader = SampleReader(
        image_size,
        in_channels,
        resize_mode,
        preset=preset,
        slice_axis=slice_axis,
        foreground_threshold=foreground_threshold,
        cache=cache,
    )
    result = read_rows(manifest, rows, reader)
    if not result.samples:
        raise ManifestError(
            f"No readable images in manifest {manifest} ({len(result.skipped)} files skipped); "
            "run 'medanomaly inspect --manifest' to see why."
        )

    train_rng, val_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    samples = limit_samples(result.samples, limit, train_rng)
    train_indices, val_indices = group_holdout([s.group for s in samples], val_fraction, val_rng)
    options = {"image_size": image_size, "in_channels": in_channels, "resize_mode": resize_mode}
    train = SampleDataset(subset(samples, train_indices), **options)
    val = SampleDataset(subset(samples, val_indices), **options)

    info = {
        "source": "manifest",
        **folder_info(manifest, {"train": train, "val": val}, result),
        "rows": len(rows),
        "groups": {
            "train": len({s.group for s in train.samples}),
            "val": len({s.group for s in val.samples}),
        },
    }
    logger.info(
        "Manifest %s: %d rows, %d train and %d val images, %d files skipped",
        manifest,
        len(rows),
        len(train),
        len(val),
        len(result.skipped),
    )
    return DataSplits(train=train, val=val, test=None, info=info)


def manifest_dataset(
    manifest: str | Path, reader: SampleReader, labelled: bool = False
) -> tuple[SampleDataset, ReadResult]:
    """Read a manifest for scoring or evaluation; ``labelled`` requires a label on every row."""
    manifest = Path(manifest).expanduser()
    rows = read_manifest(manifest, labelled=labelled)
    result = read_rows(manifest, rows, reader)
    options = {
        "image_size": reader.image_size,
        "in_channels": reader.in_channels,
        "resize_mode": reader.resize_mode,
    }
    return SampleDataset(result.samples, **options), result
