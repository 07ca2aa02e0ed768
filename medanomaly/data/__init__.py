"""Datasets that turn CIFAR-10, image folders, manifests, DICOM and NIfTI into model inputs.

Every dataset yields items of one contract::

    {"image": float32 (C, H, W) in [0, 1], "label": 0 | 1 | -1, "path": str, "index": int}

``label`` is 0 for normal, 1 for abnormal and -1 for unknown. ``index`` is the
frame or slice inside the file (0 for 2-D files). ``path`` is the source file and
never a patient identifier.

Entry points:

- :func:`build_splits` gives the train, validation and test datasets of an
  experiment from its ``DataConfig``.
- :func:`build_dataset` gives one dataset of images to score.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from medanomaly.data.cifar10 import CIFAR10_CLASSES, cifar10_splits
from medanomaly.data.datasets import (
    ReadResult,
    SampleDataset,
    SampleReader,
    limit_samples,
    list_files,
    log_skipped,
    read_dicom_tree,
    subset,
)
from medanomaly.data.folder import folder_dataset, folder_info, folder_splits
from medanomaly.data.manifest import manifest_dataset, manifest_splits
from medanomaly.data.splits import DataSplits, check_fraction, group_holdout

__all__ = [
    "CIFAR10_CLASSES",
    "DataSplits",
    "SPLIT_SOURCES",
    "DATASET_SOURCES",
    "build_dataset",
    "build_splits",
]

logger = logging.getLogger(__name__)

SPLIT_SOURCES = ("cifar10", "folder", "manifest", "dicom", "nifti")
DATASET_SOURCES = ("dicom", "nifti", "manifest", "folder")


def _reader_from_config(cfg: Any, image_size: int, in_channels: int) -> SampleReader:
    return SampleReader(
        image_size,
        in_channels,
        cfg.resize_mode,
        preset=cfg.preset,
        slice_axis=cfg.slice_axis,
        foreground_threshold=cfg.foreground_threshold,
        cache=cfg.cache,
    )


def read_volumes(reader: SampleReader, source: str, path: str | Path) -> ReadResult:
    """Read DICOM files or series (``source="dicom"``) or NIfTI volumes (``"nifti"``).

    A NIfTI path may be one file or a folder searched for ``.nii`` and ``.nii.gz`` files.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{source.upper()} path not found: {path}.")
    if source == "dicom":
        return read_dicom_tree(reader, path)

    from medanomaly.data.readers import is_nifti_path

    files = [f for f in list_files(path) if is_nifti_path(f)] if path.is_dir() else [path]
    if not files:
        raise ValueError(f"No NIfTI files (.nii, .nii.gz) found in {path}.")
    result = ReadResult()
    for file in files:
        result.extend(reader.read_nifti(file))
    return result


def _volume_splits(cfg: Any, image_size: int, in_channels: int) -> DataSplits:
    """Train on every slice of a DICOM folder or NIfTI volume(s), all taken as normal."""
    reader = _reader_from_config(cfg, image_size, in_channels)
    result = read_volumes(reader, cfg.source, cfg.path)
    if not result.samples:
        raise ValueError(
            f"No readable slices in {cfg.path} ({len(result.skipped)} files skipped); "
            "run 'medanomaly inspect' on it to see why."
        )
    log_skipped(result.skipped, str(cfg.path))
    for sample in result.samples:
        sample.label = 0

    train_rng, val_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(cfg.seed).spawn(2))
    samples = limit_samples(result.samples, cfg.limit, train_rng)
    # Groups are series (DICOM) or volumes (NIfTI), so no volume spans two splits.
    train_indices, val_indices = group_holdout([s.group for s in samples], cfg.val_fraction, val_rng)
    options = {"image_size": image_size, "in_channels": in_channels, "resize_mode": cfg.resize_mode}
    train = SampleDataset(subset(samples, train_indices), **options)
    val = SampleDataset(subset(samples, val_indices), **options)
    info = {"source": cfg.source, **folder_info(Path(cfg.path), {"train": train, "val": val}, result)}
    return DataSplits(train=train, val=val, test=None, info=info)


