"""``medanomaly train``: train a model on normal images, evaluate it, and track it in MLflow.

The config comes from ``--config`` (or the resumed run's config.yaml) with the
flags applied, and is written into the run folder before anything else. Then the
command builds the splits, trains, and evaluates on the test split when the
source has one. It logs everything to MLflow, registers the model when asked,
and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medanomaly import reporting
from medanomaly.cli import common
from medanomaly.cli.options import add_data_source, add_options, data_source

logger = logging.getLogger(__name__)

SOURCES = ("manifest", "cifar10", "folder", "dicom_dir", "nifti")
MLFLOW_RUN_FILE = "mlflow_run.json"
# Images per class in the reconstruction grid logged with each run.
GRID_IMAGES_PER_LABEL = 4


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``train`` subcommand."""
    parser = subparsers.add_parser(
        "train",
        help="train a model on normal images and log the run to MLflow",
        description=(
            "Train a model on normal images only, calibrate its threshold on held-out "
            "normal images, evaluate it on the test split when the data has one, and log "
            "the run (config, metrics, plots, model) to MLflow. Flags override --config."
        ),
    )
    add_options(parser, "config", "model_name", "epochs", "batch_size", "image_size", "channels")
    add_data_source(parser, SOURCES, required=False)
    add_options(
        parser,
        "abnormal_class",
        "normal_class",
        "protocol",
        "limit",
        "test_limit",
        "preset",
        "experiment",
        "register",
        "resume",
        "output_dir",
        "seed",
        "device",
    )
    parser.set_defaults(handler=run)
    return parser


@dataclass
class TrainingOutcome:
    """Results of a finished training run, for the summary."""

    run_id: str
    run_dir: Path
    best_epoch: int
    epochs: int
    threshold: float
    metrics: dict[str, float] | None
    model_uri: str | None


def resolve_config(args: argparse.Namespace) -> Any:
    """Return the config: ``--config`` or the resumed run's config.yaml, then the flags."""
    from medanomaly.config import apply_overrides, load_config

    if args.resume and args.config:
        raise ValueError(
            "--resume reads the config saved in the run folder; leave out --config "
            "(flags such as --epochs still apply)."
        )
    base = load_config(Path(args.resume) / "config.yaml" if args.resume else args.config)
    overrides = {
        "model.name": args.model_name,
        "model.image_size": args.image_size,
        "model.in_channels": args.channels,
        "train.epochs": args.epochs,
        "train.batch_size": args.batch_size,
        "train.output_dir": args.output_dir,
        "train.seed": args.seed,
        "train.device": args.device,
        "data.seed": args.seed,
        "data.limit": args.limit,
        "data.test_limit": args.test_limit,
        "data.abnormal_class": args.abnormal_class,
        "data.normal_class": args.normal_class,
        "data.protocol": args.protocol,
        "data.preset": args.preset,
        "tracking.experiment": args.experiment,
        "tracking.register": args.register,
    }
    source = data_source(args)
    if source is not None:
        overrides["data.source"], overrides["data.path"] = source
    config = apply_overrides(base, overrides)
    _check_config(config)
    return config


def _check_config(config: Any) -> None:
    from medanomaly.networks import check_input

    if not config.data.path:
        raise ValueError(
            "No training data: give --manifest, --folder, --cifar10, --dicom-dir or --nifti, "
            "or set data.path in the --config file."
        )
    if config.data.source == "cifar10":
        common.check_cifar10_classes(config.data.protocol, config.data.abnormal_class, config.data.normal_class)
    if config.tracking.register and not config.tracking.log_model:
        raise ValueError(
            "tracking.log_model is false, so there is no MLflow model to register; "
            "set it to true or leave out --register."
        )
    check_input(config.model.name, config.model.in_channels, config.model.image_size)


def new_run_dir(output_dir: str, model_name: str) -> Path:
    """Return a new run folder name that does not exist yet."""
    from medanomaly.engine import make_run_dir

    run_dir = make_run_dir(output_dir, model_name)
    candidate, number = run_dir, 1
    while candidate.exists():
        number += 1
        candidate = run_dir.with_name(f"{run_dir.name}-{number}")
    return candidate


