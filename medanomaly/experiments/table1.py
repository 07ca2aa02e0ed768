"""CIFAR-10 Table 1 of Skip-GANomaly++: runs, protocols, run records and the results page.

Park et al., "Skip-GANomaly++: Skip Connections and Residual Blocks for
Anomaly Detection" (AAAI-24 student abstract), Table 1, reports the AUROC of
five models on the ten CIFAR-10 leave-one-class-out tasks. This module trains
one model on one abnormal class with one seed (:func:`run_one`), evaluates the
result under two protocols, stores a JSON record per run, and rebuilds the
table from every record (:func:`write_report`).

Protocols, always reported in separate columns:

``honest``
    The trainer selects the epoch on held-out normal images (lowest validation
    reconstruction error). The selected scorer scores the test set once, after
    training, with every network in eval mode, so a score depends only on its
    own image.
``paper``
    The evaluation of the authors' public code: the test set unshuffled with
    every normal image first, scored in batches of 64 with batch norm in
    training mode, test AUROC after every epoch, and the best epoch reported.
    Batch statistics then carry information about the batch's labels, and the
    epoch is chosen on the test labels.

Each epoch also records the eval-mode test AUROC of the same weights, for the
per-epoch curves on the results page only. It never selects anything.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torch.utils.data import Dataset, Subset

import medanomaly
from medanomaly import reporting, tracking
from medanomaly.config import Config, apply_overrides, config_from_dict, load_config
from medanomaly.data import CIFAR10_CLASSES, build_splits
from medanomaly.data.cifar10 import resolve_class
from medanomaly.engine import (
    LAST_CHECKPOINT,
    Trainer,
    compute_metrics,
    make_eval_loader,
    make_train_loader,
    score_loader,
)
from medanomaly.networks import create_model

logger = logging.getLogger(__name__)

# ----------------------------------------------------------------------
# Published numbers
# ----------------------------------------------------------------------

PUBLISHED_SOURCE = "Park et al., Skip-GANomaly++ (AAAI-24 student abstract), Table 1"
# Column order of Table 1; the abstract writes "car" for automobile.
PUBLISHED_CLASS_ORDER = (
    "bird",
    "automobile",
    "truck",
    "ship",
    "cat",
    "deer",
    "frog",
    "horse",
    "airplane",
    "dog",
)
PUBLISHED_CLASS_NAMES = {"automobile": "car"}
MODEL_ORDER = ("skipganomaly_pp", "skip_ganomaly", "ganomaly")
MODEL_LABELS = {
    "skipganomaly_pp": "Skip-GANomaly++",
    "skip_ganomaly": "Skip-GANomaly",
    "ganomaly": "GANomaly",
}


def _published_row(values: Sequence[float]) -> dict[str, float]:
    return dict(zip(PUBLISHED_CLASS_ORDER, values))


# AUROC per abnormal class, in PUBLISHED_CLASS_ORDER. Table 1 also lists EGBAD
# and AnoGAN, which medanomaly does not implement.
PUBLISHED_AUROC = {
    "ganomaly": _published_row((0.510, 0.631, 0.617, 0.616, 0.587, 0.593, 0.683, 0.605, 0.633, 0.628)),
    "skip_ganomaly": _published_row(
        (0.448, 0.953, 0.907, 0.659, 0.607, 0.602, 0.931, 0.788, 0.797, 0.615)
    ),
    "skipganomaly_pp": _published_row(
        (0.819, 0.891, 0.892, 0.998, 0.907, 0.998, 0.999, 0.832, 0.984, 0.818)
    ),
}

# Test AUROC per epoch (1-5) of Skip-GANomaly++ measured by this project on the
# authors' public code: 4,500 training images, 3,000 test images, 2 CPU cores,
# 2026-12-04. "bn_train" is their evaluation, "eval" the same weights in eval mode.
AUTHORS_CODE_REFERENCE = {
    "ship": {
        "bn_train": (0.047, 0.807, 0.861, 0.849, 0.845),
        "eval": (0.448, 0.352, 0.295, 0.541, 0.308),
    },
    "bird": {
        "bn_train": (0.731, 0.408, 0.275, 0.373, 0.344),
        "eval": (0.564, 0.524, 0.592, 0.518, 0.508),
    },
}

PROTOCOLS = ("honest", "paper")
PAPER_BATCH_SIZE = 64
RECORD_SCHEMA_VERSION = 1
RECORD_SUFFIX = ".json"
CURVE_FILE = "paper_protocol_curve.json"
MLFLOW_RUN_FILE = "mlflow_run.json"
DEFAULT_EXPERIMENT = "cifar10-table1"


def canonical_class(name: str) -> str:
    """Return the CIFAR-10 class name for a name, alias ("car", "plane") or index."""
    return CIFAR10_CLASSES[resolve_class(name)]


def published_class_name(name: str) -> str:
    """Return the column name that Table 1 uses for a CIFAR-10 class."""
    return PUBLISHED_CLASS_NAMES.get(name, name)


def sort_classes(classes: Iterable[str]) -> list[str]:
    """Sort canonical class names in the column order of Table 1."""
    return sorted(set(classes), key=PUBLISHED_CLASS_ORDER.index)


def sort_models(models: Iterable[str]) -> list[str]:
    """Sort model names as the rows of Table 1 (proposed model first), unknown names last."""
    order = {name: position for position, name in enumerate(MODEL_ORDER)}
    return sorted(set(models), key=lambda name: (order.get(name, len(order)), name))


# ----------------------------------------------------------------------
# Profiles and run configs
# ----------------------------------------------------------------------


def load_profile(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read a profile YAML: a partial config whose sections override the model's config.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: invalid YAML, a section that is not a mapping, or an
            unknown section or key (the message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Profile file not found: {path}. Check --profile or --profile-file.")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: invalid YAML: {err}") from err
    # Building a full config from the partial one checks every section and key.
    config_from_dict(values, source=str(path))
    return {section: dict(keys or {}) for section, keys in values.items()}


@dataclass(frozen=True)
class RunSpec:
    """One cell of the sweep: a model trained on one abnormal class with one seed.

    Attributes:
        model: model name from ``medanomaly.networks.MODEL_NAMES``.
        abnormal_class: canonical CIFAR-10 class name, e.g. ``automobile``.
        seed: seed of the data subsets, the validation split and training.
        profile: profile label, e.g. ``cpu`` or ``full``.
    """

    model: str
    abnormal_class: str
    seed: int
    profile: str

    @property
    def key(self) -> str:
        """Identifier used for the record file, the run folder and the MLflow run name."""
        return f"{self.profile}__{self.model}__{self.abnormal_class}__seed{self.seed}"


def build_run_config(
    spec: RunSpec,
    profile: Mapping[str, Mapping[str, Any]],
    cifar10_path: str | Path,
    runs_dir: str | Path,
    experiment: str = DEFAULT_EXPERIMENT,
    base: Config | str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the config of one run.

    Precedence, lowest first: ``base`` (the model's YAML, or the defaults),
    the profile's sections, the run's own settings (model, abnormal class,
    data path, seeds, run folder, experiment), then ``overrides``.

    Args:
        spec: the run.
        profile: sections from :func:`load_profile`.
        cifar10_path: CIFAR-10 source (archive or folder).
        runs_dir: parent folder of the run's checkpoint folder.
        experiment: MLflow experiment name.
        base: a config or a YAML path; None uses the dataclass defaults.
        overrides: ``{"section.key": value}`` applied last; None values are skipped.
    """
    if base is None or isinstance(base, Config):
        base_config = base or Config()
    else:
        base_config = load_config(base)
    values = base_config.to_dict()
    for section, keys in profile.items():
        values.setdefault(section, {}).update(keys)
    values["model"]["name"] = spec.model
    values["data"].update(
        source="cifar10",
        path=str(cifar10_path),
        abnormal_class=spec.abnormal_class,
        protocol="leave_one_out",
        seed=spec.seed,
    )
    values["train"].update(seed=spec.seed, output_dir=str(runs_dir))
    values["tracking"].update(experiment=experiment, run_name=spec.key)
    config = config_from_dict(values, source=f"profile {spec.profile}")
    return apply_overrides(config, dict(overrides or {}))


