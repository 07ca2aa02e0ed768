"""One sweep run: training, both evaluations, its JSON record and its MLflow run."""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

import medanomaly
from medanomaly import reporting, tracking
from medanomaly.config import Config
from medanomaly.data import build_splits
from medanomaly.engine import (
    LAST_CHECKPOINT,
    Trainer,
    build_model,
    compute_metrics,
    make_eval_loader,
    make_train_loader,
    score_loader,
)
from medanomaly.engine.device import processor_name
from medanomaly.experiments.figures import plot_run_curves
from medanomaly.experiments.profiles import RunSpec
from medanomaly.experiments.protocol import PAPER_BATCH_SIZE, PROTOCOLS, PaperProtocolCallback
from medanomaly.experiments.records import RECORD_SCHEMA_VERSION, record_path, write_record

logger = logging.getLogger(__name__)

CURVE_FILE = "paper_protocol_curve.json"
MLFLOW_RUN_FILE = "mlflow_run.json"


@functools.lru_cache(maxsize=8)
def _source_digest(path: str) -> str | None:
    source = Path(path)
    return tracking.file_sha256(source) if source.is_file() else None


def _previous_mlflow_run(run_dir: Path, tracking_uri: str) -> str | None:
    """Return the MLflow run id that an interrupted run recorded, when it is in this store."""
    import mlflow
    from mlflow.exceptions import MlflowException

    path = run_dir / MLFLOW_RUN_FILE
    if not path.is_file():
        return None
    stored = json.loads(path.read_text())
    if stored.get("tracking_uri") != tracking_uri:
        return None
    try:
        mlflow.MlflowClient(tracking_uri).get_run(stored["run_id"])
    except MlflowException:
        return None
    return stored["run_id"]


def _clear_run_state(run_dir: Path) -> None:
    """Delete the files that would make a run resume instead of starting again."""
    for name in (LAST_CHECKPOINT, CURVE_FILE, MLFLOW_RUN_FILE):
        path = run_dir / name
        if path.is_file():
            path.unlink()
            logger.info("Removed %s to train again from scratch", path)


def _run_tags(spec: RunSpec) -> dict[str, str]:
    prefix = tracking.TAG_PREFIX
    return {
        f"{prefix}pipeline": "cifar10_table1",
        f"{prefix}profile": spec.profile,
        f"{prefix}abnormal_class": spec.abnormal_class,
        f"{prefix}seed": str(spec.seed),
        # medanomaly.protocol (set by tracking.run_tags) names the data split rule.
        f"{prefix}evaluation_protocols": ",".join(PROTOCOLS),
    }


def run_one(
    spec: RunSpec, config: Config, records_dir: str | Path, restart: bool = False
) -> dict[str, Any]:
    """Train one model on one abnormal class, evaluate both protocols and write the record.

    The run is an MLflow run in ``config.tracking.experiment``. Checkpoints go
    to ``config.train.output_dir / spec.key``. When that folder contains
    ``last.pt``, training resumes after its last epoch, in the same MLflow run
    when the store still has it, unless ``restart`` is set.

    Args:
        spec: the run.
        config: its config, from :func:`build_run_config`.
        records_dir: folder of the JSON records.
        restart: delete the run folder's ``last.pt``, per-epoch test curve and
            MLflow run id first, so training starts from scratch in a new
            MLflow run. ``best.pt`` is overwritten by the new run's first epoch.

    Returns:
        The record, also written to :func:`record_path`.
    """
    started = time.perf_counter()
    load_at_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    run_dir = Path(config.train.output_dir) / spec.key
    if restart:
        _clear_run_state(run_dir)
    resume = (run_dir / LAST_CHECKPOINT).is_file()
    tracking_uri = tracking.use_tracking_store(config.tracking.tracking_uri)
    previous = _previous_mlflow_run(run_dir, tracking_uri) if resume else None
    if resume:
        logger.info("Resuming %s from %s", spec.key, run_dir / LAST_CHECKPOINT)

    with tracking.start_run(config, "train", tags=_run_tags(spec), run_id=previous) as active:
        run_id = active.info.run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        reporting.write_text(
            run_dir / MLFLOW_RUN_FILE,
            json.dumps({"run_id": run_id, "tracking_uri": tracking_uri}, indent=2),
        )
        tracking.log_config(config)
        outcome = _train_and_evaluate(config, run_dir, resume)
        record = _make_record(spec, config, outcome, run_id, started, load_at_start)
        _log_outcome(record, outcome, run_dir)
        if config.tracking.log_model:
            tracking.log_scorer(
                outcome.fit.scorer, config.model.in_channels, config.model.image_size
            )
        path = write_record(record_path(records_dir, spec), record)
        tracking.log_files([path], "table1")
    logger.info(
        "%s: honest AUROC %.4f (epoch %d), paper protocol AUROC %.4f (epoch %d), %.1f min",
        spec.key,
        record["honest"]["auroc"],
        record["honest"]["best_epoch"],
        record["paper"]["auroc"],
        record["paper"]["best_epoch"],
        record["timing"]["total_seconds"] / 60.0,
    )
    return record


