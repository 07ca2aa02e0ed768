"""The ``medanomaly`` command line: models, inspect, train, evaluate and score."""

from medanomaly.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
