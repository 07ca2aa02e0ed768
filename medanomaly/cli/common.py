"""Steps that several subcommands share: loading a model, building loaders, writing
score tables and evaluation plots, and printing metrics."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medanomaly import reporting

logger = logging.getLogger(__name__)

# Metrics printed and logged as the headline of an evaluation, in this order.
HEADLINE_METRICS = ("auroc", "auprc", "f1", "sensitivity", "specificity", "threshold")
SCORES_HEADER = ("path", "frame_or_slice", "score", "threshold", "flagged")


def check_cifar10_classes(protocol: str, abnormal_class: str | None, normal_class: str | None) -> None:
    """Raise ValueError unless the CIFAR-10 protocol has the class it needs."""
    if protocol == "one_vs_rest" and not normal_class:
        raise ValueError("CIFAR-10 one_vs_rest needs --normal-class, for example --normal-class car.")
    if protocol == "leave_one_out" and not abnormal_class:
        raise ValueError("CIFAR-10 leave_one_out needs --abnormal-class, for example --abnormal-class bird.")


def load_model(reference: str, device_spec: str | None) -> Any:
    """Load a scorer from a path or MLflow URI onto the requested device."""
    from medanomaly.engine.device import resolve_device
    from medanomaly.tracking import load_scorer

    device = resolve_device(device_spec or "auto")
    scorer = load_scorer(reference, map_location="cpu").to(device)
    logger.info(
        "Loaded %s from %s (threshold %.6g, device %s)",
        scorer.model_name,
        reference,
        scorer.threshold,
        device,
    )
    return scorer


def preprocessing(scorer: Any) -> dict[str, Any]:
    """Return the image size, channels, intensity preset and resize mode the scorer was trained with."""
    height, width = scorer.image_shape
    if height != width:
        raise ValueError(
            f"Model {scorer.model_name} takes {height}x{width} images; only square inputs "
            "are supported by the data pipeline."
        )
    meta = scorer.meta
    config = meta.get("config") or {}
    data = config.get("data") or {}
    return {
        "image_size": height,
        "in_channels": scorer.in_channels,
        "preset": meta.get("preset", data.get("preset")),
        "resize_mode": meta.get("resize_mode", data.get("resize_mode", "resize")),
    }


def make_loader(dataset: Any, batch_size: int, num_workers: int = 0) -> Any:
    """Return an unshuffled DataLoader, so outputs follow the dataset order."""
    from torch.utils.data import DataLoader

    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)


def has_labels(labels: Sequence[int] | np.ndarray) -> bool:
    """Return True when at least one label is known (0 or 1)."""
    return bool(np.any(np.asarray(labels) >= 0))


def score_rows(
    paths: Sequence[str],
    indices: Sequence[int],
    scores: Sequence[float],
    threshold: float,
    labels: Sequence[int] | None = None,
) -> list[list[Any]]:
    """Return rows for ``scores.csv`` in the order of :data:`SCORES_HEADER` (+ label)."""
    rows = []
    for position, (path, index, score) in enumerate(zip(paths, indices, scores)):
        row = [path, int(index), f"{float(score):.6g}", f"{threshold:.6g}", int(score > threshold)]
        if labels is not None:
            row.append(int(labels[position]))
        rows.append(row)
    return rows


def write_scores(path: Path, result: Any, threshold: float) -> Path:
    """Write a :class:`~medanomaly.engine.scoring.ScoreResult` as ``scores.csv``."""
    labelled = has_labels(result.labels)
    header = list(SCORES_HEADER) + (["label"] if labelled else [])
    rows = score_rows(
        result.paths, result.indices, result.scores, threshold, result.labels if labelled else None
    )
    return reporting.write_csv(path, header, rows)


def write_evaluation(folder: Path, result: Any, threshold: float) -> list[Path]:
    """Write scores.csv, the score histogram and (with both classes) the ROC curve into ``folder``."""
    written = [
        write_scores(folder / "scores.csv", result, threshold),
        reporting.plot_score_histogram(
            result.scores, folder / "score_histogram.png", labels=result.labels, threshold=threshold
        ),
    ]
    known = result.labels >= 0
    if len(np.unique(result.labels[known])) == 2:
        written.append(
            reporting.plot_roc_curve(
                result.labels[known], result.scores[known], folder / "roc_curve.png", threshold
            )
        )
    else:
        logger.warning("No ROC curve: the labelled images do not contain both classes.")
    return written


def format_metrics(metrics: Mapping[str, Any]) -> str:
    """Format the headline metrics as ``name value`` lines."""
    lines = []
    for name in HEADLINE_METRICS:
        if name in metrics:
            value = float(metrics[name])
            if math.isnan(value):
                text = "undefined"
            elif name == "threshold":
                text = f"{value:.6g}"
            else:
                text = f"{value:.4f}"
            lines.append(f"  {name:<12} {text}")
    if "n_normal" in metrics:
        lines.append(f"  {'images':<12} {metrics['n_normal']} normal, {metrics['n_abnormal']} abnormal")
    return "\n".join(lines)