def previous_mlflow_run(run_dir: Path, tracking_uri: str) -> str | None:
    """Return the MLflow run id recorded in ``run_dir`` when it is in the current store."""
    import mlflow
    from mlflow.exceptions import MlflowException

    record_path = run_dir / MLFLOW_RUN_FILE
    if not record_path.is_file():
        return None
    record = json.loads(record_path.read_text())
    if record.get("tracking_uri") != tracking_uri:
        logger.warning(
            "The run was tracked in %s, not %s; starting a new MLflow run.",
            record.get("tracking_uri"),
            tracking_uri,
        )
        return None
    try:
        mlflow.MlflowClient(tracking_uri).get_run(record["run_id"])
    except MlflowException:
        logger.warning("MLflow run %s not found in %s; starting a new run.", record["run_id"], tracking_uri)
        return None
    return record["run_id"]


def run(args: argparse.Namespace) -> int:
    """Train, evaluate, log and print the summary."""
    from medanomaly import tracking

    config = resolve_config(args)
    if config.data.source == "manifest":
        from medanomaly.data.manifest import read_manifest

        # Check the rows before a run folder and an MLflow run exist; decoding comes later.
        read_manifest(config.data.path, training=True)
    resume = args.resume is not None
    run_dir = Path(args.resume) if resume else new_run_dir(config.train.output_dir, config.model.name)
    run_dir.mkdir(parents=True, exist_ok=True)
    reporting.write_text(run_dir / "config.yaml", config.to_yaml())
    logger.info("Run folder %s; config saved to %s", run_dir, run_dir / "config.yaml")

    tracking_uri = tracking.use_tracking_store(config.tracking.tracking_uri)
    previous = previous_mlflow_run(run_dir, tracking_uri) if resume else None
    with tracking.start_run(config, "train", run_id=previous) as active:
        reporting.write_text(
            run_dir / MLFLOW_RUN_FILE,
            json.dumps({"run_id": active.info.run_id, "tracking_uri": tracking_uri}, indent=2),
        )
        outcome = train_and_log(config, run_dir, resume, active.info.run_id)
    print_summary(outcome, config, tracking_uri)
    return 0


def train_and_log(config: Any, run_dir: Path, resume: bool, run_id: str) -> TrainingOutcome:
    """Train inside the active MLflow run and log data, metrics, plots and the model."""
    from medanomaly import tracking
    from medanomaly.data import build_splits
    from medanomaly.engine import Trainer, build_model, make_eval_loader, make_train_loader

    model_config, data, train = config.model, config.data, config.train
    tracking.log_config(config)
    splits = build_splits(data, model_config.image_size, model_config.in_channels)
    counts = splits.info.get("counts", {})
    reporting.write_text(
        run_dir / "data_summary.json",
        json.dumps({"counts": counts, "skipped": len(splits.info.get("skipped", []))}, indent=2),
    )
    tracking.log_files([run_dir / "data_summary.json"])

    model = build_model(config)
    train_loader = make_train_loader(splits.train, train.batch_size, train.seed, data.num_workers)
    val_loader = make_eval_loader(splits.val, train.batch_size, data.num_workers)
    result = Trainer(config, callbacks=[tracking.EpochLogger()]).fit(
        model, train_loader, val_loader, run_dir=run_dir, resume=resume
    )
    scorer = result.scorer
    tracking.log_metrics({"best_epoch": result.best_epoch, "threshold": scorer.threshold})
    tracking.log_files([run_dir / "history.json"])

    metrics = None
    grid_source = splits.val
    if splits.test is not None and len(splits.test) > 0:
        metrics = evaluate_test_split(scorer, splits.test, train.batch_size, run_dir / "evaluation")
        grid_source = splits.test
    grid = write_reconstruction_grid(scorer, grid_source, run_dir / "reconstructions.png")
    tracking.log_files([grid])

    if not config.tracking.log_model:
        logger.info("tracking.log_model is false: the scorer is only in %s", run_dir / "best.pt")
        model_uri = str(run_dir / "best.pt")
    else:
        logged_uri = tracking.log_scorer(scorer, model_config.in_channels, model_config.image_size)
        model_uri = f"runs:/{run_id}/{tracking.MODEL_ARTIFACT_NAME}"
    if config.tracking.register:
        card = tracking.build_model_card(config, scorer.threshold, metrics, counts, run_id)
        version_tags = {
            key: f"{value:.4f}"
            for key, value in tracking.numeric_metrics(metrics or {}).items()
            if key in common.HEADLINE_METRICS
        }
        version_tags.update(
            {
                "threshold": f"{scorer.threshold:.6g}",
                "model": model_config.name,
                "data_source": data.source,
                "intended_use": "research triage aid, not a diagnostic device",
            }
        )
        version = tracking.register_scorer(logged_uri, config.tracking.register, card, version_tags)
        model_uri = f"models:/{config.tracking.register}/{version.version}"
    return TrainingOutcome(
        run_id=run_id,
        run_dir=run_dir,
        best_epoch=result.best_epoch,
        epochs=train.epochs,
        threshold=scorer.threshold,
        metrics=metrics,
        model_uri=model_uri,
    )


