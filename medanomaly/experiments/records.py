"""Run records (one JSON file per run) and their aggregation into table rows."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medanomaly import reporting
from medanomaly.experiments.profiles import RunSpec
from medanomaly.experiments.published import (
    PUBLISHED_AUROC,
    PUBLISHED_CLASS_ORDER,
    sort_classes,
    sort_models,
)

logger = logging.getLogger(__name__)

RECORD_SCHEMA_VERSION = 1
RECORD_SUFFIX = ".json"


def record_path(records_dir: str | Path, spec: RunSpec) -> Path:
    """Return the JSON record file of ``spec`` inside ``records_dir``."""
    return Path(records_dir) / f"{spec.key}{RECORD_SUFFIX}"


def write_record(path: str | Path, record: Mapping[str, Any]) -> Path:
    """Write a run record as JSON to a temporary file, then rename it into place."""
    return reporting.write_text(path, json.dumps(record, indent=2, sort_keys=False) + "\n")


def load_records(records_dir: str | Path) -> list[dict[str, Any]]:
    """Read every run record in ``records_dir``, skipping unreadable files with a warning."""
    records = []
    folder = Path(records_dir)
    if not folder.is_dir():
        return records
    for path in sorted(folder.glob(f"*{RECORD_SUFFIX}")):
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            logger.warning("Skipping unreadable run record %s: %s", path, err)
            continue
        if record.get("schema_version") != RECORD_SCHEMA_VERSION:
            logger.warning(
                "Skipping %s: schema_version %r, expected %d.",
                path,
                record.get("schema_version"),
                RECORD_SCHEMA_VERSION,
            )
            continue
        records.append(record)
    return records


@dataclass
class TableRow:
    """AUROC of one model on one abnormal class (or the mean over classes) in one profile.

    ``*_std`` is the sample standard deviation over seeds (ddof 1), NaN with
    one seed. In a mean row it is taken over the per-seed class means of the
    seeds that ran every class of the row.
    """

    profile: str
    model: str
    abnormal_class: str  # a CIFAR-10 class name, or "mean"
    seeds: list[int]
    published: float | None
    honest_mean: float
    honest_std: float
    paper_mean: float
    paper_std: float
    # Eval-mode AUROC at the epoch the paper protocol chose (mean over seeds).
    paper_epoch_eval_mean: float
    honest_epochs: list[int] = field(default_factory=list)
    paper_epochs: list[int] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)

    @property
    def gap(self) -> float:
        """Paper minus honest AUROC."""
        return self.paper_mean - self.honest_mean

    @property
    def batchnorm_effect(self) -> float:
        """Paper AUROC minus the eval-mode AUROC of the same (test-selected) epoch."""
        return self.paper_mean - self.paper_epoch_eval_mean

    @property
    def selection_effect(self) -> float:
        """Eval-mode AUROC of the test-selected epoch minus that of the validation-selected one."""
        return self.paper_epoch_eval_mean - self.honest_mean


def _std(values: Sequence[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


def _class_row(profile: str, model: str, name: str, records: list[dict]) -> TableRow:
    records = sorted(records, key=lambda record: record["seed"])
    honest = [record["honest"]["auroc"] for record in records]
    paper = [record["paper"]["auroc"] for record in records]
    paper_eval = [record["paper"]["eval_auroc_at_best_epoch"] for record in records]
    return TableRow(
        profile=profile,
        model=model,
        abnormal_class=name,
        seeds=[record["seed"] for record in records],
        published=PUBLISHED_AUROC.get(model, {}).get(name),
        honest_mean=float(np.mean(honest)),
        honest_std=_std(honest),
        paper_mean=float(np.mean(paper)),
        paper_std=_std(paper),
        paper_epoch_eval_mean=float(np.mean(paper_eval)),
        honest_epochs=[record["honest"]["best_epoch"] for record in records],
        paper_epochs=[record["paper"]["best_epoch"] for record in records],
        classes=[name],
    )


def _mean_row(profile: str, model: str, rows: list[TableRow], records: list[dict]) -> TableRow:
    """Average the class rows; the spread comes from seeds that ran every class."""
    classes = [row.abnormal_class for row in rows]
    published = [row.published for row in rows]
    by_seed: dict[int, dict[str, dict]] = {}
    for record in records:
        by_seed.setdefault(record["seed"], {})[record["abnormal_class"]] = record
    complete = [seed for seed, runs in sorted(by_seed.items()) if set(runs) >= set(classes)]
    honest_per_seed = [np.mean([by_seed[s][c]["honest"]["auroc"] for c in classes]) for s in complete]
    paper_per_seed = [np.mean([by_seed[s][c]["paper"]["auroc"] for c in classes]) for s in complete]
    return TableRow(
        profile=profile,
        model=model,
        abnormal_class="mean",
        seeds=sorted(by_seed),
        published=None if None in published else float(np.mean(published)),
        honest_mean=float(np.mean([row.honest_mean for row in rows])),
        honest_std=_std(honest_per_seed),
        paper_mean=float(np.mean([row.paper_mean for row in rows])),
        paper_std=_std(paper_per_seed),
        paper_epoch_eval_mean=float(np.mean([row.paper_epoch_eval_mean for row in rows])),
        classes=classes,
    )


def _latest_per_key(records: Iterable[dict]) -> dict[tuple, dict]:
    chosen: dict[tuple, dict] = {}
    for record in records:
        key = (record["profile"], record["model"], record["abnormal_class"], record["seed"])
        if key in chosen:
            logger.warning("Two records for %s; keeping the later one.", key)
            if record.get("finished_at", "") < chosen[key].get("finished_at", ""):
                continue
        chosen[key] = record
    return chosen


def aggregate(records: Iterable[Mapping[str, Any]]) -> list[TableRow]:
    """Group records by profile, model and abnormal class; add a mean row per model.

    Rows come in profile order, then Table 1's model and class order, each
    model's mean row last.
    """
    chosen = _latest_per_key(records)
    grouped: dict[tuple[str, str], dict[str, list[dict]]] = {}
    for (profile, model, name, _), record in chosen.items():
        grouped.setdefault((profile, model), {}).setdefault(name, []).append(record)

    rows = []
    for profile in sorted({profile for profile, _ in grouped}):
        for model in sort_models(model for p, model in grouped if p == profile):
            by_class = grouped[(profile, model)]
            class_rows = [
                _class_row(profile, model, name, by_class[name]) for name in sort_classes(by_class)
            ]
            all_records = [record for name in by_class for record in by_class[name]]
            rows.extend(class_rows)
            rows.append(_mean_row(profile, model, class_rows, all_records))
    return rows


def _ordered_records(records: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    records = list(records)
    model_rank = {name: rank for rank, name in enumerate(sort_models(r["model"] for r in records))}
    return sorted(
        records,
        key=lambda r: (
            model_rank[r["model"]],
            PUBLISHED_CLASS_ORDER.index(r["abnormal_class"]),
            r["seed"],
        ),
    )
