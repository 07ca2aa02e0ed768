"""``medanomaly evaluate``: metrics of a trained model on labelled images, logged to MLflow."""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path
from typing import Any

from medanomaly.cli import common
from medanomaly.cli.options import add_data_source, add_option, add_options, data_source

logger = logging.getLogger(__name__)

SOURCES = ("manifest", "folder", "cifar10")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``evaluate`` subcommand."""
    parser = subparsers.add_parser(
        "evaluate",
        help="compute AUROC, AUPRC, F1, sensitivity and specificity on labelled images",
        description=(
            "Score labelled images with a trained model and report AUROC, AUPRC, and F1, "
            "sensitivity and specificity at the model's stored threshold. The results are "
            "logged to MLflow as an evaluation run tagged with the model reference."
        ),
    )
    add_options(parser, "model_ref")
    add_data_source(parser, SOURCES)
    add_options(parser, "abnormal_class", "normal_class", "protocol", "test_limit")
    add_option(parser, "config", help="YAML config whose tracking section (experiment, store) applies")
    add_options(parser, "experiment", "device")
    add_option(parser, "batch_size", default=64)
    parser.set_defaults(handler=run)
    return parser


def evaluation_config(args: argparse.Namespace, scorer: Any) -> Any:
    """Return the config of the evaluation run: the model's training config with the
    evaluation data and the tracking settings of ``--config`` and ``--experiment``."""
    from medanomaly.config import Config, config_from_dict, load_config

    user = load_config(args.config)
    trained = scorer.meta.get("config")
    config = config_from_dict(trained, source="model meta") if trained else Config()
    source, path = data_source(args)
    prep = common.preprocessing(scorer)
    config.model.name = scorer.model_name
    config.model.image_size = prep["image_size"]
    config.model.in_channels = prep["in_channels"]
    config.data.source, config.data.path = source, path
    config.data.preset, config.data.resize_mode = prep["preset"], prep["resize_mode"]
    if args.abnormal_class is not None:
        config.data.abnormal_class = args.abnormal_class
    if args.normal_class is not None:
        config.data.normal_class = args.normal_class
    if args.protocol is not None:
        config.data.protocol = args.protocol
    if args.test_limit is not None:
        config.data.test_limit = args.test_limit
    config.tracking = user.tracking
    if args.experiment is not None:
        config.tracking.experiment = args.experiment
    config.tracking.register = None
    return config


def labelled_dataset(config: Any) -> tuple[Any, list[Any]]:
    """Build the labelled evaluation dataset: the CIFAR-10 test split or a labelled source."""
    from medanomaly.data import build_dataset, build_splits

    data = config.data
    if data.source == "cifar10":
        common.check_cifar10_classes(data.protocol, data.abnormal_class, data.normal_class)
        splits = build_splits(data, config.model.image_size, config.model.in_channels)
        return splits.test, []
    return build_dataset(
        data.source,
        data.path,
        image_size=config.model.image_size,
        in_channels=config.model.in_channels,
        preset=data.preset,
        resize_mode=data.resize_mode,
        labelled=True,
    )


def run(args: argparse.Namespace) -> int:
    """Evaluate the model, print the metrics and log an evaluation run."""
    from medanomaly import tracking
    from medanomaly.engine.metrics import compute_metrics
    from medanomaly.engine.scoring import score_loader

    scorer = common.load_model(args.model_ref, args.device)
    config = evaluation_config(args, scorer)
    dataset, skipped = labelled_dataset(config)
    for item in skipped:
        logger.warning("Skipped %s: %s", item.path, item.reason)
    if dataset is None or len(dataset) == 0:
        raise ValueError(f"No labelled images to evaluate in {config.data.path}.")

    result = score_loader(scorer, common.make_loader(dataset, args.batch_size), description="evaluating")
    if not common.has_labels(result.labels):
        raise ValueError(
            f"{config.data.path} has no labels; evaluate needs normal/abnormal labels "
            "(manifest 'label' column, labelled folders or CIFAR-10)."
        )
    metrics = compute_metrics(result.scores, result.labels, scorer.threshold)

    with tracking.start_run(config, "evaluate", tags={f"{tracking.TAG_PREFIX}model_ref": args.model_ref}) as run:
        tracking.log_config(config)
        tracking.log_metrics(metrics)
        with tempfile.TemporaryDirectory(prefix="medanomaly-eval-") as folder:
            tracking.log_files(common.write_evaluation(Path(folder), result, scorer.threshold), "evaluation")
        run_id = run.info.run_id

    print(f"Evaluated {args.model_ref} on {len(result)} image(s) from {config.data.path}")
    print(common.format_metrics(metrics))
    print(f"MLflow evaluation run: {run_id}")
    return 0
