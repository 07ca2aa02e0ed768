"""Image folders in the layout of the GANomaly family of papers.

::

    root/
      train/0.normal/    normal training images (or train/normal/)
      test/0.normal/     normal test images     (or test/normal/)
      test/1.abnormal/   abnormal test images   (or test/abnormal/)

Each class folder may contain PNG, JPEG, BMP and TIFF files, DICOM files or
series and NIfTI volumes, in nested folders too. Every DICOM frame and volume
slice becomes one image. Unreadable files are skipped and listed with the reason
in ``DataSplits.info["skipped"]``. The test folder is optional.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from medanomaly.data.datasets import (
    ReadResult,
    SampleDataset,
    SampleReader,
    limit_samples,
    log_skipped,
    skipped_records,
    subset,
)
from medanomaly.data.splits import DataSplits, check_fraction, group_holdout

logger = logging.getLogger(__name__)

# Accepted names for each class folder, preferred name first.
NORMAL_FOLDERS = ("0.normal", "normal")
ABNORMAL_FOLDERS = ("1.abnormal", "abnormal")

EXPECTED_LAYOUT = (
    "train/0.normal/ (or train/normal/) with the normal training images, and optionally "
    "test/0.normal/ and test/1.abnormal/ (or test/normal/ and test/abnormal/)"
)


def _class_folder(parent: Path, names: tuple[str, ...]) -> Path | None:
    """Return the one existing folder among ``names`` under ``parent``, or None."""
    found = [parent / name for name in names if (parent / name).is_dir()]
    if len(found) > 1:
        raise ValueError(
            f"{parent} has both {found[0].name}/ and {found[1].name}/; keep only one of them."
        )
    return found[0] if found else None


def find_layout(root: str | Path) -> dict[str, Path | None]:
    """Locate the class folders of an image folder.

    Returns:
        ``{"train_normal": Path, "test_normal": Path | None, "test_abnormal": Path | None}``.

    Raises:
        FileNotFoundError: ``root`` is not a folder.
        ValueError: the training folder is missing. The message shows the layout.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"Image folder not found: {root}. Expected {EXPECTED_LAYOUT}.")
    train_normal = _class_folder(root / "train", NORMAL_FOLDERS)
    if train_normal is None:
        present = sorted(p.name for p in root.iterdir())[:20]
        raise ValueError(f"{root} (contains {present}) is not an image folder. Expected {EXPECTED_LAYOUT}.")
    for name in ABNORMAL_FOLDERS:
        if (root / "train" / name).is_dir():
            logger.warning(
                "Ignoring %s: training uses normal images only.", root / "train" / name
            )
    return {
        "train_normal": train_normal,
        "test_normal": _class_folder(root / "test", NORMAL_FOLDERS),
        "test_abnormal": _class_folder(root / "test", ABNORMAL_FOLDERS),
    }


def read_labelled(
    reader: SampleReader, folders: dict[int, Path | None]
) -> ReadResult:
    """Read class folders and set each sample's label from its folder (0 or 1)."""
    result = ReadResult()
    for label, folder in folders.items():
        if folder is None:
            continue
        part = reader.read(folder)
        for sample in part.samples:
            sample.label = label
        result.extend(part)
    return result


def folder_info(
    root: Path, splits: dict[str, SampleDataset | None], result: ReadResult
) -> dict[str, Any]:
    """Summarise a folder or manifest read: counts per split and label, series, skipped files."""
    datasets = {name: data for name, data in splits.items() if data is not None}
    return {
        "path": str(root),
        "counts": {name: data.label_counts() for name, data in datasets.items()},
        "files_read": result.files_read,
        "series": len({s.series for s in result.samples if s.series}),
        "constant_slices": sum(1 for s in result.samples if s.constant),
        "skipped": skipped_records(result.skipped),
    }


