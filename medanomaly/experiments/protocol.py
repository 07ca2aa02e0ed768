"""Paper protocol: the normals-first test order and the per-epoch test scoring callback.

The paper protocol is the evaluation in the public Skip-GANomaly++ code of Park et al.
:mod:`medanomaly.experiments.table1` describes it next to the honest protocol.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset, Subset

from medanomaly import reporting, tracking
from medanomaly.engine import compute_metrics, make_eval_loader, score_loader

logger = logging.getLogger(__name__)

PROTOCOLS = ("honest", "paper")
PAPER_BATCH_SIZE = 64


def dataset_labels(dataset: Dataset) -> np.ndarray:
    """Return the 0/1 label of every item, from ``dataset.labels`` when it has them."""
    labels = getattr(dataset, "labels", None)
    if labels is None:
        labels = [int(dataset[i]["label"]) for i in range(len(dataset))]
    return np.asarray(labels, dtype=np.int64)


def normals_first_order(
    labels: Sequence[int], shuffle_within: bool = False, seed: int = 0
) -> np.ndarray:
    """Return the test order of the paper protocol: every normal (0) before every abnormal (1).

    Within each label the dataset order is kept, unless ``shuffle_within``
    applies a seeded permutation. Image trees are sorted by class, while the
    CIFAR-10 Python release interleaves classes. Shuffling a class-sorted
    tree gives batches of mixed classes, as the Python release does.

    Raises:
        ValueError: a label other than 0 or 1.
    """
    labels = np.asarray(labels, dtype=np.int64)
    invalid = sorted(set(np.unique(labels).tolist()) - {0, 1})
    if invalid:
        raise ValueError(
            f"The paper protocol needs 0/1 test labels, got {invalid}; use a labelled test split."
        )
    blocks = [np.flatnonzero(labels == label) for label in (0, 1)]
    if shuffle_within:
        rng = np.random.default_rng(seed)
        blocks = [rng.permutation(block) for block in blocks]
    return np.concatenate(blocks).astype(np.int64)


class PaperProtocolCallback:
    """Trainer callback that scores the test set after every epoch under both scorings.

    ``paper_auroc`` is the AUROC of the paper protocol (batch norm in training
    mode, batches of :data:`PAPER_BATCH_SIZE` in normals-first order).
    ``eval_auroc`` is the AUROC of the same weights in eval mode, kept for
    the per-epoch curves and never used to select an epoch.

    Args:
        test_dataset: labelled test split.
        shuffle_within: permute within the normal and the abnormal block, see
            :func:`normals_first_order`.
        seed: seed of that permutation.
        batch_size: scoring batch size; the paper protocol uses 64.
        curve_path: JSON file rewritten after every epoch.
        resume: start from the epochs stored in ``curve_path`` (a resumed run)
            instead of an empty curve.
    """

    def __init__(
        self,
        test_dataset: Dataset,
        shuffle_within: bool = False,
        seed: int = 0,
        batch_size: int = PAPER_BATCH_SIZE,
        curve_path: str | Path | None = None,
        resume: bool = False,
    ) -> None:
        self.order = normals_first_order(dataset_labels(test_dataset), shuffle_within, seed)
        self.loader = make_eval_loader(Subset(test_dataset, self.order.tolist()), batch_size)
        self.curve_path = Path(curve_path) if curve_path is not None else None
        self.curve: list[dict[str, float]] = self._read_curve() if resume else []

    def _read_curve(self) -> list[dict[str, float]]:
        if self.curve_path is None or not self.curve_path.is_file():
            return []
        curve = json.loads(self.curve_path.read_text())
        logger.info("Loaded %d scored epoch(s) from %s", len(curve), self.curve_path)
        return curve

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, float], scorer: Any) -> None:
        """Score the test set with this epoch's weights in both modes and store the AUROCs."""
        started = time.perf_counter()
        paper = score_loader(scorer, self.loader, batchnorm_mode="train", description="paper test")
        evaluated = score_loader(scorer, self.loader, batchnorm_mode="eval", description="eval test")
        entry = {
            "epoch": int(epoch),
            "paper_auroc": compute_metrics(paper.scores, paper.labels)["auroc"],
            "eval_auroc": compute_metrics(evaluated.scores, evaluated.labels)["auroc"],
            "seconds": time.perf_counter() - started,
        }
        self.curve = [item for item in self.curve if item["epoch"] != epoch] + [entry]
        self.curve.sort(key=lambda item: item["epoch"])
        if self.curve_path is not None:
            reporting.write_text(self.curve_path, json.dumps(self.curve, indent=2))
        logger.info(
            "Epoch %d test AUROC: paper protocol (batch norm in training mode) %.4f, "
            "eval mode %.4f (%.1f s)",
            epoch,
            entry["paper_auroc"],
            entry["eval_auroc"],
            entry["seconds"],
        )
        if _mlflow_run_active():
            tracking.log_metrics(
                {"paper_test_auroc": entry["paper_auroc"], "eval_test_auroc": entry["eval_auroc"]},
                step=epoch,
            )

    def best(self) -> dict[str, float]:
        """Return the curve entry with the highest paper AUROC; the earlier epoch wins ties.

        Raises:
            ValueError: no epoch was scored.
        """
        scored = [item for item in self.curve if math.isfinite(item["paper_auroc"])]
        if not scored:
            raise ValueError("The paper protocol scored no epoch; check the test split labels.")
        return max(scored, key=lambda item: (item["paper_auroc"], -item["epoch"]))


def _mlflow_run_active() -> bool:
    import mlflow

    return mlflow.active_run() is not None