# ----------------------------------------------------------------------
# Paper protocol
# ----------------------------------------------------------------------


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


# ----------------------------------------------------------------------
# One run
# ----------------------------------------------------------------------


def record_path(records_dir: str | Path, spec: RunSpec) -> Path:
    """Return the JSON record file of ``spec`` inside ``records_dir``."""
    return Path(records_dir) / f"{spec.key}{RECORD_SUFFIX}"


def write_record(path: str | Path, record: Mapping[str, Any]) -> Path:
    """Write a run record as JSON to a temporary file, then rename it into place."""
    return reporting.write_text(path, json.dumps(record, indent=2, sort_keys=False) + "\n")


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
    model = create_model(
        model_config.name,
        in_channels=model_config.in_channels,
        image_size=model_config.image_size,
        generator=model_config.generator,
        discriminator=model_config.discriminator,
    )
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


# ----------------------------------------------------------------------
# Records and aggregation
# ----------------------------------------------------------------------


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


# ----------------------------------------------------------------------
# Results page: CSV, Markdown and figures
# ----------------------------------------------------------------------

CSV_HEADER = (
    "profile",
    "model",
    "abnormal_class",
    "n_seeds",
    "seeds",
    "published_auroc",
    "honest_auroc_mean",
    "honest_auroc_std",
    "paper_auroc_mean",
    "paper_auroc_std",
    "paper_minus_honest",
    "paper_epoch_eval_auroc_mean",
    "honest_epochs",
    "paper_epochs",
)


