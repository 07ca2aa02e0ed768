"""Command-line options, each defined once and added to the subcommands that use it.

Options that map onto a configuration key default to ``None``, so an option the
user did not give leaves the value from ``--config`` (or the built-in default) in place.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# Data source options: flag -> DataConfig.source.
DATA_SOURCES = {
    "cifar10": "cifar10",
    "folder": "folder",
    "manifest": "manifest",
    "dicom_dir": "dicom",
    "nifti": "nifti",
}


def positive_int(text: str) -> int:
    """Parse an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """Parse an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


def existing_file(text: str) -> str:
    """Check that ``text`` names an existing file."""
    if not Path(text).expanduser().is_file():
        raise argparse.ArgumentTypeError(f"file not found: '{text}'")
    return text


def existing_dir(text: str) -> str:
    """Check that ``text`` names an existing folder."""
    if not Path(text).expanduser().is_dir():
        raise argparse.ArgumentTypeError(f"folder not found: '{text}'")
    return text


def existing_path(text: str) -> str:
    """Check that ``text`` names an existing file or folder."""
    if not Path(text).expanduser().exists():
        raise argparse.ArgumentTypeError(f"file or folder not found: '{text}'")
    return text


def model_reference(text: str) -> str:
    """Accept an MLflow URI as is, and check that a local path exists."""
    from medanomaly.tracking import is_mlflow_uri

    if is_mlflow_uri(text):
        return text
    if not Path(text).expanduser().exists():
        raise argparse.ArgumentTypeError(
            f"'{text}' is neither an existing file or folder nor an MLflow URI "
            "(models:/NAME/VERSION, models:/NAME@ALIAS, runs:/RUN_ID/model)"
        )
    return text


def model_name(text: str) -> str:
    """Check ``text`` against the registered model families."""
    from medanomaly.networks import MODEL_NAMES

    if text not in MODEL_NAMES:
        raise argparse.ArgumentTypeError(
            f"unknown model '{text}'; choose one of {', '.join(MODEL_NAMES)} "
            "(list them with 'medanomaly models')"
        )
    return text


def intensity_preset(text: str) -> str:
    """Check ``text`` against the intensity presets of ``medanomaly.data.intensity``."""
    from medanomaly.data.intensity import resolve_preset

    try:
        resolve_preset(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err).rstrip(".")) from None
    return text


# name -> (flags, keyword arguments for add_argument). Every subcommand takes its
# options from here, so an option reads the same everywhere.
OPTIONS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "verbose": (
        ("-v", "--verbose"),
        {"action": "count", "help": "more log output (debug level) and tracebacks on errors"},
    ),
    "quiet": (
        ("-q", "--quiet"),
        {"action": "count", "help": "only warnings and errors in the log output"},
    ),
    "config": (
        ("--config",),
        {"metavar": "FILE", "type": existing_file, "help": "YAML config; flags override its values"},
    ),
    "json": (("--json",), {"action": "store_true", "help": "print JSON instead of a table"}),
    "model_name": (
        ("--model",),
        {
            "dest": "model_name",
            "metavar": "NAME",
            "type": model_name,
            "help": "model family, for example skipganomaly_pp (see 'medanomaly models')",
        },
    ),
    "model_ref": (
        ("--model",),
        {
            "dest": "model_ref",
            "metavar": "MODEL",
            "type": model_reference,
            "required": True,
            "help": "trained model: best.pt, a run folder, an MLflow model folder, or "
            "models:/NAME/VERSION, models:/NAME@ALIAS, models:/NAME/latest, runs:/RUN_ID/model",
        },
    ),
    "image_size": (
        ("--image-size",),
        {"metavar": "S", "type": positive_int, "help": "model input height and width in pixels"},
    ),
    "channels": (
        ("--channels",),
        {"metavar": "C", "type": int, "choices": (1, 3), "help": "image channels: 1 (gray) or 3 (RGB)"},
    ),
    "epochs": (("--epochs",), {"metavar": "N", "type": positive_int, "help": "training epochs"}),
    "batch_size": (
        ("--batch-size",),
        {"metavar": "B", "type": positive_int, "help": "images per batch"},
    ),
    "limit": (
        ("--limit",),
        {"metavar": "N", "type": positive_int, "help": "use at most N training images (stratified)"},
    ),
    "test_limit": (
        ("--test-limit",),
        {"metavar": "N", "type": positive_int, "help": "use at most N test images (stratified)"},
    ),
    "experiment": (
        ("--experiment",),
        {"metavar": "NAME", "help": "MLflow experiment name (default: medanomaly)"},
    ),
    "register": (
        ("--register",),
        {"metavar": "NAME", "help": "register the trained model under NAME in the MLflow Model Registry"},
    ),
    "resume": (
        ("--resume",),
        {
            "metavar": "RUN_DIR",
            "type": existing_dir,
            "help": "continue the training run saved in RUN_DIR (its config.yaml and last.pt)",
        },
    ),
    "output_dir": (
        ("--output-dir",),
        {"metavar": "DIR", "help": "parent folder of the run folders (default: runs)"},
    ),
    "seed": (("--seed",), {"metavar": "N", "type": non_negative_int, "help": "random seed for splits and training"}),
    "device": (
        ("--device",),
        {"metavar": "D", "help": "auto (CUDA when available), cpu, cuda or cuda:N"},
    ),
    "cifar10": (
        ("--cifar10",),
        {"metavar": "DIR", "type": existing_path, "help": "CIFAR-10: the python release or a JPEG tree, as a folder or tar archive"},
    ),
    "abnormal_class": (
        ("--abnormal-class",),
        {"metavar": "C", "help": "CIFAR-10 class treated as abnormal, for example bird"},
    ),
    "normal_class": (
        ("--normal-class",),
        {"metavar": "C", "help": "CIFAR-10 class treated as normal with --protocol one_vs_rest"},
    ),
    "protocol": (
        ("--protocol",),
        {
            "choices": ("leave_one_out", "one_vs_rest"),
            "help": "CIFAR-10 split rule (default: leave_one_out)",
        },
    ),
    "folder": (
        ("--folder",),
        {
            "metavar": "DIR",
            "type": existing_dir,
            "help": "image folder: train/0.normal/ (+ test/0.normal/, test/1.abnormal/) "
            "for train and evaluate; any folder of images for score",
        },
    ),
    "manifest": (
        ("--manifest",),
        {"metavar": "CSV", "type": existing_file, "help": "manifest CSV (see data_manifests/README.md)"},
    ),
    "dicom_dir": (
        ("--dicom-dir",),
        {"metavar": "DIR", "type": existing_path, "help": "DICOM file or folder (searched recursively)"},
    ),
    "nifti": (
        ("--nifti",),
        {
            "metavar": "PATH",
            "type": existing_path,
            "help": "NIfTI volume (.nii, .nii.gz) or a folder of them",
        },
    ),
    "preset": (
        ("--preset",),
        {
            "metavar": "NAME",
            "type": intensity_preset,
            "help": "DICOM/NIfTI intensity preset: a CT window (brain, subdural, stroke, lung, "
            "mediastinum, abdomen, liver, bone), percentile, minmax, window:W:L or percentile:LO:HI",
        },
    ),
    "out": (
        ("--out",),
        {"metavar": "DIR", "required": True, "help": "output folder (created when missing)"},
    ),
    "panels": (
        ("--panels",),
        {
            "metavar": "N",
            "type": non_negative_int,
            "default": 50,
            "help": "at most N PNG panels of flagged images (default: 50)",
        },
    ),
}


def add_option(parser: argparse.ArgumentParser | Any, name: str, **changes: Any) -> None:
    """Add option ``name`` from :data:`OPTIONS` to ``parser``, with keyword ``changes``.

    A default given in ``changes`` is appended to the help text.
    """
    flags, kwargs = OPTIONS[name]
    merged = {**kwargs, **changes}
    default = changes.get("default")
    if default not in (None, argparse.SUPPRESS) and merged.get("action") != "count" and "help" in merged:
        merged["help"] = f"{merged['help']} (default: {default})"
    parser.add_argument(*flags, **merged)


def add_options(parser: argparse.ArgumentParser | Any, *names: str) -> None:
    """Add several options from :data:`OPTIONS` to ``parser``."""
    for name in names:
        add_option(parser, name)


def add_data_source(
    parser: argparse.ArgumentParser, sources: tuple[str, ...], required: bool = True
) -> None:
    """Add mutually exclusive data source options (a subset of :data:`DATA_SOURCES`)."""
    group = parser.add_argument_group("data source (choose one)")
    exclusive = group.add_mutually_exclusive_group(required=required)
    for name in sources:
        add_option(exclusive, name)


def data_source(args: argparse.Namespace) -> tuple[str, str] | None:
    """Return ``(source, path)`` for the data option given, or ``None``.

    Warns when a CIFAR-10 class option comes with another data source, which ignores it.
    """
    for name, source in DATA_SOURCES.items():
        value = getattr(args, name, None)
        if value is not None:
            if source != "cifar10":
                for option in ("abnormal_class", "normal_class"):
                    if getattr(args, option, None) is not None:
                        flag = "--" + option.replace("_", "-")
                        logger.warning("%s applies to --cifar10 only; ignored for --%s.", flag, name.replace("_", "-"))
            return source, str(Path(value).expanduser())
    return None
