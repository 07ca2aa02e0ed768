"""Reports on a data source before training: counts, series, shapes, ranges and skipped files.

``medanomaly inspect`` prints :func:`format_report` of :func:`inspect_source`, or
the report itself as JSON with ``--json``. Shapes are native (before resizing)
and value ranges are after the intensity preset, so a wrong preset or an
unexpected image size shows up before a long training run.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from medanomaly.data.datasets import (
    ReadResult,
    Sample,
    SampleReader,
    skipped_records,
)
from medanomaly.data.splits import group_holdout, label_counts

logger = logging.getLogger(__name__)

INSPECT_SOURCES = ("cifar10", "folder", "manifest", "dicom", "nifti")

# Small model size used while inspecting: only native shapes and ranges are reported.
_INSPECT_SIZE = 8


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(n) for n in shape)


def _sample_summary(samples: list[Sample]) -> dict[str, Any]:
    """Summarise native shapes, value ranges, constant slices and series of samples."""
    shapes = Counter(_shape_text(s.shape) for s in samples)
    lows = [s.value_range[0] for s in samples]
    highs = [s.value_range[1] for s in samples]
    series: dict[str, list[Sample]] = {}
    for sample in samples:
        if sample.series:
            series.setdefault(sample.series, []).append(sample)
    return {
        "images": len(samples),
        "shapes": dict(shapes.most_common()),
        "value_range": [float(min(lows)), float(max(highs))] if samples else None,
        "constant_slices": sum(1 for s in samples if s.constant),
        "series": [
            {
                "series": key,
                "slices": len(members),
                "files": len({m.path for m in members}),
                "shapes": dict(Counter(_shape_text(m.shape) for m in members).most_common()),
                "value_range": [
                    float(min(m.value_range[0] for m in members)),
                    float(max(m.value_range[1] for m in members)),
                ],
            }
            for key, members in series.items()
        ],
    }


def _read_report(source: str, path: Path, result: ReadResult, counts: dict) -> dict[str, Any]:
    return {
        "source": source,
        "path": str(path),
        "counts": counts,
        "files_read": result.files_read,
        **_sample_summary(result.samples),
        "skipped": skipped_records(result.skipped),
    }


def _inspect_cifar10(path: Path, options: dict[str, Any]) -> dict[str, Any]:
    from medanomaly.data.cifar10 import cifar10_splits, load_cifar10

    arrays = load_cifar10(path, cache=options.get("cache", True))
    splits = cifar10_splits(
        arrays,
        abnormal_class=options.get("abnormal_class"),
        protocol=options.get("protocol", "leave_one_out"),
        normal_class=options.get("normal_class"),
        limit=options.get("limit"),
        test_limit=options.get("test_limit"),
        val_fraction=options.get("val_fraction", 0.05),
        seed=options.get("seed", 0),
    )
    info = splits.info
    return {
        "source": "cifar10",
        "path": arrays.source,
        "layout": arrays.layout,
        "protocol": info["protocol"],
        **{key: info[key] for key in ("abnormal_class", "normal_class") if key in info},
        "counts": info["counts"],
        "test_classes": info["test_classes"],
        "files_read": int(len(np.unique(arrays.files))),
        "images": int(len(arrays.images)),
        "shapes": {_shape_text(arrays.images.shape[1:]): int(len(arrays.images))},
        "value_range": [float(arrays.images.min()) / 255.0, float(arrays.images.max()) / 255.0],
        "constant_slices": 0,
        "series": [],
        "skipped": [],
    }


def _inspect_manifest(path: Path, reader: SampleReader, options: dict[str, Any]) -> dict[str, Any]:
    from medanomaly.data.manifest import read_manifest, read_rows

    rows = read_manifest(path)
    result = read_rows(path, rows, reader)
    counts = {"all": label_counts([s.label for s in result.samples])}
    if all(row.label != 1 for row in rows) and result.samples:
        # A manifest without abnormal rows can train: show the split training would draw.
        rng = np.random.default_rng(np.random.SeedSequence(options.get("seed", 0)).spawn(2)[1])
        train_indices, val_indices = group_holdout([s.group for s in result.samples], options.get("val_fraction", 0.05), rng)
        counts["train"] = {"normal": int(len(train_indices))}
        counts["val"] = {"normal": int(len(val_indices))}
    report = _read_report("manifest", path, result, counts)
    report["rows"] = len(rows)
    report["groups"] = len({s.group for s in result.samples})
    return report


def _inspect_folder(path: Path, reader: SampleReader) -> dict[str, Any]:
    from medanomaly.data.folder import find_layout, read_labelled

    layout = find_layout(path)
    train = read_labelled(reader, {0: layout["train_normal"]})
    test = read_labelled(reader, {0: layout["test_normal"], 1: layout["test_abnormal"]})
    counts = {"train": label_counts([s.label for s in train.samples])}
    if test.samples:
        counts["test"] = label_counts([s.label for s in test.samples])
    result = ReadResult()
    result.extend(train)
    result.extend(test)
    return _read_report("folder", path, result, counts)


def inspect_source(source: str, path: str | Path, **options: Any) -> dict[str, Any]:
    """Read a data source and describe it.

    Args:
        source: ``cifar10``, ``folder``, ``manifest``, ``dicom`` or ``nifti``.
        path: the source's file or folder.
        **options: for CIFAR-10 ``abnormal_class``, ``normal_class``, ``protocol``,
            ``limit``, ``test_limit`` and ``cache``. For DICOM and NIfTI ``preset``,
            ``slice_axis`` and ``foreground_threshold``. For all ``val_fraction``
            and ``seed``.

    Returns:
        A JSON-serialisable dictionary: ``source``, ``path``, ``counts`` (split ->
        label -> images), ``files_read``, ``images``, ``shapes`` (native C x H x W ->
        images), ``value_range`` after the preset, ``constant_slices``, ``series``
        (key, slices, files, shapes, value range) and ``skipped`` (path, reason).
    """
    if source not in INSPECT_SOURCES:
        raise ValueError(f"Invalid source {source!r}; use one of {list(INSPECT_SOURCES)}.")
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{source} path not found: {path}.")
    if source == "cifar10":
        return _inspect_cifar10(path, options)

    reader = SampleReader(
        _INSPECT_SIZE,
        1,
        preset=options.get("preset"),
        slice_axis=options.get("slice_axis", 2),
        foreground_threshold=options.get("foreground_threshold"),
        cache=False,
    )
    if source == "folder":
        return _inspect_folder(path, reader)
    if source == "manifest":
        return _inspect_manifest(path, reader, options)

    from medanomaly.data import read_volumes

    result = read_volumes(reader, source, path)
    counts = {"all": label_counts([s.label for s in result.samples])}
    return _read_report(source, path, result, counts)


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{label} {number}" for label, number in counts.items()) or "none"


def format_report(report: dict[str, Any]) -> str:
    """Format an :func:`inspect_source` report as text for a terminal."""
    lines = [f"Source: {report['source']} {report['path']}"]
    for key in ("layout", "protocol", "abnormal_class", "normal_class", "rows", "groups"):
        if key in report:
            lines.append(f"{key.replace('_', ' ').capitalize()}: {report[key]}")

    lines.append("Images per split and label:")
    for split, counts in report["counts"].items():
        lines.append(f"  {split}: {_counts_text(counts)}")
    if report.get("test_classes"):
        lines.append(f"Test images per class: {_counts_text(report['test_classes'])}")

    lines.append(
        f"Files read: {report['files_read']}, images: {report['images']}, "
        f"files skipped: {len(report['skipped'])}"
    )
    shapes = ", ".join(f"{shape} ({n})" for shape, n in report["shapes"].items()) or "none"
    lines.append(f"Native shapes (C x H x W): {shapes}")
    if report["value_range"] is not None:
        low, high = report["value_range"]
        lines.append(f"Value range after preset: {low:.4f} to {high:.4f}")
    if report["constant_slices"]:
        lines.append(f"Constant images: {report['constant_slices']}")

    if report["series"]:
        lines.append(f"Series: {len(report['series'])}")
        for series in report["series"]:
            low, high = series["value_range"]
            shapes = ", ".join(series["shapes"])
            lines.append(
                f"  {series['series']}: {series['slices']} slices from {series['files']} file(s), "
                f"{shapes}, values {low:.4f} to {high:.4f}"
            )
    if report["skipped"]:
        lines.append("Skipped files:")
        for item in report["skipped"]:
            lines.append(f"  {item['path']}: {item['reason']}")
    return "\n".join(lines)