def _csv_number(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.4f}"


def write_table_csv(rows: Sequence[TableRow], path: str | Path) -> Path:
    """Write one line per table row; blank cells are undefined (no published value, one seed)."""
    lines = [
        (
            row.profile,
            row.model,
            row.abnormal_class,
            len(row.seeds),
            ";".join(str(seed) for seed in row.seeds),
            _csv_number(row.published),
            _csv_number(row.honest_mean),
            _csv_number(row.honest_std),
            _csv_number(row.paper_mean),
            _csv_number(row.paper_std),
            _csv_number(row.gap),
            _csv_number(row.paper_epoch_eval_mean),
            ";".join(str(epoch) for epoch in row.honest_epochs),
            ";".join(str(epoch) for epoch in row.paper_epochs),
        )
        for row in rows
    ]
    return reporting.write_csv(path, CSV_HEADER, lines)


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}" + ("" if number == 1 else "s")


def _cell(mean: float, std: float) -> str:
    if math.isnan(std):
        return f"{mean:.3f}"
    return f"{mean:.3f} ± {std:.3f}"


def _class_label(row: TableRow) -> str:
    if row.abnormal_class == "mean":
        return f"**mean of {len(row.classes)}**"
    name = row.abnormal_class
    alias = published_class_name(name)
    return f"{name} ({alias})" if alias != name else name


def data_sizes(record: Mapping[str, Any]) -> list[int]:
    """Return (training, validation, test normal, test abnormal) image counts of a record."""
    data = record["data"]
    return [data["train_images"], data["val_images"], data["test_normal"], data["test_abnormal"]]


