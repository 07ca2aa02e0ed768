"""Measure the data path: CIFAR-10 images/s and CT slices/s up to the model input.

CIFAR-10: decoded uint8 arrays (from the cache after the first run) go through
the full transform chain: to float, resize when the model size is not 32, and
channel conversion. The chain is timed on dataset batches and again through a
``torch.utils.data.DataLoader`` with the default collate.

DICOM: a 300-slice, 512x512, signed 16-bit, uncompressed CT series is written
with pydicom into a temporary folder, then read with ``load_dicom`` (decode,
rescale to HU, brain window) and resized to 128x128 gray.

Targets on 2 CPU cores: 2,000 CIFAR-10 images/s and 200 CT slices/s. The load
average is printed with the results because other processes on the machine
slow both.

Usage::

    python pipelines/benchmark_data.py [--cifar10 PATH] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

logger = logging.getLogger("benchmark_data")

CIFAR10_TARGET = 2000.0  # images/s
DICOM_TARGET = 200.0  # slices/s

# CI places the CIFAR-10 JPEG tarball beside the checkout, as tests/conftest.py expects.
DEFAULT_CIFAR10 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-jpg.tar.gz"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cifar10",
        type=Path,
        default=Path(os.environ.get("MEDANOMALY_CIFAR10", DEFAULT_CIFAR10)),
        help="CIFAR-10 folder or tarball (default: $MEDANOMALY_CIFAR10, else %(default)s).",
    )
    parser.add_argument(
        "--image-sizes",
        default="32,64",
        help="comma-separated model input sizes for CIFAR-10 (default: %(default)s).",
    )
    parser.add_argument("--batch-size", type=int, default=64, help="images per batch (default: 64).")
    parser.add_argument(
        "--images", type=int, default=20000, help="CIFAR-10 images per measurement (default: 20000)."
    )
    parser.add_argument("--ct-slices", type=int, default=300, help="slices in the CT series (default: 300).")
    parser.add_argument("--ct-size", type=int, default=512, help="CT slice rows and columns (default: 512).")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)."
    )
    parser.add_argument("--skip-cifar10", action="store_true", help="measure only the DICOM path.")
    parser.add_argument("--skip-dicom", action="store_true", help="measure only the CIFAR-10 path.")
    parser.add_argument("--json", action="store_true", help="print the results as JSON.")
    return parser.parse_args(argv)


# ---------------------------------------------------------------- CIFAR-10


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def _time_dataset_batches(dataset: Any, images: int, batch_size: int) -> float:
    """Return images/s of ``__getitems__`` on shuffled batches."""
    order = np.random.default_rng(0).permutation(len(dataset))[:images]
    start = time.perf_counter()
    for first in range(0, len(order), batch_size):
        dataset.__getitems__(order[first : first + batch_size].tolist())
    return _rate(len(order), time.perf_counter() - start)


def _time_dataloader(dataset: Any, images: int, batch_size: int) -> float:
    """Return images/s of a shuffled single-process DataLoader with the default collate."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=0)
    count = 0
    start = time.perf_counter()
    for batch in loader:
        count += len(batch["label"])
        if count >= images:
            break
    return _rate(count, time.perf_counter() - start)


def benchmark_cifar10(path: Path, sizes: list[int], images: int, batch_size: int) -> dict[str, Any]:
    from medanomaly.data.cifar10 import cifar10_splits, load_cifar10

    start = time.perf_counter()
    arrays = load_cifar10(path)
    load_seconds = time.perf_counter() - start

    results = []
    for size in sizes:
        for channels in (3, 1):
            train = cifar10_splits(arrays, "car", image_size=size, in_channels=channels).train
            count = min(images, len(train))
            results.append(
                {
                    "image_size": size,
                    "in_channels": channels,
                    "images": count,
                    "transform_images_per_s": _time_dataset_batches(train, count, batch_size),
                    "dataloader_images_per_s": _time_dataloader(train, count, batch_size),
                }
            )
    return {"source": arrays.source, "load_seconds": load_seconds, "results": results}


# ---------------------------------------------------------------- DICOM


