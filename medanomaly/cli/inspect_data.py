"""``medanomaly inspect``: describe a data source before training on it."""

from __future__ import annotations

import argparse
import json
from typing import Any

from medanomaly.cli import common
from medanomaly.cli.options import add_data_source, add_options, data_source

SOURCES = ("cifar10", "folder", "manifest", "dicom_dir", "nifti")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``inspect`` subcommand."""
    parser = subparsers.add_parser(
        "inspect",
        help="report image counts, series, shapes, value ranges and unreadable files",
        description=(
            "Read a data source and report images per split and label, series, native "
            "shapes, value ranges after the intensity preset, and the files that could "
            "not be read, so that problems show before a long training run."
        ),
    )
    add_data_source(parser, SOURCES)
    add_options(parser, "abnormal_class", "normal_class", "protocol", "limit", "test_limit", "preset", "seed", "json")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Print the report, or JSON with ``--json``."""
    from medanomaly.data.inspect import format_report, inspect_source

    source, path = data_source(args)
    if source == "cifar10":
        protocol = args.protocol or "leave_one_out"
        common.check_cifar10_classes(protocol, args.abnormal_class, args.normal_class)
    options = {
        "abnormal_class": args.abnormal_class,
        "normal_class": args.normal_class,
        "protocol": args.protocol,
        "limit": args.limit,
        "test_limit": args.test_limit,
        "preset": args.preset,
        "seed": args.seed,
    }
    report = inspect_source(source, path, **{key: value for key, value in options.items() if value is not None})
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0