@dataclass
class _Outcome:
    """Results of training and of both evaluations, for the record and MLflow."""

    splits: Any
    fit: Any
    paper: PaperProtocolCallback
    honest_scores: Any
    honest_metrics: dict[str, float]
    selection_metric: str
    train_seconds: float


def _train_and_evaluate(config: Config, run_dir: Path, resume: bool) -> _Outcome:
    """Build the splits, train with the paper-protocol callback, then score the test set once."""
    model_config, train = config.model, config.train
    splits = build_splits(config.data, model_config.image_size, model_config.in_channels)
    if splits.test is None or len(splits.test) == 0:
        raise ValueError(f"{config.data.path}: the CIFAR-10 split has no test images.")
    model = build_model(config)
    # NOTE: the CIFAR-10 Python release interleaves classes in its test batch. An
    # image tree is sorted by class and its original order is unknown, so a seeded
    # shuffle within each label replaces it. Batch-norm-train scores depend on it.
    paper = PaperProtocolCallback(
        splits.test,
        shuffle_within=splits.info.get("layout") != "python",
        seed=config.data.seed,
        curve_path=run_dir / CURVE_FILE,
        resume=resume,
    )
    trainer = Trainer(config, callbacks=[tracking.EpochLogger(), paper])
    train_loader = make_train_loader(splits.train, train.batch_size, train.seed, config.data.num_workers)
    val_loader = make_eval_loader(splits.val, train.batch_size, config.data.num_workers)

    fit_started = time.perf_counter()
    fit = trainer.fit(model, train_loader, val_loader, run_dir=run_dir, resume=resume)
    train_seconds = time.perf_counter() - fit_started

    # Honest protocol: the validation-selected scorer meets the test set once.
    test_loader = make_eval_loader(splits.test, train.batch_size, config.data.num_workers)
    honest_scores = score_loader(fit.scorer, test_loader, description="honest test")
    honest_metrics = compute_metrics(honest_scores.scores, honest_scores.labels, fit.scorer.threshold)
    return _Outcome(
        splits=splits,
        fit=fit,
        paper=paper,
        honest_scores=honest_scores,
        honest_metrics=honest_metrics,
        selection_metric=trainer.selection_metric,
        train_seconds=train_seconds,
    )


