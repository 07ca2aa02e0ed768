"""Entry point of the ``medanomaly`` command: parser, logging and error handling.

Every subcommand module provides ``add_parser(subparsers)``, which registers the
subcommand and sets ``handler`` (a function of the parsed arguments that returns
an exit code). Heavy imports (torch, MLflow) happen inside the handlers, so
``medanomaly --help`` starts quickly.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence

import medanomaly
from medanomaly.cli import evaluate, inspect_data, models, score, train
from medanomaly.cli.options import add_option

logger = logging.getLogger(__name__)

PROGRAM = "medanomaly"
COMMANDS = (models, inspect_data, train, evaluate, score)
# Errors a user can fix from the message alone; others also show their type.
_USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, PermissionError, KeyError)


class ArgumentParser(argparse.ArgumentParser):
    """ArgumentParser that reports a usage error as one line on stderr (exit code 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}. See '{self.prog} --help'.\n")


def build_parser() -> ArgumentParser:
    """Build the parser of ``medanomaly`` and all its subcommands."""
    parser = ArgumentParser(
        prog=PROGRAM,
        description=(
            "Anomaly detection in medical images: train GAN models on healthy images, "
            "then score new images. Runs and models are tracked with MLflow."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {medanomaly.__version__}")
    add_option(parser, "verbose", default=0)
    add_option(parser, "quiet", default=0)
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=ArgumentParser
    )
    for command in COMMANDS:
        subparser = command.add_parser(subparsers)
        # Also accept -v/-q after the subcommand; SUPPRESS keeps the value given before it.
        add_option(subparser, "verbose", default=argparse.SUPPRESS)
        add_option(subparser, "quiet", default=argparse.SUPPRESS)
    return parser


def configure_logging(verbosity: int) -> Callable[[], None]:
    """Send medanomaly's log records to stderr at the level that ``verbosity`` selects.

    Args:
        verbosity: -1 or less: warnings and errors; 0: info; 1 or more: debug,
            including MLflow's own info messages.

    Returns:
        A function that removes the handler again, so that ``main`` leaves
        logging as it found it when it is called from Python.
    """
    if verbosity > 0:
        level, mlflow_level = logging.DEBUG, "INFO"
    elif verbosity == 0:
        level, mlflow_level = logging.INFO, "WARNING"
    else:
        level, mlflow_level = logging.WARNING, "ERROR"
    package_logger = logging.getLogger("medanomaly")
    pydicom_logger = logging.getLogger("pydicom.pixels.decoders")
    previous_pydicom_level = pydicom_logger.level
    # pydicom logs a note for each file it reads leniently (padding, a
    # mislabelled VR) and also raises it as a Python warning. Its log records
    # go to the same stream, once, and the duplicate warnings are ignored below.
    pydicom_root = logging.getLogger("pydicom")
    previous_pydicom_root = pydicom_root.propagate
    pydicom_handler = logging.StreamHandler(sys.stderr)
    pydicom_handler.setFormatter(logging.Formatter("%(levelname)s: pydicom: %(message)s"))
    pydicom_handler.setLevel(logging.DEBUG if verbosity > 0 else logging.WARNING)
    pydicom_root.addHandler(pydicom_handler)
    pydicom_root.propagate = False
    handler = logging.StreamHandler(sys.stderr)
    fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s" if verbosity > 0 else "%(levelname)s: %(message)s"
    handler.setFormatter(logging.Formatter(fmt))
    previous = (package_logger.level, package_logger.propagate)
    previous_filters = list(warnings.filters)
    package_logger.addHandler(handler)
    package_logger.setLevel(level)
    # Libraries may configure the root logger (MLflow does while logging a model),
    # which would print every record twice.
    package_logger.propagate = False

    # MLflow logs every database migration and artifact upload at INFO. It reads
    # MLFLOW_LOGGING_LEVEL when first imported; the setLevel covers an earlier import.
    # A level the user set in the environment is kept unless -v or -q is given.
    if verbosity != 0 or "MLFLOW_LOGGING_LEVEL" not in os.environ:
        os.environ["MLFLOW_LOGGING_LEVEL"] = mlflow_level
    logging.getLogger("mlflow").setLevel(os.environ["MLFLOW_LOGGING_LEVEL"].upper())
    if verbosity <= 0:
        # MONAI 1.6 reports on every DICOM read that the optional nvImageCodec GPU
        # decoder is missing, then falls back to pydicom; that is expected here.
        logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", message="NvImgCodecPydicomReader")
        # pydicom logs a traceback for every decoder plugin that fails. The reader
        # reports the file and the reason in one line, so the tracebacks wait for -v.
        pydicom_logger.setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore", category=UserWarning, module="pydicom")
    if not sys.stderr.isatty():
        # MLflow draws download progress bars on stderr, which clutter logs and pipes.
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    def restore() -> None:
        package_logger.removeHandler(handler)
        package_logger.setLevel(previous[0])
        package_logger.propagate = previous[1]
        pydicom_logger.setLevel(previous_pydicom_level)
        pydicom_root.removeHandler(pydicom_handler)
        pydicom_root.propagate = previous_pydicom_root
        warnings.filters[:] = previous_filters

    return restore


def _error_line(error: BaseException) -> str:
    # Spaces are collapsed within each line; line breaks stay, so a message that
    # lists several problems (a manifest's bad rows) shows one per line.
    lines = (" ".join(line.split()) for line in str(error).splitlines())
    message = "\n  ".join(line for line in lines if line)
    if isinstance(error, KeyError) and error.args:
        message = str(error.args[0])
    if not message:
        return type(error).__name__
    if _is_user_error(error):
        return message
    return f"{type(error).__name__}: {message}"


def _is_user_error(error: BaseException) -> bool:
    # MLflow's messages name the run, model or store, so they need no type prefix.
    return isinstance(error, _USER_ERRORS) or type(error).__name__ == "MlflowException"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``medanomaly`` command line and return its exit code.

    Exit codes: 0 success, 1 error while running, 2 invalid command line,
    130 interrupted.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_request:  # --help, --version and usage errors
        code = exit_request.code
        if code is None:
            return 0
        return code if isinstance(code, int) else 1
    verbosity = (args.verbose or 0) - (args.quiet or 0)
    restore_logging = configure_logging(verbosity)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print(f"{PROGRAM} {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # every failure ends as one line, the traceback only with -v
        if verbosity > 0:
            traceback.print_exc()
        hint = "" if verbosity > 0 or _is_user_error(error) else " (run with -v for the traceback)"
        print(f"{PROGRAM} {args.command}: error: {_error_line(error)}{hint}", file=sys.stderr)
        return 1
    finally:
        restore_logging()


def run_echoed(arguments: list[str]) -> None:
    """Print a ``medanomaly`` command line, run it in this process, and raise if it fails.

    For scripts that show users the commands they could type themselves.

    Raises:
        RuntimeError: the command returned a non-zero exit code; its error line
            has already been printed.
    """
    import shlex

    print(f"\n$ medanomaly {shlex.join(arguments)}", flush=True)
    code = main(arguments)
    sys.stdout.flush()
    sys.stderr.flush()
    if code != 0:
        raise RuntimeError(f"`medanomaly {arguments[0]}` failed with exit code {code}; see its error above.")
