"""A synthetic head-CT cohort on disk: DICOM series, NIfTI volumes and manifests.

Layout under ``out_dir`` (subject ids are pseudonymous, ``sub-000`` upwards)::

    dicom/train/sub-000/slice-000.dcm ...    healthy training subjects
    dicom/test/healthy/sub-012/...           held-out healthy subjects
    dicom/test/abnormal/sub-016/...          lesion slices of abnormal subjects
    nifti/train/sub-000.nii.gz ...           the same subjects as full volumes
    nifti/test/healthy/sub-012.nii.gz
    nifti/test/abnormal/sub-016.nii.gz       all slices, lesion and lesion-free
    masks/sub-016.nii.gz                     lesion label masks (0 = none)
    healthy.csv, test.csv                    manifests of the DICOM series
    healthy_nifti.csv, test_nifti.csv        manifests of the NIfTI volumes
    lesions.json                             lesion slices, types, centres, HU

Slice labels. Manifest labels apply to every slice of a row, but a lesion
covers only a few slices of an abnormal volume. So the DICOM series of an
abnormal subject contains only its lesion slices, and the NIfTI manifest
selects the same slices with its ``slices`` column (0-based indices along
axis 2, joined by ``;``). Every slice labelled abnormal therefore contains at
least ``lesions.MIN_AREA_MM2`` (20 mm^2) of lesion, and no slice labelled
normal contains any. The lesion-free slices of
abnormal subjects appear in no manifest. When only NIfTI is written,
``healthy.csv`` and ``test.csv`` are the NIfTI manifests.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medanomaly.synthetic.lesions import (
    LESION_KINDS,
    MIN_AREA_MM2,
    Lesion,
    paint_lesions,
    sample_lesion,
)
from medanomaly.synthetic.phantom import (
    HeadParams,
    SeriesGeometry,
    add_noise,
    make_geometry,
    quantize_hu,
    render_volume,
    sample_head,
)
from medanomaly.synthetic.writers import write_dicom_series, write_nifti

logger = logging.getLogger(__name__)

FORMATS = ("dicom", "nifti")
NORMAL = "normal"
ABNORMAL = "abnormal"
# Probability that an abnormal subject has a second lesion.
SECOND_LESION_PROBABILITY = 0.35
# Everything write_cohort creates directly under out_dir. overwrite=True removes only these.
OUTPUT_NAMES = (
    "dicom",
    "nifti",
    "masks",
    "healthy.csv",
    "test.csv",
    "healthy_nifti.csv",
    "test_nifti.csv",
    "lesions.json",
)


@dataclass
class SyntheticSubject:
    """One subject in memory.

    Attributes:
        hu: int16 HU volume (S, H, W) with noise and lesions.
        lesion_mask: uint8 (S, H, W); ``i + 1`` marks lesion ``i``, 0 elsewhere.
        brain: bool (S, H, W) intracranial mask.
        lesions: painted lesions with their slices.
        head: the sampled anatomy.
        geometry: the sampling grid.
    """

    hu: np.ndarray
    lesion_mask: np.ndarray
    brain: np.ndarray
    lesions: list[Lesion]
    head: HeadParams
    geometry: SeriesGeometry

    @property
    def lesion_slices(self) -> tuple[int, ...]:
        """Sorted indices of slices that contain lesion pixels."""
        return tuple(int(k) for k in np.flatnonzero(self.lesion_mask.any(axis=(1, 2))))


def synthesize_subject(
    rng: np.random.Generator,
    geometry: SeriesGeometry,
    lesion_kinds: Iterable[str] = (),
) -> SyntheticSubject:
    """Sample one subject and render its volume, with one lesion per entry of ``lesion_kinds``.

    Noise is added after the lesions are painted, so lesions are as noisy as
    the tissue around them.
    """
    head = sample_head(rng)
    volume = render_volume(head, geometry)
    lesions = [sample_lesion(rng, volume, kind) for kind in lesion_kinds]
    clean_hu, mask = paint_lesions(volume, lesions)
    hu = quantize_hu(add_noise(clean_hu, head.noise_sd_hu, rng))
    return SyntheticSubject(
        hu=hu, lesion_mask=mask, brain=volume.brain, lesions=lesions, head=head, geometry=geometry
    )


@dataclass(frozen=True)
class SubjectRecord:
    """Output paths, label and lesions of one written subject.

    ``dicom_dir`` contains only the lesion slices of abnormal subjects, and
    ``nifti_path`` always contains the full volume. Paths are None for formats
    not written.
    """

    subject: str
    number: int
    split: str
    label: str
    dicom_dir: Path | None
    nifti_path: Path | None
    mask_path: Path | None
    lesion_slices: tuple[int, ...]
    lesions: tuple[Lesion, ...]


@dataclass
class CohortInfo:
    """Paths and subject records of a cohort written by ``write_cohort``.

    Manifest paths are None for formats not written.
    """

    out_dir: Path
    healthy_manifest: Path
    test_manifest: Path
    nifti_healthy_manifest: Path | None
    nifti_test_manifest: Path | None
    lesions_json: Path
    geometry: SeriesGeometry
    seed: int
    formats: tuple[str, ...]
    subjects: list[SubjectRecord] = field(default_factory=list)
    seconds: float = 0.0

    def _count(self, split: str, label: str) -> int:
        total = 0
        for record in self.subjects:
            if record.split == split and record.label == label:
                total += len(record.lesion_slices) if label == ABNORMAL else self.geometry.n_slices
        return total

    @property
    def n_train_slices(self) -> int:
        return self._count("train", NORMAL)

    @property
    def n_test_normal_slices(self) -> int:
        return self._count("test", NORMAL)

    @property
    def n_test_abnormal_slices(self) -> int:
        return self._count("test", ABNORMAL)


def _check_arguments(n_healthy, n_test_healthy, n_abnormal, slices_per_series, size, seed, formats):
    if n_healthy < 1:
        raise ValueError(f"n_healthy must be at least 1 (training subjects), got {n_healthy}")
    if n_test_healthy < 0:
        raise ValueError(f"n_test_healthy must be 0 or more, got {n_test_healthy}")
    if n_abnormal < 0:
        raise ValueError(f"n_abnormal must be 0 or more, got {n_abnormal}")
    if slices_per_series < 1:
        raise ValueError(f"slices_per_series must be at least 1, got {slices_per_series}")
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"formats must be a non-empty subset of {FORMATS}, got {tuple(formats)}")


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    existing = [out_dir / name for name in OUTPUT_NAMES if (out_dir / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{existing[0]} already exists. Pass overwrite=True to replace the cohort in "
            f"{out_dir} or choose another folder"
        )
    for path in existing:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)


def _relative(path: Path, out_dir: Path) -> str:
    return path.relative_to(out_dir).as_posix()


def _write_manifest(path: Path, rows: list[dict], columns: tuple[str, ...]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def _manifest_rows(records, out_dir: Path, fmt: str) -> list[dict]:
    rows = []
    for record in records:
        target = record.dicom_dir if fmt == "dicom" else record.nifti_path
        row = {"path": _relative(target, out_dir), "label": record.label, "group": record.subject}
        if fmt == "nifti":
            # Abnormal volumes contribute only their lesion slices, and normal ones all slices.
            selected = record.lesion_slices if record.label == ABNORMAL else ()
            row["slices"] = ";".join(str(k) for k in selected)
        rows.append(row)
    return rows


def _lesion_summary(
    lesion: Lesion, mask: np.ndarray, number: int, geometry: SeriesGeometry
) -> dict:
    x0, y0 = geometry.first_pixel_xy_mm
    px = geometry.pixel_spacing_mm
    x, y, z = lesion.centre_mm
    centre_slice = int(np.argmin(np.abs(np.asarray(geometry.slice_positions_mm) - z)))
    return {
        "type": lesion.kind,
        "hu": round(lesion.hu, 1),
        "centre_mm": [round(x, 2), round(y, 2), round(z, 2)],
        "centre_pixel": {
            "row": int(round((y - y0) / px)),
            "column": int(round((x - x0) / px)),
            "slice": centre_slice,
        },
        "radius_mm": round(lesion.radius_mm, 2),
        "semi_axes_mm": [round(a, 2) for a in lesion.semi_axes_mm],
        "slices": list(lesion.slices),
        "pixels_per_slice": {
            str(k): int(np.count_nonzero(mask[k] == number)) for k in lesion.slices
        },
    }


def _write_lesions_json(path: Path, info: CohortInfo, masks: dict[str, np.ndarray]) -> None:
    geometry = info.geometry
    subjects = []
    for record in info.subjects:
        if record.label != ABNORMAL:
            continue
        mask = masks[record.subject]
        subjects.append(
            {
                "subject": record.subject,
                "dicom": _relative(record.dicom_dir, info.out_dir) if record.dicom_dir else None,
                "nifti": _relative(record.nifti_path, info.out_dir) if record.nifti_path else None,
                "mask": _relative(record.mask_path, info.out_dir) if record.mask_path else None,
                "lesion_slices": list(record.lesion_slices),
                "lesions": [
                    _lesion_summary(lesion, mask, number, geometry)
                    for number, lesion in enumerate(record.lesions, start=1)
                ],
            }
        )
    document = {
        "seed": info.seed,
        "size": geometry.size,
        "slices_per_series": geometry.n_slices,
        "pixel_spacing_mm": geometry.pixel_spacing_mm,
        "slice_thickness_mm": geometry.slice_thickness_mm,
        "slice_positions_mm": list(geometry.slice_positions_mm),
        "slice_index_base": 0,
        "min_lesion_area_mm2": MIN_AREA_MM2,
        "slice_labels": (
            "Every slice of a DICOM series under dicom/test/abnormal contains a lesion, and so "
            "does every slice that the slices column of test_nifti.csv selects. Slices of "
            "normal series contain none."
        ),
        "subjects": subjects,
    }
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def write_cohort(
    out_dir: str | Path,
    n_healthy: int = 12,
    n_test_healthy: int = 4,
    n_abnormal: int = 4,
    slices_per_series: int = 16,
    size: int = 256,
    seed: int = 0,
    formats: Iterable[str] = FORMATS,
    overwrite: bool = False,
) -> CohortInfo:
    """Write a synthetic head-CT cohort with training and labelled test manifests.

    Subjects ``sub-000`` onwards are the ``n_healthy`` training subjects, then the
    ``n_test_healthy`` held-out healthy subjects, then the ``n_abnormal`` abnormal
    subjects. Each abnormal subject has one or two lesions. The first lesions
    alternate between haemorrhage and infarct so both kinds appear. The module
    docstring shows the layout and how slice labels work.

    All randomness comes from ``numpy.random.default_rng(seed)``, spawned into one
    child generator per subject. UIDs derive from the seed and subject number and
    the DICOM dates are fixed, so the same arguments give byte-identical files.

    Args:
        out_dir: output folder, created when missing.
        n_healthy: healthy training subjects (rows of ``healthy.csv``).
        n_test_healthy: held-out healthy subjects in ``test.csv``.
        n_abnormal: abnormal subjects in ``test.csv``.
        slices_per_series: axial slices per subject volume.
        size: rows and columns of each slice (field of view 240 mm).
        seed: non-negative integer seed.
        formats: ``"dicom"``, ``"nifti"`` or a sequence of both.
        overwrite: replace an earlier cohort in ``out_dir`` (only the names in
            ``OUTPUT_NAMES`` are removed).

    Returns:
        A ``CohortInfo`` with the manifest paths and one record per subject.

    Raises:
        ValueError: if an argument is out of range.
        FileExistsError: if ``out_dir`` already contains a cohort and ``overwrite`` is False.
    """
    formats = (formats,) if isinstance(formats, str) else tuple(formats)
    _check_arguments(n_healthy, n_test_healthy, n_abnormal, slices_per_series, size, seed, formats)
    started = time.perf_counter()
    out_dir = Path(out_dir)
    _prepare_out_dir(out_dir, overwrite)

    geometry = make_geometry(size, slices_per_series)
    plan = (
        [("train", NORMAL)] * n_healthy
        + [("test", NORMAL)] * n_test_healthy
        + [("test", ABNORMAL)] * n_abnormal
    )
    generators = np.random.default_rng(seed).spawn(len(plan))
    records: list[SubjectRecord] = []
    masks: dict[str, np.ndarray] = {}
    for number, ((split, label), rng) in enumerate(zip(plan, generators)):
        kinds: list[str] = []
        if label == ABNORMAL:
            kinds.append(LESION_KINDS[len(masks) % len(LESION_KINDS)])
            if rng.random() < SECOND_LESION_PROBABILITY:
                kinds.append(LESION_KINDS[int(rng.integers(len(LESION_KINDS)))])
        subject = synthesize_subject(rng, geometry, kinds)
        record = _write_subject(out_dir, subject, number, split, label, seed, formats)
        records.append(record)
        if label == ABNORMAL:
            masks[record.subject] = subject.lesion_mask

    info = CohortInfo(
        out_dir=out_dir,
        **_write_manifests(out_dir, records, formats),
        lesions_json=out_dir / "lesions.json",
        geometry=geometry,
        seed=seed,
        formats=formats,
        subjects=records,
    )
    _write_lesions_json(info.lesions_json, info, masks)
    info.seconds = time.perf_counter() - started
    logger.info(
        "wrote synthetic cohort to %s in %.1f s: %d training slices, %d normal and %d abnormal "
        "test slices",
        out_dir,
        info.seconds,
        info.n_train_slices,
        info.n_test_normal_slices,
        info.n_test_abnormal_slices,
    )
    return info


def _write_subject(
    out_dir: Path,
    subject: SyntheticSubject,
    number: int,
    split: str,
    label: str,
    seed: int,
    formats: tuple[str, ...],
) -> SubjectRecord:
    """Write one subject in each format; abnormal DICOM series get the lesion slices only."""
    subject_id = f"sub-{number:03d}"
    part = "train" if split == "train" else f"test/{'healthy' if label == NORMAL else 'abnormal'}"
    abnormal = label == ABNORMAL

    dicom_dir = nifti_path = mask_path = None
    if "dicom" in formats:
        dicom_dir = out_dir / "dicom" / part / subject_id
        write_dicom_series(
            dicom_dir,
            subject.hu,
            subject.geometry,
            seed=seed,
            subject_number=number,
            series_key="lesion" if abnormal else "full",
            slice_indices=list(subject.lesion_slices) if abnormal else None,
        )
    if "nifti" in formats:
        nifti_path = out_dir / "nifti" / part / f"{subject_id}.nii.gz"
        write_nifti(nifti_path, subject.hu, subject.geometry)
        if abnormal:
            # Kept apart from the images so that a folder scan never reads a mask as an image.
            mask_path = out_dir / "masks" / f"{subject_id}.nii.gz"
            write_nifti(mask_path, subject.lesion_mask, subject.geometry)
    logger.debug("wrote %s (%s, %s)", subject_id, split, label)

    return SubjectRecord(
        subject=subject_id,
        number=number,
        split=split,
        label=label,
        dicom_dir=dicom_dir,
        nifti_path=nifti_path,
        mask_path=mask_path,
        lesion_slices=subject.lesion_slices,
        lesions=tuple(subject.lesions),
    )


def _write_manifests(
    out_dir: Path, records: list[SubjectRecord], formats: tuple[str, ...]
) -> dict[str, Path | None]:
    """Write the CSV manifests and return their paths keyed by CohortInfo field name."""
    train = [r for r in records if r.split == "train"]
    test = [r for r in records if r.split == "test"]
    nifti_columns = ("path", "label", "group", "slices")
    primary = "dicom" if "dicom" in formats else "nifti"
    columns = ("path", "label", "group") if primary == "dicom" else nifti_columns
    paths: dict[str, Path | None] = {
        "healthy_manifest": _write_manifest(
            out_dir / "healthy.csv", _manifest_rows(train, out_dir, primary), columns
        ),
        "test_manifest": _write_manifest(
            out_dir / "test.csv", _manifest_rows(test, out_dir, primary), columns
        ),
        "nifti_healthy_manifest": None,
        "nifti_test_manifest": None,
    }
    if "nifti" in formats:
        paths["nifti_healthy_manifest"] = _write_manifest(
            out_dir / "healthy_nifti.csv", _manifest_rows(train, out_dir, "nifti"), nifti_columns
        )
        paths["nifti_test_manifest"] = _write_manifest(
            out_dir / "test_nifti.csv", _manifest_rows(test, out_dir, "nifti"), nifti_columns
        )
    return paths
