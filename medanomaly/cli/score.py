"""``medanomaly score``: score new images with a trained model and write the results.

Outputs in ``--out DIR``:

``scores.csv``
    path, frame_or_slice, score, threshold, flagged (1 when score > threshold),
    plus label when the manifest has labels.
``series_summary.csv``
    one row per series (DICOM) or file: slices, flagged slices, max and mean score.
``panels/``
    PNG panels (input, reconstruction, residual heat map) of the highest-scoring
    flagged images, at most ``--panels``.
``skipped.csv``
    unreadable files with the reason.

Each file is written under a temporary name and then renamed.
"""

from __future__ import annotations

import argparse
import heapq
import logging
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medanomaly import reporting
from medanomaly.cli import common
from medanomaly.cli.options import add_data_source, add_option, add_options, data_source

logger = logging.getLogger(__name__)

SOURCES = ("dicom_dir", "nifti", "manifest", "folder")
# Skipped files listed on stderr before the rest go to skipped.csv only.
MAX_SKIPPED_SHOWN = 50
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")
_IMAGE_SUFFIXES = (".nii.gz", ".nii", ".dcm", ".dicom", ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``score`` subcommand."""
    parser = subparsers.add_parser(
        "score",
        help="score images with a trained model; write scores, summaries and panels",
        description=(
            "Score images with a trained model. Image size, channels, intensity preset and "
            "resize mode come from the model, so no preprocessing flags are needed."
        ),
    )
    add_options(parser, "model_ref")
    add_data_source(parser, SOURCES)
    add_options(parser, "out", "panels", "device")
    add_option(parser, "batch_size", default=32)
    parser.set_defaults(handler=run)
    return parser


@dataclass(order=True)
class _Candidate:
    """A flagged image kept for a panel; ordered by score for the min-heap."""

    score: float
    order: int
    path: str = field(compare=False)
    index: int = field(compare=False)
    image: np.ndarray = field(compare=False)
    reconstruction: np.ndarray = field(compare=False)
    residual: np.ndarray = field(compare=False)


@dataclass
class _SeriesStats:
    path: str
    slices: int = 0
    flagged: int = 0
    max_score: float = -np.inf
    total_score: float = 0.0


def run(args: argparse.Namespace) -> int:
    """Score the images and write the outputs into ``--out``."""
    from medanomaly.data import build_dataset

    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder (it is created when missing).")
    scorer = common.load_model(args.model_ref, args.device)
    source, path = data_source(args)
    # Labels are optional here: a manifest's label column is kept where rows have one.
    dataset, skipped = build_dataset(source, path, labelled=False, **common.preprocessing(scorer))
    out.mkdir(parents=True, exist_ok=True)
    _report_skipped(out / "skipped.csv", skipped)
    if len(dataset) == 0:
        raise ValueError(
            f"No readable images in {path} ({len(skipped)} file(s) skipped, listed in "
            f"{out / 'skipped.csv'})."
        )

    rows, series, candidates = _score_all(scorer, dataset, args.batch_size, args.panels)
    threshold = scorer.threshold
    labels = np.asarray([row[-1] for row in rows])
    labelled = common.has_labels(labels)
    header = list(common.SCORES_HEADER) + (["label"] if labelled else [])
    reporting.write_csv(out / "scores.csv", header, [row if labelled else row[:-1] for row in rows])
    _write_series_summary(out / "series_summary.csv", series)
    panels = _write_panels(out / "panels", candidates, threshold)

    scores = np.asarray([float(row[2]) for row in rows])
    flagged = int(sum(row[4] for row in rows))
    print(f"Scored {len(rows)} image(s) from {len(series)} series/file(s) with {args.model_ref}")
    print(f"  threshold    {threshold:.6g}")
    print(f"  flagged      {flagged} ({flagged / len(rows):.1%})")
    print(f"  panels       {len(panels)} in {out / 'panels'}")
    print(f"  skipped      {len(skipped)} file(s)")
    if labelled:
        from medanomaly.engine.metrics import compute_metrics

        metrics = compute_metrics(scores, labels, threshold)
        print(common.format_metrics(metrics))
    print(f"Results in {out}")
    return 0


def _score_all(
    scorer: Any, dataset: Any, batch_size: int, max_panels: int
) -> tuple[list[list[Any]], dict[str, _SeriesStats], list[_Candidate]]:
    """Score every image, keeping the ``max_panels`` highest flagged ones for panels."""
    from tqdm.auto import tqdm

    loader = common.make_loader(dataset, batch_size)
    # Dataset items carry no series key, but the sample table of a SampleDataset
    # does, in item order; without it each file is its own series.
    samples = getattr(dataset, "samples", None)
    rows: list[list[Any]] = []
    series: dict[str, _SeriesStats] = {}
    heap: list[_Candidate] = []
    threshold = scorer.threshold
    for batch in tqdm(loader, desc="scoring", leave=False, disable=not sys.stderr.isatty()):
        scores, residuals, reconstructions = scorer.score_with_maps(batch["image"])
        scores = scores.float().cpu().numpy()
        size = len(scores)
        labels = _column(batch, "label", size, -1)
        indices = _column(batch, "index", size, 0)
        for i in range(size):
            path, index, score = str(batch["path"][i]), int(indices[i]), float(scores[i])
            is_flagged = score > threshold
            series_key = getattr(samples[len(rows)], "series", "") if samples is not None else ""
            rows.append([path, index, f"{score:.6g}", f"{threshold:.6g}", int(is_flagged), int(labels[i])])

            key = series_key or path
            stats = series.setdefault(key, _SeriesStats(path=path))
            stats.slices += 1
            stats.flagged += int(is_flagged)
            stats.max_score = max(stats.max_score, score)
            stats.total_score += score

            if is_flagged and max_panels > 0:
                if len(heap) < max_panels or score > heap[0].score:
                    candidate = _Candidate(
                        score,
                        len(rows),
                        path,
                        index,
                        batch["image"][i].float().cpu().numpy(),
                        reconstructions[i].float().cpu().numpy(),
                        residuals[i].float().cpu().numpy(),
                    )
                    if len(heap) < max_panels:
                        heapq.heappush(heap, candidate)
                    else:
                        heapq.heapreplace(heap, candidate)
    return rows, series, sorted(heap, reverse=True)


def _column(batch: dict, key: str, size: int, default: Any) -> list:
    values = batch.get(key)
    if values is None:
        return [default] * size
    return values.tolist() if hasattr(values, "tolist") else list(values)


def _report_skipped(path: Path, skipped: list[Any]) -> None:
    reporting.write_csv(path, ["path", "reason"], [[item.path, item.reason] for item in skipped])
    for item in skipped[:MAX_SKIPPED_SHOWN]:
        print(f"skipped: {item.path}: {item.reason}", file=sys.stderr)
    if len(skipped) > MAX_SKIPPED_SHOWN:
        print(
            f"skipped: {len(skipped) - MAX_SKIPPED_SHOWN} more file(s), listed in {path}",
            file=sys.stderr,
        )


def _write_series_summary(path: Path, series: dict[str, _SeriesStats]) -> None:
    header = ["series", "first_path", "slices", "flagged", "max_score", "mean_score"]
    # "series" is the reader's non-identifying series key (DICOM, NIfTI) or the file path.
    rows = [
        [
            key,
            stats.path,
            stats.slices,
            stats.flagged,
            f"{stats.max_score:.6g}",
            f"{stats.total_score / stats.slices:.6g}",
        ]
        for key, stats in series.items()
    ]
    reporting.write_csv(path, header, rows)


def _strip_image_suffix(name: str) -> str:
    lowered = name.lower()
    for suffix in _IMAGE_SUFFIXES:
        if lowered.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _write_panels(folder: Path, candidates: list[_Candidate], threshold: float) -> list[Path]:
    if not candidates:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    existing = [item for item in folder.glob("*.png")]
    if existing:
        logger.warning(
            "%s already contains %d PNG file(s) from an earlier run; they are kept beside the new panels.",
            folder,
            len(existing),
        )
    written = []
    for rank, candidate in enumerate(candidates, start=1):
        stem = _UNSAFE_FILENAME.sub("_", _strip_image_suffix(Path(candidate.path).name))[:80]
        name = f"{rank:04d}_{stem}_{candidate.index}.png"
        title = (
            f"{candidate.path} [frame/slice {candidate.index}]  "
            f"score {candidate.score:.4g} > threshold {threshold:.4g}"
        )
        written.append(
            reporting.save_panel(
                candidate.image, candidate.reconstruction, candidate.residual, folder / name, title
            )
        )
    return written
