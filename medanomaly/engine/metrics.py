"""Detection metrics from raw anomaly scores, and threshold calibration.

Labels: 0 normal, 1 abnormal (the positive class), -1 unknown. AUROC and
AUPRC depend only on the ranking of the raw scores, so no sigmoid or min-max
rescaling is applied. The threshold metrics flag an image abnormal when
``score > threshold``.

A figure that the data cannot define is ``nan``, for example AUROC when only
one class is present or precision when nothing is flagged.
"""

from __future__ import annotations

import logging
import math

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

logger = logging.getLogger(__name__)

# Quantile levels of the validation normal scores stored with a scorer.
SCORE_QUANTILES = (0.5, 0.9, 0.95, 0.99)


def calibrate_threshold(
    normal_scores: np.ndarray, target_fpr: float = 0.05, *, warn_small: bool = True
) -> float:
    """Return the threshold that flags about ``target_fpr`` of normal images.

    The threshold is the ``1 - target_fpr`` quantile of the scores of held-out
    normal images, with NumPy's default linear interpolation. Of ``n``
    distinct validation scores, ``ceil((n - 1) * target_fpr)`` lie above it,
    so the false-positive rate on them is close to ``target_fpr`` but not
    exactly equal for small ``n``.

    Args:
        normal_scores: scores of held-out normal images.
        target_fpr: share of normal images to flag, in (0, 1).
        warn_small: log a warning when there are fewer than ``1 / target_fpr`` scores.

    Raises:
        ValueError: no scores, non-finite scores, or ``target_fpr`` outside (0, 1).
    """
    scores = np.asarray(normal_scores, dtype=np.float64).ravel()
    if not 0.0 < target_fpr < 1.0:
        raise ValueError(f"target_fpr must be in (0, 1), got {target_fpr}.")
    if scores.size == 0:
        raise ValueError("Cannot calibrate a threshold: no validation normal scores.")
    if not np.all(np.isfinite(scores)):
        raise ValueError("Cannot calibrate a threshold: validation scores contain NaN or inf.")
    if warn_small and scores.size * target_fpr < 1.0:
        logger.warning(
            "Only %d validation normal images for a target false-positive rate of %g; "
            "the threshold is the top of the observed scores and the real rate may be higher. "
            "Use at least %d validation images.",
            scores.size,
            target_fpr,
            math.ceil(1.0 / target_fpr),
        )
    return float(np.quantile(scores, 1.0 - target_fpr))


def score_statistics(scores: np.ndarray) -> dict[str, float]:
    """Summarise scores: count, mean, std, min, max and the :data:`SCORE_QUANTILES`."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if scores.size == 0:
        raise ValueError("Cannot summarise an empty set of scores.")
    stats = {
        "count": int(scores.size),
        "mean": float(scores.mean()),
        "std": float(scores.std()),
        "min": float(scores.min()),
        "max": float(scores.max()),
    }
    for level in SCORE_QUANTILES:
        stats[f"q{round(level * 100):02d}"] = float(np.quantile(scores, level))
    return stats


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else math.nan


def compute_metrics(
    scores: np.ndarray, labels: np.ndarray, threshold: float | None = None
) -> dict[str, float]:
    """Compute AUROC, AUPRC and, given a threshold, the confusion-based figures.

    Args:
        scores: (N,) raw anomaly scores, higher is more anomalous.
        labels: (N,) 0 normal, 1 abnormal, -1 unknown. Unknown labels are left out.
        threshold: flag ``score > threshold`` as abnormal. Without it only the
            rank metrics are returned.

    Returns:
        ``auroc``, ``auprc``, ``n_normal``, ``n_abnormal`` and, with a
        threshold, ``threshold``, ``f1``, ``sensitivity``, ``specificity``,
        ``precision``, ``accuracy``, ``tp``, ``fp``, ``tn``, ``fn``.
        Undefined figures are ``nan``.

    Raises:
        ValueError: lengths differ, labels outside {-1, 0, 1}, or non-finite scores.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(np.int64)
    if scores.shape != labels.shape:
        raise ValueError(f"{scores.size} scores but {labels.size} labels; they must match.")
    invalid = sorted(set(np.unique(labels).tolist()) - {-1, 0, 1})
    if invalid:
        raise ValueError(f"Labels must be 0 (normal), 1 (abnormal) or -1 (unknown), got {invalid}.")
    known = labels >= 0
    if not known.all():
        logger.warning(
            "Leaving out %d image(s) with unknown labels from the metrics.", int((~known).sum())
        )
    scores, labels = scores[known], labels[known]
    if not np.all(np.isfinite(scores)):
        raise ValueError("Scores contain NaN or inf; metrics are undefined.")

    n_abnormal = int(labels.sum())
    n_normal = int(labels.size - n_abnormal)
    metrics: dict[str, float] = {"n_normal": n_normal, "n_abnormal": n_abnormal}
    if n_normal and n_abnormal:
        metrics["auroc"] = float(roc_auc_score(labels, scores))
        metrics["auprc"] = float(average_precision_score(labels, scores))
    else:
        logger.warning(
            "AUROC and AUPRC are undefined with %d normal and %d abnormal image(s); "
            "both classes are needed. Reporting them as nan.",
            n_normal,
            n_abnormal,
        )
        metrics["auroc"] = math.nan
        metrics["auprc"] = math.nan
    if threshold is None:
        return metrics

    flagged = scores > threshold
    abnormal = labels == 1
    tp = int(np.sum(flagged & abnormal))
    fp = int(np.sum(flagged & ~abnormal))
    tn = int(np.sum(~flagged & ~abnormal))
    fn = int(np.sum(~flagged & abnormal))
    metrics.update(
        threshold=float(threshold),
        tp=tp,
        fp=fp,
        tn=tn,
        fn=fn,
        sensitivity=_ratio(tp, tp + fn),
        specificity=_ratio(tn, tn + fp),
        precision=_ratio(tp, tp + fp),
        accuracy=_ratio(tp + tn, labels.size),
        f1=_ratio(2 * tp, 2 * tp + fp + fn),
    )
    return metrics
