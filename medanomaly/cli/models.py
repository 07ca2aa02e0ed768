"""``medanomaly models``: the model families with their size, cost and accepted inputs."""

from __future__ import annotations

import argparse
import json
from typing import Any

from medanomaly.cli.options import add_option, add_options


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``models`` subcommand."""
    parser = subparsers.add_parser(
        "models",
        help="list the model families with parameters, GFLOP and accepted sizes",
        description=(
            "List every model family with its parameter count, forward GFLOP per image at "
            "the given size, and the image sizes it accepts."
        ),
    )
    add_option(parser, "image_size", default=32)
    add_option(parser, "channels", default=3)
    add_options(parser, "json")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Print the model table, or JSON with ``--json``."""
    from medanomaly.networks.summary import describe_models, format_table

    rows = describe_models(image_size=args.image_size, in_channels=args.channels)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(format_table(rows))
    return 0