def _epoch_rows(history: Sequence[Mapping[str, Any]], curve: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Join the trainer's history and the callback's curve on the epoch number."""
    scored = {int(item["epoch"]): item for item in curve}
    keys = ("loss_g", "loss_d", "val_rec_error", "val_score_mean", "epoch_seconds")
    rows = []
    for entry in history:
        epoch = int(entry["epoch"])
        row = {"epoch": epoch, **{key: float(entry[key]) for key in keys if key in entry}}
        item = scored.get(epoch)
        row["paper_auroc"] = float(item["paper_auroc"]) if item else math.nan
        row["eval_auroc"] = float(item["eval_auroc"]) if item else math.nan
        row["test_scoring_seconds"] = float(item["seconds"]) if item else math.nan
        rows.append(row)
    missing = [row["epoch"] for row in rows if math.isnan(row["paper_auroc"])]
    if missing:
        # NOTE: an interruption between last.pt and the callback loses that epoch's test scores.
        logger.warning("No paper-protocol test scores for epoch(s) %s; they show as NaN.", missing)
    return rows


def _public_config(config: Config) -> dict[str, Any]:
    """Return the config dict with the data path reduced to its file or folder name."""
    values = config.to_dict()
    values["data"]["path"] = Path(str(config.data.path)).name
    return values


def _make_record(
    spec: RunSpec,
    config: Config,
    outcome: _Outcome,
    run_id: str,
    started: float,
    load_at_start: float | None,
) -> dict[str, Any]:
    """Assemble the JSON record of one run.

    ``honest`` contains the test metrics of the validation-selected epoch,
    ``paper`` the best paper-protocol AUROC and its epoch, and ``epochs`` one
    row per epoch with losses, validation figures and both test AUROCs.
    ``timing.train_seconds`` is the wall time of ``Trainer.fit``, which
    includes validation and the per-epoch test scoring. Undefined values are
    written as ``NaN``, which Python's json module reads back.
    """
    counts = outcome.splits.info.get("counts", {})
    epochs = _epoch_rows(outcome.fit.history, outcome.paper.curve)
    paper_best = outcome.paper.best()
    honest = {
        key: int(value) if isinstance(value, int) else float(value)
        for key, value in outcome.honest_metrics.items()
        if isinstance(value, (int, float))
    }
    honest.update(best_epoch=int(outcome.fit.best_epoch), selection_metric=outcome.selection_metric)
    epoch_seconds = [row["epoch_seconds"] for row in epochs if "epoch_seconds" in row]
    return {
        "schema_version": RECORD_SCHEMA_VERSION,
        "model": spec.model,
        "abnormal_class": spec.abnormal_class,
        "seed": spec.seed,
        "profile": spec.profile,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data": {
            "source": Path(str(config.data.path)).name,
            "sha256": _source_digest(str(config.data.path)),
            "layout": outcome.splits.info.get("layout"),
            "train_images": len(outcome.splits.train),
            "val_images": len(outcome.splits.val),
            "test_normal": int(counts.get("test", {}).get("normal", 0)),
            "test_abnormal": int(counts.get("test", {}).get("abnormal", 0)),
        },
        "settings": {
            "epochs": config.train.epochs,
            "batch_size": config.train.batch_size,
            "limit": config.data.limit,
            "test_limit": config.data.test_limit,
            "val_fraction": config.data.val_fraction,
            "paper_batch_size": PAPER_BATCH_SIZE,
        },
        "honest": honest,
        "paper": {
            "auroc": float(paper_best["paper_auroc"]),
            "best_epoch": int(paper_best["epoch"]),
            "eval_auroc_at_best_epoch": float(paper_best["eval_auroc"]),
        },
        "epochs": epochs,
        "timing": {
            "total_seconds": time.perf_counter() - started,
            "train_seconds": outcome.train_seconds,
            "epoch_seconds_mean": float(np.mean(epoch_seconds)) if epoch_seconds else None,
        },
        "environment": {
            "device": str(outcome.fit.scorer.device),
            "processor": processor_name(outcome.fit.scorer.device),
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "load_average_at_start": load_at_start,
            "medanomaly_version": medanomaly.__version__,
            "torch_version": torch.__version__,
        },
        "mlflow": {"experiment": config.tracking.experiment, "run_id": run_id},
        "run_folder": outcome.fit.run_dir.name,
        "config": _public_config(config),
    }


def _log_outcome(record: Mapping[str, Any], outcome: _Outcome, run_dir: Path) -> None:
    """Log the final figures and plots of both protocols to the active MLflow run."""
    honest = record["honest"]
    tracking.log_metrics(outcome.honest_metrics, prefix="honest_")
    tracking.log_metrics(
        {
            "honest_best_epoch": honest["best_epoch"],
            "paper_auroc": record["paper"]["auroc"],
            "paper_best_epoch": record["paper"]["best_epoch"],
            "paper_eval_auroc_at_best_epoch": record["paper"]["eval_auroc_at_best_epoch"],
            "paper_minus_honest_auroc": record["paper"]["auroc"] - honest["auroc"],
        }
    )
    scores = outcome.honest_scores
    figures = [
        plot_run_curves(record, run_dir / "test_auroc_per_epoch.png"),
        reporting.plot_roc_curve(
            scores.labels, scores.scores, run_dir / "honest_roc.png", outcome.fit.scorer.threshold
        ),
        reporting.plot_score_histogram(
            scores.scores, run_dir / "honest_scores.png", scores.labels, outcome.fit.scorer.threshold
        ),
    ]
    tracking.log_files(figures, "table1")
    tracking.log_files([run_dir / "history.json"])
