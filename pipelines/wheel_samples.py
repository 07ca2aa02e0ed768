"""Train a 1-channel model on real MR files and score every sample file of the pydicom and nibabel wheels.

    python pipelines/wheel_samples.py [--out wheel_samples_output] [--epochs N] [--image-size S]

Steps:

1. Write ``OUT/healthy.csv``, a manifest of the MR volumes in
   ``nibabel/tests/data`` (one group per volume).
2. ``medanomaly train`` on it with ``configs/clinical/mr_wheel_samples.yaml``,
   registered as ``wheel-mr``.
3. ``medanomaly score`` of the whole ``pydicom/data/test_files`` folder (CT,
   MR, ultrasound, RGB, compressed and deliberately broken files) and of the
   whole ``nibabel/tests/data`` folder. Files that hold no image, or that
   cannot be decoded, are listed in ``skipped.csv`` and the run goes on.
4. A summary: images scored, files skipped and median score per folder.

The files are read from the installed packages; nothing is downloaded. The
model is far too small to be useful for MR: this run shows the engine on
real scanner files with all their quirks.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / "configs" / "clinical" / "mr_wheel_samples.yaml"
REGISTERED_MODEL_NAME = "wheel-mr"

# 3D and 4D MR volumes in nibabel/tests/data. The other NIfTI files there are
# a 4x5x7 test pattern (standard.nii.gz) and a CIFTI-2 connectivity matrix.
MR_VOLUMES = (
    "anatomical.nii",
    "example4d.nii.gz",
    "example_nifti2.nii.gz",
    "functional.nii",
    "reoriented_anat_moved.nii",
    "resampled_anat_moved.nii",
)


def nibabel_data_dir() -> Path:
    """Return the folder of sample files inside the installed nibabel package."""
    import nibabel

    return Path(nibabel.__file__).parent / "tests" / "data"


def pydicom_data_dir() -> Path:
    """Return the folder of sample files inside the installed pydicom package."""
    import pydicom

    return Path(pydicom.__file__).parent / "data" / "test_files"


def write_manifest(path: Path) -> Path:
    """Write the training manifest of the nibabel MR volumes; raise if one is missing."""
    from medanomaly import reporting

    folder = nibabel_data_dir()
    missing = [name for name in MR_VOLUMES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{', '.join(missing)} not found in {folder}; reinstall nibabel with its test data "
            "(pip install --force-reinstall nibabel)."
        )
    rows = [[str(folder / name), "normal", name.split(".")[0]] for name in MR_VOLUMES]
    reporting.write_csv(path, ["path", "label", "group"], rows)
    return path




def count_rows(path: Path) -> int:
    """Return the number of data rows of a CSV file, 0 when it does not exist."""
    if not path.is_file():
        return 0
    with path.open(newline="", encoding="utf-8") as handle:
        return sum(1 for _ in csv.DictReader(handle))


def median_score(scores_csv: Path) -> float:
    """Return the median of the ``score`` column of a scores.csv."""
    with scores_csv.open(newline="", encoding="utf-8") as handle:
        return statistics.median(float(row["score"]) for row in csv.DictReader(handle))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the pipeline's command line."""
    parser = argparse.ArgumentParser(
        description="Train on the nibabel wheel's MR volumes and score the pydicom and nibabel sample files."
    )
    parser.add_argument("--out", default="wheel_samples_output", help="output folder")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="training config YAML")
    parser.add_argument("--register", default=REGISTERED_MODEL_NAME, help="registered model name")
    parser.add_argument("--epochs", type=int, help="training epochs (default: from the config)")
    parser.add_argument("--image-size", type=int, help="model input height and width (default: from the config)")
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the steps and print the summary; return the exit code."""
    from medanomaly.cli import run_echoed

    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}

    manifest = write_manifest(out / "healthy.csv")
    print(f"# Training manifest of {len(MR_VOLUMES)} MR volumes from {nibabel_data_dir()}: {manifest}")

    started = time.perf_counter()
    train = ["train", "--manifest", str(manifest), "--config", args.config, "--register", args.register]
    train += ["--output-dir", str(out / "runs")]
    for flag, value in (("--epochs", args.epochs), ("--image-size", args.image_size), ("--device", args.device)):
        if value is not None:
            train += [flag, str(value)]
    run_echoed(train)
    seconds["train"] = time.perf_counter() - started

    model_uri = f"models:/{args.register}/latest"
    results = {}
    for name, flag, folder in (
        ("pydicom", "--dicom-dir", pydicom_data_dir()),
        ("nibabel", "--nifti", nibabel_data_dir()),
    ):
        started = time.perf_counter()
        scores_dir = out / f"scores_{name}"
        run_echoed(["score", "--model", model_uri, flag, str(folder), "--out", str(scores_dir)])
        seconds[name] = time.perf_counter() - started
        results[name] = (
            scores_dir,
            count_rows(scores_dir / "scores.csv"),
            count_rows(scores_dir / "skipped.csv"),
            median_score(scores_dir / "scores.csv"),
        )

    print(f"\nFinished: training {seconds['train']:.0f} s, model {model_uri}")
    for name, (scores_dir, scored, skipped, median) in results.items():
        print(
            f"  {name:<8} {scored} images scored, {skipped} files skipped (listed in "
            f"{scores_dir / 'skipped.csv'}), median score {median:.4g}, {seconds[name]:.0f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
