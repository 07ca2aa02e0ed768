"""Metrics and threshold calibration on hand-made scores."""

import logging
import math

import numpy as np
import pytest

from medanomaly.engine.metrics import calibrate_threshold, compute_metrics, score_statistics


def test_auroc_perfect_separation():
    metrics = compute_metrics([0.1, 0.2, 0.3, 0.8, 0.9], [0, 0, 0, 1, 1])
    assert metrics["auroc"] == 1.0
    assert metrics["auprc"] == 1.0


def test_auroc_inverted_scores():
    metrics = compute_metrics([0.9, 0.8, 0.7, 0.2, 0.1], [0, 0, 0, 1, 1])
    assert metrics["auroc"] == 0.0


def test_auroc_uses_raw_ranks():
    # A monotone transform of the scores must not change rank metrics.
    scores = np.array([0.3, 1.5, 0.2, 40.0, 0.25, 7.0])
    labels = np.array([0, 1, 0, 1, 1, 0])
    plain = compute_metrics(scores, labels)
    transformed = compute_metrics(np.log(scores) * 3.0 + 10.0, labels)
    assert plain["auroc"] == pytest.approx(transformed["auroc"])
    assert plain["auprc"] == pytest.approx(transformed["auprc"])
    assert plain["auroc"] == pytest.approx(6 / 9)


def test_threshold_metrics_by_hand():
    scores = [0.1, 0.4, 0.6, 0.2, 0.7, 0.9, 0.3]
    labels = [0, 0, 0, 1, 1, 1, 1]
    # score > 0.5 flags 0.6 (normal: FP), 0.7 and 0.9 (abnormal: TP).
    metrics = compute_metrics(scores, labels, threshold=0.5)
    assert (metrics["tp"], metrics["fp"], metrics["tn"], metrics["fn"]) == (2, 1, 2, 2)
    assert metrics["sensitivity"] == pytest.approx(2 / 4)
    assert metrics["specificity"] == pytest.approx(2 / 3)
    assert metrics["precision"] == pytest.approx(2 / 3)
    assert metrics["accuracy"] == pytest.approx(4 / 7)
    assert metrics["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 2))


def test_threshold_is_strict():
    metrics = compute_metrics([0.5, 0.5], [0, 1], threshold=0.5)
    assert metrics["tp"] == 0
    assert metrics["fp"] == 0


def test_one_class_warns_and_gives_nan(caplog):
    with caplog.at_level(logging.WARNING, logger="medanomaly.engine.metrics"):
        metrics = compute_metrics([0.1, 0.2, 0.3], [0, 0, 0], threshold=0.25)
    assert math.isnan(metrics["auroc"])
    assert math.isnan(metrics["auprc"])
    assert "undefined" in caplog.text
    assert math.isnan(metrics["sensitivity"])
    assert metrics["specificity"] == pytest.approx(2 / 3)


def test_unknown_labels_left_out(caplog):
    with caplog.at_level(logging.WARNING, logger="medanomaly.engine.metrics"):
        metrics = compute_metrics([0.1, 0.9, 5.0], [0, 1, -1])
    assert metrics["auroc"] == 1.0
    assert metrics["n_normal"] + metrics["n_abnormal"] == 2
    assert "unknown labels" in caplog.text


def test_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="Labels must be"):
        compute_metrics([0.1, 0.2], [0, 2])
    with pytest.raises(ValueError, match="must match"):
        compute_metrics([0.1, 0.2], [0])
    with pytest.raises(ValueError, match="NaN"):
        compute_metrics([0.1, float("nan")], [0, 1])


def test_threshold_is_val_quantile():
    scores = np.random.default_rng(0).gamma(2.0, size=200)
    threshold = calibrate_threshold(scores, target_fpr=0.05)
    assert threshold == pytest.approx(np.quantile(scores, 0.95))
    assert np.mean(scores > threshold) == pytest.approx(0.05, abs=0.005)


def test_threshold_rejects_bad_input():
    with pytest.raises(ValueError, match="target_fpr"):
        calibrate_threshold([0.1, 0.2], target_fpr=0.0)
    with pytest.raises(ValueError, match="no validation"):
        calibrate_threshold([], target_fpr=0.05)
    with pytest.raises(ValueError, match="NaN"):
        calibrate_threshold([0.1, float("inf")], target_fpr=0.05)


def test_threshold_warns_on_few_scores(caplog):
    with caplog.at_level(logging.WARNING, logger="medanomaly.engine.metrics"):
        calibrate_threshold([0.1, 0.2, 0.3], target_fpr=0.05)
    assert "at least 20" in caplog.text


def test_score_statistics_keys():
    stats = score_statistics(np.arange(101, dtype=float))
    assert stats["count"] == 101
    assert stats["mean"] == pytest.approx(50.0)
    assert stats["q50"] == pytest.approx(50.0)
    assert stats["q95"] == pytest.approx(95.0)
    assert stats["q99"] == pytest.approx(99.0)
