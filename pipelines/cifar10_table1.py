"""Reproduce CIFAR-10 Table 1 of Park et al., Skip-GANomaly++ (AAAI-24 student abstract).

Trains every chosen model on every chosen abnormal class and seed, writes one
JSON record per finished run into ``OUT/runs/`` and rebuilds ``OUT/table1.md``,
``OUT/table1.csv`` and the figures from all records. Each run is an MLflow run
in the experiment ``cifar10-table1`` (store: ``MLFLOW_TRACKING_URI``, else
``sqlite:///mlflow.db`` in the working directory).

The table reports each run under two protocols: honest (epoch chosen on
validation normals, eval-mode scoring) and paper (the evaluation of the
authors' public code: batch norm in training mode, best epoch on the test set).

Usage::

    python pipelines/cifar10_table1.py --profile cpu \\
        --models skipganomaly_pp,skip_ganomaly,ganomaly --classes bird,cat,ship --seeds 0
    python pipelines/cifar10_table1.py --report-only     # rebuild the table, no training

Profiles are YAML files ``configs/cifar10/profile_<name>.yaml`` whose data and
train sections override each model's config ``configs/cifar10/<model>.yaml``.
``cpu`` trains on a subset and ``full`` follows the full protocol (meant for a GPU).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    # Run from a checkout without installing the package.
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

from medanomaly.experiments import table1  # noqa: E402
from medanomaly.networks import MODEL_NAMES  # noqa: E402

logger = logging.getLogger("cifar10_table1")

PROFILES = ("cpu", "full")
CONFIG_DIR = REPO_ROOT / "configs" / "cifar10"
DEFAULT_CIFAR10 = REPO_ROOT.parent / "shared" / "data" / "cifar10-jpg.tar.gz"
DEFAULT_OUT = REPO_ROOT / "docs" / "results"
DEFAULT_RUNS_DIR = REPO_ROOT / "runs" / "cifar10-table1"


def comma_list(text: str) -> list[str]:
    """Split ``a,b,c`` into names, dropping blanks."""
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description=(
            "Train the Table 1 models on CIFAR-10 leave-one-class-out tasks and write the "
            "results table (honest and paper protocol side by side)."
        )
    )
    parser.add_argument(
        "--models",
        type=comma_list,
        default=list(table1.sort_models(MODEL_NAMES)),
        help=f"comma-separated models (default: all, {','.join(MODEL_NAMES)})",
    )

    parser.add_argument(
        "--classes",
        type=comma_list,
        default=list(table1.PUBLISHED_CLASS_ORDER),
        help="comma-separated abnormal classes; 'car' means automobile (default: all ten)",
    )
    parser.add_argument(
        "--seeds", type=comma_list, default=["0"], help="comma-separated integer seeds (default: 0)"
    )
    parser.add_argument(
        "--profile", choices=PROFILES, default="cpu", help="data and training sizes (default: cpu)"
    )

    parser.add_argument(
        "--profile-file",
        type=Path,
        help="profile YAML to use instead of configs/cifar10/profile_<profile>.yaml",
    )
    parser.add_argument(
        "--cifar10",
        type=Path,
        default=DEFAULT_CIFAR10,
        help="CIFAR-10 archive or folder (default: ../shared/data/cifar10-jpg.tar.gz "
        "beside the repository)",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="results folder (default: docs/results)"
    )
    parser.add_argument(
        "--runs-dir",
        type=Path,
        default=DEFAULT_RUNS_DIR,
        help="checkpoint folders, one per run (default: runs/cifar10-table1)",
    )

    parser.add_argument(
        "--experiment", default=table1.DEFAULT_EXPERIMENT, help="MLflow experiment name"
    )
    parser.add_argument(
        "--skip-existing",
        action="store_true",
        help="skip runs that already have a record in OUT/runs (resume an interrupted sweep); "
        "without it such runs are trained again from scratch",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="rebuild table1.md, table1.csv and the figures from the records; train nothing",
    )

    smoke = parser.add_argument_group(
        "overrides for quick checks; they change the profile label to <profile>-custom"
    )
    smoke.add_argument("--epochs", type=int, help="training epochs")
    smoke.add_argument(
        "--limit", type=int, help="normal training images drawn before the validation split"
    )
    smoke.add_argument("--test-limit", type=int, help="test images (stratified subset)")
    smoke.add_argument("--label", help="profile label in records and the table")

    parser.add_argument("--device", help="'auto', 'cpu', 'cuda' or 'cuda:N' (default: profile's)")
    parser.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads (default: torch's choice). On a CPU shared with other jobs, "
        "1 can be several times faster than 2",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    return parser.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    """Normalise model, class and seed names in place; raise ValueError on unknown ones."""
    unknown = [name for name in args.models if name not in MODEL_NAMES]
    if unknown:
        raise ValueError(f"Unknown model(s) {unknown} in --models; choose from {list(MODEL_NAMES)}.")
    args.classes = table1.sort_classes(table1.canonical_class(name) for name in args.classes)
    try:
        args.seeds = sorted({int(seed) for seed in args.seeds})
    except ValueError as err:
        raise ValueError(f"--seeds takes comma-separated integers, got {args.seeds}.") from err
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be at least 1, got {args.threads}.")
    if not args.report_only and not args.cifar10.exists():
        raise ValueError(f"CIFAR-10 data not found at {args.cifar10}; pass --cifar10 PATH.")


def run_overrides(args: argparse.Namespace) -> dict[str, object]:
    """Return the ``section.key`` overrides the flags set (unset flags are None)."""
    return {
        "train.epochs": args.epochs,
        "data.limit": args.limit,
        "data.test_limit": args.test_limit,
        "train.device": args.device,
    }


def profile_label(args: argparse.Namespace) -> str:
    """Return the label stored in records: --label, else the profile, marked when sizes change."""
    if args.label:
        return args.label
    changed = any(value is not None for value in (args.epochs, args.limit, args.test_limit))
    return f"{args.profile}-custom" if changed else args.profile


def sweep(args: argparse.Namespace) -> list[str]:
    """Train every (model, class, seed) cell without a record; return the failed run keys."""
    profile_file = args.profile_file or CONFIG_DIR / f"profile_{args.profile}.yaml"
    profile = table1.load_profile(profile_file)
    records_dir = args.out / "runs"
    label = profile_label(args)
    specs = [
        table1.RunSpec(model, name, seed, label)
        for seed in args.seeds
        for model in args.models
        for name in args.classes
    ]
    logger.info(
        "Sweep: %d run(s), profile %s (%s), records in %s", len(specs), label, profile_file, records_dir
    )

    failed = []
    for number, spec in enumerate(specs, start=1):
        has_record = table1.record_path(records_dir, spec).is_file()
        if args.skip_existing and has_record:
            logger.info("[%d/%d] %s: record exists, skipped", number, len(specs), spec.key)
            continue
        logger.info("[%d/%d] %s: starting", number, len(specs), spec.key)
        model_yaml = CONFIG_DIR / f"{spec.model}.yaml"
        config = table1.build_run_config(
            spec,
            profile,
            args.cifar10.resolve(),
            args.runs_dir,
            experiment=args.experiment,
            base=model_yaml if model_yaml.is_file() else None,
            overrides=run_overrides(args),
        )
        try:
            # A finished run is trained again from scratch; an interrupted one resumes.
            table1.run_one(spec, config, records_dir, restart=has_record)
        except Exception:  # noqa: BLE001 - one failed cell must not stop the sweep
            logger.exception("[%d/%d] %s failed; continuing with the next run", number, len(specs), spec.key)
            failed.append(spec.key)
            continue
        # Rebuild after each run, so the page is current even if the sweep stops.
        try:
            table1.write_report(records_dir, args.out)
        except Exception:  # noqa: BLE001 - the records are safe; the final rebuild retries
            logger.exception("Rebuilding the table after %s failed", spec.key)
    return failed


def main(argv: list[str] | None = None) -> int:
    """Run the sweep (unless --report-only) and write the table; return the exit status."""
    args = parse_args(argv)
    level = logging.INFO
    if args.verbose:
        level = logging.DEBUG
    elif args.quiet:
        level = logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        check_args(args)
    except ValueError as err:
        logger.error("%s", err)
        return 2

    threads = torch.get_num_threads()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    try:
        failed = [] if args.report_only else sweep(args)
    except (OSError, ValueError) as err:
        # An invalid profile file or config stops the sweep before any training.
        logger.error("%s", err)
        return 2
    finally:
        # The setting is process-wide; restore it for callers that import main().
        torch.set_num_threads(threads)
    try:
        written = table1.write_report(args.out / "runs", args.out)
    except ValueError as err:
        logger.error("%s", err)
        return 1
    logger.info(
        "Done in %.1f min; table: %s", (time.perf_counter() - started) / 60.0, written[-1]
    )
    if failed:
        logger.error("%d run(s) failed: %s", len(failed), ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