def build_splits(cfg: Any, image_size: int, in_channels: int) -> DataSplits:
    """Build the train, validation and test datasets described by a ``DataConfig``.

    Args:
        cfg: ``medanomaly.config.DataConfig``. ``source`` selects the reader:
            ``cifar10`` (leave-one-class-out or one-vs-rest), ``folder``
            (``train/0.normal``, ``test/0.normal``, ``test/1.abnormal``),
            ``manifest`` (a training CSV of normal images), or ``dicom`` /
            ``nifti`` (every slice taken as normal).
        image_size: model input height and width.
        in_channels: model input channels, 1 or 3.

    Returns:
        DataSplits with normal-only ``train`` and ``val``. ``test`` is None for
        sources without labelled test images.
    """
    if cfg.source not in SPLIT_SOURCES:
        raise ValueError(f"Invalid data.source {cfg.source!r}; use one of {list(SPLIT_SOURCES)}.")
    if not cfg.path:
        raise ValueError(f"data.path is not set; point it at the {cfg.source} data.")
    check_fraction(cfg.val_fraction)

    if cfg.source == "cifar10":
        return cifar10_splits(
            cfg.path,
            abnormal_class=cfg.abnormal_class,
            image_size=image_size,
            in_channels=in_channels,
            protocol=cfg.protocol,
            normal_class=getattr(cfg, "normal_class", None),
            limit=cfg.limit,
            test_limit=cfg.test_limit,
            val_fraction=cfg.val_fraction,
            seed=cfg.seed,
            resize_mode=cfg.resize_mode,
            cache=cfg.cache,
        )
    options = {
        "image_size": image_size,
        "in_channels": in_channels,
        "resize_mode": cfg.resize_mode,
        "preset": cfg.preset,
        "val_fraction": cfg.val_fraction,
        "seed": cfg.seed,
        "limit": cfg.limit,
        "slice_axis": cfg.slice_axis,
        "foreground_threshold": cfg.foreground_threshold,
        "cache": cfg.cache,
    }
    if cfg.source == "folder":
        return folder_splits(cfg.path, test_limit=cfg.test_limit, **options)
    if cfg.source == "manifest":
        return manifest_splits(cfg.path, **options)
    return _volume_splits(cfg, image_size, in_channels)


def build_dataset(
    source: str,
    path: str | Path,
    image_size: int,
    in_channels: int,
    preset: str | None = None,
    resize_mode: str = "resize",
    labelled: bool = False,
    slice_axis: int = 2,
    foreground_threshold: float | None = None,
    cache: bool = True,
) -> tuple[SampleDataset, list[Any]]:
    """Build one dataset of images to score.

    Args:
        source: ``dicom`` (file or folder), ``nifti`` (file or folder),
            ``manifest`` (CSV) or ``folder`` (every image under it).
        path: the input.
        image_size: model input height and width.
        in_channels: model input channels, 1 or 3.
        preset: intensity preset for DICOM and NIfTI.
        resize_mode: ``resize`` or ``pad``.
        labelled: require labels, for evaluation. Manifests then need a label on
            every row, and folders need ``0.normal``/``1.abnormal`` subfolders.
        slice_axis: NIfTI axis to slice along.
        foreground_threshold: NIfTI slice filter, see ``medanomaly.data.nifti``.
        cache: keep decoded 2-D images in memory.

    Returns:
        The dataset and the files skipped (``SkippedFile`` with path and reason).
    """
    if source not in DATASET_SOURCES:
        raise ValueError(f"Invalid source {source!r}; use one of {list(DATASET_SOURCES)}.")
    reader = SampleReader(
        image_size,
        in_channels,
        resize_mode,
        preset=preset,
        slice_axis=slice_axis,
        foreground_threshold=foreground_threshold,
        cache=cache,
    )
    if source == "manifest":
        dataset, result = manifest_dataset(path, reader, labelled=labelled)
    elif source == "folder":
        dataset, result = folder_dataset(path, reader, labelled=labelled)
    else:
        if labelled:
            raise ValueError(
                f"{source.upper()} input carries no labels; list the files in a manifest "
                "with a label column to evaluate."
            )
        result = read_volumes(reader, source, path)
        log_skipped(result.skipped, str(path))
        dataset = SampleDataset(
            result.samples, image_size=image_size, in_channels=in_channels, resize_mode=resize_mode
        )
    logger.info(
        "%s %s: %d images, %d files skipped", source, path, len(dataset), len(result.skipped)
    )
    return dataset, list(result.skipped)

