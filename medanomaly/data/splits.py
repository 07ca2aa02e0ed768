"""Seeded, stratified and grouped splits of sample tables.

All functions work on index arrays so that every source (CIFAR-10 arrays, image
folders, manifests) shares them. Each one takes a ``numpy.random.Generator`` so a
seed gives the same split on every run and machine.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch.utils.data import Dataset

logger = logging.getLogger(__name__)


@dataclass
class DataSplits:
    """Datasets for training, validation and testing, with a summary.

    ``train`` and ``val`` contain normal images only, and ``val`` is held out of the
    training normals with a seeded split. ``test`` is labelled 0 (normal) or 1
    (abnormal), or ``None`` when the source has no test images. ``info`` contains
    ``counts`` (split -> label name -> number of images), ``skipped`` (a list of
    ``{"path", "reason"}``) and source-specific entries.
    """

    train: Dataset
    val: Dataset
    test: Dataset | None
    info: dict[str, Any] = field(default_factory=dict)


def check_fraction(fraction: float, name: str = "val_fraction") -> float:
    """Return ``fraction`` or raise ``ValueError`` unless 0 <= fraction < 1."""
    if not 0.0 <= float(fraction) < 1.0:
        raise ValueError(f"Invalid {name} {fraction!r}; expected a number in [0, 1).")
    return float(fraction)


def allocate(counts: Sequence[int], total: int) -> np.ndarray:
    """Share ``total`` among strata in proportion to ``counts`` (largest remainder method).

    Ties in the remainder go to the earlier stratum, so the result is deterministic.
    """
    counts_array = np.asarray(counts, dtype=np.int64)
    available = int(counts_array.sum())
    if total > available:
        raise ValueError(f"Cannot draw {total} items from {available}.")
    if available == 0:
        return np.zeros_like(counts_array)
    exact = counts_array * (total / available)
    quotas = np.floor(exact).astype(np.int64)
    remainder = total - int(quotas.sum())
    if remainder > 0:
        # Stable sort on the negated fractions gives ties to the earlier stratum.
        order = np.argsort(-(exact - quotas), kind="stable")
        quotas[order[:remainder]] += 1
    return np.minimum(quotas, counts_array)


def _strata_groups(strata: Sequence[Hashable]) -> tuple[list[Hashable], list[np.ndarray]]:
    """Return the distinct strata in first-seen order and the indices of each."""
    positions: dict[Hashable, list[int]] = {}
    for index, stratum in enumerate(strata):
        positions.setdefault(stratum, []).append(index)
    keys = list(positions)
    return keys, [np.asarray(positions[key], dtype=np.int64) for key in keys]


def stratified_sample(
    strata: Sequence[Hashable], size: int, rng: np.random.Generator
) -> np.ndarray:
    """Draw ``size`` indices without replacement, keeping the share of each stratum.

    Returns:
        Sorted indices into ``strata``.
    """
    if size < 0:
        raise ValueError(f"Invalid sample size {size}; expected a non-negative number.")
    if size >= len(strata):
        return np.arange(len(strata), dtype=np.int64)
    _, members = _strata_groups(strata)
    quotas = allocate([len(m) for m in members], size)
    chosen = [rng.choice(m, size=q, replace=False) for m, q in zip(members, quotas) if q > 0]
    if not chosen:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(chosen))


def stratified_holdout(
    strata: Sequence[Hashable], fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (remaining, holdout) with ``fraction`` held out per stratum.

    The holdout size is ``round(fraction * len(strata))``, shared among strata by
    :func:`allocate`.
    """
    check_fraction(fraction)
    holdout = stratified_sample(strata, int(round(fraction * len(strata))), rng)
    remaining = np.setdiff1d(np.arange(len(strata), dtype=np.int64), holdout)
    return remaining, holdout


def group_holdout(
    groups: Sequence[Hashable], fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (remaining, holdout) so that no group is on both sides.

    Groups are visited in a seeded random order. A group joins the holdout when
    that brings the holdout size closer to ``fraction * len(groups)``. At least one
    group stays in the remaining indices.
    """
    check_fraction(fraction)
    keys, members = _strata_groups(groups)
    target = fraction * len(groups)
    if fraction == 0.0 or len(keys) < 2:
        if fraction > 0.0:
            logger.warning(
                "Only one group (%s) in the training data, so the validation split is empty.",
                keys[0] if keys else "none",
            )
        return np.arange(len(groups), dtype=np.int64), np.zeros(0, dtype=np.int64)

    held_groups: list[int] = []
    held_count = 0
    for group_index in rng.permutation(len(keys)):
        size = len(members[group_index])
        if abs(held_count + size - target) < abs(held_count - target):
            held_groups.append(int(group_index))
            held_count += size
    if len(held_groups) == len(keys):
        held_groups.pop()
    if not held_groups:
        # Every group is larger than the target, so hold out the smallest one.
        held_groups = [int(np.argmin([len(m) for m in members]))]
        logger.warning(
            "Every group is larger than the validation target (%.1f images); "
            "holding out the smallest group.",
            target,
        )

    holdout = np.sort(np.concatenate([members[g] for g in held_groups]))
    remaining = np.setdiff1d(np.arange(len(groups), dtype=np.int64), holdout)
    return remaining, holdout


def find_overlap(splits: dict[str, Sequence[Hashable]]) -> dict[tuple[str, str], set]:
    """Return the image identifiers shared by each pair of splits (empty when disjoint)."""
    names = list(splits)
    sets = {name: set(splits[name]) for name in names}
    overlap: dict[tuple[str, str], set] = {}
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            shared = sets[first] & sets[second]
            if shared:
                overlap[(first, second)] = shared
    return overlap


def label_counts(labels: Sequence[int]) -> dict[str, int]:
    """Count labels by name: ``normal`` (0), ``abnormal`` (1) and ``unknown`` (-1)."""
    names = {0: "normal", 1: "abnormal", -1: "unknown"}
    values, counts = np.unique(np.asarray(labels, dtype=np.int64), return_counts=True)
    return {names[int(v)]: int(c) for v, c in zip(values, counts)}