def write_ct_series(folder: Path, slices: int, size: int) -> None:
    """Write an uncompressed signed 16-bit CT series with pydicom, one file per slice."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    rng = np.random.default_rng(0)
    # A disc of soft tissue (about 40 HU) in air (-1000 HU), with noise.
    rows, columns = np.mgrid[:size, :size]
    disc = (rows - size / 2) ** 2 + (columns - size / 2) ** 2 < (0.4 * size) ** 2
    base = np.where(disc, 40, -1000).astype(np.int16)
    series_uid = generate_uid()
    for number in range(slices):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesInstanceUID = series_uid
        ds.Modality = "CT"
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleSlope = 1
        ds.RescaleIntercept = -1024
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0.0, 0.0, float(number)]
        ds.InstanceNumber = number + 1
        noise = rng.integers(-20, 20, (size, size), dtype=np.int16)
        ds.PixelData = (base + noise + 1024).astype(np.int16).tobytes()
        pydicom.dcmwrite(folder / f"slice-{number:04d}.dcm", ds, enforce_file_format=True)


def benchmark_dicom(slices: int, size: int, target: int = 128) -> dict[str, Any]:
    from medanomaly.data.dicom import load_dicom
    from medanomaly.data.transforms import to_model_input

    with tempfile.TemporaryDirectory(prefix="medanomaly-ct-") as folder:
        start = time.perf_counter()
        write_ct_series(Path(folder), slices, size)
        write_seconds = time.perf_counter() - start

        start = time.perf_counter()
        loaded = load_dicom(folder, preset="brain")
        decode_seconds = time.perf_counter() - start
        start = time.perf_counter()
        for item in loaded.slices:
            to_model_input(item.array, target, 1, "resize")
        resize_seconds = time.perf_counter() - start

    total = decode_seconds + resize_seconds
    return {
        "slices": len(loaded.slices),
        "slice_size": size,
        "target_size": target,
        "write_seconds": write_seconds,
        "decode_seconds": decode_seconds,
        "resize_seconds": resize_seconds,
        "slices_per_s": _rate(len(loaded.slices), total),
    }


# ---------------------------------------------------------------- report


def format_results(results: dict[str, Any]) -> str:
    lines = [
        f"CPU cores: {results['cpu_count']}, torch threads: {results['torch_threads']}, "
        f"load average at start: {results['load_average'][0]:.2f}"
    ]
    cifar = results.get("cifar10")
    if cifar:
        lines.append(f"CIFAR-10 from {cifar['source']} (load {cifar['load_seconds']:.1f} s)")
        for row in cifar["results"]:
            lines.append(
                f"  {row['in_channels']}x{row['image_size']}x{row['image_size']}: "
                f"{row['transform_images_per_s']:,.0f} images/s transform chain, "
                f"{row['dataloader_images_per_s']:,.0f} images/s DataLoader "
                f"(target {CIFAR10_TARGET:,.0f})"
            )
    dicom = results.get("dicom")
    if dicom:
        lines.append(
            f"DICOM CT {dicom['slices']} slices {dicom['slice_size']}x{dicom['slice_size']} -> "
            f"{dicom['target_size']}x{dicom['target_size']}: {dicom['slices_per_s']:,.0f} slices/s "
            f"(decode + window {dicom['decode_seconds']:.2f} s, resize {dicom['resize_seconds']:.2f} s; "
            f"target {DICOM_TARGET:,.0f})"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    results: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()),
    }
    if not args.skip_cifar10:
        if not args.cifar10.exists():
            print(
                f"CIFAR-10 not found at {args.cifar10}; pass --cifar10 PATH or --skip-cifar10.",
                file=sys.stderr,
            )
            return 2
        sizes = [int(size) for size in args.image_sizes.split(",") if size.strip()]
        results["cifar10"] = benchmark_cifar10(args.cifar10, sizes, args.images, args.batch_size)
    if not args.skip_dicom:
        results["dicom"] = benchmark_dicom(args.ct_slices, args.ct_size)

    print(json.dumps(results, indent=2) if args.json else format_results(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