def evaluate_test_split(scorer: Any, dataset: Any, batch_size: int, folder: Path) -> dict[str, float]:
    """Score the labelled test split, log its metrics and plots, and return the metrics."""
    from medanomaly import tracking
    from medanomaly.engine import compute_metrics, make_eval_loader, score_loader

    result = score_loader(scorer, make_eval_loader(dataset, batch_size), description="test")
    metrics = compute_metrics(result.scores, result.labels, scorer.threshold)
    tracking.log_metrics(metrics)
    tracking.log_files(common.write_evaluation(folder, result, scorer.threshold), "evaluation")
    return metrics


def write_reconstruction_grid(scorer: Any, dataset: Any, path: Path) -> Path:
    """Plot input, reconstruction and residual of a few normal and abnormal images.

    NOTE: the grid contains image pixels, so for clinical data it stores patient
    images in the MLflow artifact store. Text burned into the pixels is not removed.
    """
    import numpy as np
    import torch

    labels = getattr(dataset, "labels", None)
    if labels is None:
        chosen = list(range(min(len(dataset), 2 * GRID_IMAGES_PER_LABEL)))
    else:
        labels = np.asarray(labels)
        normal = np.flatnonzero(labels == 0)[:GRID_IMAGES_PER_LABEL]
        abnormal = np.flatnonzero(labels == 1)[:GRID_IMAGES_PER_LABEL]
        chosen = sorted(normal.tolist() + abnormal.tolist())
    items = [dataset[i] for i in chosen]
    images = torch.stack([item["image"] for item in items])
    scores, residuals, reconstructions = scorer.score_with_maps(images)
    titles = [
        f"{'abnormal' if item['label'] == 1 else 'normal'} {float(score):.3g}"
        for item, score in zip(items, scores.float().cpu())
    ]
    return reporting.plot_reconstruction_grid(
        images.numpy(),
        reconstructions.float().cpu().numpy(),
        residuals.float().cpu().numpy(),
        path,
        titles,
    )


def print_summary(outcome: TrainingOutcome, config: Any, tracking_uri: str) -> None:
    """Print where the run is, how training went and the model URI."""
    print(f"MLflow run   {outcome.run_id} (experiment '{config.tracking.experiment}', {tracking_uri})")
    print(f"Run folder   {outcome.run_dir}")
    print(f"Best epoch   {outcome.best_epoch} of {outcome.epochs}")
    print(f"Threshold    {outcome.threshold:.6g}")
    if outcome.metrics is not None:
        print("Test metrics")
        print(common.format_metrics(outcome.metrics))
    else:
        print("Test metrics none (the data source has no labelled test split)")
    print(f"Model URI    {outcome.model_uri}")
    if tracking_uri.startswith("sqlite:"):
        print(f"Review with  mlflow ui --backend-store-uri {tracking_uri}")
