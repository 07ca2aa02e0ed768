"""The ``medanomaly`` command line: models, inspect, train, evaluate and score."""

from medanomaly.cli.main import build_parser, main, run_echoed

__all__ = ["build_parser", "main", "run_echoed"]
