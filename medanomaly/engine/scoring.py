"""Scoring a data loader with an AnomalyScorer."""

from __future__ import annotations

import copy
import logging
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from medanomaly.engine.metrics import compute_metrics
from medanomaly.engine.scorer import AnomalyScorer

logger = logging.getLogger(__name__)

BATCHNORM_MODES = ("eval", "train")


class NonFiniteScoreError(RuntimeError):
    """A score is NaN or infinite, so the model or the input is broken."""


@dataclass
class ScoreResult:
    """Scores of every image of a loader, in loader order.

    Attributes:
        scores: (N,) float64 anomaly scores, higher is more anomalous.
        labels: (N,) int64, 0 normal, 1 abnormal, -1 unknown.
        paths: (N,) source file paths (str).
        indices: (N,) int64 frame or slice index inside each file.
        pixel_errors: (N,) float64 mean squared error between image and reconstruction.
        maps: (N, 1, H, W) float32 residual maps when requested, else None.
    """

    scores: np.ndarray
    labels: np.ndarray
    paths: np.ndarray
    indices: np.ndarray
    pixel_errors: np.ndarray
    maps: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.scores.shape[0])


def _unpack_batch(batch: Any, offset: int) -> tuple[torch.Tensor, list, list, list]:
    """Return images, labels, paths and indices of a batch in any supported layout.

    Dataset items follow the medanomaly contract (a dict with ``image``,
    ``label``, ``path``, ``index``). A bare tensor or an ``(image, label)``
    pair also works, with unknown labels and positions as paths.
    """
    if isinstance(batch, dict):
        images = batch["image"]
        size = images.shape[0]
        labels = _as_list(batch.get("label"), size, -1)
        paths = _as_list(batch.get("path"), size, "")
        indices = _as_list(batch.get("index"), size, 0)
        return images, labels, paths, indices
    if isinstance(batch, torch.Tensor):
        images, labels = batch, None
    elif isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], torch.Tensor):
        images = batch[0]
        labels = batch[1] if len(batch) > 1 else None
    else:
        raise TypeError(
            f"Unsupported batch type {type(batch).__name__}; expected a dict with 'image', "
            "a tensor, or an (image, label) pair."
        )
    size = images.shape[0]
    positions = [f"#{offset + i}" for i in range(size)]
    return images, _as_list(labels, size, -1), positions, [0] * size


def _as_list(values: Any, size: int, default: Any) -> list:
    if values is None:
        return [default] * size
    if isinstance(values, torch.Tensor):
        return values.tolist()
    return list(values)


def _paper_mode_copy(scorer: AnomalyScorer) -> AnomalyScorer:
    """Return a copy of ``scorer`` whose batch-norm layers use batch statistics."""
    paper_scorer = copy.deepcopy(scorer)
    for module in paper_scorer.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            # Call nn.Module.train on each layer, because AnomalyScorer.train ignores mode=True.
            nn.Module.train(module, True)
    return paper_scorer


def score_loader(
    scorer: AnomalyScorer,
    loader: Iterable,
    keep_maps: bool = False,
    batchnorm_mode: str = "eval",
    description: str = "scoring",
) -> ScoreResult:
    """Score every image of ``loader``.

    With ``batchnorm_mode="eval"`` (the default and the honest protocol) each
    score depends only on its own image: batch size and order do not change it.

    ``batchnorm_mode="train"`` reproduces a flawed evaluation protocol of the
    public Skip-GANomaly++ code, for comparison only: batch-norm layers
    normalise each batch with its own statistics, so a score depends on the
    other images in its batch and on the loader's order. The caller passes an
    unshuffled loader (normals first, batch size 64) to match that protocol.
    It runs on a copy of the scorer, so ``scorer`` and its running statistics
    are left unchanged.

    Args:
        scorer: trained scorer.
        loader: iterable of batches, usually a DataLoader over medanomaly
            dataset items.
        keep_maps: also return the (N, 1, H, W) residual maps.
        batchnorm_mode: ``"eval"`` or ``"train"`` (see above).
        description: label of the progress bar.

    Raises:
        ValueError: unknown ``batchnorm_mode`` or the loader yields no images.
        NonFiniteScoreError: a score is NaN or infinite; the message names the images.
    """
    if batchnorm_mode not in BATCHNORM_MODES:
        raise ValueError(
            f"batchnorm_mode must be one of {BATCHNORM_MODES}, got {batchnorm_mode!r}."
        )
    if batchnorm_mode == "train":
        logger.warning(
            "Scoring with batch norm in training mode (paper protocol): scores depend on "
            "batch composition and order and are reported for comparison only."
        )
        active = _paper_mode_copy(scorer)
    else:
        active = scorer
        active.eval()

    scores, pixel_errors, maps = [], [], []
    labels, paths, indices = [], [], []
    bar = tqdm(loader, desc=description, leave=False, disable=not sys.stderr.isatty())
    with torch.inference_mode():
        for batch in bar:
            images, batch_labels, batch_paths, batch_indices = _unpack_batch(batch, len(labels))
            output = active.score_batch(active.prepare(images))
            scores.append(output.scores.float().cpu())
            pixel_errors.append(output.pixel_error.float().cpu())
            if keep_maps:
                maps.append(output.residual.float().cpu().contiguous())
            labels.extend(int(label) for label in batch_labels)
            paths.extend(str(path) for path in batch_paths)
            indices.extend(int(index) for index in batch_indices)
    if not scores:
        raise ValueError("The loader yielded no images to score.")

    result = ScoreResult(
        scores=torch.cat(scores).numpy().astype(np.float64),
        labels=np.asarray(labels, dtype=np.int64),
        paths=np.asarray(paths, dtype=str),
        indices=np.asarray(indices, dtype=np.int64),
        pixel_errors=torch.cat(pixel_errors).numpy().astype(np.float64),
        maps=torch.cat(maps).numpy() if keep_maps else None,
    )
    check_finite_scores(result)
    return result


def evaluate_loader(
    scorer: AnomalyScorer,
    loader: Iterable,
    keep_maps: bool = False,
    batchnorm_mode: str = "eval",
) -> tuple[ScoreResult, dict[str, float]]:
    """Score a labelled loader and compute the metrics at the scorer's threshold.

    Returns:
        The :class:`ScoreResult` and the dictionary of
        :func:`medanomaly.engine.metrics.compute_metrics`.
    """
    result = score_loader(scorer, loader, keep_maps=keep_maps, batchnorm_mode=batchnorm_mode)
    return result, compute_metrics(result.scores, result.labels, scorer.threshold)


def check_finite_scores(result: ScoreResult, context: str = "") -> None:
    """Raise :class:`NonFiniteScoreError` naming the images whose score is NaN or infinite."""
    bad = np.flatnonzero(~np.isfinite(result.scores))
    if bad.size == 0:
        return
    examples = ", ".join(f"{result.paths[i]} [index {result.indices[i]}]" for i in bad[:5])
    more = f" and {bad.size - 5} more" if bad.size > 5 else ""
    prefix = f"{context}: " if context else ""
    raise NonFiniteScoreError(
        f"{prefix}{bad.size} non-finite score(s), e.g. {examples}{more}. Check these images "
        "for NaN values and the model for diverged weights."
    )