def folder_splits(
    root: str | Path,
    image_size: int,
    in_channels: int,
    resize_mode: str = "resize",
    preset: str | None = None,
    val_fraction: float = 0.05,
    seed: int = 0,
    limit: int | None = None,
    test_limit: int | None = None,
    slice_axis: int = 2,
    foreground_threshold: float | None = None,
    cache: bool = True,
) -> DataSplits:
    """Build train, validation and test datasets from an image folder.

    The validation split is held out of the training normals by group: slices of
    one DICOM series or one NIfTI volume stay in the same split.

    Args:
        root: folder with ``train/0.normal`` and optionally ``test/...``.
        image_size: model input height and width.
        in_channels: model input channels, 1 or 3.
        resize_mode: ``resize`` or ``pad``.
        preset: intensity preset for DICOM and NIfTI files.
        val_fraction: share of the training images held out for validation.
        seed: seed of the validation split and the limits.
        limit: keep this many training images (seeded) before the validation split.
        test_limit: keep this many test images (seeded, stratified by label).
        slice_axis: NIfTI axis to slice along.
        foreground_threshold: NIfTI slice filter, see ``medanomaly.data.nifti``.
        cache: keep decoded 2-D images in memory.
    """
    check_fraction(val_fraction)
    layout = find_layout(root)
    reader = SampleReader(
        image_size,
        in_channels,
        resize_mode,
        preset=preset,
        slice_axis=slice_axis,
        foreground_threshold=foreground_threshold,
        cache=cache,
    )
    train_rng, val_rng, test_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)
    )

    train_read = read_labelled(reader, {0: layout["train_normal"]})
    if not train_read.samples:
        raise ValueError(
            f"No readable images in {layout['train_normal']} ({len(train_read.skipped)} files "
            "skipped). Add PNG, JPEG, BMP, TIFF, DICOM or NIfTI files there."
        )
    test_read = read_labelled(reader, {0: layout["test_normal"], 1: layout["test_abnormal"]})

    # NOTE: limits apply after decoding, so every file is still read once.
    train_samples = limit_samples(train_read.samples, limit, train_rng)
    train_indices, val_indices = group_holdout([s.group for s in train_samples], val_fraction, val_rng)
    options = {"image_size": image_size, "in_channels": in_channels, "resize_mode": resize_mode}
    train = SampleDataset(subset(train_samples, train_indices), **options)
    val = SampleDataset(subset(train_samples, val_indices), **options)
    test = None
    if test_read.samples:
        test = SampleDataset(limit_samples(test_read.samples, test_limit, test_rng), **options)

    everything = ReadResult()
    everything.extend(train_read)
    everything.extend(test_read)
    log_skipped(everything.skipped, str(root))
    info = {"source": "folder", **folder_info(Path(root), {"train": train, "val": val, "test": test}, everything)}
    logger.info(
        "Image folder %s: %d train, %d val, %s test images, %d files skipped",
        root,
        len(train),
        len(val),
        len(test) if test is not None else "no",
        len(everything.skipped),
    )
    return DataSplits(train=train, val=val, test=test, info=info)


def folder_dataset(
    root: str | Path,
    reader: SampleReader,
    labelled: bool = False,
) -> tuple[SampleDataset, ReadResult]:
    """Read a folder for scoring.

    With ``labelled=False`` every supported file under ``root`` is read with label -1.
    With ``labelled=True`` the labels come from ``0.normal``/``1.abnormal`` (or
    ``normal``/``abnormal``) folders directly under ``root`` or under ``root/test``.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"Image folder not found: {root}.")
    if labelled:
        base = root / "test" if (root / "test").is_dir() else root
        folders = {0: _class_folder(base, NORMAL_FOLDERS), 1: _class_folder(base, ABNORMAL_FOLDERS)}
        if folders[0] is None and folders[1] is None:
            raise ValueError(
                f"{root} has no labelled class folders. Expected 0.normal/ and 1.abnormal/ "
                "(or normal/ and abnormal/) in it or in its test/ folder; "
                "score without labels to read every image."
            )
        result = read_labelled(reader, folders)
    else:
        result = reader.read(root)
    log_skipped(result.skipped, str(root))
    options = {
        "image_size": reader.image_size,
        "in_channels": reader.in_channels,
        "resize_mode": reader.resize_mode,
    }
    return SampleDataset(result.samples, **options), result
