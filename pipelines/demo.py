"""End-to-end demo on a synthetic head-CT cohort: generate, train, register, score, evaluate.

    python pipelines/demo.py [--out demo_output] [--seed 0]

Steps:

1. Write a seeded synthetic cohort (DICOM series and NIfTI volumes with
   manifests) into ``OUT/cohort``, replacing an earlier one.
2. ``medanomaly train`` on the healthy manifest with ``configs/demo.yaml``,
   logged to MLflow and registered as ``demo-ct-head``.
3. ``medanomaly score`` of the held-out healthy and abnormal DICOM series with
   the registered model, writing scores and heat-map panels into ``OUT/scores``.
4. AUROC of the scores against the labels of the cohort's ``test.csv``, and a
   summary of where everything is.

The commands run in this process through ``medanomaly.cli.main``, so they
print what the ``medanomaly`` command prints. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / "configs" / "demo.yaml"


def display_path(path: Path) -> str:
    """Return ``path`` relative to the working directory when it is inside it, else absolute."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the demo's command line."""
    from medanomaly.demo import REGISTERED_MODEL_NAME

    parser = argparse.ArgumentParser(
        description="Run the medanomaly demo on a synthetic head-CT cohort that it writes itself."
    )
    parser.add_argument("--out", default="demo_output", help="output folder (default: demo_output)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the cohort and of training")
    parser.add_argument(
        "--config", default=display_path(DEFAULT_CONFIG), help="training config YAML (default: configs/demo.yaml)"
    )
    parser.add_argument(
        "--register",
        default=REGISTERED_MODEL_NAME,
        help=f"registered model name (default: {REGISTERED_MODEL_NAME})",
    )
    cohort = parser.add_argument_group("cohort size")
    cohort.add_argument("--healthy", type=int, default=24, help="healthy subjects for training and validation")
    cohort.add_argument("--test-healthy", type=int, default=6, help="held-out healthy subjects")
    cohort.add_argument("--abnormal", type=int, default=4, help="subjects with lesions")
    cohort.add_argument("--slices", type=int, default=8, help="axial slices per subject")
    cohort.add_argument("--size", type=int, default=256, help="slice rows and columns in pixels")
    overrides = parser.add_argument_group("training overrides (passed to medanomaly train)")
    overrides.add_argument("--epochs", type=int, help="training epochs")
    overrides.add_argument("--image-size", type=int, help="model input height and width")
    overrides.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    overrides.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default: 1). On an idle 2-core machine 2 threads trained 1.5 times "
        "faster, but about 3 times slower while another job used the CPU.",
    )
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}.")
    return args




def generate_cohort(args: argparse.Namespace, cohort_dir: Path):
    """Step 1: write the seeded synthetic cohort, replacing an earlier one."""
    from medanomaly.synthetic import write_cohort

    print(f"\n# 1/4 Writing a synthetic head-CT cohort (seed {args.seed}) to {cohort_dir}", flush=True)
    info = write_cohort(
        cohort_dir,
        n_healthy=args.healthy,
        n_test_healthy=args.test_healthy,
        n_abnormal=args.abnormal,
        slices_per_series=args.slices,
        size=args.size,
        seed=args.seed,
        overwrite=True,
    )
    print(
        f"{info.n_train_slices} training slices from {args.healthy} healthy subjects; "
        f"{info.n_test_normal_slices} healthy and {info.n_test_abnormal_slices} lesion test "
        f"slices from {args.test_healthy + args.abnormal} held-out subjects",
        flush=True,
    )
    return info


def train_model(args: argparse.Namespace, healthy_manifest: Path, runs_dir: Path) -> Path:
    """Step 2: train on the healthy manifest, log to MLflow, register; return the run folder."""
    from medanomaly.cli import run_echoed

    print("\n# 2/4 Training Skip-GANomaly++ on the healthy subjects", flush=True)
    before = set(runs_dir.iterdir()) if runs_dir.is_dir() else set()
    arguments = [
        "train",
        "--manifest", str(healthy_manifest),
        "--config", str(args.config),
        "--register", args.register,
        "--output-dir", str(runs_dir),
        "--seed", str(args.seed),
    ]  # fmt: skip
    for flag, value in (("--epochs", args.epochs), ("--image-size", args.image_size), ("--device", args.device)):
        if value is not None:
            arguments += [flag, str(value)]
    run_echoed(arguments)

    created = sorted(path for path in runs_dir.iterdir() if path.is_dir() and path not in before)
    if len(created) != 1:
        raise RuntimeError(f"Expected one new run folder in {runs_dir}, found {len(created)}.")
    return created[0]


