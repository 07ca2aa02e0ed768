"""Measure training and scoring speed, memory and compute efficiency of every model.

Configurations: every model at 3x32x32 (batch 64) and Skip-GANomaly++ at
1x128x128 (batch 16), each in a fresh process. For each one the script
prints training images/s of the full generator + discriminator step,
scoring images/s and peak resident memory. It also prints the achieved
GFLOP/s as a fraction of a large 3x3 convolution timed in the same process.
Then it times ``medanomaly score`` end to end on a 300-slice 512x512 CT
series against the model time for the same slices. ``docs/benchmarks.md``
records the results.

Usage::

    python pipelines/benchmark.py [--quick] [--json] [--device cpu|cuda|auto]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from medanomaly.benchmark import format_report, run_benchmark


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])

    parser.add_argument(
        "--quick",
        action="store_true",
        help="measure only Skip-GANomaly++ at 3x32x32 and skip the DICOM measurement.",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON.")

    parser.add_argument(
        "--device",
        default="auto",
        help="auto (CUDA when available), cpu or cuda; CUDA trains with float16 autocast "
        "(default: %(default)s).",
    )

    parser.add_argument(
        "--warmup", type=int, default=None, help="untimed training steps (default: 2, quick 1)."
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="timed training steps (default: 5, quick 3)."
    )
    parser.add_argument(
        "--score-repeats",
        type=int,
        default=None,
        help="timed scoring batches (default: 5, quick 3).",
    )

    parser.add_argument(
        "--dicom-slices", type=int, default=300, help="slices of the CT series (default: 300)."
    )
    parser.add_argument(
        "--dicom-repeats",
        type=int,
        default=1,
        help="runs of 'medanomaly score', each between two model-only runs (default: 1).",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: torch's choice, one per core).",
    )
    parser.add_argument("--skip-dicom", action="store_true", help="skip the DICOM measurement.")
    parser.add_argument(
        "--dicom-only", action="store_true", help="run only the DICOM measurement."
    )
    parser.add_argument(
        "--same-process",
        action="store_true",
        help="measure every configuration in this process; peak memory is then cumulative.",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s", stream=sys.stderr)
    try:
        result = run_benchmark(
            quick=args.quick,
            device=args.device,
            warmup=args.warmup,
            steps=args.steps,
            score_repeats=args.score_repeats,
            dicom=not args.skip_dicom,
            dicom_slices=args.dicom_slices,
            fresh_process=not args.same_process,
            threads=args.threads,
            dicom_repeats=args.dicom_repeats,
            cases=not args.dicom_only,
        )
    except ValueError as err:  # invalid device or repeat counts
        print(f"benchmark: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2) if args.json else format_report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