def _describe_profile(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Describe the data, training and hardware behind one profile's records."""
    first = records[0]
    data, settings = first["data"], first["settings"]
    limit = settings["limit"]
    pool = "all 45,000" if limit is None else f"a seeded stratified subset of {limit:,} of the 45,000"

    lines = [
        f"- Training: {data['train_images']:,} normal images ({pool} normal training images, "
        f"minus {data['val_images']:,} held out for validation), {_count(settings['epochs'], 'epoch')}, "
        f"batch {settings['batch_size']}.",
        f"- Test: {data['test_normal']:,} normal and {data['test_abnormal']:,} abnormal images"
        + (
            " (all 15,000)."
            if settings["test_limit"] is None
            else " (seeded stratified subset of the 15,000)."
        ),
        f"- Data: `{data['source']}` ({data['layout']} layout). JPEG re-encodings differ slightly "
        "from the original pixels, so small differences from published numbers are expected "
        "on that account alone.",
    ]

    sizes = {
        json.dumps([record["settings"], data_sizes(record)], sort_keys=True) for record in records
    }
    if len(sizes) > 1:
        lines.append("- WARNING: the records of this profile differ in their settings; see the CSV.")

    minutes = [record["timing"]["total_seconds"] / 60.0 for record in records]
    devices = sorted({record["environment"]["device"] for record in records})
    threads = sorted({record["environment"]["torch_threads"] for record in records})
    loads = [
        record["environment"]["load_average_at_start"]
        for record in records
        if record["environment"].get("load_average_at_start") is not None
    ]
    hardware = f"- Hardware: {', '.join(devices)}, torch threads {', '.join(map(str, threads))}"
    if loads:
        hardware += f", load average at start {min(loads):.1f} to {max(loads):.1f}"
    lines.append(
        hardware + f"; {min(minutes):.1f} to {max(minutes):.1f} min per run, both protocols included."
    )
    return lines


def _results_table(rows: Sequence[TableRow]) -> list[str]:
    lines = [
        "| model | abnormal class | published (Table 1) | ours, honest | ours, paper protocol "
        "| paper − honest | seeds |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        published = "n/a" if row.published is None else f"{row.published:.3f}"
        lines.append(
            f"| {MODEL_LABELS.get(row.model, row.model)} | {_class_label(row)} | {published} "
            f"| {_cell(row.honest_mean, row.honest_std)} | {_cell(row.paper_mean, row.paper_std)} "
            f"| {row.gap:+.3f} | {', '.join(str(seed) for seed in row.seeds)} |"
        )
    return lines


def _gap_lines(rows: Sequence[TableRow], epochs: int) -> list[str]:
    """State, per class, how far the paper protocol's figure is from the honest one, and why."""
    class_rows = [row for row in rows if row.abnormal_class != "mean"]
    lines = [
        "| model | abnormal class | paper − honest | batch-norm effect | test-selection effect "
        "| epoch chosen: honest / paper |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for row in class_rows:
        chosen = (
            f"{', '.join(map(str, row.honest_epochs))} / {', '.join(map(str, row.paper_epochs))}"
        )
        lines.append(
            f"| {MODEL_LABELS.get(row.model, row.model)} | {row.abnormal_class} | {row.gap:+.3f} "
            f"| {row.batchnorm_effect:+.3f} | {row.selection_effect:+.3f} | {chosen} |"
        )
    higher = sum(row.gap > 0 for row in class_rows)
    mean_gap = float(np.mean([row.gap for row in class_rows]))
    largest = max(class_rows, key=lambda row: abs(row.gap))
    lines += [
        "",
        f"In {higher} of {len(class_rows)} (model, class) pairs the paper protocol reports a "
        f"higher AUROC than the honest protocol; the mean difference is {mean_gap:+.3f}. The "
        f"largest difference is {largest.gap:+.3f} ({MODEL_LABELS.get(largest.model, largest.model)}, "
        f"{largest.abnormal_class}).",
        "",
        "The difference splits into two parts. The batch-norm effect is the paper figure minus "
        "the eval-mode AUROC of the same weights: it comes from batch statistics of batches "
        "that hold only normal or only abnormal images. The test-selection effect is the "
        "eval-mode AUROC of the epoch the paper protocol picked minus that of the epoch picked "
        f"on validation normals: it comes from choosing the best of {_count(epochs, 'epoch')} "
        "on the test labels.",
    ]
    return lines


def _curve_table(records: Sequence[Mapping[str, Any]]) -> list[str]:
    epochs = max(len(record["epochs"]) for record in records)
    header = "| model | abnormal class | seed | scoring | " + " | ".join(
        f"epoch {epoch}" for epoch in range(1, epochs + 1)
    )
    lines = [header + " |", "| --- | --- | --- | --- |" + " ---: |" * epochs]
    for record in _ordered_records(records):
        label = MODEL_LABELS.get(record["model"], record["model"])
        for key, name in (("paper_auroc", "batch norm train (paper)"), ("eval_auroc", "eval mode")):
            values = {row["epoch"]: row[key] for row in record["epochs"]}
            cells = []
            for epoch in range(1, epochs + 1):
                value = values.get(epoch, math.nan)
                text = "" if math.isnan(value) else f"{value:.3f}"
                if key == "eval_auroc" and epoch == record["honest"]["best_epoch"]:
                    text = f"**{text}**"
                if key == "paper_auroc" and epoch == record["paper"]["best_epoch"]:
                    text = f"**{text}**"
                cells.append(text)
            lines.append(
                f"| {label} | {record['abnormal_class']} | {record['seed']} | {name} | "
                + " | ".join(cells)
                + " |"
            )
    return lines


def _reference_lines() -> list[str]:
    lines = [
        "Measured by this project on the authors' public Skip-GANomaly++ code "
        "(crinex/SkipGANomalyPP) with 4,500 training images, 3,000 test images and 2 CPU "
        "cores, 2026-12-04. Same weights, two scorings:",
        "",
        "| abnormal class | scoring | epoch 1 | epoch 2 | epoch 3 | epoch 4 | epoch 5 |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, curves in AUTHORS_CODE_REFERENCE.items():
        for key, label in (("bn_train", "batch norm train (their evaluation)"), ("eval", "eval mode")):
            cells = " | ".join(f"{value:.3f}" for value in curves[key])
            lines.append(f"| {name} | {label} | {cells} |")
    lines += [
        "",
        "With ship abnormal, their evaluation gives 0.047 after epoch 1 and 0.861 after epoch 3, "
        "while the same weights in eval mode stay between 0.295 and 0.541. The figure follows "
        "batch statistics, not the model.",
    ]
    return lines


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


def _profile_section(
    profile: str, rows: Sequence[TableRow], records: Sequence[Mapping[str, Any]], files: Mapping[str, str]
) -> list[str]:
    epochs = max(record["settings"]["epochs"] for record in records)
    full = all(r["settings"]["limit"] is None and r["settings"]["test_limit"] is None for r in records)
    scope = (
        "This profile uses the full protocol's data: every training and test image."
        if full
        else "**This is not the full protocol**: it trains on a subset, tests on a subset and "
        "runs fewer epochs, so its numbers are not comparable one to one with Table 1."
    )
    lines = [f"## Profile `{profile}`", "", scope, "", *_describe_profile(records), ""]
    lines += ["### AUROC per abnormal class", "", *_results_table(rows), ""]
    lines += [f"![AUROC per abnormal class, profile {profile}]({files['bars']})", ""]
    lines += ["### Honest versus paper protocol", "", *_gap_lines(rows, epochs), ""]
    lines += [
        "### Test AUROC per epoch",
        "",
        "Bold: the epoch each protocol reports (honest: lowest validation reconstruction "
        "error; paper: highest batch-norm-train test AUROC). The eval-mode row is never used "
        "to choose an epoch.",
        "",
        *_curve_table(records),
        "",
        f"![Test AUROC per epoch, profile {profile}]({files['curves']})",
        "",
    ]
    return lines


def render_markdown(
    rows: Sequence[TableRow],
    records: Sequence[Mapping[str, Any]],
    figure_files: Mapping[str, Mapping[str, str]],
) -> str:
    """Return the results page: per profile the table, the protocol gap and per-epoch curves."""
    lines = [
        "# CIFAR-10 Table 1 reproduction",
        "",
        "Generated by `python pipelines/cifar10_table1.py` from the run records in `runs/`; "
        "rebuild it with `--report-only`. Do not edit by hand.",
        "",
        f"Published numbers: {PUBLISHED_SOURCE}, leave-one-class-out AUROC. The abstract's "
        "\"car\" column is CIFAR-10's automobile class. Table 1's EGBAD and AnoGAN rows are "
        "not reproduced here.",
        "",
        "Two protocols, reported in separate columns:",
        "",
        "- **honest**: the epoch is chosen on held-out normal training images (lowest mean "
        "reconstruction error); the test set is scored once after training, networks in eval "
        "mode, so each score depends on its own image only.",
        "- **paper**: the evaluation of the authors' public code. The test set is unshuffled "
        f"with all normal images first and scored in batches of {PAPER_BATCH_SIZE} with batch "
        "norm in training mode, the test AUROC is computed after every epoch and the best "
        "epoch is reported. Shown for comparison only: batch statistics and test labels "
        "both leak into this figure.",
        "",
        "Mean ± sample standard deviation over seeds where more than one seed ran. A mean "
        "row averages the classes listed above it, and the published mean is over the same "
        "classes.",
        "",
    ]
    for profile in sorted({row.profile for row in rows}):
        profile_rows = [row for row in rows if row.profile == profile]
        profile_records = [record for record in records if record["profile"] == profile]
        lines += _profile_section(profile, profile_rows, profile_records, figure_files[profile])
    lines += ["## Reference: the authors' code under both scorings", "", *_reference_lines(), ""]
    return "\n".join(lines)


def _save_figure(figure: Figure, path: Path) -> Path:
    FigureCanvasAgg(figure)
    with reporting.atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=100, bbox_inches="tight")
    return path


def plot_bar_chart(rows: Sequence[TableRow], path: str | Path) -> Path:
    """Plot published, honest and paper AUROC per class, one panel per model, as PNG."""
    models = sort_models(row.model for row in rows)
    groups = max(sum(row.model == model for row in rows) for model in models)
    figure = Figure(figsize=(max(6.0, 1.1 * groups + 3.0), 2.8 * len(models) + 0.6), layout="constrained")
    series = (
        ("published", "0.6", lambda row: row.published, lambda row: math.nan),
        ("ours, honest", "tab:blue", lambda row: row.honest_mean, lambda row: row.honest_std),
        ("ours, paper protocol", "tab:orange", lambda row: row.paper_mean, lambda row: row.paper_std),
    )
    width = 0.27
    for index, model in enumerate(models):
        axes = figure.add_subplot(len(models), 1, index + 1)
        model_rows = [row for row in rows if row.model == model]
        positions = np.arange(len(model_rows))
        for offset, (name, color, value, spread) in enumerate(series):
            heights = [value(row) if value(row) is not None else math.nan for row in model_rows]
            errors = [0.0 if math.isnan(spread(row)) else spread(row) for row in model_rows]
            axes.bar(
                positions + (offset - 1) * width, heights, width, yerr=errors, label=name, color=color
            )
        axes.axhline(0.5, color="0.3", linestyle=":", linewidth=1)
        axes.set_xticks(positions, [published_class_name(row.abnormal_class) for row in model_rows])
        axes.set_ylim(0.0, 1.05)
        axes.set_ylabel("AUROC")
        axes.set_title(MODEL_LABELS.get(model, model))
    handles, labels = figure.axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside upper center", ncol=3, fontsize=8)
    return _save_figure(figure, Path(path))


def plot_epoch_curves(records: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Plot test AUROC per epoch (batch norm train and eval mode) for every run, as PNG.

    One panel per (model, abnormal class); seeds share a panel.
    """
    records = _ordered_records(records)
    panels: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for record in records:
        panels.setdefault((record["model"], record["abnormal_class"]), []).append(record)
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(4.2 * columns, 3.0 * rows + 0.5), layout="constrained")
    for index, ((model, name), runs) in enumerate(panels.items()):
        axes = figure.add_subplot(rows, columns, index + 1)
        for run in runs:
            _draw_run_curves(axes, run, label_seed=len(runs) > 1)
        axes.set_title(f"{MODEL_LABELS.get(model, model)}, {name}", fontsize=9)
    handles, labels = figure.axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside upper center", ncol=3, fontsize=8)
    return _save_figure(figure, Path(path))


def _draw_run_curves(axes: Any, record: Mapping[str, Any], label_seed: bool = False) -> None:
    epochs = [row["epoch"] for row in record["epochs"]]
    suffix = f" (seed {record['seed']})" if label_seed else ""

    axes.plot(
        epochs,
        [row["paper_auroc"] for row in record["epochs"]],
        "o-",
        color="tab:orange",
        label="batch norm train (paper)" + suffix,
    )
    axes.plot(
        epochs,
        [row["eval_auroc"] for row in record["epochs"]],
        "s--",
        color="tab:blue",
        label="eval mode" + suffix,
    )
    axes.axvline(
        record["honest"]["best_epoch"],
        color="tab:blue",
        linewidth=0.8,
        alpha=0.5,
        label="epoch chosen on validation (honest)" if not suffix else None,
    )

    axes.axhline(0.5, color="0.3", linestyle=":", linewidth=1)
    last = max(epochs, default=1)
    axes.set_xlim(0.5, last + 0.5)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1, steps=[1, 2, 5, 10]))
    axes.set_ylim(0.0, 1.0)
    axes.set_xlabel("epoch")
    axes.set_ylabel("test AUROC")


def plot_run_curves(record: Mapping[str, Any], path: str | Path) -> Path:
    """Plot one run's per-epoch test AUROC; the vertical line marks the honest epoch."""
    figure = Figure(figsize=(5.0, 3.4))
    axes = figure.add_subplot()
    _draw_run_curves(axes, record)
    axes.set_title(f"{MODEL_LABELS.get(record['model'], record['model'])}, {record['abnormal_class']}")
    axes.legend(fontsize=7)
    return _save_figure(figure, Path(path))


def write_report(records_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Rebuild ``table1.md``, ``table1.csv`` and the figures from every record in ``records_dir``.

    Returns:
        The files written.

    Raises:
        ValueError: ``records_dir`` contains no run record.
    """
    records = load_records(records_dir)
    if not records:
        raise ValueError(
            f"No run records in {records_dir}; run the sweep first (without --report-only)."
        )
    records = list(_latest_per_key(records).values())
    rows = aggregate(records)
    out_dir = Path(out_dir)
    written = [write_table_csv(rows, out_dir / "table1.csv")]
    figure_files: dict[str, dict[str, str]] = {}
    for profile in sorted({record["profile"] for record in records}):
        files = {"bars": f"table1_{profile}.png", "curves": f"table1_curves_{profile}.png"}
        profile_records = [record for record in records if record["profile"] == profile]
        written.append(plot_bar_chart([r for r in rows if r.profile == profile], out_dir / files["bars"]))
        written.append(plot_epoch_curves(profile_records, out_dir / files["curves"]))
        figure_files[profile] = files
    written.append(
        reporting.write_text(out_dir / "table1.md", render_markdown(rows, records, figure_files))
    )
    logger.info("Wrote %s from %d run record(s)", ", ".join(str(p) for p in written), len(records))
    return written