def score_test_series(model_uri: str, test_dicom_dir: Path, scores_dir: Path) -> None:
    """Step 3: score every held-out DICOM series and write scores and heat-map panels."""
    from medanomaly.cli import run_echoed

    print("\n# 3/4 Scoring the held-out healthy and abnormal DICOM series", flush=True)
    if (scores_dir / "scores.csv").is_file():
        # Panels of an earlier run would sit beside the new ones, so start afresh.
        shutil.rmtree(scores_dir)
    run_echoed(["score", "--model", model_uri, "--dicom-dir", str(test_dicom_dir), "--out", str(scores_dir)])


def evaluate_scores(scores_dir: Path, cohort, threshold: float) -> tuple[dict, dict]:
    """Step 4: join scores.csv with the labels of test.csv; return the metrics and AUROC per lesion type."""
    from medanomaly.demo import auroc_by_lesion_type, join_scores_with_labels
    from medanomaly.engine.metrics import compute_metrics

    print(f"\n# 4/4 Joining {scores_dir / 'scores.csv'} with the labels in {cohort.test_manifest}", flush=True)
    joined = join_scores_with_labels(scores_dir / "scores.csv", cohort.test_manifest)
    metrics = compute_metrics(joined.scores, joined.labels, threshold)
    return metrics, auroc_by_lesion_type(joined, cohort.lesions_json)


def read_threshold(scores_dir: Path) -> float:
    """Return the model threshold that ``medanomaly score`` wrote into scores.csv."""
    import csv

    with open(scores_dir / "scores.csv", newline="", encoding="utf-8") as stream:
        first = next(csv.DictReader(stream))
    return float(first["threshold"])


def main(argv: list[str] | None = None) -> int:
    """Run the four demo steps and print the summary; return the exit code."""
    import torch

    from medanomaly import reporting
    from medanomaly.config import load_config
    from medanomaly.demo import (
        COHORT_DIRNAME,
        RUNS_DIRNAME,
        SCORES_DIRNAME,
        SUMMARY_FILENAME,
        DemoSummary,
        format_summary,
        mlflow_executable,
        mlflow_ui_command,
    )
    from medanomaly.tracking import resolve_tracking_uri

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    cohort_dir, runs_dir, scores_dir = out / COHORT_DIRNAME, out / RUNS_DIRNAME, out / SCORES_DIRNAME
    tracking_uri = resolve_tracking_uri(load_config(args.config).tracking.tracking_uri)
    model_uri = f"models:/{args.register}/latest"
    seconds: dict[str, float] = {}

    started = time.perf_counter()
    cohort = generate_cohort(args, cohort_dir)
    seconds["cohort"] = time.perf_counter() - started

    started = time.perf_counter()
    run_dir = train_model(args, cohort.healthy_manifest, runs_dir)
    seconds["train"] = time.perf_counter() - started

    started = time.perf_counter()
    score_test_series(model_uri, cohort_dir / "dicom" / "test", scores_dir)
    seconds["score"] = time.perf_counter() - started

    started = time.perf_counter()
    metrics, by_lesion_type = evaluate_scores(scores_dir, cohort, read_threshold(scores_dir))
    seconds["evaluate"] = time.perf_counter() - started

    panels = sorted((scores_dir / "panels").glob("*.png"))
    summary = DemoSummary(
        cohort_dir=cohort_dir.resolve(),
        run_dir=run_dir.resolve(),
        scores_dir=scores_dir.resolve(),
        panel_paths=[path.resolve() for path in panels],
        model_uri=model_uri,
        tracking_uri=tracking_uri,
        metrics=metrics,
        by_lesion_type=by_lesion_type,
        seconds=seconds,
    )
    reporting.write_text(out / SUMMARY_FILENAME, json.dumps(summary.to_dict(), indent=2) + "\n")
    print(format_summary(summary, args.register, mlflow_ui_command(tracking_uri, mlflow_executable())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
